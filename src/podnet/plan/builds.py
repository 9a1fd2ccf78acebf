"""How each object of a lab is built and removed: the steps, each a comment for people and its
operations (`podnet.plan.ops`), for the state directories, the node network, nodes and their
nftables rules, the outside world, pods and the cluster DNS's records. Pure.

`podnet.plan.steps` decides which of these a run needs and in which order; `up` executes their
operations and `podnet explain` prints them as commands.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from podnet.model.addresses import IPAddress, IPInterface
from podnet.model.naming import link_mac
from podnet.model.shape import Shape
from podnet.plan.addons import records_path
from podnet.plan.attachments import HostSide, PodLink, attachment
from podnet.plan.dns import lab_records, resolv_text
from podnet.plan.layout import (
    INTERNET_KEY,
    InternetLayout,
    Layout,
    NodeLayout,
    PodLayout,
)
from podnet.plan.ops import (
    AddAddress,
    AddBridge,
    AddRoute,
    AddVeth,
    CreateNetns,
    DeleteNetns,
    DeleteUts,
    LoadNftTable,
    MakeDirs,
    Op,
    RemoveFiles,
    SetHostname,
    SetLink,
    ShapeLink,
    StartContainer,
    StopContainers,
    WriteFile,
    render_all,
)
from podnet.plan.routings import routing
from podnet.plan.rules import TABLE
from podnet.runtime.hosts import node_hosts, pod_hostname, render_hosts

__all__ = [
    "Action",
    "Step",
    "dns_records",
    "fabric_create",
    "host_side",
    "hosts_text",
    "internet_create",
    "internet_delete",
    "internet_start",
    "link_shaping",
    "log_path",
    "nft_replace_script",
    "node_create",
    "node_delete",
    "node_rules",
    "pod_create",
    "pod_delete",
    "pod_link",
    "pod_start",
    "rules_file",
    "state_dirs",
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


def link_shaping(ns: str | None, name: str, shaping: tuple[Shape, Shape]) -> list[Op]:
    egress, ingress = shaping
    return [] if egress.empty and ingress.empty else [ShapeLink(ns, name, egress, ingress)]


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


def state_dirs(lay: Layout) -> Step:
    dirs = tuple(f"{lay.state_dir}/{sub}" for sub in ("nodes", "pods", "logs", "dns"))
    return Step(Action.STATE_DIRS, lay.cluster,
                f"podnet's files for lab {lay.cluster}: hostnames, hosts and resolv.conf files, "
                "logs, DNS records", (MakeDirs(dirs),))


def dns_records(lay: Layout, new: bool) -> Step:
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


def fabric_create(lay: Layout) -> Step:
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


def host_side(lay: Layout, node: NodeLayout) -> HostSide:
    gateways = tuple(
        _with_prefix(gw, cidr.prefixlen) for gw, cidr in zip(node.gateways, node.pod_cidrs,
                                                              strict=True)
    )
    # Service replies between two pods of one bridge are bridged, not routed: conntrack must
    # see them (br_netfilter) wherever the lab has Services.
    return HostSide(node.netns, gateways, lay.pod_mtu, conntrack_bridged=bool(lay.services))


def _with_prefix(ip: IPAddress, prefix: int) -> IPInterface:
    return ipaddress.ip_interface(f"{ip}/{prefix}")


def node_create(lay: Layout, node: NodeLayout) -> Step:
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
        *attachment(lay.attachment).host_ops(host_side(lay, node)),
        *routing(lay.routing).node_ops(lay, node),
        *link_shaping(ns, "eth0", (node.impairment.sent, node.impairment.received)),
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


def node_rules(lay: Layout, nodes: list[NodeLayout], bodies: dict[str, str]) -> Step:
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


def internet_create(lay: Layout, net: InternetLayout) -> Step:
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


def internet_start(lay: Layout, net: InternetLayout) -> Step:
    start = StartContainer(INTERNET_KEY, "web", net.netns, None, None, net.log, net.netns,
                           str(net.address.ip), ports=(net.port,))
    return Step(Action.INTERNET_START, net.netns,
                f"a web server out there, {net.url}: its page shows each client the address it "
                "saw", (start,))


def internet_delete(net: InternetLayout) -> Step:
    return Step(Action.INTERNET_DELETE, net.netns,
                "remove the outside world (its link to the node network goes with it)",
                (DeleteNetns(net.netns), RemoveFiles((net.log,))))


# --- pods ---------------------------------------------------------------------------------------


def hosts_text(lay: Layout, pod: PodLayout) -> str:
    """kubelet's /etc/hosts: the pod's own names, no Service (cluster DNS answers those)."""
    fqdn = (f"{_hostname(pod)}.{pod.subdomain}.{pod.namespace}.svc.{lay.dns_domain}"
            if pod.subdomain else None)
    return render_hosts([str(ip.ip) for ip in pod.ips], _hostname(pod), fqdn=fqdn)


def _hostname(pod: PodLayout) -> str:
    return pod_hostname(pod.hostname or pod.name)


def pod_link(lay: Layout, pod: PodLayout, host: HostSide | None = None) -> PodLink:
    """How the lab attaches `pod` to its node (`host`: the node's side, when already known)."""
    shape = attachment(lay.attachment)
    return PodLink(
        host=host or host_side(lay, lay.node(pod.node)),
        pod_ns=pod.netns,
        host_ifname=pod.veth,
        ips=pod.ips,
        host_mac=link_mac(f"{lay.cluster}/{pod.node}/{pod.veth}") if shape.pins_host_mac else "",
    )


def pod_create(lay: Layout, pod: PodLayout, host: HostSide) -> Step:
    ops: list[Op] = [
        CreateNetns(pod.netns, _birth_sysctls(lay, router=False)),
        *attachment(lay.attachment).pod_ops(pod_link(lay, pod, host)),
        *link_shaping(host.ns, pod.veth, (pod.impairment.received, pod.impairment.sent)),
        SetHostname(pod.uts, _hostname(pod)),
        WriteFile(pod.resolv_file, resolv_text(lay, pod), new=True),
        # Last: a pod whose hosts file exists is whole (`apply.lab.observe` relies on it).
        WriteFile(pod.hosts_file, hosts_text(lay, pod), new=True),
    ]
    ips = ", ".join(str(ip) for ip in pod.ips)
    return Step(Action.POD_CREATE, pod.key,
                f"pod {pod.key} on {pod.node}: {pod.netns}, eth0 {ips}, {pod.veth} on the node",
                tuple(ops))


def log_path(lay: Layout, pod: PodLayout, container: str) -> str:
    return f"{lay.state_dir}/logs/{pod.namespace}_{pod.name}_{container}.log"


def pod_start(lay: Layout, pod: PodLayout, *, restart: bool = False) -> Step:
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


def pod_delete(lay: Layout, pod: PodLayout, *, stop: bool = True,
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


def node_delete(node: NodeLayout) -> Step:
    return Step(Action.NODE_DELETE, node.name,
                f"remove node {node.name} (its uplink {node.uplink} goes with it)",
                (DeleteNetns(node.netns), DeleteUts(node.uts), RemoveFiles((node.hosts_file,))))
