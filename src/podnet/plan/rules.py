"""The nftables table each node gets: Services as kube-proxy's nftables mode writes them, and the
egress masquerade of kindnet's masq agent. Pure text, rendered from the layout.

One `inet` table serves both families; each family has its own maps and chains (IPv6's carry a
`6`: `service-ips6`, `svc6-...`), as kube-proxy keeps one table per family:

    map service-ips       ClusterIP . protocol . port  ->  goto that Service port's chain
    map service-nodeports protocol . nodePort          ->  goto its external chain
    chain svc-<ns>/<name>/<proto>/<port>   numgen random mod N vmap { 0: goto ep-..., ... }
    chain ep-.../<pod ip>                  dnat ip to <pod ip>:<targetPort>
    chain nat-postrouting                  marked connections and pods leaving the cluster
                                           CIDR are masqueraded to the node's address

Connections are marked for masquerade where the reply would otherwise miss the node: a pod
reaching itself through its Service (hairpin: the pod would see its own address as the source),
clients from outside the pod CIDR (the node itself), and every NodePort connection (the backend
may sit on another node). The table's comment carries a digest of the rules, which is how a
second `up` knows they are already in place.

A node whose pods publish host ports (`ports[].hostPort`) also gets the portmap plugin's DNAT,
in base chains of their own, only on that node:

    map host-ports        protocol . hostPort  ->  goto that pod port's chain
    chain hostport-<ns>/<pod>/<proto>/<port>   dnat ip to <pod ip>:<containerPort> (a pod that
                                               reaches itself so is masqueraded, as with snat)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from podnet.plan.layout import Layout, NodeLayout
from podnet.plan.services import ServiceLayout, ServicePortLayout
from podnet.policy.nft import policy_tables
from podnet.policy.world import world_from

__all__ = ["MASQ_MARK", "TABLE", "digest_of", "host_port_rules", "node_rules", "table_bodies"]

TABLE = "inet podnet"  # the lab's one table on every node, for both families
MASQ_MARK = 0x4000  # kube-proxy's bit: "masquerade this connection on its way out"
_EGRESS = 'comment "egress: pods leaving the cluster CIDR take the node\'s address"'


@dataclass(frozen=True)
class _Family:
    """How one family is spelt in nftables, and the suffix of its chains and maps."""

    version: int
    match: str  # ip / ip6
    addr_type: str  # ipv4_addr / ipv6_addr
    loopback: str
    suffix: str  # "" for IPv4 (the names kube-proxy's one-family tables use), "6" for IPv6

    def bracket(self, ip: str) -> str:
        return f"[{ip}]" if self.version == 6 else ip

    def chain_ip(self, ip: str) -> str:
        return ip.replace(":", ".")  # nftables names take no colons


_FAMILIES = {
    4: _Family(4, "ip", "ipv4_addr", "127.0.0.0/8", ""),
    6: _Family(6, "ip6", "ipv6_addr", "::1", "6"),
}


def _svc_chain(svc: ServiceLayout, port: ServicePortLayout, fam: _Family) -> str:
    return f"svc{fam.suffix}-{svc.namespace}/{svc.name}/{port.ident}"


def _ext_chain(svc: ServiceLayout, port: ServicePortLayout, fam: _Family) -> str:
    return f"ext{fam.suffix}-{svc.namespace}/{svc.name}/{port.ident}"


def _ep_chain(svc: ServiceLayout, port: ServicePortLayout, ip: str, fam: _Family) -> str:
    return f"ep{fam.suffix}-{svc.namespace}/{svc.name}/{port.ident}/{fam.chain_ip(ip)}"


def _map(name: str, kind: str, comment: str, elements: list[str]) -> list[str]:
    lines = [f"map {name} {{", f"  type {kind} : verdict", f'  comment "{comment}"']
    if elements:
        lines += ["  elements = {", *(f"    {e}," for e in elements), "  }"]
    return [*lines, "}"]


def _chain(name: str, *body: str) -> list[str]:
    return [f"chain {name} {{", *(f"  {line}" for line in body), "}"]


@dataclass
class _Maps:
    """The verdict maps of one family, filled Service by Service."""

    service_ips: list[str] = field(default_factory=list)
    node_ports: list[str] = field(default_factory=list)
    no_endpoints: list[str] = field(default_factory=list)
    no_endpoint_ports: list[str] = field(default_factory=list)

    def render(self, fam: _Family) -> list[str]:
        sfx, addr = fam.suffix, fam.addr_type
        return [
            *_map(f"service-ips{sfx}", f"{addr} . inet_proto . inet_service",
                  "ClusterIP . protocol . port: the Service port's chain", self.service_ips),
            *_map(f"service-nodeports{sfx}", "inet_proto . inet_service",
                  "protocol . nodePort, on any address of this node", self.node_ports),
            *_map(f"no-endpoint-services{sfx}", f"{addr} . inet_proto . inet_service",
                  "Services that select no pod: refused at once", self.no_endpoints),
            *_map(f"no-endpoint-nodeports{sfx}", "inet_proto . inet_service",
                  "their node ports, refused likewise", self.no_endpoint_ports),
        ]


def _service_chains(lay: Layout, fam: _Family, maps: _Maps) -> list[str]:
    cidr = next(n for n in lay.pod_subnets if n.version == fam.version)
    chains: list[str] = []
    for svc in lay.services:
        vip = next((ip for ip in svc.cluster_ips if ip.version == fam.version), None)
        if vip is None:
            continue
        backends = []
        for key in svc.endpoints:
            pod = lay.pod(key)
            found = pod.ip_of(fam.version) if pod is not None else None
            if found is not None:
                backends.append(str(found.ip))
        for port in svc.ports:
            proto = port.protocol.lower()
            key = f"{vip} . {proto} . {port.port}"
            if not backends:
                maps.no_endpoints.append(f"{key} : goto reject-chain")
                if port.node_port is not None:
                    maps.no_endpoint_ports.append(f"{proto} . {port.node_port} : goto reject-chain")
                continue
            svc_chain = _svc_chain(svc, port, fam)
            maps.service_ips.append(f"{key} : goto {svc_chain}")
            spread = ", ".join(
                f"{i} : goto {_ep_chain(svc, port, ip, fam)}" for i, ip in enumerate(backends)
            )
            chains += _chain(
                svc_chain,
                f"{fam.match} daddr {vip} {proto} dport {port.port} {fam.match} saddr != {cidr} "
                "jump mark-for-masquerade",
                f"numgen random mod {len(backends)} vmap {{ {spread} }}",
            )
            if port.node_port is not None:
                ext = _ext_chain(svc, port, fam)
                maps.node_ports.append(f"{proto} . {port.node_port} : goto {ext}")
                chains += _chain(ext, "jump mark-for-masquerade", f"goto {svc_chain}")
            for ip in backends:
                chains += _chain(
                    _ep_chain(svc, port, ip, fam),
                    f"{fam.match} saddr {ip} jump mark-for-masquerade",
                    f"meta l4proto {proto} dnat {fam.match} to "
                    f"{fam.bracket(ip)}:{port.target_port}",
                )
    return chains


def node_rules(lay: Layout) -> str:
    """The body of `table inet podnet` on every node of `lay` (without the digest comment)."""
    maps_text: list[str] = []
    refuse: list[str] = []
    lookups: list[str] = []
    masquerade: list[str] = []
    chains: list[str] = []
    for version in lay.families:
        fam = _FAMILIES[version]
        maps = _Maps()
        chains += _service_chains(lay, fam, maps)
        maps_text += maps.render(fam)
        sfx = fam.suffix
        local = f"fib daddr type local {fam.match} daddr != {fam.loopback} meta l4proto . th dport"
        # Filter chains see every packet, not only a connection's first as NAT chains do:
        # `ct state new` first keeps the lookups (a fib lookup among them) off established
        # traffic, as kube-proxy does.
        refuse += [
            f"ct state new {fam.match} daddr . meta l4proto . th dport "
            f"vmap @no-endpoint-services{sfx}",
            f"ct state new {local} vmap @no-endpoint-nodeports{sfx}",
        ]
        lookups += [f"{fam.match} daddr . meta l4proto . th dport vmap @service-ips{sfx}",
                    f"{local} vmap @service-nodeports{sfx}"]
        cidr = next(n for n in lay.pod_subnets if n.version == version)
        masquerade.append(f"{fam.match} saddr {cidr} {fam.match} daddr != {cidr} masquerade "
                          f"{_EGRESS}")
    lines = [
        *maps_text,
        *_chain("filter-prerouting",
                "type filter hook prerouting priority dstnat - 10; policy accept;", *refuse),
        *_chain("filter-output", "type filter hook output priority -110; policy accept;",
                *refuse),
        *_chain("reject-chain", "reject"),
        *_chain("nat-prerouting", "type nat hook prerouting priority dstnat; policy accept;",
                "jump services"),
        *_chain("nat-output", "type nat hook output priority -100; policy accept;",
                "jump services"),
        *_chain("nat-postrouting", "type nat hook postrouting priority srcnat; policy accept;",
                "jump masquerading", *masquerade),
        *_chain("services", *lookups),
        *_chain("mark-for-masquerade", f"meta mark set meta mark or {MASQ_MARK:#x}"),
        *_chain("masquerading",
                f"meta mark & {MASQ_MARK:#x} == 0 return",
                f"meta mark set meta mark xor {MASQ_MARK:#x}",
                "masquerade fully-random"),
        *chains,
    ]
    return "\n".join(lines) + "\n"


def host_port_rules(lay: Layout, node: NodeLayout) -> str:
    """The chains that publish the host ports of `node`'s pods on the node's addresses, as the
    portmap plugin does: a connection to any local address of the node (its eth0, as other
    nodes, the node network and the outside reach it) on the port is DNATed to the pod. Empty
    where no pod of the node publishes a port; a hostNetwork pod listens on the node itself."""
    pods = [p for p in lay.pods_on(node.name) if p.host_ports and not p.host_network]
    if not pods:
        return ""
    maps: list[str] = []
    lookups: list[str] = []
    chains: list[str] = []
    for version in lay.families:
        fam = _FAMILIES[version]
        elements = []
        for pod in pods:
            ip = pod.ip_of(version)
            if ip is None:
                continue
            for hp in pod.host_ports:
                proto = hp.protocol.lower()
                chain = f"hostport{fam.suffix}-{pod.key}/{proto}/{hp.host_port}"
                elements.append(f"{proto} . {hp.host_port} : goto {chain}")
                chains += _chain(
                    chain,
                    f"{fam.match} saddr {ip.ip} jump mark-for-masquerade",
                    f"meta l4proto {proto} dnat {fam.match} to "
                    f"{fam.bracket(str(ip.ip))}:{hp.container_port}",
                )
        maps += _map(f"host-ports{fam.suffix}", "inet_proto . inet_service",
                     "protocol . hostPort, on any address of this node: the pod's chain",
                     elements)
        lookups.append(f"fib daddr type local {fam.match} daddr != {fam.loopback} "
                       f"meta l4proto . th dport vmap @host-ports{fam.suffix}")
    lines = [
        *maps,
        *_chain("hostport-prerouting",
                "type nat hook prerouting priority dstnat + 1; policy accept;", *lookups),
        *_chain("hostport-output", "type nat hook output priority -99; policy accept;",
                *lookups),
        *chains,
    ]
    return "\n".join(lines) + "\n"


def digest_of(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def table_bodies(lay: Layout) -> dict[str, tuple[str, str]]:
    """Per node of `lay`: (digest, the body of its `table inet podnet`, whose comment records
    the digest). Services and egress are the same on every node; NetworkPolicies add the
    chains of the node's own isolated pods (`podnet.policy.nft`)."""
    services = node_rules(lay)
    policies = policy_tables(world_from(lay)) if lay.policies else {}
    out = {}
    for node in lay.nodes:
        chains = policies.get(node.name, "")
        ports = host_port_rules(lay, node)
        body = services + ports + chains
        digest = digest_of(body)
        what = "Services, egress and NetworkPolicies" if chains else "Services and egress"
        what += ", host ports" if ports else ""
        comment = f'comment "podnet lab {lay.cluster}: {what}, rules {digest}"'
        out[node.name] = (digest, f"{comment}\n{body}")
    return out
