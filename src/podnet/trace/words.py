"""Words and commands for people, for the tracer's hops: the `ip`, `bridge` or `nsenter` command
that shows a namespace's state, who owns a namespace, and how a route or a NAT reads."""

from __future__ import annotations

import ipaddress

from podnet.inspect.model import Interface, Namespace, Route
from podnet.kernel.tc_read import LinkQdiscs
from podnet.kernel.tc_shape import format_rate, format_time
from podnet.trace.nft_types import Nat, Packet, RuleRef

__all__ = [
    "address_of",
    "addresses",
    "bridge_cmd",
    "endpoint",
    "icmp_name",
    "ip_cmd",
    "is_link_local",
    "kube_proxy",
    "link_problem",
    "matched_route",
    "nat_text",
    "neigh_cmd",
    "neighbour_protocol",
    "ns_exec",
    "owner_of",
    "route_words",
    "shaping_words",
    "too_big_words",
    "version_of",
]

_LINK_DOWN_STATES = ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT")


# --- commands a person types, for any namespace -----------------------------------------------


def _nsenter(ns: Namespace) -> str | None:
    pid = ns.holders[0].pid if ns.holders else None
    return f"nsenter -t {pid} -n" if pid else None


def ip_cmd(ns: Namespace, args: str) -> str:
    if ns.current:
        return f"ip {args}"
    if ns.name:
        return f"ip -n {ns.name} {args}"
    prefix = _nsenter(ns)
    return f"{prefix} ip {args}" if prefix else f"ip {args}  # in {ns.label}"


def bridge_cmd(ns: Namespace, args: str) -> str:
    if ns.current:
        return f"bridge {args}"
    if ns.name:
        return f"bridge -n {ns.name} {args}"
    prefix = _nsenter(ns)
    return f"{prefix} bridge {args}" if prefix else f"bridge {args}  # in {ns.label}"


def ns_exec(ns: Namespace, args: str) -> str:
    if ns.current:
        return args
    if ns.name:
        return f"ip netns exec {ns.name} {args}"
    prefix = _nsenter(ns)
    return f"{prefix} {args}" if prefix else f"{args}  # in {ns.label}"


def owner_of(ns: Namespace) -> str:
    if ns.pod:
        return f"pod {ns.pod}"
    if ns.node:
        return f"node {ns.node}"
    return ns.label


# --- addresses of either family, as the kernel prints them (canonical: no parsing needed) ------


def version_of(addr: str) -> int:
    """4 or 6."""
    return 6 if ":" in addr else 4


def address_of(cidr: str) -> str:
    return cidr.split("/", 1)[0]


def is_link_local(addr: str) -> bool:
    """An IPv6 link-local address (fe80::/10): every interface has its own, and the same one
    may sit in many namespaces, so it names no owner."""
    return addr[:3].lower() in ("fe8", "fe9", "fea", "feb")


def addresses(iface: Interface, version: int | None = None, *,
              link_local: bool = True) -> list[str]:
    """The interface's addresses (of one family when `version` is given)."""
    found = (address_of(c) for c in iface.addresses)
    return [a for a in found if (version is None or version_of(a) == version)
            and (link_local or not is_link_local(a))]


def endpoint(addr: str, port: int | None) -> str:
    """`10.244.1.2:80`, `[fd00:10:244:1::2]:80`: an address and port as people write them."""
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


# --- the words that differ between IPv4 and IPv6 ------------------------------------------------


def neighbour_protocol(addr: str) -> str:
    """How a neighbour's MAC is asked for: ARP (IPv4), neighbour solicitations (IPv6's NDP)."""
    return "NDP" if ":" in addr else "ARP"


def icmp_name(addr: str) -> str:
    return "icmpv6" if ":" in addr else "icmp"


def too_big_words(src: str) -> str:
    """What a router does with a packet too big for its next link (DF set, or IPv6: routers
    never fragment it)."""
    if ":" in src:
        return ("IPv6 routers never fragment, so the kernel drops it and sends ICMPv6 'packet "
                f"too big' back to {src}")
    return ("DF forbids fragmenting it, so the kernel drops it and sends ICMP 'fragmentation "
            f"needed' back to {src}")


def neigh_cmd(ns: Namespace, ip: str, dev: str) -> str:
    """`ip neigh show IP dev DEV` (`ip -6 neigh` for an IPv6 neighbour: NDP's table)."""
    family = "-6 " if ":" in ip else ""
    return ip_cmd(ns, f"{family}neigh show {ip} dev {dev}")


def matched_route(ns: Namespace, dst: str) -> Route | None:
    """The main-table route a lookup of `dst` matches (longest prefix), for people."""
    best: tuple[int, Route] | None = None
    target = ipaddress.ip_address(dst)
    for route in ns.routes:
        if route.family != target.version or route.type not in ("unicast", "local"):
            continue
        default = "0.0.0.0/0" if target.version == 4 else "::/0"
        net = ipaddress.ip_network(default if route.dst == "default" else route.dst)
        if target in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, route)
    return best[1] if best else None


def route_words(r: Route) -> str:
    words = [r.dst]
    if r.gateway:
        words.append(f"via {r.gateway}")
    if r.dev:
        words.append(f"dev {r.dev}")
    return " ".join(words)


def link_problem(iface: Interface) -> str | None:
    if not iface.up:
        return f"{iface.ifname} is down"
    if iface.state in _LINK_DOWN_STATES:
        return f"{iface.ifname} has no carrier (state {iface.state}): its other end is down"
    return None


def shaping_words(link: LinkQdiscs, *, arriving: bool = False) -> str | None:
    """"delayed 50ms +/- 5ms by netem on veth1; rate-limited to 10mbit by tbf on veth1", or
    None when the link does nothing to the packets in that direction."""
    shape = link.ingress if arriving else link.egress
    if shape.empty:
        return None
    where = f"{link.redirect} (arriving on {link.ifname})" if arriving else link.ifname
    netem = "netem"
    rater = "netem" if not arriving and not any(q.kind == "tbf" for q in link.qdiscs) else "tbf"
    parts = []
    if shape.delay_ms:
        jitter = f" +/- {format_time(shape.jitter_ms)}" if shape.jitter_ms else ""
        parts.append(f"delayed {format_time(shape.delay_ms)}{jitter} by {netem} on {where}")
    if shape.loss_pct:
        parts.append(f"{shape.loss_pct:g}% of packets dropped by {netem} on {where}")
    if shape.rate_bps is not None:
        parts.append(f"rate-limited to {format_rate(shape.rate_bps)} by {rater} on {where}")
    return "; ".join(parts)


def kube_proxy(rule: RuleRef) -> str | None:
    """"kube-proxy: Service dev/demo:http, endpoint chain KUBE-SEP-..." for its rules."""
    if not rule.chain.startswith(("KUBE-SEP-", "KUBE-SVC-", "KUBE-EXT-")) or not rule.comment:
        return None
    service = rule.comment.split(" -> ")[0].removesuffix(" cluster IP")
    return f"kube-proxy: Service {service}, chain {rule.chain}"


def nat_text(hook: str, nat: Nat, before: Packet, after: Packet) -> str:
    where = f"nftables {hook}, {nat.rule.where()}"
    service = kube_proxy(nat.rule)
    if service:
        where = f"{service}; {where}"
    if nat.kind in ("dnat", "redirect"):
        text = (f"{nat.kind}: destination {endpoint(before.dst, before.dport)} -> "
                f"{endpoint(after.dst, after.dport)} ({where})")
        if nat.alternatives:
            others = ", ".join(endpoint(a or "?", p) for a, p in nat.alternatives)
            text += f"; other connections may go to {others}"
        return text
    return f"{nat.kind}: source {before.src} -> {after.src} ({where})"
