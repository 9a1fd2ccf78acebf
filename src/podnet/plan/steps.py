"""Desired layout + what is running -> the ordered steps that converge them. Pure.

A step is a comment for people and the operations (`podnet.plan.ops`) that do it: `up` executes
the operations, `podnet explain` prints them as commands. How each object is built or removed is
`podnet.plan.builds` (whose shapes come from `attachments` and `routings`); this module decides
what to build, remove or repair, and in which order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podnet.model.shape import Shape
from podnet.plan.addons import is_addon_pod, records_path
from podnet.plan.builds import (
    Action,
    Step,
    dns_records,
    fabric_create,
    host_side,
    hosts_text,
    internet_create,
    internet_delete,
    internet_start,
    node_create,
    node_delete,
    node_rules,
    pod_create,
    pod_delete,
    pod_start,
    rules_file,
    state_dirs,
)
from podnet.plan.dns import lab_records, resolv_text
from podnet.plan.layout import (
    INTERNET_KEY,
    Layout,
    NodeLayout,
    PodLayout,
)
from podnet.plan.ops import (
    ALL_PODS,
    AddRoute,
    DeleteFdb,
    DeleteNeighbour,
    DeleteNetns,
    DeleteRoute,
    Op,
    RemoveFiles,
    SetFdb,
    SetNeighbour,
    ShapeLink,
    StopContainers,
    WriteFile,
)
from podnet.plan.routings import PeerPath, routing
from podnet.plan.rules import table_bodies

__all__ = [
    "ALL_PODS",
    "NodeSeen",
    "Observed",
    "plan",
    "plan_down",
    "seen_as_planned",
    "shaped_links",
]


@dataclass(frozen=True)
class NodeSeen:
    """What a node's kernel holds of the paths to other nodes' pods (read by apply)."""

    routes: frozenset[tuple[str, str]] = frozenset()  # (dst, via) into the lab's pod subnets
    neighbours: frozenset[tuple[str, str, str]] = frozenset()  # (dev, ip, mac) on tunnels
    fdb: frozenset[tuple[str, str, str]] = frozenset()  # (dev, mac, remote) on tunnels
    rules: str | None = None  # the digest in its nftables table's comment (None: no table)
    # (ifname, egress, ingress) of each of its links a qdisc shapes, read where the lab shapes
    # something on the node (podnet.kernel.tc.read); other nodes are not asked
    shapes: frozenset[tuple[str, Shape, Shape]] = frozenset()


@dataclass(frozen=True)
class Observed:
    """What the kernel and /proc say about a recorded lab (gathered by apply, not the planner).
    Nodes missing from `nodes` hold nothing yet."""

    netns: frozenset[str] = frozenset()  # named namespaces that exist
    running: frozenset[str] = frozenset()  # pods whose every container process is alive
    nodes: dict[str, NodeSeen] = field(default_factory=dict)
    internet: str | None = None  # "absent", "stopped" (no web server) or "running"


def seen_as_planned(lay: Layout) -> Observed:
    """What a kernel that holds exactly `lay` would show: the planner's own idea of done."""
    digests = {name: digest for name, (digest, _) in table_bodies(lay).items()}
    nodes = {}
    for node in lay.nodes:
        paths = routing(lay.routing).paths(lay, node)
        nodes[node.name] = NodeSeen(
            routes=frozenset((p.dst, p.via) for p in paths),
            neighbours=frozenset((p.dev or "", *p.neighbour) for p in paths if p.neighbour),
            fdb=frozenset((p.dev or "", *p.fdb) for p in paths if p.fdb),
            rules=digests[node.name],
            shapes=frozenset((name, *ways) for name, ways in shaped_links(lay, node).items()),
        )
    names = {lay.fabric_netns, *(n.netns for n in lay.nodes), *(p.netns for p in lay.pods)}
    if lay.internet is not None:
        names.add(lay.internet.netns)
    return Observed(frozenset(names), frozenset([*(p.key for p in lay.pods), INTERNET_KEY]),
                    nodes, "running" if lay.internet is not None else None)


def plan(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """Steps that take the lab from `current` (recorded; None if new) to `desired`."""
    if current is not None and _must_rebuild(desired, current, seen):
        # The network's shape changed (or its node network is gone): tear down, build anew,
        # keeping every name and address the record holds.
        return plan_down(current) + plan(desired, None, Observed())
    steps = [] if current is not None else [state_dirs(desired)]
    return (
        steps
        + _removals(desired, current, seen)
        + _infrastructure(desired, current, seen)
        + _pods(desired, current, seen)
        + _reshape(desired, current, seen)
    )


def _shape(lay: Layout) -> tuple[object, ...]:
    return (lay.attachment, lay.routing, lay.mtu, lay.vxlan_vni, lay.vxlan_port, lay.bridge,
            lay.fabric_gateways, lay.families)


def _must_rebuild(desired: Layout, current: Layout, seen: Observed) -> bool:
    # Every node's eth0 is the peer of a veth in the fabric namespace: without it, none works.
    return _shape(desired) != _shape(current) or current.fabric_netns not in seen.netns


def _same_place(old: PodLayout | None, new: PodLayout) -> bool:
    """Whether `new` stands where `old` stood: same node, addresses and veth, and the same
    names (kubelet gives a pod its hostname once: a pod whose hostname or subdomain changes is
    a new pod)."""
    return old is not None and (old.node, old.ips, old.veth, old.hostname, old.subdomain) == (
        new.node, new.ips, new.veth, new.hostname, new.subdomain)


def _removals(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """Pods that left the file or moved, containers that changed, then nodes that left."""
    if current is None:
        return []
    steps = []
    staying = {n.name for n in desired.nodes}
    for old in current.pods:
        new = desired.pod(old.key)
        if new is None or not _same_place(old, new):
            steps.append(pod_delete(current, old, node_stays=old.node in staying))
        elif new.containers != old.containers and old.netns in seen.netns:
            steps.append(Step(Action.POD_STOP, old.key, f"stop the containers of {old.key}",
                              (StopContainers(old.key),)))
    names = {n.name for n in desired.nodes}
    return steps + [node_delete(n) for n in current.nodes if n.name not in names]


def _infrastructure(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """The node network and the outside world, missing nodes, each node's paths to the others'
    pods, each node's nftables table, and pods' /etc/hosts when the Services changed."""
    recorded = {n.name for n in current.nodes} if current else set()
    steps = [fabric_create(desired)] if desired.fabric_netns not in seen.netns else []
    if desired.internet is not None:
        state = seen.internet or "absent"
        if state == "absent":
            steps.append(internet_create(desired, desired.internet))
        if state != "running":
            steps.append(internet_start(desired, desired.internet))
    created = {
        node.name
        for node in desired.nodes
        if node.netns not in seen.netns or node.name not in recorded
    }
    steps += [node_create(desired, node) for node in desired.nodes if node.name in created]
    for node in desired.nodes:
        have = NodeSeen() if node.name in created else seen.nodes.get(node.name, NodeSeen())
        ops = _path_ops(desired, node, have)
        if ops:
            steps.append(Step(Action.NODE_ROUTES, node.name,
                              f"{node.name} {routing(desired.routing).words}", tuple(ops)))
    bodies = table_bodies(desired)
    stale = [
        node for node in desired.nodes
        if node.name in created or seen.nodes.get(node.name, NodeSeen()).rules
        != bodies[node.name][0]
    ]
    if stale:
        steps.append(node_rules(desired, stale, {n.name: bodies[n.name][1] for n in stale}))
    records = lab_records(desired)
    if current is None or lab_records(current) != records:
        steps.append(dns_records(desired, current is None))
    files = _pods_files(desired, current, seen)
    return steps + ([files] if files.ops else [])


def _path_ops(lay: Layout, node: NodeLayout, have: NodeSeen) -> list[Op]:
    """What changes the node's routes (and tunnel entries) into the wanted ones: stale entries
    removed, missing ones put in place. Nothing when all is as wanted."""
    ns = node.netns
    paths = routing(lay.routing).paths(lay, node)
    wanted = {(p.dst, p.via) for p in paths}
    ops: list[Op] = [DeleteRoute(ns, dst, family=6 if ":" in dst else 4)
                     for dst, via in sorted(have.routes - wanted)]
    neighbours = {(p.dev or "", *p.neighbour) for p in paths if p.neighbour}
    fdb = {(p.dev or "", *p.fdb) for p in paths if p.fdb}
    ops += [DeleteNeighbour(ns, dev, ip) for dev, ip, _ in sorted(have.neighbours - neighbours)]
    ops += [DeleteFdb(ns, dev, mac, dst) for dev, mac, dst in sorted(have.fdb - fdb)]
    for path in paths:
        ops += _path_put(ns, path, have)
    return ops


def _path_put(ns: str, path: PeerPath, have: NodeSeen) -> list[Op]:
    out: list[Op] = []
    if (path.dst, path.via) not in have.routes:
        out.append(AddRoute(ns, path.dst, path.family, via=path.via, dev=path.dev,
                            onlink=path.onlink, replace=True))
    if path.neighbour and (path.dev or "", *path.neighbour) not in have.neighbours:
        out.append(SetNeighbour(ns, path.dev or "", *path.neighbour))
    if path.fdb and (path.dev or "", *path.fdb) not in have.fdb:
        out.append(SetFdb(ns, path.dev or "", *path.fdb))
    return out


def _pods(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """Pods to (re)build, each followed by its start, so its containers start (in the spawner,
    on the other core) while the next pods are built; then pods that only need a (re)start."""
    recorded_nodes = {n.name for n in current.nodes} if current else set()
    hosts = {node.name: host_side(desired, node) for node in desired.nodes}
    steps: list[Step] = []
    restarts: list[Step] = []
    # The cluster DNS's pods first: their servers load (a fifth of a second) on the other core
    # while the rest are built, as kubeadm installs them before any workload.
    for pod in sorted(desired.pods, key=lambda p: not is_addon_pod(p.namespace, p.owner)):
        old = current.pod(pod.key) if current else None
        intact = _intact(desired, current, seen, pod, recorded_nodes)
        if not intact and pod.host_network:  # nothing to build: its node's namespace
            steps.append(pod_start(desired, pod, restart=old is not None))
        elif not intact:
            if old is not None and _same_place(old, pod) and old.netns in seen.netns:
                steps.append(pod_delete(desired, old))  # its node was rebuilt: rebuild the pod
            # A recorded pod's old containers may still live (in its half-built namespace, or
            # one its node took away): they stop before the new ones start.
            steps += [pod_create(desired, pod, hosts[pod.node]),
                      pod_start(desired, pod, restart=old is not None)]
        elif old is not None and (old.containers != pod.containers or pod.key not in seen.running):
            restarts.append(pod_start(desired, pod, restart=True))
    return steps + restarts


def _intact(desired: Layout, current: Layout | None, seen: Observed, pod: PodLayout,
            recorded_nodes: set[str]) -> bool:
    """Whether `pod` stands as recorded, on a node that stands too (else it is built again)."""
    old = current.pod(pod.key) if current else None
    node_kept = pod.node in recorded_nodes and desired.node(pod.node).netns in seen.netns
    return _same_place(old, pod) and node_kept and pod.netns in seen.netns


def shaped_links(lay: Layout, node: NodeLayout) -> dict[str, tuple[Shape, Shape]]:
    """{ifname: (egress, ingress)} of every link of `node` the lab shapes: its uplink as its
    `netem` key says, each pod's veth as the pod's annotations say (what reaches the pod leaves
    the node by the veth; what the pod sends arrives on it)."""
    out = {}
    if not node.impairment.empty:
        out["eth0"] = (node.impairment.sent, node.impairment.received)
    for pod in lay.pods_on(node.name):
        if not pod.impairment.empty and not pod.host_network:
            out[pod.veth] = (pod.impairment.received, pod.impairment.sent)
    return out


def _same_shape(a: Shape, b: Shape) -> bool:
    """Equal as the kernel keeps them: times in microseconds, rates in bytes per second, loss
    to a hundred-thousandth (netem keeps it as a fraction of 2^32)."""
    def kept(s: Shape) -> tuple[object, ...]:
        rate = None if s.rate_bps is None else s.rate_bps // 8
        return (round(s.delay_ms * 1000), round(s.jitter_ms * 1000), round(s.loss_pct, 5), rate)

    return kept(a) == kept(b)


def _reshape(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """Links of standing nodes and pods whose shaping differs from the file's (the file
    changed, or someone changed the link): shaped again in place, nothing restarted. A link the
    lab never shaped is left as it is, whatever `podnet netem` put there."""
    if current is None:
        return []
    recorded = {n.name for n in current.nodes}
    steps = []
    for node in desired.nodes:
        if node.name not in recorded or node.netns not in seen.netns:
            continue  # built in this run, shaped as it is built
        before = shaped_links(current, current.node(node.name))
        wanted = shaped_links(desired, node)
        have = {name: (egress, ingress) for name, egress, ingress
                in seen.nodes.get(node.name, NodeSeen()).shapes}
        standing = {p.veth for p in desired.pods_on(node.name)
                    if not p.host_network and _intact(desired, current, seen, p, recorded)}
        ops: list[Op] = []
        for name in sorted(set(before) | set(wanted)):
            if name != "eth0" and name not in standing:
                continue  # a pod built (or removed) in this run
            egress, ingress = wanted.get(name, (Shape(), Shape()))
            was = have.get(name, (Shape(), Shape()))
            if not (_same_shape(egress, was[0]) and _same_shape(ingress, was[1])):
                ops.append(ShapeLink(node.netns, name, egress, ingress, *was))
        if ops:
            names = ", ".join(op.ifname for op in ops if isinstance(op, ShapeLink))
            steps.append(Step(Action.LINKS_SHAPE, node.name,
                              f"{node.name}: shape {names} as the file says (tc), in place",
                              tuple(ops)))
    return steps


def plan_down(current: Layout) -> list[Step]:
    """Everything a recorded lab made, removed: containers, pods, nodes (their nftables tables
    go with their namespaces), the outside world, the node network."""
    # One stop for all: a single pass over /proc finds every container's process group, the
    # internet's web server included.
    steps = [Step(Action.POD_STOP, ALL_PODS, "stop every container of the lab",
                  (StopContainers(ALL_PODS),))]
    steps += [pod_delete(current, p, stop=False) for p in current.pods]
    steps += [node_delete(n) for n in current.nodes]
    if current.internet is not None:
        steps.append(internet_delete(current.internet))
    steps.append(
        Step(Action.FABRIC_DELETE, current.fabric_netns, "remove the node network",
             (DeleteNetns(current.fabric_netns),
              RemoveFiles((rules_file(current), *(rules_file(current, n) for n in current.nodes),
                           records_path(current.state_dir)))))
    )
    return steps


def _pods_files(desired: Layout, current: Layout | None, seen: Observed) -> Step:
    """Standing pods whose /etc/resolv.conf (the kube-dns address, the pod's dnsPolicy or
    dnsConfig) or /etc/hosts changed: rewritten in place, nothing restarted. A hostNetwork
    pod's files are its node's."""
    ops: list[Op] = []
    recorded = {n.name for n in current.nodes} if current else set()
    for pod in desired.pods:
        old = current.pod(pod.key) if current else None
        if (current is None or old is None or pod.host_network or old.host_network
                or not _intact(desired, current, seen, pod, recorded)):
            continue
        if resolv_text(desired, pod) != resolv_text(current, old):
            ops.append(WriteFile(pod.resolv_file, resolv_text(desired, pod)))
        if hosts_text(desired, pod) != hosts_text(current, old):
            ops.append(WriteFile(pod.hosts_file, hosts_text(desired, pod)))
    return Step(Action.PODS_FILES, ALL_PODS,
                "rewrite the /etc/resolv.conf and /etc/hosts of pods whose DNS settings changed",
                tuple(ops))
