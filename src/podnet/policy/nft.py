"""The nftables rules that enforce NetworkPolicies on one node, as text for the node's
`table inet podnet`. Pure: rendered from a `World`, loaded by `kernel.nftables`.

    chain np-egress    forward hook, priority filter       a local pod's new connections out
    chain np-ingress   forward hook, priority filter + 10  new connections to a local pod
      ct state established,related accept     replies and related packets of allowed ones
      icmpv6 type { nd-... } accept           neighbour discovery, as ARP, is no connection
      ip saddr vmap @np-egress4               an isolated pod's address -> goto its chain
    chain np-pod-out/<ns>/<pod>               the pod's own address: always allowed (itself);
      jump np-out/<ns>/<policy>               each policy that isolates it, in turn;
      drop comment "np <pod> egress: isolated by <policies>"       nothing allowed it
    chain np-out/<ns>/<policy>                one or more rules per policy rule, each ending
      ip daddr @<set> meta l4proto . th dport @<set> accept comment "np <policy> egress[0]"

Why this shape holds over every attachment and routing:
- pods are matched by address, never by interface, so ptp /32 veths, a cni0 bridge (whose
  bridged packets br_netfilter shows to the forward hook) and VXLAN look alike;
- the chains hook forward, which runs after prerouting's Service DNAT: a connection to a
  ClusterIP or NodePort is judged with the endpoint pod as its destination; the node's own
  traffic takes output, never forward, so the pods' own node always reaches them (as
  Kubernetes requires) and a pod always reaches its node (input);
- egress and ingress are two base chains: an `accept` ends only its own base chain, so a
  connection needs the source's egress and then the destination's ingress to allow it, each on
  the node where that pod runs (the same node for both, or one each across nodes);
- a policy's rules live once per node in its own chain, shared by every local pod it selects:
  named ports, resolved pod by pod, become `address . protocol . port` elements.
Each allow rule carries `comment "np <namespace>/<policy> <direction>[<index>]"`, each drop
the pod and its isolating policies, so `nft list ruleset` and `trace` can name them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from podnet.model.policies import (
    Address,
    Direction,
    IPBlock,
    Network,
    NetworkPolicySpec,
    PolicyRule,
)
from podnet.policy.comments import allow_comment, isolated_comment, self_comment
from podnet.policy.select import isolating, peer_allows, peer_pods, selects
from podnet.policy.world import Member, World

__all__ = [
    "EGRESS_CHAIN",
    "INGRESS_CHAIN",
    "policy_chains",
    "policy_tables",
]

EGRESS_CHAIN = "np-egress"
INGRESS_CHAIN = "np-ingress"
_NAME_MAX = 200  # nft identifiers hold 255 bytes: long policy names are cut and hashed
_ESTABLISHED = ('ct state established,related accept '
                'comment "np: packets of connections already allowed"')
_NEIGHBOURS = ("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept "
               'comment "np: IPv6 neighbour discovery is no connection (as ARP)"')
Span = tuple[int, int]
T = TypeVar("T")


@dataclass(frozen=True)
class _Way:
    """A direction, as rules spell it."""

    direction: Direction
    word: str  # ingress, egress
    short: str  # in, out: in chain names
    base: str  # the base chain
    priority: str
    mine: str  # the judged pod's address field: daddr for ingress
    theirs: str  # the peer's


_EGRESS = _Way("Egress", "egress", "out", EGRESS_CHAIN, "filter", "saddr", "daddr")
_INGRESS = _Way("Ingress", "ingress", "in", INGRESS_CHAIN, "filter + 10", "daddr", "saddr")
_FAMILIES = ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr"))


# What every node's rendering of a rule shares (its peers' addresses, its egress named ports),
# worked out once per rendering of the whole world: (policy, direction, index, what) -> value.
_Memo = dict[tuple[str, str, int, str], object]


def policy_tables(world: World) -> dict[str, str]:
    """`policy_chains` for every node of the world."""
    names = [h.name for h in world.nodes] or sorted({p.node for p in world.pods})
    memo: _Memo = {}
    return {name: _chains(world, name, memo) for name in names}


def policy_chains(world: World, node: str) -> str:
    """The sets, maps and chains that enforce `world`'s policies on `node`, as lines of a
    `table inet podnet { ... }` body; '' when no pod of the node is isolated."""
    return _chains(world, node, {})


def _chains(world: World, node: str, memo: _Memo) -> str:
    lines: list[str] = []
    for way in (_EGRESS, _INGRESS):
        lines += _direction(world, node, way, memo)
    return "\n".join(lines) + "\n" if lines else ""


def _direction(world: World, node: str, way: _Way, memo: _Memo) -> list[str]:
    judged = [(pod, isolating(world, pod, way.direction)) for pod in world.pods_on(node)]
    judged = [(pod, policies) for pod, policies in judged if policies]
    if not judged:
        return []
    sets: list[str] = []
    chains: list[str] = []
    used = {p.key: p for _, policies in judged for p in policies if p.rules(way.direction)}
    for policy in used.values():
        targets = [pod for pod, _ in judged if selects(policy, pod)]
        rules: list[str] = []
        for index, rule in enumerate(policy.rules(way.direction)):
            new_sets, new_rules = _rule(world, policy, way, index, rule, targets, memo)
            sets += new_sets
            rules += new_rules
        chains += _block("chain", _policy_chain(way, policy), rules)
    for pod, policies in judged:
        chains += _block("chain", _pod_chain(way, pod), _pod_rules(way, pod, policies))
    maps: list[str] = []
    verdicts: list[str] = []
    for version, keyword, kind in _FAMILIES:
        elements = [f"{ip} : goto {_pod_chain(way, pod)}"
                    for pod, _ in judged if (ip := pod.ip(version)) is not None]
        if not elements:
            continue
        name = f"{way.base}{version}"
        maps += _block("map", name, [
            f"type {kind} : verdict",
            f'comment "pods of this node isolated for {way.word}: their chain"',
            *_elements(elements),
        ])
        verdicts.append(f"{keyword} {way.mine} vmap @{name}")
    base = _block("chain", way.base, [
        f"type filter hook forward priority {way.priority}; policy accept;",
        _ESTABLISHED, _NEIGHBOURS, *verdicts,
    ])
    return sets + chains + maps + base


def _block(kind: str, name: str, body: Sequence[str]) -> list[str]:
    return [f"{kind} {name} {{", *(f"  {line}" for line in body), "}"]


def _elements(items: Sequence[str]) -> list[str]:
    if not items:
        return []
    return ["elements = {", *(f"  {item}," for item in items), "}"]


def _name(*parts: object) -> str:
    """An nftables identifier from parts joined by '/': cut and hashed when too long."""
    text = "/".join(str(p) for p in parts)
    if len(text) <= _NAME_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[: _NAME_MAX - 11]}-{digest}"


def _policy_chain(way: _Way, policy: NetworkPolicySpec) -> str:
    return _name(f"np-{way.short}", policy.namespace, policy.name)


def _pod_chain(way: _Way, pod: Member) -> str:
    return _name(f"np-pod-{way.short}", pod.namespace, pod.name)


def _pod_rules(way: _Way, pod: Member, policies: Sequence[NetworkPolicySpec]) -> list[str]:
    rules = [f'{_keyword(ip)} {way.theirs} {ip} accept comment '
             f'"{self_comment(pod.key, way.direction)}"' for ip in pod.ips]
    rules += [f"jump {_policy_chain(way, p)}" for p in policies if p.rules(way.direction)]
    names = [p.key for p in policies]
    return [*rules, f'drop comment "{isolated_comment(pod.key, way.direction, names)}"']


def _keyword(ip: Address | Network) -> str:
    return "ip" if ip.version == 4 else "ip6"


# --- one rule of a policy ----------------------------------------------------------------------


def _rule(
    world: World, policy: NetworkPolicySpec, way: _Way, index: int, rule: PolicyRule,
    targets: Sequence[Member], memo: _Memo,
) -> tuple[list[str], list[str]]:
    """(set definitions, rules) for rule `index`: one nft rule per address family and kind of
    port (numbers, names) it needs; none for a family it cannot match."""
    text = allow_comment(policy.key, way.direction, index)
    stem = _name(f"np-{way.short}", policy.namespace, policy.name, index)
    if way is _EGRESS:  # named ports of destinations anywhere: the same on every node
        named = _remember(memo, (policy.key, way.word, index, "named"),
                          lambda: _named_elements(world, policy, way, rule, targets))
    else:
        named = _named_elements(world, policy, way, rule, targets)
    sets, port_tests = _port_tests(stem, text, rule, named)
    peers = None
    if rule.peers:
        peers = _remember(memo, (policy.key, way.word, index, "peers"),
                          lambda: _peer_spans(world, policy, rule))
    rules: list[str] = []
    peer_sets: set[int] = set()
    for version, keyword, kind in _FAMILIES:
        if peers is not None and not peers[version]:
            continue  # no peer of this family: nothing to match
        peer_set = f"{stem}/peers{version}"
        peer_test = f"{keyword} {way.theirs} @{peer_set}" if peers is not None else ""
        for family, port_test in port_tests:
            if family not in (None, version):
                continue
            # Egress to a named port: its elements hold the allowed peers' addresses already.
            own = family is not None and way is _EGRESS
            line = " ".join([*(t for t in ([port_test] if own else [peer_test, port_test]) if t),
                             f'accept comment "{text}"'])
            if line not in rules:
                rules.append(line)
            if peers is not None and not own and version not in peer_sets:
                peer_sets.add(version)
                sets += _set(peer_set, kind, True, text, _prefixes(peers[version], version))
    return sets, rules


def _remember(memo: _Memo, key: tuple[str, str, int, str], make: Callable[[], T]) -> T:
    if key not in memo:
        memo[key] = make()
    return cast(T, memo[key])


def _port_tests(
    stem: str, text: str, rule: PolicyRule, named: dict[int, list[str]]
) -> tuple[list[str], list[tuple[int | None, str]]]:
    """(set definitions, port tests) of a rule: each test with the family it is for (None:
    both); a rule without ports has one empty test, which matches every port and protocol."""
    sets: list[str] = []
    tests: list[tuple[int | None, str]] = [] if rule.ports else [(None, "")]
    if numbers := _port_spans(rule):
        name = f"{stem}/ports"
        sets += _set(name, "inet_proto . inet_service", True, text,
                     [f"{proto} . {_span_text(lo, hi)}" for proto, lo, hi in numbers])
        tests.append((None, f"meta l4proto . th dport @{name}"))
    for version, keyword, kind in _FAMILIES:
        if named.get(version):
            name = f"{stem}/named{version}"
            sets += _set(name, f"{kind} . inet_proto . inet_service", False, text,
                         named[version])
            tests.append((version, f"{keyword} daddr . meta l4proto . th dport @{name}"))
    return sets, tests


def _set(name: str, kind: str, interval: bool, comment: str, elements: Sequence[str]) -> list[str]:
    body = [f"type {kind}"]
    if interval:
        body.append("flags interval")
    body.append(f'comment "{comment}"')
    return _block("set", name, [*body, *_elements(elements)])


def _peer_spans(world: World, policy: NetworkPolicySpec, rule: PolicyRule) -> dict[int, list[Span]]:
    """The addresses a rule's peers match, per family, merged into disjoint spans: the pods its
    selectors pick, and its address blocks less their exceptions."""
    spans: dict[int, list[Span]] = {4: [], 6: []}
    for peer in rule.peers:
        if peer.ip_block is not None:
            spans[peer.ip_block.cidr.version] += _block_spans(peer.ip_block)
            continue
        for pod in peer_pods(world, policy, peer):
            for ip in pod.ips:
                spans[ip.version].append((int(ip), int(ip)))
    return {version: _merge(found) for version, found in spans.items()}


def _block_spans(block: IPBlock) -> list[Span]:
    spans = [_span(block.cidr)]
    for cut in block.excepts:
        spans = _subtract(spans, _span(cut))
    return spans


def _span(net: Network) -> Span:
    return int(net.network_address), int(net.broadcast_address)


def _subtract(spans: Iterable[Span], cut: Span) -> list[Span]:
    out = []
    for lo, hi in spans:
        if cut[1] < lo or cut[0] > hi:
            out.append((lo, hi))
            continue
        if lo < cut[0]:
            out.append((lo, cut[0] - 1))
        if cut[1] < hi:
            out.append((cut[1] + 1, hi))
    return out


def _merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with overlapping and adjacent spans joined: an nft interval set refuses
    overlapping elements."""
    out: list[Span] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _prefixes(spans: Iterable[Span], version: int) -> list[str]:
    kind = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    out = []
    for lo, hi in spans:
        for net in ipaddress.summarize_address_range(kind(lo), kind(hi)):
            full = net.prefixlen == net.max_prefixlen
            out.append(str(net.network_address) if full else str(net))
    return out


def _port_spans(rule: PolicyRule) -> list[tuple[str, int, int]]:
    """Numbered ports (and whole protocols) as (protocol, first, last), merged per protocol."""
    by_protocol: dict[str, list[Span]] = {}
    for port in rule.ports:
        if isinstance(port.port, str):
            continue
        span = (0, 65535) if port.port is None else (port.port, port.end_port or port.port)
        by_protocol.setdefault(port.protocol.lower(), []).append(span)
    return [(proto, lo, hi) for proto, spans in by_protocol.items() for lo, hi in _merge(spans)]


def _span_text(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _named_elements(
    world: World, policy: NetworkPolicySpec, way: _Way, rule: PolicyRule,
    targets: Sequence[Member],
) -> dict[int, list[str]]:
    """`address . protocol . port` for each named port of the rule, resolved on the pods the
    connection may go to: for ingress the policy's own pods here (`targets`), for egress every
    pod the rule's peers allow."""
    names = [(p.port, p.protocol) for p in rule.ports if isinstance(p.port, str)]
    if not names:
        return {}
    out: dict[int, list[str]] = {4: [], 6: []}
    candidates = targets if way is _INGRESS else world.pods
    for pod in candidates:
        for name, protocol in names:
            number = pod.port_named(name, protocol)
            if number is None:
                continue
            for ip in pod.ips:
                if way is _EGRESS and rule.peers and not any(
                        peer_allows(world, policy, peer, pod, ip) for peer in rule.peers):
                    continue
                element = f"{ip} . {protocol.lower()} . {number}"
                if element not in out[ip.version]:
                    out[ip.version].append(element)
    return out
