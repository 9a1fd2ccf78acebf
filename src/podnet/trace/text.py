"""`podnet trace` for people (numbered hops, each with the command that shows it) and scripts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from podnet.trace.model import Hop, Path, TraceReport

__all__ = ["report_json", "report_text"]

_MARK = {"ok": " ", "warn": "!", "broken": "X"}


def _hop_lines(n: int, hop: Hop, *, commands: bool, width: int) -> list[str]:
    owner = hop.owner if len(hop.owner) <= width else hop.owner[: width - 3] + "..."
    head = f"{_MARK[hop.status]}{n:>3}  {owner:<{width}}  {hop.step:<9} {hop.text}"
    pad = " " * (5 + width + 2 + 10)
    lines = [head]
    if hop.status != "ok" and hop.reason:
        lines.append(f"{pad}{hop.status}: {hop.reason}")
    lines += [f"{pad}{note}" for note in hop.notes]
    if commands:
        lines += [f"{pad}$ {c}" for c in hop.commands]
    return lines


def _path_lines(path: Path, *, commands: bool) -> list[str]:
    width = min(32, max((len(h.owner) for h in path.hops), default=8))
    out: list[str] = []
    for n, hop in enumerate(path.hops, 1):
        out += _hop_lines(n, hop, commands=commands, width=width)
    return out


def report_text(report: TraceReport, *, commands: bool = True) -> str:
    p = report.forward.packet
    lines = [f"trace from {report.source} to {report.destination}", ""]
    lines += _path_lines(report.forward, commands=commands)
    if report.reverse is not None:
        first = report.reverse.hops[0].owner if report.reverse.hops else "?"
        lines += ["", f"the way back, from {first}:"]
        lines += _path_lines(report.reverse, commands=commands)
    lines.append("")
    if report.probe is not None:
        pr = report.probe
        lines.append(f"probe: {pr.proto} from {pr.local or p.src} to {report.destination}: "
                     f"{pr.outcome} ({pr.detail}, {pr.elapsed_ms:.1f} ms)")
    lines.append(f"{report.verdict}: {report.summary}")
    return "\n".join(lines)


def _path_json(path: Path) -> dict[str, Any]:
    return {
        "outcome": path.outcome,
        "end": path.end,
        "broken": path.broken,
        "packet": asdict(path.packet),
        "hops": [asdict(h) for h in path.hops],
    }


def report_json(report: TraceReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "destination": report.destination,
        "verdict": report.verdict,
        "summary": report.summary,
        "probe": asdict(report.probe) if report.probe else None,
        "forward": _path_json(report.forward),
        "reverse": _path_json(report.reverse) if report.reverse else None,
    }
