"""Desired layout + what is running -> the ordered steps that converge them. Pure.

A step is a comment for people and the operations (`podnet.plan.ops`) that do it: `up` executes
the operations, `podnet explain` prints them as commands. Shapes come from their classes
(`attachments`, `routings`); this module decides what to build, remove or repair, and in which
order.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

from podnet.model.addresses import IPAddress, IPInterface
from podnet.model.shape import Shape
from podnet.plan.addons import is_addon_pod, records_path
from podnet.plan.attachments import HostSide, PodLink, attachment
from podnet.plan.dns import lab_records, resolv_text
from podnet.plan.layout import (
    INTERNET_KEY,
    InternetLayout,
    Layout,
    NodeLayout,
    PodLayout,
    link_mac,
)
from podnet.plan.ops import (
    ALL_PODS,
    AddAddress,
    AddBridge,
    AddRoute,
    AddVeth,
    CreateNetns,
    DeleteFdb,
    DeleteNeighbour,
    DeleteNetns,
    DeleteRoute,
    DeleteUts,
    LoadNftTable,
    MakeDirs,
    Op,
    RemoveFiles,
    SetFdb,
    SetHostname,
    SetLink,
    SetNeighbour,
    ShapeLink,
    StartContainer,
    StopContainers,
    WriteFile,
    render_all,
)
from podnet.plan.routings import PeerPath, routing
from podnet.plan.rules import TABLE, table_bodies
from podnet.runtime.hosts import node_hosts, pod_hostname, render_hosts

__all__ = [
    "ALL_PODS",
    "Action",
    "NodeSeen",
    "Observed",
    "Step",
    "log_path",
    "nft_replace_script",
    "plan",
    "plan_down",
    "pod_link",
    "rules_file",
    "seen_as_planned",
    "shaped_links",
]


class Action(StrEnum):
    STATE_DIRS = "state.dirs"
    FABRIC_CREATE = "fabric.create"
    FABRIC_DELETE = "fabric.delete"
    INTERNET_CREATE = "internet.create"
    INTERNET_DELETE = "internet.delete"
    INTERNET_START = "internet.start"
    LINKS_SHAPE = "links.shape"
    NODE_CREATE = "node.create"
    NODE_DELETE = "node.delete"
    NODE_ROUTES = "node.routes"
    NODE_RULES = "node.rules"
    POD_CREATE = "pod.create"
    POD_DELETE = "pod.delete"
    POD_START = "pod.start"
    POD_STOP = "pod.stop"
    PODS_FILES = "pods.files"
    DNS_RECORDS = "dns.records"


@dataclass(frozen=True)
class Step:
    action: Action
    target: str  # the node name, pod key or namespace it acts on
    comment: str
    ops: tuple[Op, ...] = ()

    @property
    def commands(self) -> list[str]:
        """The step as a person would type it: each operation rendered."""
        return render_all(self.ops)


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
    steps = [] if current is not None else [_state_dirs(desired)]
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
            steps.append(_pod_delete(current, old, node_stays=old.node in staying))
        elif new.containers != old.containers and old.netns in seen.netns:
            steps.append(Step(Action.POD_STOP, old.key, f"stop the containers of {old.key}",
                              (StopContainers(old.key),)))
    names = {n.name for n in desired.nodes}
    return steps + [_node_delete(n) for n in current.nodes if n.name not in names]


def _infrastructure(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """The node network and the outside world, missing nodes, each node's paths to the others'
    pods, each node's nftables table, and pods' /etc/hosts when the Services changed."""
    recorded = {n.name for n in current.nodes} if current else set()
    steps = [_fabric_create(desired)] if desired.fabric_netns not in seen.netns else []
    if desired.internet is not None:
        state = seen.internet or "absent"
        if state == "absent":
            steps.append(_internet_create(desired, desired.internet))
        if state != "running":
            steps.append(_internet_start(desired, desired.internet))
    created = {
        node.name
        for node in desired.nodes
        if node.netns not in seen.netns or node.name not in recorded
    }
    steps += [_node_create(desired, node) for node in desired.nodes if node.name in created]
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
        steps.append(_node_rules(desired, stale, {n.name: bodies[n.name][1] for n in stale}))
    records = lab_records(desired)
    if current is None or lab_records(current) != records:
        steps.append(_dns_records(desired, current is None))
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
    hosts = {node.name: _host_side(desired, node) for node in desired.nodes}
    steps: list[Step] = []
    restarts: list[Step] = []
    # The cluster DNS's pods first: their servers load (a fifth of a second) on the other core
    # while the rest are built, as kubeadm installs them before any workload.
    for pod in sorted(desired.pods, key=lambda p: not is_addon_pod(p.namespace, p.owner)):
        old = current.pod(pod.key) if current else None
        intact = _intact(desired, current, seen, pod, recorded_nodes)
        if not intact and pod.host_network:  # nothing to build: its node's namespace
            steps.append(_pod_start(desired, pod, restart=old is not None))
        elif not intact:
            if old is not None and _same_place(old, pod) and old.netns in seen.netns:
                steps.append(_pod_delete(desired, old))  # its node was rebuilt: rebuild the pod
            # A recorded pod's old containers may still live (in its half-built namespace, or
            # one its node took away): they stop before the new ones start.
            steps += [_pod_create(desired, pod, hosts[pod.node]),
                      _pod_start(desired, pod, restart=old is not None)]
        elif old is not None and (old.containers != pod.containers or pod.key not in seen.running):
            restarts.append(_pod_start(desired, pod, restart=True))
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


def _link_shaping(ns: str | None, name: str, shaping: tuple[Shape, Shape]) -> list[Op]:
    egress, ingress = shaping
    return [] if egress.empty and ingress.empty else [ShapeLink(ns, name, egress, ingress)]


def plan_down(current: Layout) -> list[Step]:
    """Everything a recorded lab made, removed: containers, pods, nodes (their nftables tables
    go with their namespaces), the outside world, the node network."""
    # One stop for all: a single pass over /proc finds every container's process group, the
    # internet's web server included.
    steps = [Step(Action.POD_STOP, ALL_PODS, "stop every container of the lab",
                  (StopContainers(ALL_PODS),))]
    steps += [_pod_delete(current, p, stop=False) for p in current.pods]
    steps += [_node_delete(n) for n in current.nodes]
    if current.internet is not None:
        steps.append(_internet_delete(current.internet))
    steps.append(
        Step(Action.FABRIC_DELETE, current.fabric_netns, "remove the node network",
             (DeleteNetns(current.fabric_netns),
              RemoveFiles((rules_file(current), *(rules_file(current, n) for n in current.nodes),
                           records_path(current.state_dir)))))
    )
    return steps


# --- namespaces ---------------------------------------------------------------------------------


def _birth_sysctls(lay: Layout, *, router: bool) -> tuple[tuple[str, str], ...]:
    """What a lab namespace is set to before anything is in it, so its links inherit it.

    Without IPv6 in the lab, IPv6 is off: no link-local addresses, no duplicate address detection
    or multicast listener reports, none of the neighbour entries those leave in the machine-wide
    table. With it, addresses are usable at once (no DAD). Routers forward; a router's links
    never learn routes from a pod's router advertisements (CVE-2020-10749).
    """
    out: list[tuple[str, str]] = []
    if router:
        out.append(("net.ipv4.ip_forward", "1"))
    if 6 not in lay.families:
        return (*out, ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"))
    # No DAD, no router solicitations: fewer multicast neighbour entries in the machine-wide
    # table, and addresses usable at once.
    out += [("net.ipv6.conf.all.accept_dad", "0"), ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv6.conf.all.router_solicitations", "0"),
            ("net.ipv6.conf.default.router_solicitations", "0")]
    if router:
        out += [("net.ipv6.conf.all.forwarding", "1"), ("net.ipv6.conf.default.accept_ra", "0")]
    return tuple(out)


def _state_dirs(lay: Layout) -> Step:
    dirs = tuple(f"{lay.state_dir}/{sub}" for sub in ("nodes", "pods", "logs", "dns"))
    return Step(Action.STATE_DIRS, lay.cluster,
                f"podnet's files for lab {lay.cluster}: hostnames, hosts and resolv.conf files, "
                "logs, DNS records", (MakeDirs(dirs),))


def _dns_records(lay: Layout, new: bool) -> Step:
    """The records the coredns pods answer: written before they start; rewritten when the
    lab's Services or pods change, which the running servers load at once (inotify)."""
    path = records_path(lay.state_dir)
    records = lab_records(lay)
    ops: list[Op] = [] if new else [MakeDirs((path.rsplit("/", 1)[0],))]
    ops.append(WriteFile(path, records.to_json(), new=new))
    return Step(Action.DNS_RECORDS, lay.cluster,
                f"the cluster DNS records of {lay.dns_domain} ({len(records.records)} records): "
                "what the coredns pods answer, reloaded by them at once when rewritten",
                tuple(ops))


def _fabric_create(lay: Layout) -> Step:
    ns, br = lay.fabric_netns, lay.bridge
    ops: list[Op] = [
        CreateNetns(ns, _birth_sysctls(lay, router=True)),
        SetLink(ns, "lo"),
        *_bridge(ns, br, lay.mtu),
        *(AddAddress(ns, br, str(gw), nodad=gw.version == 6) for gw in lay.fabric_gateways),
    ]
    nets = ", ".join(str(gw.network) for gw in lay.fabric_gateways)
    return Step(Action.FABRIC_CREATE, ns,
                f"the node network {nets}: a bridge, as docker's `kind` network", tuple(ops))


def _bridge(ns: str, name: str, mtu: int) -> list[Op]:
    return [AddBridge(ns, name, mtu), SetLink(ns, name, owned=True)]


def _host_side(lay: Layout, node: NodeLayout) -> HostSide:
    gateways = tuple(
        _with_prefix(gw, cidr.prefixlen) for gw, cidr in zip(node.gateways, node.pod_cidrs,
                                                              strict=True)
    )
    # Service replies between two pods of one bridge are bridged, not routed: conntrack must
    # see them (br_netfilter) wherever the lab has Services.
    return HostSide(node.netns, gateways, lay.pod_mtu, conntrack_bridged=bool(lay.services))


def _with_prefix(ip: IPAddress, prefix: int) -> IPInterface:
    return ipaddress.ip_interface(f"{ip}/{prefix}")


def _node_create(lay: Layout, node: NodeLayout) -> Step:
    ns, fab = node.netns, lay.fabric_netns
    ops: list[Op] = [
        CreateNetns(ns, _birth_sysctls(lay, router=True)),
        SetLink(ns, "lo"),
        AddVeth(fab, node.uplink, "eth0", ns, lay.mtu),
        SetLink(fab, node.uplink, master=lay.bridge, owned=True),
        *(AddAddress(ns, "eth0", str(ip), nodad=ip.version == 6) for ip in node.ips),
        SetLink(ns, "eth0"),
        *(AddRoute(ns, "default", gw.version, via=str(gw.ip)) for gw in lay.fabric_gateways),
        SetHostname(node.uts, node.name),
        *attachment(lay.attachment).host_ops(_host_side(lay, node)),
        *routing(lay.routing).node_ops(lay, node),
        *_link_shaping(ns, "eth0", (node.impairment.sent, node.impairment.received)),
        # Last: a node whose hosts file exists is whole (`apply.lab.observe` relies on it).
        WriteFile(node.hosts_file, node_hosts(node.name, [str(ip.ip) for ip in node.ips]),
                  new=True),
    ]
    pods = ", ".join(str(c) for c in node.pod_cidrs) or "the node network"
    ips = ", ".join(str(ip) for ip in node.ips)
    return Step(Action.NODE_CREATE, node.name,
                f"node {node.name}: eth0 {ips} on the node network, pods in {pods}", tuple(ops))


def nft_replace_script(body: str, table: str = TABLE) -> str:
    """The transaction that makes `table` exactly `body`: what kernel.nftables.Transaction.replace
    sends (a unit test holds the two together)."""
    lines = [f"add table {table}", f"delete table {table}", f"table {table} {{"]
    lines += [f"  {line}" if line else "" for line in body.rstrip("\n").split("\n")]
    return "\n".join([*lines, "}"]) + "\n"


def rules_file(lay: Layout, node: NodeLayout | None = None) -> str:
    """Where `up` leaves a nftables transaction for people to read: one for every node while
    their tables are alike, one per node once NetworkPolicies make them differ."""
    return f"{lay.state_dir}/nodes/{node.name}.nft" if node else f"{lay.state_dir}/rules.nft"


def _node_rules(lay: Layout, nodes: list[NodeLayout], bodies: dict[str, str]) -> Step:
    """One step for every node that needs its table: their transactions run side by side (each
    waits on the kernel about 20 ms, mostly idle)."""
    alike = len(set(bodies.values())) == 1
    ops: list[Op] = []
    for node in nodes:
        path = rules_file(lay, None if alike else node)
        body = bodies[node.name]
        if not alike or node is nodes[0]:
            ops.append(WriteFile(path, nft_replace_script(body), mode=0o600))
        ops.append(LoadNftTable(node.netns, TABLE, body, path))
    policies = ", and the NetworkPolicies of its pods" if lay.policies else ""
    return Step(
        Action.NODE_RULES,
        ",".join(node.name for node in nodes),
        "each node's nftables table: Services as kube-proxy's nftables mode writes them, and "
        f"pods' egress masqueraded to the node's address{policies} (one atomic transaction "
        "per node)",
        tuple(ops),
    )


def _internet_create(lay: Layout, net: InternetLayout) -> Step:
    fab, ns = lay.fabric_netns, net.netns
    ops: list[Op] = [
        CreateNetns(ns, _birth_sysctls(lay, router=False)),
        SetLink(ns, "lo"),
        AddVeth(fab, net.link, "eth0", ns, lay.mtu),
        SetLink(fab, net.link, owned=True),
        *(AddAddress(fab, net.link, str(gw), nodad=gw.version == 6) for gw in net.gateways),
        *(AddAddress(ns, "eth0", str(ip), nodad=ip.version == 6) for ip in net.addresses),
        SetLink(ns, "eth0"),
        # The internet knows the node network (as it knows a docker host's address), not pods.
        *(AddRoute(ns, str(fabric.network), gw.version, via=str(gw.ip))
          for gw in net.gateways for fabric in lay.fabric_gateways
          if fabric.version == gw.version),
    ]
    where = ", ".join(str(ip.ip) for ip in net.addresses)
    return Step(
        Action.INTERNET_CREATE, ns,
        f"the outside world: {ns} holds {where} (documentation ranges, never a real address), "
        "routed by the node network's host; it knows the nodes' addresses, not the pods'",
        tuple(ops),
    )


def _internet_start(lay: Layout, net: InternetLayout) -> Step:
    start = StartContainer(INTERNET_KEY, "web", net.netns, None, None, net.log, net.netns,
                           str(net.address.ip), ports=(net.port,))
    return Step(Action.INTERNET_START, net.netns,
                f"a web server out there, {net.url}: its page shows each client the address it "
                "saw", (start,))


def _internet_delete(net: InternetLayout) -> Step:
    return Step(Action.INTERNET_DELETE, net.netns,
                "remove the outside world (its link to the node network goes with it)",
                (DeleteNetns(net.netns), RemoveFiles((net.log,))))


# --- pods ---------------------------------------------------------------------------------------


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
        if _resolv(desired, pod) != _resolv(current, old):
            ops.append(WriteFile(pod.resolv_file, _resolv(desired, pod)))
        if _hosts(desired, pod) != _hosts(current, old):
            ops.append(WriteFile(pod.hosts_file, _hosts(desired, pod)))
    return Step(Action.PODS_FILES, ALL_PODS,
                "rewrite the /etc/resolv.conf and /etc/hosts of pods whose DNS settings changed",
                tuple(ops))


def _hosts(lay: Layout, pod: PodLayout) -> str:
    """kubelet's /etc/hosts: the pod's own names, no Service (cluster DNS answers those)."""
    fqdn = (f"{_hostname(pod)}.{pod.subdomain}.{pod.namespace}.svc.{lay.dns_domain}"
            if pod.subdomain else None)
    return render_hosts([str(ip.ip) for ip in pod.ips], _hostname(pod), fqdn=fqdn)


def _hostname(pod: PodLayout) -> str:
    return pod_hostname(pod.hostname or pod.name)


def _resolv(lay: Layout, pod: PodLayout) -> str:
    return resolv_text(lay, pod)


def pod_link(lay: Layout, pod: PodLayout, host: HostSide | None = None) -> PodLink:
    """How the lab attaches `pod` to its node (`host`: the node's side, when already known)."""
    shape = attachment(lay.attachment)
    return PodLink(
        host=host or _host_side(lay, lay.node(pod.node)),
        pod_ns=pod.netns,
        host_ifname=pod.veth,
        ips=pod.ips,
        host_mac=link_mac(f"{lay.cluster}/{pod.node}/{pod.veth}") if shape.pins_host_mac else "",
    )


def _pod_create(lay: Layout, pod: PodLayout, host: HostSide) -> Step:
    ops: list[Op] = [
        CreateNetns(pod.netns, _birth_sysctls(lay, router=False)),
        *attachment(lay.attachment).pod_ops(pod_link(lay, pod, host)),
        *_link_shaping(host.ns, pod.veth, (pod.impairment.received, pod.impairment.sent)),
        SetHostname(pod.uts, _hostname(pod)),
        WriteFile(pod.resolv_file, _resolv(lay, pod), new=True),
        # Last: a pod whose hosts file exists is whole (`apply.lab.observe` relies on it).
        WriteFile(pod.hosts_file, _hosts(lay, pod), new=True),
    ]
    ips = ", ".join(str(ip) for ip in pod.ips)
    return Step(Action.POD_CREATE, pod.key,
                f"pod {pod.key} on {pod.node}: {pod.netns}, eth0 {ips}, {pod.veth} on the node",
                tuple(ops))


def log_path(lay: Layout, pod: PodLayout, container: str) -> str:
    return f"{lay.state_dir}/logs/{pod.namespace}_{pod.name}_{container}.log"


def _pod_start(lay: Layout, pod: PodLayout, *, restart: bool = False) -> Step:
    starts = [
        StartContainer(pod.key, c.name, pod.netns, pod.uts, pod.hosts_file,
                       log_path(lay, pod, c.name), pod.node, str(pod.ip.ip), argv=c.command,
                       ports=c.ports, env=c.env)
        for c in pod.containers
    ]
    # A restart forgets the old processes first (and stops any left alive), so the record never
    # holds a dead container beside its replacement.
    ops: list[Op] = [StopContainers(pod.key), *starts] if restart else list(starts)
    where = f"node {pod.node}'s namespaces (hostNetwork)" if pod.host_network else \
        "its namespaces"
    return Step(Action.POD_START, pod.key,
                f"start {len(pod.containers)} container(s) of {pod.key} in {where}",
                tuple(ops))


def _pod_delete(lay: Layout, pod: PodLayout, *, stop: bool = True,
                node_stays: bool = False) -> Step:
    """A pod removed: `stop` False when the whole lab goes (its containers are stopped at once,
    and its node's namespace takes the rest); `node_stays` when its node remains, which then
    loses what outlives the pod's veth there."""
    logs = tuple(log_path(lay, pod, c.name) for c in pod.containers)
    ops: list[Op] = [StopContainers(pod.key)] if stop else []
    if pod.host_network:  # it ran in its node's namespace, which is the node's to remove
        return Step(Action.POD_DELETE, pod.key,
                    f"remove pod {pod.key}: its containers (node {pod.node}'s network, which it "
                    "shared, stays)", (*ops, RemoveFiles(logs)))
    if node_stays and not pod.impairment.sent.empty:
        # What the pod sent was shaped through an ifb device on its node: it outlives the veth.
        ops.append(ShapeLink(lay.node(pod.node).netns, pod.veth, was_egress=pod.impairment.received,
                             was_ingress=pod.impairment.sent))
    if node_stays:
        # And vpc's routing rule for the pod.
        ops += attachment(lay.attachment).departure_ops(pod_link(lay, pod))
    ops += [DeleteNetns(pod.netns), DeleteUts(pod.uts),
            RemoveFiles((pod.hosts_file, pod.resolv_file, *logs))]
    return Step(Action.POD_DELETE, pod.key,
                f"remove pod {pod.key}: its namespace (the kernel frees {pod.veth} with it)",
                tuple(ops))


def _node_delete(node: NodeLayout) -> Step:
    return Step(Action.NODE_DELETE, node.name,
                f"remove node {node.name} (its uplink {node.uplink} goes with it)",
                (DeleteNetns(node.netns), DeleteUts(node.uts), RemoveFiles((node.hosts_file,))))
