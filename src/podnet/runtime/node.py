"""`podnet node-exec`: a shell on a lab node, as `docker exec kind-worker ...` gives on kind.

The command runs in the node's network and UTS namespaces with the node's /etc/hosts, and sees a
/run/netns that holds only that node's pods: `ip netns list` and the `link-netns cni-...` of
`ip link` then read as they do on a real node.
"""

from __future__ import annotations

import os
from typing import NoReturn

from podnet.kernel import syscalls
from podnet.kernel.netns import NETNS_DIR
from podnet.runtime.enter import exec_command

__all__ = ["exec_on_node"]


def exec_on_node(
    netns_path: str, uts_path: str, hosts_file: str, pod_netns: list[str], argv: list[str]
) -> NoReturn:
    for path, kind in ((netns_path, syscalls.CLONE_NEWNET), (uts_path, syscalls.CLONE_NEWUTS)):
        fd = os.open(path, os.O_RDONLY)
        syscalls.setns(fd, kind)
        os.close(fd)
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.make_slave("/")
    _node_netns_view(pod_netns)
    if os.path.exists(hosts_file):
        syscalls.bind_mount(hosts_file, "/etc/hosts")
    exec_command(argv)


def _node_netns_view(pod_netns: list[str]) -> None:
    """Cover /run/netns with a tmpfs holding bind mounts of this node's pods only.

    The sources are opened before the tmpfs hides them; /proc/self/fd/N still names them after.
    """
    fds = {}
    for name in pod_netns:
        try:
            fds[name] = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
        except FileNotFoundError:
            continue
    syscalls.mount_tmpfs(NETNS_DIR)
    for name, fd in fds.items():
        target = os.path.join(NETNS_DIR, name)
        os.close(os.open(target, os.O_CREAT | os.O_RDONLY, 0o444))
        syscalls.bind_mount(f"/proc/self/fd/{fd}", target)
        os.close(fd)
