"""The nftables table each node gets: Services as kube-proxy's nftables mode writes them, and the
egress masquerade of kindnet's masq agent. Pure text, rendered from the layout.

    map service-ips       ClusterIP . protocol . port  ->  goto that Service port's chain
    map service-nodeports protocol . nodePort          ->  goto its external chain
    chain svc-<ns>/<name>/<proto>/<port>   numgen random mod N vmap { 0: goto ep-..., ... }
    chain ep-.../<pod ip>                  dnat to <pod ip>:<targetPort>
    chain nat-postrouting                  marked connections and pods leaving the cluster
                                           CIDR are masqueraded to the node's address

Connections are marked for masquerade where the reply would otherwise miss the node: a pod
reaching itself through its Service (hairpin: the pod would see its own address as the source),
clients from outside the pod CIDR (the node itself), and every NodePort connection (the backend
may sit on another node). The table's comment carries a digest of the rules, which is how a
second `up` knows they are already in place.
"""

from __future__ import annotations

import hashlib

from podnet.plan.layout import Layout
from podnet.plan.services import ServiceLayout, ServicePortLayout

__all__ = ["MASQ_MARK", "digest_of", "node_rules", "table_body"]

MASQ_MARK = 0x4000  # kube-proxy's bit: "masquerade this connection on its way out"


def _svc_chain(svc: ServiceLayout, port: ServicePortLayout) -> str:
    return f"svc-{svc.namespace}/{svc.name}/{port.ident}"


def _ext_chain(svc: ServiceLayout, port: ServicePortLayout) -> str:
    return f"ext-{svc.namespace}/{svc.name}/{port.ident}"


def _ep_chain(svc: ServiceLayout, port: ServicePortLayout, ip: str) -> str:
    return f"ep-{svc.namespace}/{svc.name}/{port.ident}/{ip}"


def _map(name: str, kind: str, comment: str, elements: list[str]) -> list[str]:
    lines = [f"map {name} {{", f"  type {kind} : verdict", f'  comment "{comment}"']
    if elements:
        lines += ["  elements = {", *(f"    {e}," for e in elements), "  }"]
    return [*lines, "}"]


def _chain(name: str, *body: str) -> list[str]:
    return [f"chain {name} {{", *(f"  {line}" for line in body), "}"]


# Filter chains see every packet, not only a connection's first as NAT chains do: `ct state new`
# first keeps the lookups (a fib lookup among them) off established traffic, as kube-proxy does.
_REFUSE = (
    "ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
    "ct state new fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
    "vmap @no-endpoint-nodeports",
)


def node_rules(lay: Layout) -> str:
    """The body of `table ip podnet` on every node of `lay` (without the digest comment)."""
    pods = {p.key: p for p in lay.pods}
    cidr = lay.pod_subnet
    service_ips: list[str] = []
    node_ports: list[str] = []
    no_endpoints: list[str] = []
    no_endpoint_ports: list[str] = []
    chains: list[str] = []
    for svc in lay.services:
        backends = [pods[k] for k in svc.endpoints if k in pods]
        for port in svc.ports:
            proto = port.protocol.lower()
            vip = f"{svc.cluster_ip} . {proto} . {port.port}"
            if not backends:
                no_endpoints.append(f"{vip} : goto reject-chain")
                if port.node_port is not None:
                    no_endpoint_ports.append(f"{proto} . {port.node_port} : goto reject-chain")
                continue
            svc_chain = _svc_chain(svc, port)
            service_ips.append(f"{vip} : goto {svc_chain}")
            spread = ", ".join(
                f"{i} : goto {_ep_chain(svc, port, str(p.ip.ip))}" for i, p in enumerate(backends)
            )
            chains += _chain(
                svc_chain,
                f"ip daddr {svc.cluster_ip} {proto} dport {port.port} ip saddr != {cidr} "
                "jump mark-for-masquerade",
                f"numgen random mod {len(backends)} vmap {{ {spread} }}",
            )
            if port.node_port is not None:
                ext = _ext_chain(svc, port)
                node_ports.append(f"{proto} . {port.node_port} : goto {ext}")
                chains += _chain(ext, "jump mark-for-masquerade", f"goto {svc_chain}")
            for pod in backends:
                ip = str(pod.ip.ip)
                chains += _chain(
                    _ep_chain(svc, port, ip),
                    f"ip saddr {ip} jump mark-for-masquerade",
                    f"meta l4proto {proto} dnat to {ip}:{port.target_port}",
                )
    lines = [
        *_map("service-ips", "ipv4_addr . inet_proto . inet_service",
              "ClusterIP . protocol . port: the Service port's chain", service_ips),
        *_map("service-nodeports", "inet_proto . inet_service",
              "protocol . nodePort, on any address of this node", node_ports),
        *_map("no-endpoint-services", "ipv4_addr . inet_proto . inet_service",
              "Services that select no pod: refused at once", no_endpoints),
        *_map("no-endpoint-nodeports", "inet_proto . inet_service",
              "their node ports, refused likewise", no_endpoint_ports),
        *_chain("filter-prerouting",
                "type filter hook prerouting priority dstnat - 10; policy accept;",
                *_REFUSE),
        *_chain("filter-output",
                "type filter hook output priority -110; policy accept;",
                *_REFUSE),
        *_chain("reject-chain", "reject"),
        *_chain("nat-prerouting", "type nat hook prerouting priority dstnat; policy accept;",
                "jump services"),
        *_chain("nat-output", "type nat hook output priority -100; policy accept;",
                "jump services"),
        *_chain("nat-postrouting", "type nat hook postrouting priority srcnat; policy accept;",
                "jump masquerading",
                f"ip saddr {cidr} ip daddr != {cidr} masquerade "
                '''comment "egress: pods leaving the cluster CIDR take the node's address"'''),
        *_chain("services",
                "ip daddr . meta l4proto . th dport vmap @service-ips",
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
                "vmap @service-nodeports"),
        *_chain("mark-for-masquerade", f"meta mark set meta mark or {MASQ_MARK:#x}"),
        *_chain("masquerading",
                f"meta mark & {MASQ_MARK:#x} == 0 return",
                f"meta mark set meta mark xor {MASQ_MARK:#x}",
                "masquerade fully-random"),
        *chains,
    ]
    return "\n".join(lines) + "\n"


def digest_of(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def table_body(lay: Layout) -> tuple[str, str]:
    """(digest, body with the comment that records the digest) for the nodes of `lay`."""
    body = node_rules(lay)
    digest = digest_of(body)
    comment = f'comment "podnet lab {lay.cluster}: Services and egress, rules {digest}"'
    return digest, f"{comment}\n{body}"
