"""Send the probes of `podnet check`: real TCP connections from inside each source namespace.

One process, no helper per probe: a socket stays in the network namespace it was created in, so
each probe's socket is made while this thread visits the source's namespace (a few microseconds),
and then every connection runs at once in one selector loop. A probe is a TCP connect, then, when
the target serves HTTP, `GET /` with the answer read to its end; a DNS probe is one question in
one UDP datagram (dnspython writes and reads it), answered by the pod's nameserver.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import selectors
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from podnet.errors import PodnetError
from podnet.kernel import netns
from podnet.plan.check import Probe, Result

__all__ = ["run_probes"]

_ANSWERED = re.compile(rb"podnet: pod (\S+) answered")
_CLIENT = re.compile(rb"^client:\s+\[?([^\s\]]+?)\]?:\d+\s*$", re.MULTILINE)  # [v6]:port
_MAX_ANSWER = 64 * 1024


@dataclass
class _Flight:
    probe: Probe
    sock: socket.socket | None
    started: float
    request: bytes = b""
    answer: bytearray = field(default_factory=bytearray)
    result: Result | None = None
    answered_by: str = ""


def run_probes(
    probes: Sequence[Probe], *, timeout: float = 2.0, parallel: int = 128,
    after_wave: Callable[[Sequence[Result]], None] | None = None,
) -> list[Result]:
    """Results in probe order. At most `parallel` connections are open at a time (a burst of
    thousands of SYNs to one responder would overflow its accept queue and cost a retransmit);
    each probe gets `timeout` seconds from its start. `after_wave` sees each wave's results
    before the next wave goes."""
    results: list[Result] = []
    for start in range(0, len(probes), parallel):
        wave = _wave(probes[start : start + parallel], timeout)
        if after_wave is not None:
            after_wave(wave)
        results += wave
    return results


def forget_neighbours(names: Iterable[str]) -> int:
    """Remove the neighbour entries the namespaces `names` learned (see `plan.neighbours`);
    how many went. A namespace gone meanwhile is skipped."""
    from podnet.kernel.netlink import Netlink

    forgotten = 0
    for name in names:
        try:
            with Netlink.open(netns.path_of(name), label=name) as nl:
                forgotten += nl.forget_learned_neighbours()
        except PodnetError:
            continue
    return forgotten


def _wave(probes: Sequence[Probe], timeout: float) -> list[Result]:
    flights = [_Flight(p, None, time.monotonic()) for p in probes]
    _open_sockets(flights)
    for f in flights:
        if f.result is None:
            (_launch_dns if f.probe.kind == "dns" else _launch)(f)
    sel = selectors.DefaultSelector()
    try:
        for f in flights:
            if f.result is None and f.sock is not None:
                events = selectors.EVENT_READ if f.probe.kind == "dns" else selectors.EVENT_WRITE
                sel.register(f.sock, events, f)
        deadline = time.monotonic() + timeout
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, events in sel.select(left):
                _advance(sel, key.data, events)
        for f in flights:
            if f.result is None:
                _finish(sel, f, False, f"no answer within {timeout:g} s", timed_out=True)
    finally:
        sel.close()
    return [f.result for f in flights if f.result is not None]


def _open_sockets(flights: Sequence[_Flight]) -> None:
    """Give each flight a socket in its probe's source namespace, visiting each namespace once
    per wave (a wave's probes come mostly from a few sources); a flight that gets none has a
    result saying why."""
    by_netns: dict[str, list[_Flight]] = {}
    for f in flights:
        by_netns.setdefault(f.probe.netns, []).append(f)
    for name, group in by_netns.items():
        try:
            with netns.entered(netns.path_of(name)):
                for f in group:
                    f.sock = _socket(f)
        except OSError as exc:
            for f in group:
                if f.sock is not None:
                    f.sock.close()
                    f.sock = None
                f.result = Result(f.probe, False, f"cannot open a socket in {name}: {exc}", 0.0)


def _socket(flight: _Flight) -> socket.socket | None:
    """The probe's socket, in the namespace this thread is in (None: the result says why)."""
    probe = flight.probe
    family = (6 if ":" in probe.address else 4) if probe.kind == "dns" else probe.family
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    kind = socket.SOCK_DGRAM if probe.kind == "dns" else socket.SOCK_STREAM
    try:
        return socket.socket(af, kind | socket.SOCK_NONBLOCK)
    except OSError as exc:
        flight.result = Result(probe, False, f"cannot open a socket in {probe.netns}: {exc}", 0.0)
        return None


def _launch(flight: _Flight) -> None:
    """Start the connection (the flight has its socket)."""
    sock, probe = flight.sock, flight.probe
    assert sock is not None
    flight.started = time.monotonic()
    code = sock.connect_ex((probe.address, probe.port))
    if code not in (0, errno.EINPROGRESS):
        _finish(None, flight, False, os.strerror(code))


def _launch_dns(flight: _Flight) -> None:
    """Send the DNS question; the answer is read when the socket turns readable."""
    import dns.message  # dnspython: imported only when a check asks DNS

    sock, probe = flight.sock, flight.probe
    assert sock is not None
    qtype = "A" if probe.family == 4 else "AAAA"
    query = dns.message.make_query(probe.expect.name + ".", qtype)
    server = probe.address
    flight.request = query.to_wire()
    flight.started = time.monotonic()
    try:
        sock.connect((server, probe.port))
        sock.send(flight.request)
    except OSError as exc:
        _finish(None, flight, False, f"asking {server}: {exc.strerror}")


def _dns_answer(sel: selectors.BaseSelector, f: _Flight) -> None:
    """Judge the DNS answer: NOERROR, and exactly the Service's addresses."""
    import dns.exception
    import dns.message
    import dns.rcode

    assert f.sock is not None
    try:
        data = f.sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError as exc:  # an ICMP error: port unreachable, no route
        _finish(sel, f, False, f"asking {f.probe.address}: {exc.strerror}")
        return
    try:
        answer = dns.message.from_wire(data)
    except dns.exception.DNSException as exc:
        _finish(sel, f, False, f"{f.probe.address} sent what is not a DNS answer: {exc}")
        return
    got = sorted(str(rd) for rrset in answer.answer for rd in rrset
                 if rrset.rdtype in (1, 28))  # A, AAAA
    rcode = dns.rcode.to_text(answer.rcode())
    words = ", ".join(got) or "no address"
    ok = rcode == "NOERROR" and got == sorted(f.probe.expect.answers)
    want = "" if ok else f" (expected {', '.join(f.probe.expect.answers)})"
    _finish(sel, f, ok, f"{f.probe.address} answered {rcode}: {words}{want}")


def _advance(sel: selectors.BaseSelector, f: _Flight, events: int) -> None:
    if f.probe.kind == "dns":
        _dns_answer(sel, f)
    elif not f.request and events & selectors.EVENT_WRITE:
        _connected(sel, f)
    else:
        _receive(sel, f)


def _connected(sel: selectors.BaseSelector, f: _Flight) -> None:
    """The connect finished: judge a reset, or send the request and wait for the answer."""
    assert f.sock is not None
    probe = f.probe
    code = f.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code == errno.ECONNREFUSED and not probe.expect.http:
        _finish(sel, f, True, f"reset by {probe.address} (port {probe.port} closed): reached")
    elif code:
        _finish(sel, f, False, os.strerror(code))
    elif not probe.expect.http:
        _finish(sel, f, True, "connected")
    else:
        host = f"[{probe.address}]" if probe.family == 6 else probe.address  # RFC 3986
        f.request = (f"GET / HTTP/1.0\r\nHost: {host}\r\nAccept: text/plain\r\n"
                     "User-Agent: podnet-check\r\n\r\n").encode()
        try:
            f.sock.send(f.request)  # small: fits the empty send buffer at once
        except OSError as exc:
            _finish(sel, f, False, f"sending the request: {exc.strerror}")
            return
        sel.modify(f.sock, selectors.EVENT_READ, f)


def _receive(sel: selectors.BaseSelector, f: _Flight) -> None:
    assert f.sock is not None
    try:
        data = f.sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError as exc:
        _finish(sel, f, False, f"reading the answer: {exc.strerror}")
        return
    if data and len(f.answer) < _MAX_ANSWER:
        f.answer += data
        return
    _judge(sel, f)


def _judge(sel: selectors.BaseSelector, f: _Flight) -> None:
    expect = f.probe.expect
    answer = bytes(f.answer)
    if expect.client:
        seen = _CLIENT.search(answer)
        ip = seen.group(1).decode() if seen else ""
        if not ip:
            _finish(sel, f, False, "the answer names no client address")
        else:
            how = "masqueraded" if ip == expect.client else f"expected {expect.client}"
            _finish(sel, f, ip == expect.client, f"seen as {ip} ({how})")
        return
    found = _ANSWERED.search(answer)
    who = found.group(1).decode() if found else ""
    if not who:
        first = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        _finish(sel, f, False, f"unexpected answer: {first or 'empty'}")
        return
    f.answered_by = who
    _finish(sel, f, who in expect.pods, f"answered by {who}")


def _finish(sel: selectors.BaseSelector | None, f: _Flight, ok: bool, detail: str,
            *, timed_out: bool = False) -> None:
    denied = f.probe.expect.denied
    if denied:
        # A path the policies deny works when nothing comes back: a policy drops silently.
        ok, detail = (True, f"denied, as policies say: {denied}") if timed_out else (
            False, f"{detail}, but policies deny it: {denied}")
    if f.sock is not None:
        if sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(f.sock)
        f.sock.close()
    f.result = Result(f.probe, ok, detail, (time.monotonic() - f.started) * 1000,
                      answered_by=f.answered_by)
