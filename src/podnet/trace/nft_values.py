"""The nftables expression evaluator: what an expression (a payload field, meta, ct, fib, a
concatenation, a bitwise operation) is worth for one packet, and whether a match holds (values,
prefixes, ranges, anonymous and named sets). `nft` walks the chains and rules around it."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.trace.nft_inet import MISMATCH, UNHANDLED, inet_meta, inet_payload
from podnet.trace.nft_types import HookContext, Nat, Packet, Ruleset

__all__ = [
    "BITWISE",
    "NOMATCH",
    "NoMatch",
    "RuleWalk",
    "Unknown",
    "elements_of",
    "is_in",
    "matches",
    "value_of",
]

_PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132, "icmpv6": 58}
_PROTO_NAMES = {v: k for k, v in _PROTO_NUMBERS.items()}
_PROTO_ALIASES = {"ipv6-icmp": "icmpv6"}  # nft prints protocol 58 under its IANA name
# The ICMP message a traced packet is: the tracer sends echoes, and walks their replies back.
_ECHO = {"new": "echo-request", "established": "echo-reply"}


class Unknown:
    """A value podnet cannot compute (a mark, the time, an iptables match)."""

    def __init__(self, what: str) -> None:
        self.what = what


class NoMatch:
    """`tcp dport` asked of a UDP packet: the kernel's implicit protocol check fails."""


NOMATCH = NoMatch()


@dataclass
class RuleWalk:
    """One hook's evaluation so far: the packet as NAT left it, NATs, notes, the mark."""

    objects: Ruleset
    ctx: HookContext
    packet: Packet
    nat: list[Nat] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pick: int = 0  # which branch of a numgen map to follow
    prefer: str | None = None  # ...unless one branch DNATs to this address: then that one
    mark: int = 0
    memo: dict[Any, Any] = field(default_factory=dict)  # decisions taken once per hook (nft_xt)
    spread: list[tuple[str | None, int | None]] = field(default_factory=list)  # other backends


BITWISE: dict[str, Callable[[int, int], int]] = {
    "&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b,
}


# --- values and matches ------------------------------------------------------------------------


def _payload(walk: RuleWalk, body: Mapping[str, Any]) -> Any:
    p = walk.packet
    proto, fld = str(body.get("protocol")), str(body.get("field"))
    family = inet_payload(p, proto, fld)  # ip, ip6, icmpv6: by the packet's family
    if family is not UNHANDLED:
        return NOMATCH if family is MISMATCH else family
    if proto in ("tcp", "udp", "th", "sctp"):
        # `tcp dport` carries an implicit `meta l4proto tcp`; `th` is any transport header.
        if proto not in ("th", p.proto) or p.proto not in ("tcp", "udp", "sctp"):
            return NOMATCH
        return {"dport": p.dport, "sport": p.sport}.get(fld, Unknown(f"{proto} {fld}"))
    if proto in ("icmp", "icmpv6"):
        if p.proto != proto:
            return NOMATCH
        if fld == "type":
            return _ECHO.get(walk.ctx.ct_state, "echo-request")
    return Unknown(f"{proto} {fld}")


def _meta(walk: RuleWalk, body: Mapping[str, Any]) -> Any:
    p, ctx = walk.packet, walk.ctx
    key = str(body.get("key"))
    known = {
        "l4proto": p.proto, "protocol": "ip", "nfproto": "ipv4", "mark": walk.mark,
        "iifname": ctx.iif, "oifname": ctx.oif, "iif": ctx.iif, "oif": ctx.oif,
        **inet_meta(p),
    }
    value = known.get(key)
    return Unknown(f"meta {key}") if value is None else value


def _ct(walk: RuleWalk, body: Mapping[str, Any]) -> Any:
    key = str(body.get("key"))
    known = {"state": walk.ctx.ct_state, "direction": "original"}
    return known.get(key, Unknown(f"ct {key}"))


def _fib(walk: RuleWalk, body: Mapping[str, Any]) -> Any:
    flags = body.get("flags") or []
    if body.get("result") == "type" and "daddr" in flags:
        return "local" if walk.packet.dst in walk.ctx.local_addresses else "unicast"
    return Unknown("fib " + " ".join(flags))


def _concat(walk: RuleWalk, body: Any) -> Any:
    parts = [value_of(walk, e) for e in body]
    for part in parts:
        if isinstance(part, Unknown) or part is NOMATCH:
            return part
    return tuple(parts)


_VALUES: dict[str, Callable[[RuleWalk, Any], Any]] = {
    "payload": _payload, "meta": _meta, "ct": _ct, "fib": _fib, "concat": _concat,
}


def value_of(walk: RuleWalk, expr: Any) -> Any:
    """What an expression evaluates to for this packet: a value, NOMATCH or Unknown."""
    if not isinstance(expr, dict):
        return expr
    for name, body in expr.items():
        if name in _VALUES:
            return _VALUES[name](walk, body)
        if name in BITWISE and isinstance(body, list) and len(body) == 2:
            a, b = (value_of(walk, e) for e in body)
            if isinstance(a, int) and isinstance(b, int):
                return BITWISE[name](a, b)
            return Unknown(f"{name} on {a!r}")
    return Unknown(next(iter(expr), "?"))


def elements_of(walk: RuleWalk, data: Any, table: tuple[str, str]) -> list[Any] | Unknown:
    if isinstance(data, str) and data.startswith("@"):
        found = walk.objects.sets.get((table[0], table[1], data[1:]))
        return Unknown(data) if found is None else found
    if isinstance(data, dict) and "set" in data:
        items = data["set"]
        return list(items) if isinstance(items, list) else [items]
    if isinstance(data, list):
        return data
    return [data]


def matches(walk: RuleWalk, body: Mapping[str, Any], table: tuple[str, str]) -> bool | Unknown:
    left = value_of(walk, body.get("left"))
    if isinstance(left, Unknown):
        return left
    if left is NOMATCH:
        return False
    op = body.get("op", "==")
    right = body.get("right")
    if op in _ORDER:
        try:
            return _ORDER[op](int(left), int(right))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return Unknown(f"{op} on {left!r}")
    hit = is_in(left, right, walk, table)
    if isinstance(hit, Unknown):
        return hit
    return not hit if op == "!=" else hit


_ORDER: dict[str, Callable[[int, int], bool]] = {
    "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}


def _any_in(value: Any, items: Any, walk: RuleWalk, table: tuple[str, str]) -> bool:
    items = items if isinstance(items, list) else [items]
    return any(is_in(value, e[0] if isinstance(e, list) else e, walk, table) is True
               for e in items)


def _in_prefix(value: Any, body: Mapping[str, Any]) -> bool:
    try:
        net = ipaddress.ip_network(f"{body['addr']}/{body['len']}", strict=False)
        return ipaddress.ip_address(str(value)) in net
    except (KeyError, ValueError):
        return False


def _in_concat(value: Any, parts: list[Any], walk: RuleWalk, table: tuple[str, str]) -> bool:
    if not isinstance(value, tuple) or len(value) != len(parts):
        return False
    return all(is_in(v, r, walk, table) is True for v, r in zip(value, parts, strict=True))


def is_in(value: Any, right: Any, walk: RuleWalk, table: tuple[str, str]) -> bool | Unknown:
    """Whether `value` is, or is in, `right` (a value, prefix, range, set or @named set)."""
    if isinstance(right, str) and right.startswith("@"):
        elements = elements_of(walk, right, table)
        return elements if isinstance(elements, Unknown) else _any_in(value, elements, walk,
                                                                       table)
    if isinstance(right, list):
        return _any_in(value, right, walk, table)
    if not isinstance(right, dict):
        return _equal(value, right)
    kind, body = next(iter(right.items()), ("?", None))
    tests: dict[str, Callable[[], bool | Unknown]] = {
        "set": lambda: _any_in(value, body, walk, table),
        "elem": lambda: is_in(value, (body or {}).get("val"), walk, table),
        "prefix": lambda: _in_prefix(value, body or {}),
        "range": lambda: _between(value, *(body or [None, None])[:2]),
        "concat": lambda: _in_concat(value, body or [], walk, table),
    }
    test = tests.get(kind)
    return test() if test else Unknown(f"a {kind} expression")


def _between(value: Any, low: Any, high: Any) -> bool:
    try:
        if isinstance(value, int):
            return int(low) <= value <= int(high)
        v = int(ipaddress.ip_address(str(value)))
        return int(ipaddress.ip_address(str(low))) <= v <= int(ipaddress.ip_address(str(high)))
    except (TypeError, ValueError):
        return False


def _equal(value: Any, right: Any) -> bool:
    if isinstance(right, str):
        right = _PROTO_ALIASES.get(right, right)
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
