"""`podnet trace` for people (numbered hops, each with the command that shows it) and scripts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from podnet.trace.model import Hop, Path, TraceReport

__all__ = ["mtu_line", "report_json", "report_text", "wire_line"]

_MARK = {"ok": " ", "warn": "!", "broken": "X"}


def _hop_lines(n: int, hop: Hop, *, commands: bool, width: int, wire: bool) -> list[str]:
    owner = hop.owner if len(hop.owner) <= width else hop.owner[: width - 3] + "..."
    mtu = f"  (mtu {hop.mtu})" if hop.mtu else ""
    head = f"{_MARK[hop.status]}{n:>3}  {owner:<{width}}  {hop.step:<9} {hop.text}{mtu}"
    pad = " " * (5 + width + 2 + 10)
    lines = [head]
    if hop.status != "ok" and hop.reason:
        lines.append(f"{pad}{hop.status}: {hop.reason}")
    lines += [f"{pad}{note}" for note in hop.notes]
    if wire and hop.wire:
        lines.append(f"{pad}wire: {hop.wire}")
    if commands:
        lines += [f"{pad}$ {c}" for c in hop.commands]
    return lines


def _path_lines(path: Path, *, commands: bool) -> list[str]:
    width = min(32, max((len(h.owner) for h in path.hops), default=8))
    out: list[str] = []
    shown: set[tuple[str, str | None]] = set()  # a capture is shown at its first hop only
    for n, hop in enumerate(path.hops, 1):
        key = (hop.netns, hop.dev)
        out += _hop_lines(n, hop, commands=commands, width=width, wire=key not in shown)
        if hop.wire:
            shown.add(key)
    return out


def wire_line(path: Path) -> str | None:
    """Where the captures last saw the probe: "captures: seen at hops 1-8, not from hop 9"."""
    looked = [(n, h) for n, h in enumerate(path.hops, 1) if h.seen is not None]
    if not looked:
        return None
    seen = [n for n, h in looked if h.seen]
    missed = [n for n, h in looked if not h.seen]
    if not missed:
        return f"captures: the probe was seen on every interface captured ({len(looked)} hops)"
    if not seen:
        return "captures: the probe was seen nowhere: it did not leave its source"
    last = max(seen)
    after = [n for n in missed if n > last]
    where = path.hops[last - 1]
    text = f"captures: last seen at hop {last} ({where.owner}, {where.dev})"
    if after:
        text += f"; not seen from hop {after[0]} ({path.hops[after[0] - 1].owner}) on"
    return text


def mtu_line(path: Path) -> str | None:
    """The MTU of each link the packet leaves by, in order, with the tunnels' overhead: "mtu
    along the path: eth0 1450 > veth1 1450 > flannel.1 1450 (+50 VXLAN) > eth0 1500"."""
    links: dict[tuple[str, str], str] = {}
    for hop in path.hops:
        if not hop.dev or not hop.mtu:
            continue
        key = (hop.netns, hop.dev)
        links.setdefault(key, f"{hop.dev} {hop.mtu}")
        links[key] += next((f" (+{n.split()[2]} VXLAN)" for n in hop.notes
                            if n.startswith("VXLAN adds ")), "")
    if not links:
        return None
    text = "mtu along the path: " + " > ".join(links.values())
    if path.size and path.too_big is not None:
        text += (f"; a {path.size}-byte packet does not pass hop {path.too_big + 1} "
                 f"({path.hops[path.too_big].owner})")
    elif path.size:
        text += f"; {path.size}-byte packets fit every link"
    return text


def report_text(report: TraceReport, *, commands: bool = True) -> str:
    p = report.forward.packet
    lines = [f"trace from {report.source} to {report.destination}", ""]
    if report.lookup:
        lines += ["lookup (the source's resolv.conf, its nameserver):",
                  *(f"  {line}" for line in report.lookup), ""]
    lines += _path_lines(report.forward, commands=commands)
    mtu = mtu_line(report.forward)
    if mtu:
        lines += ["", mtu]
    wire = wire_line(report.forward)
    if wire:
        lines.append(wire)
    if report.reverse is not None:
        first = report.reverse.hops[0].owner if report.reverse.hops else "?"
        lines += ["", f"the way back, from {first}:"]
        lines += _path_lines(report.reverse, commands=commands)
    lines.append("")
    if report.probe is not None:
        pr = report.probe
        lines.append(f"probe: {pr.proto} from {pr.local or p.src} to {report.destination}: "
                     f"{pr.outcome} ({pr.detail}, {pr.elapsed_ms:.1f} ms)")
        if pr.full is not None:
            lines.append(f"full-size: {'ok' if pr.full.ok else 'FAILED'}: {pr.full.detail} "
                         f"({pr.full.elapsed_ms:.1f} ms)")
    lines.append(f"{report.verdict}: {report.summary}")
    return "\n".join(lines)


def _path_json(path: Path) -> dict[str, Any]:
    return {
        "outcome": path.outcome,
        "end": path.end,
        "broken": path.broken,
        "size": path.size,
        "too_big": path.too_big,
        "packet": asdict(path.packet),
        "hops": [asdict(h) for h in path.hops],
    }


def report_json(report: TraceReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "destination": report.destination,
        "verdict": report.verdict,
        "summary": report.summary,
        "lookup": list(report.lookup),
        "probe": asdict(report.probe) if report.probe else None,
        "forward": _path_json(report.forward),
        "reverse": _path_json(report.reverse) if report.reverse else None,
    }
