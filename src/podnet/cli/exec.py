"""`podnet exec` and `podnet node-exec`: a command inside a pod or a node, as kubectl exec and
docker exec run it."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from podnet.cli.context import (
    cluster_option,
    complete_namespaces,
    complete_nodes,
    complete_pods,
    find_pod,
    require_lab,
)
from podnet.errors import StateError

__all__ = ["exec_command", "node_exec"]


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("-n", "--namespace", default=None, shell_complete=complete_namespaces,
              help="Kubernetes namespace of the pod.")
@click.option("-c", "--container", default=None, help="Container (all share the pod's network).")
@click.option("-i", "--stdin", "keep_stdin", is_flag=True,
              help="Pass stdin to the command (podnet always does; accepted for kubectl's -i).")
@click.option("-t", "--tty", "use_tty", is_flag=True,
              help="Give the command a terminal of its own (with -i: `exec -it POD -- sh`).")
@cluster_option
@click.argument("pod", shell_complete=complete_pods)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(namespace: str | None, container: str | None, keep_stdin: bool, use_tty: bool,
                 cluster: str | None, pod: str, command: tuple[str, ...]) -> NoReturn:
    """Run COMMAND in POD's network and UTS namespaces, with the pod's /etc/hosts.

    stdin, stdout, stderr and the exit code pass straight through, so pods can be piped:
    `podnet exec a -- cat f | podnet exec b -- wc -c`. With -t the command gets a terminal
    (its size follows this one's), as `kubectl exec -it POD -- sh` does.
    """
    from podnet.kernel import netns
    from podnet.runtime.enter import enter_pod, exec_command, exec_in_pod

    record = require_lab(cluster)
    found = find_pod(record, pod, namespace)
    names = [c.name for c in found.containers]
    if container and container not in names:
        raise StateError(f"pod {found.key} has no container {container}",
                         hint=f"its containers: {', '.join(names)}")
    argv = list(command)
    path = netns.path_of(found.netns)
    if use_tty and not sys.stdin.isatty():
        click.echo("Unable to use a TTY - input is not a terminal", err=True)
        use_tty = False
    if not use_tty:
        exec_in_pod(path, found.uts, found.hosts_file, argv)
    from podnet.runtime.tty import run_on_tty

    status = run_on_tty(lambda: enter_pod(path, found.uts, found.hosts_file), argv,
                        lambda args: exec_command(list(args)))
    sys.exit(status)


@click.command("node-exec", context_settings={"ignore_unknown_options": True})
@cluster_option
@click.argument("node", shell_complete=complete_nodes)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def node_exec(cluster: str | None, node: str, command: tuple[str, ...]) -> NoReturn:
    """Run COMMAND on NODE, as `docker exec kind-worker ...` does on kind.

    `ip netns list` there shows that node's pods only, so `ip link` names each veth's peer
    namespace (link-netns cni-...) as on a real node.
    """
    from podnet.kernel.netns import path_of
    from podnet.runtime.node import exec_on_node

    record = require_lab(cluster)
    found = next((n for n in record.layout.nodes if n.name == node), None)
    if found is None:
        names = ", ".join(n.name for n in record.layout.nodes)
        raise StateError(f"node {node} not found", hint=f"nodes: {names}")
    pods = [p.netns for p in record.layout.pods_on(node)]
    exec_on_node(path_of(found.netns), found.uts, found.hosts_file, pods, list(command))
