"""`podnet trace`: discover the host, resolve both ends, probe, walk, and judge.

The probe goes first: a real packet fills the neighbour tables and forwarding databases on its
way, as traffic does, so the walk that follows reads the kernel's settled answers; and the
connection it leaves in conntrack tells which Service backend it was given, so the walk follows
that one. When the probe fails and the walk out finds nothing wrong, the reply's way back is
walked too.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from podnet.inspect.model import Host, Namespace
from podnet.trace.model import Path, ProbeResult, Reads, TraceReport
from podnet.trace.nft import Packet
from podnet.trace.target import (
    Destination,
    check_source_family,
    read_lab,
    resolve_destination,
    resolve_source,
)
from podnet.trace.walk import HostIndex, walk
from podnet.trace.words import icmp_name

if TYPE_CHECKING:
    from podnet.trace.policy import PolicyWords
    from podnet.trace.wire import Wire

__all__ = ["judge", "run_trace", "trace_between"]

Status = Callable[[str], AbstractContextManager[object]]


def run_trace(
    source: str,
    destination: str,
    *,
    namespace: str | None = None,
    port: int | None = None,
    send_probe: bool = True,
    timeout: float = 2.0,
    cluster: str | None = None,
    status: Status | None = None,
    capture: bool = False,
    family: int | None = None,
) -> TraceReport:
    """Trace from the pod, node or namespace `source` to `destination` on this host; with
    `capture`, a capture on each hop's interface shows where the probe really went. `family`
    (4 or 6) picks the address of a dual-stack destination (default: its first)."""
    from podnet.inspect.build import inspect_host
    from podnet.kernel.lookup import Lookup
    from podnet.trace.world import KernelReads

    with (status or (lambda _t: nullcontext()))("reading this host's namespaces"):
        host = inspect_host()
    lab = read_lab(cluster)
    src = resolve_source(host, source, namespace)
    dst = resolve_destination(host, lab, destination, namespace, src, family)
    check_source_family(src, dst)
    with Lookup() as lookup:
        return trace_between(host, KernelReads(lookup), src, dst, port=port,
                             send_probe=send_probe, timeout=timeout, status=status,
                             capture=capture, policy=_policy_words(lab.cluster))


def _policy_words(cluster: str) -> PolicyWords | None:
    """The lab's NetworkPolicies, in words for the trace (None: no lab, or no policies)."""
    from podnet import state as lab_state

    record = lab_state.load(cluster) if cluster else None
    if record is None or not record.layout.policies:
        return None
    from podnet.policy.world import world_from
    from podnet.trace.policy import policy_words

    return policy_words(world_from(record.layout))


def trace_between(
    host: Host,
    reads: Reads,
    src: Namespace,
    dst: Destination,
    *,
    port: int | None = None,
    send_probe: bool = True,
    timeout: float = 2.0,
    status: Status | None = None,
    capture: bool = False,
    policy: PolicyWords | None = None,
) -> TraceReport:
    from podnet.trace.probe import echo_ident, free_port, probe
    from podnet.trace.world import namespace_path

    port = port if port is not None else dst.port
    proto = "tcp" if port is not None else icmp_name(dst.ip)
    result: ProbeResult | None = None
    first = reads.route(src, dst.ip)
    index = HostIndex(host, policy)
    wire: Wire | None = None
    seen = None
    bound = free_port(namespace_path(src), dst.ip) if capture and port is not None else None
    if send_probe:
        if capture:
            wire = _arm(host, reads, src, Packet(first.src or "", dst.ip, proto, bound, port),
                        index, bound)
        what = f"probing {dst.ip}" + (f":{port}" if port else "") + f" from {src.label}"
        link = next((i for i in src.interfaces if i.ifindex == first.oif), None)
        try:
            with (status or (lambda _t: nullcontext()))(what):
                result = probe(namespace_path(src), dst.ip, port, timeout=timeout,
                               mtu=link.mtu if link else None, sport=bound)
        finally:
            seen = wire.stop() if wire is not None else None
    sport = None
    if result is not None and result.local and ":" in result.local:
        sport = int(result.local.rsplit(":", 1)[1])
    unknown = "::" if ":" in dst.ip else "0.0.0.0"  # noqa: S104  # no source known
    packet = Packet(first.src or unknown, dst.ip, proto, sport, port)
    size = result.full.size if result is not None and result.full is not None else 0
    forward = _blame_size(_walk_backend(host, reads, src, packet, result, index, size), result)
    if wire is not None and seen is not None:
        from podnet.trace import wire as wires

        forward = wires.mark(forward, seen, bound, echo_ident())
    reverse = None
    if result is not None and not result.ok and forward.outcome == "delivered" and forward.end:
        end = next(ns for ns in host.namespaces if ns.label == forward.end)
        reply = Packet(forward.packet.dst, forward.packet.src, proto, forward.packet.dport,
                       forward.packet.sport)
        reverse = walk(host, reads, end, reply, reply_to=forward, index=index)
    verdict, summary = judge(forward, reverse, result)
    source_text = f"{_who(src)} ({packet.src})"
    echo = " (ICMPv6 echo)" if proto == "icmpv6" else " (ICMP echo)"
    target = dst.text + (f" port {port}/{proto}" if port is not None else echo)
    return TraceReport(source_text, target, forward, reverse, result, verdict, summary,
                       dst.lookup)


def _arm(host: Host, reads: Reads, src: Namespace, packet: Packet, index: HostIndex,
         sport: int | None) -> Wire:
    """Captures on the interfaces a walk before the probe names (the way to each backend a
    Service may pick, since the probe's pick is not known yet), listening already."""
    from podnet.trace import wire

    before = walk(host, reads, src, packet, index=index)
    points = wire.points_of(before)
    others = {a for _, nat, _ in before.nat for a, _ in nat.alternatives if a}
    for other in sorted(others):
        points += wire.points_of(walk(host, reads, src, packet, index=index, prefer=other))
    return wire.Wire(host, list(dict.fromkeys(points)),
                     wire.expression(sport, packet.proto)).start()


def _walk_backend(host: Host, reads: Reads, src: Namespace, packet: Packet,
                  result: ProbeResult | None, index: HostIndex, size: int) -> Path:
    """Walk; when a Service spread the connection over backends, walk again following the
    one conntrack says the probe's connection got (else the first stands)."""
    path = walk(host, reads, src, packet, index=index, size=size)
    chosen = _probed_backend(reads, host, path, result)
    dnat = next((n for _, n, _ in path.nat if n.kind == "dnat"), None)
    if chosen is None or dnat is None or dnat.addr == chosen:
        return path
    return walk(host, reads, src, packet, prefer=chosen, index=index, size=size)


def _blame_size(path: Path, result: ProbeResult | None) -> Path:
    """When the full-size probe failed, the hop where the walk found it too big is broken."""
    full = result.full if result is not None else None
    if full is None or full.ok or path.too_big is None:
        return path
    hops = list(path.hops)
    hops[path.too_big] = replace(hops[path.too_big], status="broken", reason="too big")
    broken = path.too_big if path.broken is None else min(path.broken, path.too_big)
    return replace(path, hops=tuple(hops), broken=broken)


def _probed_backend(reads: Reads, host: Host, path: Path,
                    result: ProbeResult | None) -> str | None:
    """The backend conntrack recorded for the probe's connection, when the path has a DNAT."""
    dnat = next(((label, n, before) for label, n, before in path.nat if n.kind == "dnat"), None)
    if dnat is None or result is None or not result.local or not dnat[1].alternatives:
        return None
    label, _nat, before = dnat
    ns = next((n for n in host.namespaces if n.label == label), None)
    return None if ns is None else reads.conntrack_backend(ns, before)


Verdict = Literal["works", "broken", "unknown"]


def _at(path: Path, way: str) -> str:
    hop = path.broken_hop
    assert hop is not None and path.broken is not None
    return f"broken {way}at hop {path.broken + 1} ({hop.owner}): {hop.reason}: {hop.text}"


def judge(forward: Path, reverse: Path | None,
          result: ProbeResult | None) -> tuple[Verdict, str]:
    """The verdict and one sentence: the probe decides, the walks say where and why."""
    walked = forward.outcome == "delivered"
    if result is not None and result.ok:
        return _got_through(forward, result)
    failed = "" if result is None else f"probe failed ({result.outcome}); "
    if forward.broken is not None:
        return "broken", failed + _at(forward, "")
    if reverse is not None and reverse.broken is not None:
        return "broken", failed + _at(reverse, "on the way back ")
    if result is None:
        return ("works", "the kernel's tables carry the packet there (no probe was sent)") \
            if walked else ("unknown", f"the walk ended ({forward.outcome}) before the destination")
    return "unknown", (f"probe failed ({result.detail}), but the kernel's tables show a path "
                       "both ways: look at rules podnet could not evaluate, or at the process")


def _got_through(forward: Path, result: ProbeResult) -> tuple[Verdict, str]:
    """The small probe got through: the full-size one decides (an MTU black hole or not)."""
    full = result.full
    if full is not None and not full.ok:
        if forward.too_big is not None:
            return "broken", (f"small packets pass ({result.detail}), full-size ones do not: "
                              + _at(forward, ""))
        return "broken", (f"small packets pass ({result.detail}), full-size ones do not "
                          f"({full.detail}); every link's MTU fits {full.size} bytes, so look "
                          "for a hop that drops them without saying (a middlebox, a rule)")
    if forward.broken is None:
        return "works", f"path works: {result.detail} in {result.elapsed_ms:.1f} ms"
    return "works", (f"the probe got through ({result.detail}), though the walk stopped "
                     f"at hop {forward.broken + 1}: {forward.hops[forward.broken].text}")


def _who(ns: Namespace) -> str:
    if ns.pod:
        return f"pod {ns.pod}"
    if ns.node:
        return f"node {ns.node}"
    return ns.label
