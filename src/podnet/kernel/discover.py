"""Find every network namespace on this host and what holds it, read-only.

Three kinds of holder keep a network namespace alive, and each is found differently:

- a bind mount of an nsfs file: `ip netns add` (/run/netns/NAME), containerd's CRI
  (/run/netns/cni-...), Docker (/run/docker/netns/ID). Every such mount is listed in
  /proc/self/mountinfo with file system type `nsfs` and root `net:[INODE]`, so one read of
  that file finds them all, wherever they are mounted;
- a process whose /proc/PID/ns/net points at it (a pause container, `unshare --net sleep`);
- an open file descriptor or a socket. These are not searched; a veth whose peer sits in such a
  namespace is still reported, as "in a namespace podnet cannot see" (see inspect.build).

Namespaces are identified by inode: two paths name the same namespace when their inodes match.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

from podnet.kernel.discover_netlink import Session
from podnet.kernel.discover_types import NETNS_DIRS, Holder, NamespaceDump, NamespaceRef

__all__ = [
    "NETNS_DIRS",
    "Holder",
    "NamespaceDump",
    "NamespaceRef",
    "Session",
    "container_id_from_cgroup",
    "find_namespaces",
    "named_namespaces",
    "parse_mountinfo",
]

_PF_KTHREAD = 0x00200000  # /proc/PID/stat flags: a kernel thread, not a holder worth listing
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> dict[int, list[str]]:
    """{namespace inode: [mount points]} for every network namespace bind mount in `text`."""
    found: dict[int, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if len(fields) <= sep + 1 or fields[sep + 1] != "nsfs":
            continue
        root = fields[3]
        if not (root.startswith("net:[") and root.endswith("]")):
            continue
        point = _unescape(fields[4])
        paths = found.setdefault(int(root[5:-1]), [])
        if point not in paths:
            paths.append(point)
    return found


def container_id_from_cgroup(text: str) -> str | None:
    """The container id in a /proc/PID/cgroup file, for Docker, containerd, CRI-O and podman.

    The runtimes all end the path with the 64-hex id, in forms such as `/docker/ID`,
    `docker-ID.scope`, `cri-containerd-ID.scope`, `crio-ID.scope`, `/kubepods/.../podUID/ID`.
    """
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        ids = _CONTAINER_ID.findall(path)
        if ids:
            return str(ids[-1])
    return None


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _inode_of_link(path: str) -> int | None:
    try:
        target = os.readlink(path)  # "net:[4026531840]"
    except OSError:
        return None  # exited, or not ours to read
    return int(target[5:-1]) if target.startswith("net:[") else None


def _processes() -> Iterator[tuple[int, int, Holder]]:
    """(pid, namespace inode, holder) for every user-space process we may look at."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        inode = _inode_of_link(f"/proc/{pid}/ns/net")
        stat = _read(f"/proc/{pid}/stat") if inode is not None else None
        if inode is None or stat is None:
            continue
        # "PID (comm) state ppid ..." and comm may hold spaces or parentheses.
        close = stat.rfind(")")
        comm = stat[stat.find("(") + 1 : close]
        rest = stat[close + 2 :].split()
        if len(rest) > 6 and int(rest[6]) & _PF_KTHREAD:
            continue
        cgroup = _read(f"/proc/{pid}/cgroup") or ""
        yield pid, inode, Holder(pid, comm, container_id_from_cgroup(cgroup))


def named_namespaces(names: Iterable[str]) -> list[NamespaceRef]:
    """Namespaces by their `ip netns` names (those that exist), from their bind mounts alone:
    no holders are looked for."""
    refs = []
    for name in sorted(set(names)):
        for directory in NETNS_DIRS:
            path = os.path.join(directory, name)
            try:
                if not os.path.ismount(path):
                    continue
                inode = os.stat(path).st_ino
            except OSError:
                continue
            refs.append(NamespaceRef.make(inode, mounts=(path,)))
            break
    return refs


def find_namespaces() -> list[NamespaceRef]:
    """Every network namespace held by a bind mount or a process, deduplicated by inode."""
    current = os.stat("/proc/thread-self/ns/net").st_ino
    mounts = parse_mountinfo(_read("/proc/self/mountinfo") or "")
    holders: dict[int, list[Holder]] = {}
    for _pid, inode, holder in _processes():
        holders.setdefault(inode, []).append(holder)
    inodes = {current, *mounts, *holders}
    refs = []
    for inode in inodes:
        points = sorted(
            mounts.get(inode, []), key=lambda p: (os.path.dirname(p) not in NETNS_DIRS, p)
        )
        refs.append(NamespaceRef.make(
            inode,
            mounts=tuple(points),
            holders=tuple(sorted(holders.get(inode, []), key=lambda h: h.pid)),
            current=inode == current,
        ))
    refs.sort(key=lambda r: (not r.current, r.name is None, r.name or "", r.inode))
    return refs
