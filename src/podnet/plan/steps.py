"""Desired layout + what is running -> the ordered steps that converge them. Pure.

Each step knows its inverse (how `up` rolls it back) and the `ip` commands a person would type to
do the same by hand: `podnet explain` prints those, so the plan doubles as the lesson in commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from podnet.plan.layout import Layout, NodeLayout, PodLayout

__all__ = ["ALL_PODS", "Action", "Observed", "Step", "plan", "plan_down"]

ALL_PODS = "*"  # the target of a POD_STOP that stops every pod of the lab


class Action(StrEnum):
    FABRIC_CREATE = "fabric.create"
    FABRIC_DELETE = "fabric.delete"
    NODE_CREATE = "node.create"
    NODE_DELETE = "node.delete"
    NODE_ROUTES = "node.routes"
    POD_CREATE = "pod.create"
    POD_DELETE = "pod.delete"
    POD_START = "pod.start"
    POD_STOP = "pod.stop"


_INVERSE = {
    Action.FABRIC_CREATE: Action.FABRIC_DELETE,
    Action.NODE_CREATE: Action.NODE_DELETE,
    Action.POD_CREATE: Action.POD_DELETE,
    Action.POD_START: Action.POD_STOP,
}


@dataclass(frozen=True)
class Step:
    action: Action
    target: str  # the node name, pod key or fabric namespace it acts on
    comment: str
    commands: tuple[str, ...] = ()
    routes: tuple[tuple[str, str], ...] = field(default=())  # NODE_ROUTES: (pod CIDR, via)

    def inverse(self) -> Step | None:
        """The step that undoes this one (None: undone with its node or pod)."""
        undo = _INVERSE.get(self.action)
        if undo is None:
            return None
        return Step(undo, self.target, f"undo: {self.comment}")


@dataclass(frozen=True)
class Observed:
    """What the kernel and /proc say about a recorded lab (gathered by apply, not the planner)."""

    netns: frozenset[str] = frozenset()  # named namespaces that exist
    running: frozenset[str] = frozenset()  # pods whose every container process is alive
    routes: dict[str, frozenset[str]] = field(default_factory=dict)  # node -> pod CIDRs routed


def plan(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """Steps that take the lab from `current` (recorded; None if new) to `desired`."""
    return (
        _removals(desired, current, seen)
        + _infrastructure(desired, current, seen)
        + _pods(desired, current, seen)
    )


def _same_place(old: PodLayout | None, new: PodLayout) -> bool:
    return old is not None and (old.node, old.ip, old.veth) == (new.node, new.ip, new.veth)


def _removals(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """Pods that left the file or moved, containers that changed, then nodes that left."""
    if current is None:
        return []
    steps = []
    for old in current.pods:
        new = desired.pod(old.key)
        if new is None or not _same_place(old, new):
            steps.append(_pod_delete(old))
        elif new.containers != old.containers and old.netns in seen.netns:
            steps.append(Step(Action.POD_STOP, old.key, f"stop the containers of {old.key}"))
    names = {n.name for n in desired.nodes}
    return steps + [_node_delete(n) for n in current.nodes if n.name not in names]


def _infrastructure(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """The node network, missing nodes, and each node's routes to the others' pod CIDRs."""
    recorded = {n.name for n in current.nodes} if current else set()
    steps = [_fabric_create(desired)] if desired.fabric_netns not in seen.netns else []
    steps += [
        _node_create(desired, node)
        for node in desired.nodes
        if node.netns not in seen.netns or node.name not in recorded
    ]
    for node in desired.nodes:
        wanted = _peer_routes(desired, node)
        if frozenset(cidr for cidr, _ in wanted) != seen.routes.get(node.name, frozenset()):
            steps.append(_node_routes(node, wanted))
    return steps


def _pods(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """Pods to (re)build, each followed by its start, so its containers start (in the spawner,
    on the other core) while the next pods are built; then pods that only need a (re)start."""
    recorded_nodes = {n.name for n in current.nodes} if current else set()
    steps: list[Step] = []
    restarts: list[Step] = []
    for pod in desired.pods:
        old = current.pod(pod.key) if current else None
        node_kept = pod.node in recorded_nodes and desired.node(pod.node).netns in seen.netns
        intact = _same_place(old, pod) and node_kept and pod.netns in seen.netns
        if not intact:
            if old is not None and _same_place(old, pod) and old.netns in seen.netns:
                steps.append(_pod_delete(old))  # its node was rebuilt: rebuild the pod too
            steps += [_pod_create(desired, pod), _pod_start(pod)]
        elif old is not None and (old.containers != pod.containers or pod.key not in seen.running):
            restarts.append(_pod_start(pod))
    return steps + restarts


def plan_down(current: Layout) -> list[Step]:
    """Everything a recorded lab made, removed: containers, pods, nodes, the node network."""
    # One stop for all: a single pass over /proc finds every container's process group.
    steps = [Step(Action.POD_STOP, ALL_PODS, "stop every container of the lab")]
    steps += [_pod_delete(p) for p in current.pods]
    steps += [_node_delete(n) for n in current.nodes]
    steps.append(
        Step(
            Action.FABRIC_DELETE,
            current.fabric_netns,
            "remove the node network",
            (f"ip netns del {current.fabric_netns}",),
        )
    )
    return steps


# --- the steps, each with the commands a person would type -----------------------------------


def _fabric_create(lay: Layout) -> Step:
    ns, br = lay.fabric_netns, lay.bridge
    return Step(
        Action.FABRIC_CREATE,
        ns,
        f"the node network {lay.fabric_gateway.network}: a bridge, as docker's `kind` network",
        (
            f"ip netns add {ns}",
            f"ip -n {ns} link set lo up",
            f"ip -n {ns} link add {br} mtu {lay.mtu} type bridge",
            f"ip -n {ns} addr add {lay.fabric_gateway} dev {br}",
            f"ip -n {ns} link set {br} up",
        ),
    )


def _node_create(lay: Layout, node: NodeLayout) -> Step:
    ns = node.netns
    fab = lay.fabric_netns
    commands = [
        f"ip netns add {ns}",
        f"ip -n {ns} link set lo up",
        f"ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.default.accept_ra=0",
        f"ip -n {fab} link add {node.uplink} mtu {lay.mtu} type veth peer name eth0 netns {ns}",
        f"ip -n {fab} link set {node.uplink} master {lay.bridge} up",
        f"ip -n {ns} addr add {node.ip} dev eth0",
        f"ip -n {ns} link set eth0 up",
        f"ip -n {ns} route add default via {lay.fabric_gateway.ip}",
        f"touch {node.uts} && unshare --uts={node.uts} hostname {node.name}",
    ]
    if lay.attachment == "bridge":
        commands += [
            f"ip -n {ns} link add cni0 mtu {lay.mtu} type bridge",
            f"ip -n {ns} addr add {node.gateway}/{node.pod_cidr.prefixlen} dev cni0",
            f"ip -n {ns} link set cni0 up",
        ]
    return Step(
        Action.NODE_CREATE,
        node.name,
        f"node {node.name}: eth0 {node.ip} on the node network, pods in {node.pod_cidr}",
        tuple(commands),
    )


def _peer_routes(lay: Layout, node: NodeLayout) -> tuple[tuple[str, str], ...]:
    return tuple(
        (str(other.pod_cidr), str(other.ip.ip)) for other in lay.nodes if other.name != node.name
    )


def _node_routes(node: NodeLayout, routes: tuple[tuple[str, str], ...]) -> Step:
    return Step(
        Action.NODE_ROUTES,
        node.name,
        f"{node.name} reaches other nodes' pods through those nodes (kindnet's static routes)",
        tuple(f"ip -n {node.netns} route replace {cidr} via {via}" for cidr, via in routes),
        routes=routes,
    )


def _pod_create(lay: Layout, pod: PodLayout) -> Step:
    node = lay.node(pod.node)
    n, p = node.netns, pod.netns
    ip, gw = pod.ip, node.gateway
    commands = [
        f"ip netns add {p}",
        f"ip -n {n} link add {pod.veth} mtu {lay.mtu} type veth peer name eth0 netns {p}",
    ]
    if lay.attachment == "ptp":
        commands += [
            f"ip -n {n} link set {pod.veth} up",
            f"ip -n {n} addr add {gw}/32 dev {pod.veth}",
            f"ip -n {n} route add {ip.ip}/32 dev {pod.veth} scope host",
            f"ip -n {p} link set lo up",
            f"ip -n {p} addr add {ip} dev eth0 noprefixroute",
            f"ip -n {p} link set eth0 up",
            f"ip -n {p} route add {gw} dev eth0 scope link src {ip.ip}",
            f"ip -n {p} route add {ip.network} via {gw} dev eth0 src {ip.ip}",
        ]
    else:
        commands += [
            f"ip -n {n} link set {pod.veth} master cni0 up",
            f"ip -n {p} link set lo up",
            f"ip -n {p} addr add {ip} dev eth0",
            f"ip -n {p} link set eth0 up",
        ]
    commands += [
        f"ip -n {p} route add default via {gw} dev eth0",
        f"touch {pod.uts} && unshare --uts={pod.uts} hostname {pod.name}",
        f"printf '# Kubernetes-managed hosts file.\\n...{ip.ip}\\t{pod.name}\\n'"
        f" > {pod.hosts_file}",
    ]
    return Step(
        Action.POD_CREATE,
        pod.key,
        f"pod {pod.key} on {pod.node}: {p}, eth0 {ip}, {pod.veth} on the node",
        tuple(commands),
    )


def _pod_start(pod: PodLayout) -> Step:
    commands = []
    for c in pod.containers:
        if c.command:
            what = " ".join(c.command)
        elif c.ports:
            what = "python3 -m podnet.runtime.responder " + " ".join(f"--port {p}" for p in c.ports)
        else:
            what = "sleep infinity"
        commands.append(
            f"ip netns exec {pod.netns} nsenter --uts={pod.uts} {what} &  # container {c.name}"
        )
    return Step(
        Action.POD_START,
        pod.key,
        f"start {len(pod.containers)} container(s) of {pod.key} in its namespaces",
        tuple(commands),
    )


def _pod_delete(pod: PodLayout) -> Step:
    return Step(
        Action.POD_DELETE,
        pod.key,
        f"remove pod {pod.key}: its namespace (the kernel frees {pod.veth} with it)",
        (f"ip netns del {pod.netns}", f"umount {pod.uts}; rm -f {pod.uts} {pod.hosts_file}"),
    )


def _node_delete(node: NodeLayout) -> Step:
    return Step(
        Action.NODE_DELETE,
        node.name,
        f"remove node {node.name} (its uplink {node.uplink} goes with it)",
        (f"ip netns del {node.netns}", f"umount {node.uts}; rm -f {node.uts} {node.hosts_file}"),
    )
