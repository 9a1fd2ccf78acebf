"""`podnet trace --capture`: a capture on each hop's interface while the probe runs, and what
each one saw of it. The walk says where the packet should go; the captures say where it went:
the proof behind "broken at hop N", and the addresses it had at each hop (after DNAT, after a
masquerade, inside a VXLAN packet).

The walk before the probe names the interfaces (the probe's own walk comes after it, when the
kernel's tables have settled); a tcpdump listens on each, in its namespace, for the probe's
packets only: its TCP port (the probe binds it before connecting), its ICMP echoes, and VXLAN
packets that may carry them. Captures hand packets over at once (immediate mode), so they stop
as soon as the probe is done.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO

from podnet.capture.decode import VXLAN_PORTS, Seen, read_pcap
from podnet.capture.tcpdump import Capture, CaptureSpec, start_all
from podnet.inspect.model import Host
from podnet.trace.model import Path

__all__ = ["Point", "Wire", "expression", "mark", "points_of"]

_SETTLE = 0.05  # seconds for the probe's last packets (its FIN, their ACKs) to be captured


@dataclass(frozen=True)
class Point:
    netns: str  # the namespace's label
    dev: str


def points_of(path: Path) -> list[Point]:
    """Each interface the walk says the packet leaves by (or arrives on, at the end), once."""
    return list(dict.fromkeys(Point(h.netns, h.dev) for h in path.hops if h.dev))


def expression(sport: int | None, proto: str = "icmp") -> list[str]:
    """A pcap filter for the probe's packets: its TCP port (else its echoes, `proto` icmp or
    icmpv6), and VXLAN."""
    mine = f"tcp port {sport}" if sport is not None else ("icmp6" if proto == "icmpv6" else "icmp")
    vxlan = " or ".join(f"udp port {p}" for p in VXLAN_PORTS)
    return [f"({mine}) or ({vxlan})"]


class Wire:
    """One capture per point, started together; `seen` once they are stopped."""

    def __init__(self, host: Host, points: Sequence[Point], filter_: Sequence[str]) -> None:
        from podnet.trace.world import namespace_path

        by_label = {ns.label: ns for ns in host.namespaces}
        self.files: dict[Point, IO[bytes]] = {}
        self.captures: dict[Point, Capture] = {}
        for point in points:
            ns = by_label.get(point.netns)
            if ns is None:
                continue
            fh = tempfile.TemporaryFile(prefix="podnet-trace-")  # noqa: SIM115  # closed in stop
            self.files[point] = fh
            spec = CaptureSpec(point.dev, tuple(filter_), immediate=True)
            self.captures[point] = Capture(namespace_path(ns), spec, output=fh)

    def start(self) -> Wire:
        try:
            start_all(list(self.captures.values()))
        except BaseException:
            self.close()
            raise
        return self

    def stop(self) -> dict[Point, list[Seen]]:
        """Stop every capture and read what each saw."""
        seen: dict[Point, list[Seen]] = {}
        time.sleep(_SETTLE)
        for capture in self.captures.values():
            capture.stop()
        for point, fh in self.files.items():
            fh.seek(0)
            seen[point] = [packet for _ts, packet in read_pcap(fh)]
        self.close()
        return seen

    def close(self) -> None:
        for capture in self.captures.values():
            capture.stop()
        for fh in self.files.values():
            fh.close()
        self.files = {}


def _is_probe(sport: int | None, ident: int) -> Callable[[Seen], bool]:
    """Whether a packet is the probe's, on its way there (not a reply)."""
    if sport is not None:
        return lambda s: s.proto == "tcp" and s.sport == sport
    return lambda s: s.flags == "echo request" and s.icmp_id == ident


def _is_reply(sport: int | None, ident: int) -> Callable[[Seen], bool]:
    if sport is not None:
        return lambda s: s.proto == "tcp" and s.dport == sport
    return lambda s: s.flags in ("echo reply", "unreachable", "packet too big") and (
        s.icmp_id in (ident, None))


def mark(path: Path, seen: Mapping[Point, list[Seen]], sport: int | None, ident: int) -> Path:
    """`path` with each hop's capture: whether the probe was seen there, and how it looked."""
    going, coming = _is_probe(sport, ident), _is_reply(sport, ident)
    hops = []
    for hop in path.hops:
        if not hop.dev:
            hops.append(hop)
            continue
        packets = seen.get(Point(hop.netns, hop.dev))
        if packets is None:
            hops.append(replace(hop, wire=f"no capture on {hop.dev}: the walk before the probe "
                                          "went another way"))
            continue
        out = [p for p in packets if going(p)]
        back = sum(1 for p in packets if coming(p))
        if not out:
            hops.append(replace(hop, seen=False, wire=f"NOT seen on {hop.dev}"
                                + (f" (though {back} replies were)" if back else "")))
            continue
        largest = max(p.size for p in out)
        words = (f"seen on {hop.dev}: {out[0].words()}; {len(out)} packets, the largest "
                 f"{largest} bytes" + (f"; {back} replies" if back else ""))
        hops.append(replace(hop, seen=True, wire=words))
    return replace(path, hops=tuple(hops))
