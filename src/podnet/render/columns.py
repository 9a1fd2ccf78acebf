"""kubectl-style plain columns: upper-case headers, left-aligned, three spaces apart.

Plain text on purpose: it pipes into grep/awk like kubectl's output, and costs no import.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["columns"]


def columns(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
