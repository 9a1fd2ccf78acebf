"""nftables rules as people write them: `nft list`'s syntax, from `nft -j`'s expressions."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from podnet.trace.nft_values import BITWISE

__all__ = ["rule_text"]


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
    if kind in BITWISE and isinstance(body, list) and len(body) == 2:
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
    """`dnat ip to 10.244.1.2:80`, `dnat ip6 to [fd00::2]:80` (an inet table says the family)."""
    target = _text_value(body.get("addr")) if body.get("addr") is not None else ""
    if body.get("port") is not None:
        target = f"[{target}]" if ":" in target else target
        target += f":{body['port']}"
    family = f" {body['family']}" if body.get("family") else ""
    return f"{name}{family} to {target}"


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
