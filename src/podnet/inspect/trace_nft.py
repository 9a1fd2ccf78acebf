"""What a namespace's nftables rules do to one new packet: pure, from `nft -j list ruleset`.

The tracer asks, at each netfilter hook a packet passes (prerouting, input, forward, output,
postrouting), which base chains of the `ip` and `inet` tables see it, in priority order, and walks
their rules as the kernel would for the first packet of a connection: matches on addresses,
ports, protocol and interface names, named and anonymous sets, verdict maps (kube-proxy's
`ip daddr . meta l4proto . th dport vmap @service-ips`), `numgen random` load spreading, jumps,
gotos and returns, and the NAT statements dnat, snat, masquerade and redirect.

An expression podnet cannot evaluate (a mark, a rate limit, an iptables `xt` match) makes its
rule "not evaluated": the walk goes on as if it did not match and says so in `notes`, so the
answer is never silently wrong.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "HookContext",
    "HookResult",
    "Nat",
    "Packet",
    "RuleRef",
    "Ruleset",
    "apply_nat",
    "evaluate",
    "rule_text",
]

Verdict = Literal["accept", "drop", "reject"]
_PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132, "icmpv6": 58}
_PROTO_NAMES = {v: k for k, v in _PROTO_NUMBERS.items()}
_IP_FAMILIES = ("ip", "inet")
_MAX_DEPTH = 32  # nft itself refuses jump chains deeper than 16


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str = "tcp"  # tcp, udp or icmp
    sport: int | None = None
    dport: int | None = None


@dataclass(frozen=True)
class HookContext:
    hook: str  # prerouting, input, forward, output, postrouting
    iif: str | None = None
    oif: str | None = None
    local_addresses: frozenset[str] = frozenset()  # for `fib daddr type local`
    ct_state: str = "new"  # "established" for replies: NAT chains only see a connection's first
    mark: int = 0  # the packet mark (meta mark) as earlier hooks in this namespace left it


@dataclass(frozen=True)
class RuleRef:
    family: str
    table: str
    chain: str
    handle: int | None  # None: the chain's policy decided
    text: str

    def where(self) -> str:
        return f"table {self.family} {self.table} chain {self.chain}"

    def command(self) -> str:
        return f"nft -a list chain {self.family} {self.table} {self.chain}"


@dataclass(frozen=True)
class Nat:
    kind: str  # dnat, snat, masquerade, redirect
    addr: str | None
    port: int | None
    rule: RuleRef
    # Other targets a random or round-robin pick (numgen) may choose for other connections.
    alternatives: tuple[tuple[str | None, int | None], ...] = ()


@dataclass(frozen=True)
class HookResult:
    verdict: Verdict
    packet: Packet  # after any DNAT or SNAT applied here
    rule: RuleRef | None = None  # the rule, or chain policy, that dropped or rejected
    nat: tuple[Nat, ...] = ()
    chains: tuple[str, ...] = ()  # base chains the packet went through
    notes: tuple[str, ...] = ()
    mark: int = 0  # the packet mark after this hook (kube-proxy marks what to masquerade)


class _Unknown:
    """A value podnet cannot compute (a mark, the time, an iptables match)."""

    def __init__(self, what: str) -> None:
        self.what = what


class _NoMatch:
    """`tcp dport` asked of a UDP packet: the kernel's implicit protocol check fails."""


_NOMATCH = _NoMatch()


@dataclass
class _Walk:
    objects: Ruleset
    ctx: HookContext
    packet: Packet
    nat: list[Nat] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pick: int = 0  # which branch of a numgen map to follow
    prefer: str | None = None  # ...unless one branch DNATs to this address: then that one
    mark: int = 0


@dataclass(frozen=True)
class _Outcome:
    kind: Literal["accept", "drop", "reject", "return", "next"]
    rule: RuleRef | None = None


class Ruleset:
    """A namespace's tables, indexed once: chains, their rules in order, sets and maps."""

    def __init__(self, objects: Iterable[Mapping[str, Any]]) -> None:
        self.chains: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.sets: dict[tuple[str, str, str], list[Any]] = {}
        for obj in objects:
            if "chain" in obj:
                c = obj["chain"]
                key = (c.get("family", ""), c.get("table", ""), c.get("name", ""))
                self.chains[key] = c
                self.rules.setdefault(key, [])
            elif "rule" in obj:
                r = obj["rule"]
                key = (r.get("family", ""), r.get("table", ""), r.get("chain", ""))
                self.rules.setdefault(key, []).append(r)
            elif "set" in obj or "map" in obj:
                s = obj.get("set") or obj.get("map") or {}
                key = (s.get("family", ""), s.get("table", ""), s.get("name", ""))
                self.sets[key] = list(s.get("elem") or [])

    def base_chains(self, hook: str) -> list[tuple[str, str, str]]:
        found = [
            (int(c.get("prio", 0)) if isinstance(c.get("prio", 0), int) else 0, key)
            for key, c in self.chains.items()
            if key[0] in _IP_FAMILIES and c.get("hook") == hook
        ]
        return [key for _prio, key in sorted(found, key=lambda x: x[0])]


def evaluate(
    objects: Iterable[Mapping[str, Any]] | Ruleset, ctx: HookContext, packet: Packet, *,
    pick: int = 0, prefer: str | None = None,
) -> HookResult:
    """The fate of `packet` (the first of its connection) at hook `ctx.hook`.

    Where rules spread connections at random (numgen), the branch that DNATs to `prefer` is
    followed if there is one, else branch `pick`."""
    rules = objects if isinstance(objects, Ruleset) else Ruleset(objects)
    walk = _Walk(rules, ctx, packet, pick=pick, mark=ctx.mark, prefer=prefer)
    seen: list[str] = []
    for key in rules.base_chains(ctx.hook):
        family, table, chain = key
        if ctx.ct_state != "new" and rules.chains[key].get("type") == "nat":
            continue  # conntrack applies the connection's NAT to later packets by itself
        seen.append(f"{family} {table} {chain}")
        outcome = _run_chain(walk, key, 0)
        if outcome.kind in ("drop", "reject"):
            return HookResult(outcome.kind, walk.packet, outcome.rule, tuple(walk.nat),
                              tuple(seen), tuple(walk.notes), walk.mark)
        if outcome.kind in ("return", "next"):  # fell off the end: the chain's policy decides
            policy = rules.chains[key].get("policy", "accept")
            if policy == "drop":
                ref = RuleRef(family, table, chain, None, "policy drop")
                return HookResult("drop", walk.packet, ref, tuple(walk.nat), tuple(seen),
                                  tuple(walk.notes), walk.mark)
    return HookResult("accept", walk.packet, None, tuple(walk.nat), tuple(seen),
                      tuple(walk.notes), walk.mark)


def _run_chain(walk: _Walk, key: tuple[str, str, str], depth: int) -> _Outcome:
    if depth > _MAX_DEPTH:
        walk.notes.append(f"chain {key[2]}: jumps nest deeper than {_MAX_DEPTH}; stopped there")
        return _NEXT
    for rule in walk.objects.rules.get(key, []):
        outcome = _run_rule(walk, key, rule, depth)
        if outcome.kind != "next":
            return outcome
    return _NEXT


def _ref(key: tuple[str, str, str], rule: Mapping[str, Any]) -> RuleRef:
    return RuleRef(key[0], key[1], key[2], rule.get("handle"), rule_text(rule.get("expr") or []))


_NEXT = _Outcome("next")
_VERDICTS = ("accept", "drop", "reject", "return")


def _run_rule(
    walk: _Walk, key: tuple[str, str, str], rule: Mapping[str, Any], depth: int
) -> _Outcome:
    """Expressions left to right: a failed match ends the rule, a verdict ends the chain."""
    ref = _ref(key, rule)
    for expr in rule.get("expr") or []:
        if not isinstance(expr, dict) or len(expr) != 1:
            continue
        (name, body), = expr.items()
        if name == "match":
            hit = _match(walk, body, key[:2])
            if isinstance(hit, _Unknown):
                walk.notes.append(f"{ref.where()} handle {ref.handle}: `{ref.text}` not "
                                  f"evaluated ({hit.what}); assumed not to match")
            if hit is not True:
                return _NEXT
            continue
        outcome = _statement(walk, key, name, body, ref, depth)
        if outcome is not None:
            return outcome
    return _NEXT


def _statement(walk: _Walk, key: tuple[str, str, str], name: str, body: Any, ref: RuleRef,
               depth: int) -> _Outcome | None:
    """One statement's effect: an outcome that ends the rule, or None to go on with it."""
    if name in _VERDICTS or name in ("jump", "goto"):
        return _verdict_of(walk, key, {name: body}, ref, depth)
    if name == "vmap":
        return _vmap(walk, key, body, ref, depth)
    if name in ("dnat", "snat", "masquerade", "redirect"):
        _nat(walk, key, name, body or {}, ref)
        return _Outcome("accept", ref)  # NAT statements end the chain, as an accept
    if name == "mangle":
        _mangle(walk, body, ref)
    elif name == "xt":
        walk.notes.append(f"{ref.where()} handle {ref.handle}: an iptables-nft match (xt) that "
                          "podnet cannot evaluate; assumed not to match")
        return _NEXT
    # counter, log, limit, ct set, notrack...: no effect on the path.
    return None


def _branch(
    walk: _Walk, key: tuple[str, str, str], how: str, target: str, ref: RuleRef, depth: int
) -> _Outcome:
    child = (key[0], key[1], target)
    if child not in walk.objects.chains:
        walk.notes.append(f"{ref.where()}: {how} to missing chain {target}")
        return _NEXT
    outcome = _run_chain(walk, child, depth + 1)
    if outcome.kind in ("accept", "drop", "reject"):
        return outcome
    # Returning from a jump goes on with the next rule; from a goto, back to our own caller.
    return _Outcome("return" if how == "goto" else "next")


def _verdict_of(walk: _Walk, key: tuple[str, str, str], verdict: Any, ref: RuleRef,
                depth: int) -> _Outcome:
    if not isinstance(verdict, dict) or len(verdict) != 1:
        return _NEXT
    (name, body), = verdict.items()
    if name in ("jump", "goto"):
        return _branch(walk, key, name, (body or {}).get("target", ""), ref, depth)
    if name in _VERDICTS:
        return _Outcome(name, ref)
    return _NEXT


def _vmap(
    walk: _Walk, key: tuple[str, str, str], body: Mapping[str, Any], ref: RuleRef, depth: int
) -> _Outcome:
    elements = _elements(walk, body.get("data"), key[:2])
    if isinstance(elements, _Unknown):
        walk.notes.append(f"{ref.where()}: verdict map {elements.what} not found")
        return _NEXT
    pairs = [e for e in elements if isinstance(e, list) and len(e) == 2]
    keyexpr = body.get("key")
    if isinstance(keyexpr, dict) and "numgen" in keyexpr:
        return _spread(walk, key, pairs, ref, depth)
    value = _value(walk, keyexpr)
    if isinstance(value, _Unknown):
        walk.notes.append(f"{ref.where()} handle {ref.handle}: `{ref.text}` not evaluated "
                          f"({value.what})")
        return _NEXT
    if value is _NOMATCH:
        return _NEXT
    for element, verdict in pairs:
        if _in(value, element, walk, key[:2]) is True:
            return _verdict_of(walk, key, verdict, ref, depth)
    return _NEXT


def _spread(walk: _Walk, key: tuple[str, str, str], pairs: list[list[Any]], ref: RuleRef,
            depth: int) -> _Outcome:
    """`numgen random mod N vmap {...}`: follow one branch; the others' DNAT targets become
    alternatives of the NAT the followed branch applies."""
    if not pairs:
        return _NEXT
    targets: list[list[tuple[str | None, int | None]]] = []
    for pair in pairs:  # where each branch would send the connection
        trial = _Walk(walk.objects, walk.ctx, walk.packet, pick=walk.pick, mark=walk.mark)
        _verdict_of(trial, key, pair[1], ref, depth)
        targets.append([(n.addr, n.port) for n in trial.nat if n.kind == "dnat"])
    index = walk.pick % len(pairs)
    if walk.prefer is not None:
        index = next((i for i, t in enumerate(targets) if any(a == walk.prefer for a, _ in t)),
                     index)
    chosen = pairs[index]
    others = [t for i, found in enumerate(targets) if i != index for t in found]
    before = len(walk.nat)
    outcome = _verdict_of(walk, key, chosen[1], ref, depth)
    for i in range(before, len(walk.nat)):
        if walk.nat[i].kind == "dnat":
            walk.nat[i] = replace(walk.nat[i], alternatives=tuple(others))
    return outcome


def _nat(walk: _Walk, key: tuple[str, str, str], kind: str, body: Mapping[str, Any],
         ref: RuleRef) -> None:
    addr = body.get("addr")
    alternatives: list[tuple[str | None, int | None]] = []
    if isinstance(addr, dict) and "map" in addr:
        data = _elements(walk, addr["map"].get("data"), key[:2])
        choices = [e[1] for e in data if isinstance(e, list)] if isinstance(data, list) else []
        if choices:
            addr = choices[walk.pick % len(choices)]
            alternatives = [(str(c), None) for c in choices if c != addr]
        else:
            addr = None
    port = body.get("port")
    address = str(addr) if isinstance(addr, str) else None
    number = port if isinstance(port, int) else None
    nat = Nat(kind, address, number, ref, tuple(alternatives))
    walk.nat.append(nat)
    walk.packet = apply_nat(walk.packet, nat)


def apply_nat(pkt: Packet, nat: Nat) -> Packet:
    """The packet after `nat` (a masquerade needs the outgoing address: the caller knows it)."""
    if nat.kind == "dnat" and nat.addr:
        return replace(pkt, dst=nat.addr, dport=nat.port if nat.port is not None else pkt.dport)
    if nat.kind == "snat" and nat.addr:
        return replace(pkt, src=nat.addr, sport=nat.port if nat.port is not None else pkt.sport)
    if nat.kind == "redirect":
        return replace(pkt, dport=nat.port if nat.port is not None else pkt.dport)
    return pkt


def _mangle(walk: _Walk, body: Mapping[str, Any], ref: RuleRef) -> None:
    """`meta mark set EXPR`: kept, since later rules (kube-proxy's masquerading) test it."""
    target = body.get("key")
    if isinstance(target, dict) and target.get("meta", {}).get("key") == "mark":
        value = _value(walk, body.get("value"))
        if isinstance(value, int):
            walk.mark = value & 0xFFFFFFFF
        else:
            walk.notes.append(f"{ref.where()} handle {ref.handle}: mark set to a value podnet "
                              "cannot compute")


_BITWISE: dict[str, Callable[[int, int], int]] = {
    "&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b,
}


# --- values and matches ------------------------------------------------------------------------


def _payload(walk: _Walk, body: Mapping[str, Any]) -> Any:
    p = walk.packet
    proto, fld = str(body.get("protocol")), str(body.get("field"))
    if proto == "ip":
        return {"saddr": p.src, "daddr": p.dst, "protocol": p.proto}.get(
            fld, _Unknown(f"ip {fld}"))
    if proto in ("tcp", "udp", "th", "sctp"):
        # `tcp dport` carries an implicit `meta l4proto tcp`; `th` is any transport header.
        if proto not in ("th", p.proto) or p.proto not in ("tcp", "udp", "sctp"):
            return _NOMATCH
        return {"dport": p.dport, "sport": p.sport}.get(fld, _Unknown(f"{proto} {fld}"))
    if proto == "icmp" and p.proto != "icmp":
        return _NOMATCH
    return _Unknown(f"{proto} {fld}")


def _meta(walk: _Walk, body: Mapping[str, Any]) -> Any:
    p, ctx = walk.packet, walk.ctx
    key = str(body.get("key"))
    known = {
        "l4proto": p.proto, "protocol": "ip", "nfproto": "ipv4", "mark": walk.mark,
        "iifname": ctx.iif, "oifname": ctx.oif, "iif": ctx.iif, "oif": ctx.oif,
    }
    value = known.get(key)
    return _Unknown(f"meta {key}") if value is None else value


def _ct(walk: _Walk, body: Mapping[str, Any]) -> Any:
    key = str(body.get("key"))
    known = {"state": walk.ctx.ct_state, "direction": "original"}
    return known.get(key, _Unknown(f"ct {key}"))


def _fib(walk: _Walk, body: Mapping[str, Any]) -> Any:
    flags = body.get("flags") or []
    if body.get("result") == "type" and "daddr" in flags:
        return "local" if walk.packet.dst in walk.ctx.local_addresses else "unicast"
    return _Unknown("fib " + " ".join(flags))


def _concat(walk: _Walk, body: Any) -> Any:
    parts = [_value(walk, e) for e in body]
    for part in parts:
        if isinstance(part, _Unknown) or part is _NOMATCH:
            return part
    return tuple(parts)


_VALUES: dict[str, Callable[[_Walk, Any], Any]] = {
    "payload": _payload, "meta": _meta, "ct": _ct, "fib": _fib, "concat": _concat,
}


def _value(walk: _Walk, expr: Any) -> Any:
    """What an expression evaluates to for this packet: a value, _NOMATCH or _Unknown."""
    if not isinstance(expr, dict):
        return expr
    for name, body in expr.items():
        if name in _VALUES:
            return _VALUES[name](walk, body)
        if name in _BITWISE and isinstance(body, list) and len(body) == 2:
            a, b = (_value(walk, e) for e in body)
            if isinstance(a, int) and isinstance(b, int):
                return _BITWISE[name](a, b)
            return _Unknown(f"{name} on {a!r}")
    return _Unknown(next(iter(expr), "?"))


def _elements(walk: _Walk, data: Any, table: tuple[str, str]) -> list[Any] | _Unknown:
    if isinstance(data, str) and data.startswith("@"):
        found = walk.objects.sets.get((table[0], table[1], data[1:]))
        return _Unknown(data) if found is None else found
    if isinstance(data, dict) and "set" in data:
        items = data["set"]
        return list(items) if isinstance(items, list) else [items]
    if isinstance(data, list):
        return data
    return [data]


def _match(walk: _Walk, body: Mapping[str, Any], table: tuple[str, str]) -> bool | _Unknown:
    left = _value(walk, body.get("left"))
    if isinstance(left, _Unknown):
        return left
    if left is _NOMATCH:
        return False
    op = body.get("op", "==")
    right = body.get("right")
    if op in _ORDER:
        try:
            return _ORDER[op](int(left), int(right))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return _Unknown(f"{op} on {left!r}")
    hit = _in(left, right, walk, table)
    if isinstance(hit, _Unknown):
        return hit
    return not hit if op == "!=" else hit


_ORDER: dict[str, Callable[[int, int], bool]] = {
    "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}


def _any_in(value: Any, items: Any, walk: _Walk, table: tuple[str, str]) -> bool:
    items = items if isinstance(items, list) else [items]
    return any(_in(value, e[0] if isinstance(e, list) else e, walk, table) is True
               for e in items)


def _in_prefix(value: Any, body: Mapping[str, Any]) -> bool:
    try:
        net = ipaddress.ip_network(f"{body['addr']}/{body['len']}", strict=False)
        return ipaddress.ip_address(str(value)) in net
    except (KeyError, ValueError):
        return False


def _in_concat(value: Any, parts: list[Any], walk: _Walk, table: tuple[str, str]) -> bool:
    if not isinstance(value, tuple) or len(value) != len(parts):
        return False
    return all(_in(v, r, walk, table) is True for v, r in zip(value, parts, strict=True))


def _in(value: Any, right: Any, walk: _Walk, table: tuple[str, str]) -> bool | _Unknown:
    """Whether `value` is, or is in, `right` (a value, prefix, range, set or @named set)."""
    if isinstance(right, str) and right.startswith("@"):
        elements = _elements(walk, right, table)
        return elements if isinstance(elements, _Unknown) else _any_in(value, elements, walk,
                                                                       table)
    if isinstance(right, list):
        return _any_in(value, right, walk, table)
    if not isinstance(right, dict):
        return _equal(value, right)
    kind, body = next(iter(right.items()), ("?", None))
    tests: dict[str, Callable[[], bool | _Unknown]] = {
        "set": lambda: _any_in(value, body, walk, table),
        "elem": lambda: _in(value, (body or {}).get("val"), walk, table),
        "prefix": lambda: _in_prefix(value, body or {}),
        "range": lambda: _between(value, *(body or [None, None])[:2]),
        "concat": lambda: _in_concat(value, body or [], walk, table),
    }
    test = tests.get(kind)
    return test() if test else _Unknown(f"a {kind} expression")


def _between(value: Any, low: Any, high: Any) -> bool:
    try:
        if isinstance(value, int):
            return int(low) <= value <= int(high)
        v = int(ipaddress.ip_address(str(value)))
        return int(ipaddress.ip_address(str(low))) <= v <= int(ipaddress.ip_address(str(high)))
    except (TypeError, ValueError):
        return False


def _equal(value: Any, right: Any) -> bool:
    if isinstance(value, str) and isinstance(right, int):  # l4proto tcp vs 6
        return _PROTO_NUMBERS.get(value) == right
    if isinstance(value, int) and isinstance(right, str):
        return _PROTO_NAMES.get(value) == right
    if not (isinstance(value, str) and isinstance(right, str)):
        return bool(value == right)
    if right.endswith("*"):  # interface name wildcard: iifname "veth*"
        return value.startswith(right[:-1])
    try:
        return ipaddress.ip_address(value) == ipaddress.ip_address(right)
    except ValueError:
        return value == right


# --- rules as people write them ----------------------------------------------------------------


def _text_dict(v: Mapping[str, Any]) -> str:
    kind, body = next(iter(v.items()), ("?", None))
    simple: dict[str, Callable[[Any], str]] = {
        "prefix": lambda b: f"{b.get('addr')}/{b.get('len')}",
        "range": lambda b: "-".join(_text_value(x) for x in b),
        "set": lambda b: "{ " + ", ".join(_text_value(x) for x in
                                          (b if isinstance(b, list) else [b])) + " }",
        "concat": lambda b: " . ".join(_text_value(x) for x in b),
        "payload": lambda b: f"{b.get('protocol')} {b.get('field')}",
        "meta": lambda b: (b.get("key") if b.get("key") in ("iifname", "oifname", "iif", "oif")
                           else f"meta {b.get('key')}"),
        "ct": lambda b: f"ct {b.get('key')}",
        "fib": lambda b: f"fib {' . '.join(b.get('flags') or [])} {b.get('result')}",
        "numgen": lambda b: f"numgen {b.get('mode')} mod {b.get('mod')}",
        "elem": lambda b: _text_value(b.get("val")),
        "map": lambda b: f"{_text_value(b.get('key'))} map {_text_value(b.get('data'))}",
    }
    if kind in simple:
        return simple[kind](body)
    if kind in _BITWISE and isinstance(body, list) and len(body) == 2:
        shown = hex(body[1]) if isinstance(body[1], int) else _text_value(body[1])
        return f"{_text_value(body[0])} {kind} {shown}"
    if isinstance(body, dict) and "target" in body:
        return f"{kind} {body['target']}"
    if body is None:
        return str(kind)
    return json.dumps(v, separators=(",", ":"))


def _text_value(v: Any) -> str:
    if isinstance(v, dict):
        return _text_dict(v)
    if isinstance(v, list):
        if len(v) == 2 and not isinstance(v[0], list):
            return f"{_text_value(v[0])} : {_text_value(v[1])}"
        return ", ".join(_text_value(x) for x in v)
    if isinstance(v, str) and " " in v:
        return f'"{v}"'
    return str(v)


def _text_match(body: Mapping[str, Any]) -> str:
    op = body.get("op", "==")
    shown = "" if op in ("==", "in") else f"{op} "
    return f"{_text_value(body.get('left'))} {shown}{_text_value(body.get('right'))}"


def _text_nat(name: str, body: Mapping[str, Any]) -> str:
    target = _text_value(body.get("addr")) if body.get("addr") is not None else ""
    if body.get("port") is not None:
        target += f":{body['port']}"
    return f"{name} to {target}"


_STATEMENT_TEXT: dict[str, Callable[[str, Any], str]] = {
    "match": lambda _n, b: _text_match(b),
    "jump": lambda n, b: f"{n} {b.get('target')}",
    "goto": lambda n, b: f"{n} {b.get('target')}",
    "vmap": lambda _n, b: f"{_text_value(b.get('key'))} vmap {_text_value(b.get('data'))}",
    "dnat": _text_nat,
    "snat": _text_nat,
    "redirect": lambda _n, b: f"redirect to :{b.get('port')}" if b else "redirect",
    "mangle": lambda _n, b: f"{_text_value(b.get('key'))} set {_text_value(b.get('value'))}",
    "xt": lambda _n, b: f"xt {b.get('type', '')} {b.get('name', '')}".strip(),
}


def rule_text(exprs: Sequence[Any]) -> str:
    """An nft rule in nft's own syntax, close to what `nft list` prints."""
    words = []
    for expr in exprs:
        if not isinstance(expr, dict) or len(expr) != 1:
            continue
        (name, body), = expr.items()
        show = _STATEMENT_TEXT.get(name)
        words.append(show(name, body or {}) if show else name)
    return " ".join(words)
