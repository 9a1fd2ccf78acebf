"""Desired layout + what is running -> the ordered steps that converge them. Pure.

Each step knows its inverse (how `up` rolls it back) and the `ip`/`nft` commands a person would
type to do the same by hand: `podnet explain` prints those, so the plan doubles as the lesson in
commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from podnet.plan.layout import TUNNEL, InternetLayout, Layout, NodeLayout, PodLayout
from podnet.plan.rules import table_body

__all__ = [
    "ALL_NODES",
    "ALL_PODS",
    "Action",
    "Observed",
    "Step",
    "nft_replace_script",
    "plan",
    "plan_down",
    "rules_file",
    "service_hosts",
]

ALL_PODS = "*"  # the target of a POD_STOP that stops every pod of the lab
ALL_NODES = "*"  # the target of NODE_RULES: the nodes are in `Step.nodes`


class Action(StrEnum):
    FABRIC_CREATE = "fabric.create"
    FABRIC_DELETE = "fabric.delete"
    INTERNET_CREATE = "internet.create"
    INTERNET_DELETE = "internet.delete"
    INTERNET_START = "internet.start"
    INTERNET_STOP = "internet.stop"
    NODE_CREATE = "node.create"
    NODE_DELETE = "node.delete"
    NODE_ROUTES = "node.routes"
    NODE_RULES = "node.rules"
    POD_CREATE = "pod.create"
    POD_DELETE = "pod.delete"
    POD_START = "pod.start"
    POD_STOP = "pod.stop"
    PODS_HOSTS = "pods.hosts"


_INVERSE = {
    Action.FABRIC_CREATE: Action.FABRIC_DELETE,
    Action.INTERNET_CREATE: Action.INTERNET_DELETE,
    Action.INTERNET_START: Action.INTERNET_STOP,
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
    # NODE_ROUTES with VXLAN: per route, (remote VTEP address, its MAC, its node's address)
    tunnels: tuple[tuple[str, str, str], ...] = field(default=())
    script: str = ""  # NODE_RULES: the body of the nodes' nftables table
    nodes: tuple[str, ...] = field(default=())  # NODE_RULES: the nodes that need it

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
    # node -> pod CIDRs routed (with VXLAN: route, neighbour and FDB entry all in place)
    routes: dict[str, frozenset[str]] = field(default_factory=dict)
    # What the fields below leave as None nobody looked at: the record is trusted for it.
    rules: dict[str, str | None] | None = None  # node -> digest of its podnet table (None: none)
    internet: str | None = None  # "absent", "stopped" (no web server) or "running"


def plan(desired: Layout, current: Layout | None, seen: Observed) -> list[Step]:
    """Steps that take the lab from `current` (recorded; None if new) to `desired`."""
    if current is not None and _must_rebuild(desired, current, seen):
        # The network's shape changed (or its node network is gone): tear down, build anew,
        # keeping every name and address the record holds.
        return plan_down(current) + plan(desired, None, Observed())
    return (
        _removals(desired, current, seen)
        + _infrastructure(desired, current, seen)
        + _pods(desired, current, seen)
    )


def _shape(lay: Layout) -> tuple[object, ...]:
    return (lay.attachment, lay.routing, lay.mtu, lay.vxlan_vni, lay.vxlan_port, lay.bridge,
            lay.fabric_gateway)


def _must_rebuild(desired: Layout, current: Layout, seen: Observed) -> bool:
    # Every node's eth0 is the peer of a veth in the fabric namespace: without it, none works.
    return _shape(desired) != _shape(current) or current.fabric_netns not in seen.netns


def service_hosts(lay: Layout, namespace: str) -> list[tuple[str, list[str]]]:
    """The /etc/hosts entries that name the lab's Services for a pod of `namespace`."""
    return [(str(s.cluster_ip), list(s.hostnames(namespace))) for s in lay.services]


def _service_names(lay: Layout) -> list[tuple[str, str]]:
    return sorted((s.key, str(s.cluster_ip)) for s in lay.services)


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
    """The node network and the outside world, missing nodes, each node's routes to the others'
    pod CIDRs, each node's nftables table, and pods' /etc/hosts when the Services changed."""
    recorded = {n.name for n in current.nodes} if current else set()
    steps = [_fabric_create(desired)] if desired.fabric_netns not in seen.netns else []
    if desired.internet is not None:
        state = _internet_state(current, seen)
        if state == "absent":
            steps.append(_internet_create(desired, desired.internet))
        if state != "running":
            steps.append(_internet_start(desired.internet))
    created = {
        node.name
        for node in desired.nodes
        if node.netns not in seen.netns or node.name not in recorded
    }
    steps += [_node_create(desired, node) for node in desired.nodes if node.name in created]
    for node in desired.nodes:
        wanted, tunnels = _peer_routes(desired, node)
        if frozenset(cidr for cidr, _ in wanted) != seen.routes.get(node.name, frozenset()):
            steps.append(_node_routes(desired, node, wanted, tunnels))
    digest, body = table_body(desired)
    recorded_digest = table_body(current)[0] if current is not None else None
    stale = []
    for node in desired.nodes:
        if seen.rules is not None:
            have = seen.rules.get(node.name)
        else:
            have = recorded_digest if node.name in recorded else None
        if node.name in created or have != digest:
            stale.append(node)
    if stale:
        steps.append(_node_rules(desired, stale, body))
    if current is not None and _service_names(current) != _service_names(desired):
        steps.append(_pods_hosts(desired))
    return steps


def _internet_state(current: Layout | None, seen: Observed) -> str:
    if seen.internet is not None:
        return seen.internet
    return "running" if current is not None and current.internet is not None else "absent"


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
    """Everything a recorded lab made, removed: containers, pods, nodes (their nftables tables
    go with their namespaces), the outside world, the node network."""
    # One stop for all: a single pass over /proc finds every container's process group, the
    # internet's web server included.
    steps = [Step(Action.POD_STOP, ALL_PODS, "stop every container of the lab")]
    steps += [_pod_delete(p) for p in current.pods]
    steps += [_node_delete(n) for n in current.nodes]
    if current.internet is not None:
        steps.append(_internet_delete(current.internet))
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
            f"ip -n {ns} link add cni0 mtu {lay.pod_mtu} type bridge",
            f"ip -n {ns} addr add {node.gateway}/{node.pod_cidr.prefixlen} dev cni0",
            f"ip -n {ns} link set cni0 up",
            # Service replies between two pods of one bridge are bridged, not routed: only
            # br_netfilter shows them to conntrack, which turns the source back into the VIP.
            f"ip netns exec {ns} sysctl -qw net.bridge.bridge-nf-call-iptables=1",
        ]
    if lay.routing == "vxlan":
        commands += [
            f"ip -n {ns} link add {TUNNEL} address {node.vtep_mac} mtu {lay.pod_mtu} type vxlan"
            f" id {lay.vxlan_vni} local {node.ip.ip} dev eth0 dstport {lay.vxlan_port}"
            " nolearning",
            f"ip -n {ns} addr add {node.vtep_ip}/32 dev {TUNNEL}",
            f"ip -n {ns} link set {TUNNEL} up",
        ]
    return Step(
        Action.NODE_CREATE,
        node.name,
        f"node {node.name}: eth0 {node.ip} on the node network, pods in {node.pod_cidr}",
        tuple(commands),
    )


def _peer_routes(
    lay: Layout, node: NodeLayout
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str, str], ...]]:
    """(pod CIDR, via) per other node; with VXLAN also (VTEP address, MAC, node address)."""
    others = [o for o in lay.nodes if o.name != node.name]
    if lay.routing == "vxlan":
        return (
            tuple((str(o.pod_cidr), str(o.vtep_ip)) for o in others),
            tuple((str(o.vtep_ip), o.vtep_mac, str(o.ip.ip)) for o in others),
        )
    return tuple((str(o.pod_cidr), str(o.ip.ip)) for o in others), ()


def _node_routes(
    lay: Layout,
    node: NodeLayout,
    routes: tuple[tuple[str, str], ...],
    tunnels: tuple[tuple[str, str, str], ...],
) -> Step:
    ns = node.netns
    if lay.routing == "vxlan":
        comment = (f"{node.name} sends other nodes' pods through {TUNNEL} (flannel's vxlan "
                   "backend): a route, a neighbour and an FDB entry per node")
        commands: list[str] = []
        for (cidr, via), (_, mac, remote) in zip(routes, tunnels, strict=True):
            commands += [
                f"ip -n {ns} route replace {cidr} via {via} dev {TUNNEL} onlink",
                f"ip -n {ns} neigh replace {via} lladdr {mac} dev {TUNNEL} nud permanent",
                f"bridge -n {ns} fdb replace {mac} dev {TUNNEL} dst {remote} self permanent",
            ]
    elif lay.routing == "host-gw":
        comment = (f"{node.name} reaches other nodes' pods through those nodes "
                   "(flannel's host-gw: direct routes on the shared node network)")
        commands = [f"ip -n {ns} route replace {cidr} via {via} dev eth0" for cidr, via in routes]
    else:
        comment = (f"{node.name} reaches other nodes' pods through those nodes "
                   "(kindnet's static routes)")
        commands = [f"ip -n {ns} route replace {cidr} via {via}" for cidr, via in routes]
    return Step(Action.NODE_ROUTES, node.name, comment, tuple(commands), routes=routes,
                tunnels=tunnels)


def nft_replace_script(body: str, table: str = "ip podnet") -> str:
    """The transaction that makes `table` exactly `body`: what kernel.nftables.Transaction.replace
    sends (a unit test holds the two together)."""
    lines = [f"add table {table}", f"delete table {table}", f"table {table} {{"]
    lines += [f"  {line}" if line else "" for line in body.rstrip("\n").split("\n")]
    return "\n".join([*lines, "}"]) + "\n"


def rules_file(lay: Layout) -> str:
    """Where `up` leaves the nodes' nftables transaction, for people to read."""
    return f"{lay.state_dir}/rules.nft"


def _node_rules(lay: Layout, nodes: list[NodeLayout], body: str) -> Step:
    """One step for every node that needs the table: their transactions run side by side (each
    waits on the kernel about 20 ms, mostly idle)."""
    path = rules_file(lay)
    script = nft_replace_script(body).rstrip("\n").split("\n")
    return Step(
        Action.NODE_RULES,
        ALL_NODES,
        "each node's nftables table: Services as kube-proxy's nftables mode writes them, and "
        "pods' egress masqueraded to the node's address (one atomic transaction per node)",
        (
            f"cat > {path} <<'EOF'",
            *script,
            "EOF",
            *(f"ip netns exec {node.netns} nft -f {path}" for node in nodes),
        ),
        script=body,
        nodes=tuple(node.name for node in nodes),
    )


def _internet_create(lay: Layout, net: InternetLayout) -> Step:
    fab, ns = lay.fabric_netns, net.netns
    return Step(
        Action.INTERNET_CREATE,
        ns,
        f"the outside world: {ns} holds {net.address.ip} (TEST-NET-2, never a real address), "
        f"routed by the node network's host; it knows the nodes' addresses, not the pods'",
        (
            f"ip netns add {ns}",
            f"ip -n {ns} link set lo up",
            f"ip -n {fab} link add {net.link} mtu {lay.mtu} type veth peer name eth0 netns {ns}",
            f"ip -n {fab} addr add {net.gateway} dev {net.link}",
            f"ip -n {fab} link set {net.link} up",
            f"ip netns exec {fab} sysctl -qw net.ipv4.ip_forward=1",
            f"ip -n {ns} addr add {net.address} dev eth0",
            f"ip -n {ns} link set eth0 up",
            f"ip -n {ns} route add {lay.fabric_gateway.network} via {net.gateway.ip}",
        ),
    )


def _internet_start(net: InternetLayout) -> Step:
    return Step(
        Action.INTERNET_START,
        net.netns,
        f"a web server out there, {net.url}: its page shows each client the address it saw",
        (f"ip netns exec {net.netns} python3 -m podnet.runtime.responder --port {net.port} &",),
    )


def _internet_delete(net: InternetLayout) -> Step:
    return Step(
        Action.INTERNET_DELETE,
        net.netns,
        "remove the outside world (its link to the node network goes with it)",
        (f"ip netns del {net.netns}",),
    )


def _pods_hosts(lay: Layout) -> Step:
    return Step(
        Action.PODS_HOSTS,
        ALL_PODS,
        "the Services changed: rewrite every pod's /etc/hosts with their names",
        tuple(f"printf '...{_hosts_tail(lay, p)}' > {p.hosts_file}" for p in lay.pods),
    )


def _hosts_tail(lay: Layout, pod: PodLayout) -> str:
    tab = "\\t"  # printf's escape, as the file has a tab
    entries = service_hosts(lay, pod.namespace)
    if not entries:
        return ""
    # The Services are written where kubelet writes a pod's hostAliases.
    return "\\n\\n# Entries added by HostAliases." + "".join(
        f"\\n{ip}{tab}{tab.join(names)}" for ip, names in entries
    )


def _pod_create(lay: Layout, pod: PodLayout) -> Step:
    node = lay.node(pod.node)
    n, p = node.netns, pod.netns
    ip, gw = pod.ip, node.gateway
    commands = [
        f"ip netns add {p}",
        f"ip -n {n} link add {pod.veth} mtu {lay.pod_mtu} type veth peer name eth0 netns {p}",
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
            f"bridge -n {n} link set dev {pod.veth} hairpin on",
            f"ip -n {p} link set lo up",
            f"ip -n {p} addr add {ip} dev eth0",
            f"ip -n {p} link set eth0 up",
        ]
    commands += [
        f"ip -n {p} route add default via {gw} dev eth0",
        f"touch {pod.uts} && unshare --uts={pod.uts} hostname {pod.name}",
        f"printf '# Kubernetes-managed hosts file.\\n...{ip.ip}\\t{pod.name}"
        f"{_hosts_tail(lay, pod)}\\n' > {pod.hosts_file}",
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
