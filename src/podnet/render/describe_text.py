"""`podnet describe` for people: an ordered mapping of sections, printed as kubectl describe
prints (keys aligned per level, lists continued under their first item, mappings indented)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_describe"]

_INDENT = "  "


def _lines(doc: Mapping[str, Any], depth: int) -> list[str]:
    pad = _INDENT * depth
    width = max((len(k) + 1 for k, v in doc.items() if not isinstance(v, Mapping)), default=0)
    out: list[str] = []
    for key, value in doc.items():
        head = f"{pad}{key}:"
        if isinstance(value, Mapping):
            out.append(head if value else f"{head.ljust(len(pad) + width)}  <none>")
            out += _lines(value, depth + 1)
            continue
        items = [str(v) for v in value] if _is_list(value) else [str(value)]
        items = [i for i in items if i != ""] or ["<none>"]
        lead = f"{pad}{(key + ':').ljust(width)}  "
        out.append(lead + items[0])
        out += [" " * len(lead) + item for item in items[1:]]
    return out


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def render_describe(doc: Mapping[str, Any]) -> str:
    return "\n".join(_lines(doc, 0))
