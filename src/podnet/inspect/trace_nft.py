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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "HookContext",
    "HookResult",
    "Nat",
    "Packet",
    "RuleRef",
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


class _Unknown:
    """A value podnet cannot compute (a mark, the time, an iptables match)."""

    def __init__(self, what: str) -> None:
        self.what = what


class _NoMatch:
    """`tcp dport` asked of a UDP packet: the kernel's implicit protocol check fails."""


_NOMATCH = _NoMatch()


@dataclass
class _Walk:
    objects: _Ruleset
    ctx: HookContext
    packet: Packet
    nat: list[Nat] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pick: int = 0  # which branch of a numgen map to follow


@dataclass(frozen=True)
class _Outcome:
    kind: Literal["accept", "drop", "reject", "return", "next"]
    rule: RuleRef | None = None


class _Ruleset:
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
    objects: Iterable[Mapping[str, Any]], ctx: HookContext, packet: Packet, *, pick: int = 0
) -> HookResult:
    """The fate of `packet` (the first of its connection) at hook `ctx.hook`."""
    rules = _Ruleset(objects)
    walk = _Walk(rules, ctx, packet, pick=pick)
    seen: list[str] = []
    for key in rules.base_chains(ctx.hook):
        family, table, chain = key
        if ctx.ct_state != "new" and rules.chains[key].get("type") == "nat":
            continue  # conntrack applies the connection's NAT to later packets by itself
        seen.append(f"{family} {table} {chain}")
        outcome = _run_chain(walk, key, 0)
        if outcome.kind in ("drop", "reject"):
            return HookResult(outcome.kind, walk.packet, outcome.rule, tuple(walk.nat),
                              tuple(seen), tuple(walk.notes))
        if outcome.kind in ("return", "next"):  # fell off the end: the chain's policy decides
            policy = rules.chains[key].get("policy", "accept")
            if policy == "drop":
                ref = RuleRef(family, table, chain, None, "policy drop")
                return HookResult("drop", walk.packet, ref, tuple(walk.nat), tuple(seen),
                                  tuple(walk.notes))
    return HookResult("accept", walk.packet, None, tuple(walk.nat), tuple(seen),
                      tuple(walk.notes))


def _run_chain(walk: _Walk, key: tuple[str, str, str], depth: int) -> _Outcome:
    if depth > _MAX_DEPTH:
        walk.notes.append(f"chain {key[2]}: jumps nest deeper than {_MAX_DEPTH}; stopped there")
        return _Outcome("next")
    for rule in walk.objects.rules.get(key, []):
        outcome = _run_rule(walk, key, rule, depth)
        if outcome.kind != "next":
            return outcome
    return _Outcome("next")


def _ref(key: tuple[str, str, str], rule: Mapping[str, Any]) -> RuleRef:
    return RuleRef(key[0], key[1], key[2], rule.get("handle"), rule_text(rule.get("expr") or []))


def _run_rule(
    walk: _Walk, key: tuple[str, str, str], rule: Mapping[str, Any], depth: int
) -> _Outcome:
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
                return _Outcome("next")
            if not hit:
                return _Outcome("next")
            continue
        if name in ("accept", "drop", "reject"):
            return _Outcome(name, ref)  # type: ignore[arg-type]
        if name == "return":
            return _Outcome("return", ref)
        if name in ("jump", "goto"):
            return _branch(walk, key, name, body.get("target", ""), ref, depth)
        if name == "vmap":
            return _vmap(walk, key, body, ref, depth)
        if name in ("dnat", "snat", "masquerade", "redirect"):
            _nat(walk, key, name, body or {}, ref)
            return _Outcome("accept", ref)  # NAT statements end the chain, as an accept
        if name == "xt":
            walk.notes.append(f"{ref.where()} handle {ref.handle}: an iptables-nft match "
                              "(xt) that podnet cannot evaluate; assumed not to match")
            return _Outcome("next")
        # counter, log, limit, meta set, ct set, mangle, notrack...: no effect on the path.
    return _Outcome("next")


def _branch(
    walk: _Walk, key: tuple[str, str, str], how: str, target: str, ref: RuleRef, depth: int
) -> _Outcome:
    child = (key[0], key[1], target)
    if child not in walk.objects.chains:
        walk.notes.append(f"{ref.where()}: {how} to missing chain {target}")
        return _Outcome("next")
    outcome = _run_chain(walk, child, depth + 1)
    if outcome.kind in ("accept", "drop", "reject"):
        return outcome
    # Returning from a jump goes on with the next rule; from a goto, back to our own caller.
    return _Outcome("return" if how == "goto" else "next")


def _verdict_of(walk: _Walk, key: tuple[str, str, str], verdict: Any, ref: RuleRef,
                depth: int) -> _Outcome:
    if not isinstance(verdict, dict) or len(verdict) != 1:
        return _Outcome("next")
    (name, body), = verdict.items()
    if name in ("accept", "drop", "reject"):
        return _Outcome(name, ref)  # type: ignore[arg-type]
    if name == "return":
        return _Outcome("return", ref)
    if name in ("jump", "goto"):
        return _branch(walk, key, name, (body or {}).get("target", ""), ref, depth)
    return _Outcome("next")


def _vmap(
    walk: _Walk, key: tuple[str, str, str], body: Mapping[str, Any], ref: RuleRef, depth: int
) -> _Outcome:
    elements = _elements(walk, body.get("data"), key[:2])
    if isinstance(elements, _Unknown):
        walk.notes.append(f"{ref.where()}: verdict map {elements.what} not found")
        return _Outcome("next")
    pairs = [e for e in elements if isinstance(e, list) and len(e) == 2]
    keyexpr = body.get("key")
    if isinstance(keyexpr, dict) and "numgen" in keyexpr:
        return _spread(walk, key, pairs, ref, depth)
    value = _value(walk, keyexpr)
    if isinstance(value, _Unknown):
        walk.notes.append(f"{ref.where()} handle {ref.handle}: `{ref.text}` not evaluated "
                          f"({value.what})")
        return _Outcome("next")
    if value is _NOMATCH:
        return _Outcome("next")
    for element, verdict in pairs:
        if _in(value, element, walk, key[:2]) is True:
            return _verdict_of(walk, key, verdict, ref, depth)
    return _Outcome("next")


def _spread(walk: _Walk, key: tuple[str, str, str], pairs: list[list[Any]], ref: RuleRef,
            depth: int) -> _Outcome:
    """`numgen random mod N vmap {...}`: follow one branch; the others' DNAT targets become
    alternatives of the NAT the followed branch applies."""
    if not pairs:
        return _Outcome("next")
    chosen = pairs[walk.pick % len(pairs)]
    others: list[tuple[str | None, int | None]] = []
    for pair in pairs:
        if pair is chosen:
            continue
        trial = _Walk(walk.objects, walk.ctx, walk.packet, pick=walk.pick)
        _verdict_of(trial, key, pair[1], ref, depth)
        others += [(n.addr, n.port) for n in trial.nat if n.kind == "dnat"]
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
    walk.nat.append(Nat(kind, address, number, ref, tuple(alternatives)))
    p = walk.packet
    if kind == "dnat" and address:
        walk.packet = replace(p, dst=address, dport=number if number is not None else p.dport)
    elif kind == "redirect":
        walk.packet = replace(p, dport=number if number is not None else p.dport)
    elif kind == "snat" and address:
        walk.packet = replace(p, src=address, sport=number if number is not None else p.sport)
    # masquerade: the address is the outgoing interface's, which the tracer knows, not us.


# --- values and matches ------------------------------------------------------------------------


def _value(walk: _Walk, expr: Any) -> Any:
    p, ctx = walk.packet, walk.ctx
    if not isinstance(expr, dict):
        return expr
    if "payload" in expr:
        proto = expr["payload"].get("protocol")
        fld = expr["payload"].get("field")
        if proto == "ip":
            values = {"saddr": p.src, "daddr": p.dst, "protocol": p.proto}
            return values.get(fld, _Unknown(f"ip {fld}"))
        if proto in ("tcp", "udp", "th", "sctp"):
            if proto != "th" and proto != p.proto:
                return _NOMATCH
            if p.proto not in ("tcp", "udp", "sctp"):
                return _NOMATCH
            return {"dport": p.dport, "sport": p.sport}.get(fld, _Unknown(f"{proto} {fld}"))
        if proto == "icmp":
            return _NOMATCH if p.proto != "icmp" else _Unknown(f"icmp {fld}")
        return _Unknown(f"{proto} {fld}")
    if "meta" in expr:
        mkey = expr["meta"].get("key")
        meta = {
            "l4proto": p.proto, "protocol": "ip", "nfproto": "ipv4",
            "iifname": ctx.iif, "oifname": ctx.oif, "iif": ctx.iif, "oif": ctx.oif,
        }
        if mkey in meta and meta[mkey] is not None:
            return meta[mkey]
        return _Unknown(f"meta {mkey}")
    if "ct" in expr:
        ckey = expr["ct"].get("key")
        if ckey == "state":
            return ctx.ct_state
        if ckey == "direction":
            return "original"
        return _Unknown(f"ct {ckey}")
    if "fib" in expr:
        fib = expr["fib"]
        if fib.get("result") == "type" and "daddr" in (fib.get("flags") or []):
            return "local" if p.dst in ctx.local_addresses else "unicast"
        return _Unknown("fib " + " ".join(fib.get("flags") or []))
    if "concat" in expr:
        parts = [_value(walk, e) for e in expr["concat"]]
        for part in parts:
            if isinstance(part, _Unknown) or part is _NOMATCH:
                return part
        return tuple(parts)
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
    if op in ("<", ">", "<=", ">="):
        try:
            a, b = int(left), int(right)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return _Unknown(f"{op} on {left!r}")
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
    hit = _in(left, right, walk, table)
    if isinstance(hit, _Unknown):
        return hit
    return not hit if op == "!=" else hit


def _in(value: Any, right: Any, walk: _Walk, table: tuple[str, str]) -> bool | _Unknown:
    """Whether `value` is, or is in, `right` (a value, prefix, range, set or @named set)."""
    if isinstance(right, str) and right.startswith("@"):
        elements = _elements(walk, right, table)
        if isinstance(elements, _Unknown):
            return elements
        return any(_in(value, e[0] if isinstance(e, list) else e, walk, table) is True
                   for e in elements)
    if isinstance(right, list):
        return any(_in(value, e, walk, table) is True for e in right)
    if isinstance(right, dict):
        if "set" in right:
            items = right["set"]
            items = items if isinstance(items, list) else [items]
            return any(_in(value, e[0] if isinstance(e, list) else e, walk, table) is True
                       for e in items)
        if "elem" in right:
            return _in(value, right["elem"].get("val"), walk, table)
        if "prefix" in right:
            try:
                net = ipaddress.ip_network(
                    f"{right['prefix']['addr']}/{right['prefix']['len']}", strict=False)
                return ipaddress.ip_address(str(value)) in net
            except ValueError:
                return False
        if "range" in right:
            low, high = right["range"]
            return _between(value, low, high)
        if "concat" in right:
            parts = right["concat"]
            if not isinstance(value, tuple) or len(value) != len(parts):
                return False
            return all(_in(v, r, walk, table) is True for v, r in zip(value, parts, strict=True))
        return _Unknown(f"a {next(iter(right), '?')} expression")
    return _equal(value, right)


def _between(value: Any, low: Any, high: Any) -> bool:
    try:
        if isinstance(value, int):
            return int(low) <= value <= int(high)
        v = ipaddress.ip_address(str(value))
        return ipaddress.ip_address(str(low)) <= v <= ipaddress.ip_address(str(high))  # type: ignore[operator]
    except (TypeError, ValueError):
        return False


def _equal(value: Any, right: Any) -> bool:
    if isinstance(value, str) and isinstance(right, str):
        if right.endswith("*"):  # interface name wildcard: iifname "veth*"
            return value.startswith(right[:-1])
        if value in _PROTO_NUMBERS or right in _PROTO_NUMBERS:
            return value == right
        try:
            return ipaddress.ip_address(value) == ipaddress.ip_address(right)
        except ValueError:
            return value == right
    if isinstance(value, str) and isinstance(right, int):  # l4proto tcp vs 6
        return _PROTO_NUMBERS.get(value) == right
    if isinstance(value, int) and isinstance(right, str):
        return _PROTO_NAMES.get(value) == right
    return bool(value == right)


# --- rules as people write them ----------------------------------------------------------------


def _text_value(v: Any) -> str:
    if isinstance(v, dict):
        if "prefix" in v:
            return f"{v['prefix'].get('addr')}/{v['prefix'].get('len')}"
        if "range" in v:
            return "-".join(_text_value(x) for x in v["range"])
        if "set" in v:
            items = v["set"] if isinstance(v["set"], list) else [v["set"]]
            return "{ " + ", ".join(_text_value(x) for x in items) + " }"
        if "concat" in v:
            return " . ".join(_text_value(x) for x in v["concat"])
        if "payload" in v:
            return f"{v['payload'].get('protocol')} {v['payload'].get('field')}"
        if "meta" in v:
            key = v["meta"].get("key")
            return key if key in ("iifname", "oifname", "iif", "oif") else f"meta {key}"
        if "ct" in v:
            return f"ct {v['ct'].get('key')}"
        if "fib" in v:
            return f"fib {' . '.join(v['fib'].get('flags') or [])} {v['fib'].get('result')}"
        if "numgen" in v:
            n = v["numgen"]
            return f"numgen {n.get('mode')} mod {n.get('mod')}"
        if "elem" in v:
            return _text_value(v["elem"].get("val"))
        if "map" in v:
            return f"{_text_value(v['map'].get('key'))} map {_text_value(v['map'].get('data'))}"
        if len(v) == 1:
            (name, body), = v.items()
            if isinstance(body, dict) and "target" in body:
                return f"{name} {body['target']}"
            if body is None:
                return name
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, list):
        if len(v) == 2 and not isinstance(v[0], list):
            return f"{_text_value(v[0])} : {_text_value(v[1])}"
        return ", ".join(_text_value(x) for x in v)
    if isinstance(v, str) and " " in v:
        return f'"{v}"'
    return str(v)


def rule_text(exprs: Sequence[Any]) -> str:
    """An nft rule in nft's own syntax, close to what `nft list` prints."""
    words = []
    for expr in exprs:
        if not isinstance(expr, dict) or len(expr) != 1:
            continue
        (name, body), = expr.items()
        if name == "match":
            op = body.get("op", "==")
            shown = "" if op in ("==", "in") else f"{op} "
            words.append(f"{_text_value(body.get('left'))} {shown}{_text_value(body.get('right'))}")
        elif name in ("accept", "drop", "return", "masquerade") and not body:
            words.append(name)
        elif name == "reject":
            words.append("reject")
        elif name in ("jump", "goto"):
            words.append(f"{name} {body.get('target')}")
        elif name == "vmap":
            words.append(f"{_text_value(body.get('key'))} vmap {_text_value(body.get('data'))}")
        elif name in ("dnat", "snat"):
            target = _text_value(body.get("addr")) if body.get("addr") is not None else ""
            if body.get("port") is not None:
                target += f":{body['port']}"
            words.append(f"{name} to {target}")
        elif name == "masquerade":
            words.append("masquerade")
        elif name == "redirect":
            words.append(f"redirect to :{body.get('port')}" if body else "redirect")
        elif name == "counter":
            words.append("counter")
        elif name == "xt":
            words.append(f"xt {body.get('type', '')} {body.get('name', '')}".strip())
        else:
            words.append(name)
    return " ".join(words)
