"""`podnet exec` and `podnet node-exec`: a command inside a pod or a node, as kubectl exec and
docker exec run it."""

from __future__ import annotations

from typing import NoReturn

import click

from podnet.cli.context import cluster_option, find_pod, require_lab
from podnet.errors import StateError

__all__ = ["exec_command", "node_exec"]


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("-n", "--namespace", default=None, help="Kubernetes namespace of the pod.")
@click.option("-c", "--container", default=None, help="Container (all share the pod's network).")
@cluster_option
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(namespace: str | None, container: str | None, cluster: str | None, pod: str,
                 command: tuple[str, ...]) -> NoReturn:
    """Run COMMAND in POD's network and UTS namespaces, with the pod's /etc/hosts.

    stdin, stdout, stderr and the exit code pass straight through, so pods can be piped:
    `podnet exec a -- cat f | podnet exec b -- wc -c`.
    """
    from podnet.kernel import netns
    from podnet.runtime.enter import exec_in_pod

    record = require_lab(cluster)
    found = find_pod(record, pod, namespace)
    names = [c.name for c in found.containers]
    if container and container not in names:
        raise StateError(f"pod {found.key} has no container {container}",
                         hint=f"its containers: {', '.join(names)}")
    exec_in_pod(netns.path_of(found.netns), found.uts, found.hosts_file, list(command))


@click.command("node-exec", context_settings={"ignore_unknown_options": True})
@cluster_option
@click.argument("node")
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
