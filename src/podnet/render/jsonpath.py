"""The part of kubectl's JSONPath people type: `{.a.b}`, `{.items[0].x}`, `{.items[*].x}`."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["jsonpath"]

_TOKEN = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\*|\d+)\]")


def jsonpath(template: str, document: Any) -> str:
    """Fill each `{...}` of `template` from `document`; lists print space-separated."""

    def fill(match: re.Match[str]) -> str:
        values = [document]
        for name, index in _TOKEN.findall(match.group(1)):
            nxt: list[Any] = []
            for v in values:
                if name:
                    if isinstance(v, dict) and name in v:
                        nxt.append(v[name])
                elif isinstance(v, list):
                    nxt.extend(v if index == "*" else v[int(index) : int(index) + 1])
            values = nxt
        return " ".join(v if isinstance(v, str) else json.dumps(v) for v in values)

    return re.sub(r"\{([^}]*)\}", fill, template)
