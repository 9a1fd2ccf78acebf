"""A real packet from a namespace: a TCP connect, or an ICMP (ICMPv6) echo when no port is given;
then, once that got through, a full-size one: a TCP segment that fills a packet of the first
link's MTU (acknowledged, or not), or an echo of that size, with DF set and path MTU discovery
off, so an MTU black hole cannot hide behind a working handshake. The destination's family
picks the socket's: IPv4 or IPv6 (where no router fragments, and a hop too small answers
'packet too big').

The socket is opened inside the source namespace (the thread enters it, opens the socket and
comes back; the socket stays there), so the probe takes exactly the path a process in that pod
would take. Bounded by `timeout`; nothing is left open.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from dataclasses import replace

from podnet.kernel import echo, netns
from podnet.kernel.sockopts import FullSegment, dont_fragment, path_mtu
from podnet.trace.model import FullSize, ProbeResult
from podnet.trace.words import endpoint

__all__ = ["echo_ident", "free_port", "full_segment", "probe"]


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _any(address: str) -> str:
    """The wildcard address of `address`'s family: bind to it, and the route picks the source."""
    return "::" if ":" in address else "0.0.0.0"  # noqa: S104


def _open(path: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    if path is None:
        return socket.socket(family, kind, proto)
    with netns.entered(path):
        return socket.socket(family, kind, proto)


def probe(path: str | None, dst: str, port: int | None, *, timeout: float = 2.0,
          full: bool = True, mtu: int | None = None, sport: int | None = None) -> ProbeResult:
    """Send one probe from the namespace at `path` (None: this one) to `dst`; then, when it got
    through and `full` is set, a full-size one: as large as `mtu` (the first link's MTU; None:
    the route's, as the kernel holds it for `dst`). A TCP probe leaves from port `sport` when
    given (a capture armed beforehand filters on it)."""
    if port is None:
        result = _echo(path, dst, timeout)
        if result.ok and full:
            result = replace(result, full=_full_echo(path, dst, timeout, mtu))
        return result
    return _connect(path, dst, port, timeout, mtu if full else 0, sport)


def echo_ident() -> int:
    """The identifier of this process's echo requests (a capture matches on it)."""
    return os.getpid() & 0xFFFF


def full_segment(sock: socket.socket, timeout: float, mtu: int | None = None) -> FullSize:
    """Send one segment that fills a packet on a connected TCP socket (DF set) and wait for
    its acknowledgement (see `podnet.kernel.sockopts.FullSegment`)."""
    start = time.perf_counter()
    segment = FullSegment(sock, mtu)
    deadline = start + timeout
    while segment.poll() is None and time.perf_counter() < deadline:
        time.sleep(0.002)
    ok, detail = segment.give_up(timeout)
    return FullSize(ok, segment.size, detail, (time.perf_counter() - start) * 1000)


def _connect(path: str | None, dst: str, port: int, timeout: float,
             mtu: int | None, sport: int | None) -> ProbeResult:
    """`mtu` 0: no full-size segment."""
    start = time.perf_counter()
    sock = _open(path, _family(dst), socket.SOCK_STREAM)
    local = None
    target = endpoint(dst, port)
    try:
        sock.settimeout(timeout)
        dont_fragment(sock)
        if sport is not None:
            sock.bind((_any(dst), sport))
        code = sock.connect_ex((dst, port))
        ms = (time.perf_counter() - start) * 1000
        try:
            host, sport = sock.getsockname()[:2]
            local = endpoint(host, sport)
        except OSError:
            local = None
        if code == 0:
            return ProbeResult("tcp", True, "connected", f"connected to {target}", ms, local,
                               None if mtu == 0 else full_segment(sock, timeout, mtu))
        if code in (errno.EAGAIN, errno.EINPROGRESS, errno.ETIMEDOUT) or ms >= timeout * 1000:
            return ProbeResult("tcp", False, "timeout",
                               f"no answer from {target} within {timeout:g} s", ms, local)
        if code == errno.ECONNREFUSED:
            return ProbeResult("tcp", False, "refused",
                               f"{dst} answered with a reset: nothing accepts on port {port} "
                               "(or a rule rejects it)", ms, local)
        if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return ProbeResult("tcp", False, "unreachable", os.strerror(code), ms, local)
        return ProbeResult("tcp", False, "error", os.strerror(code), ms, local)
    finally:
        sock.close()


def _full_echo(path: str | None, dst: str, timeout: float, mtu: int | None) -> FullSize:
    """An echo request as large as the first link's MTU, DF set: the reply is as large."""
    size = mtu
    if size is None:
        udp = _open(path, _family(dst), socket.SOCK_DGRAM)
        try:
            udp.connect((dst, 9))
            size = path_mtu(udp)
        finally:
            udp.close()
    result = _echo(path, dst, timeout, size=size, seq=2)
    if result.ok:
        return FullSize(True, size, f"a {size}-byte echo (DF) was answered at full size",
                        result.elapsed_ms)
    return FullSize(False, size, f"a {size}-byte echo (DF) got no answer ({result.detail}), "
                    "though a small one did", result.elapsed_ms)


def _echo(path: str | None, dst: str, timeout: float, *, size: int = 0,
          seq: int = 1) -> ProbeResult:
    """An echo request; `size`: the whole IP packet's bytes, DF set (0: a small one)."""
    ident = echo_ident()
    icmp = echo.icmp_of(dst)
    name = "icmpv6" if icmp.version == 6 else "icmp"
    start = time.perf_counter()
    sock = _open(path, icmp.family, socket.SOCK_RAW, icmp.proto)
    try:
        if size:
            dont_fragment(sock, ignore_path_mtu=True)
        try:
            sock.sendto(echo.request(ident, seq, size, icmp), (dst, 0))
        except OSError as exc:
            ms = (time.perf_counter() - start) * 1000
            return ProbeResult(name, False, "unreachable", exc.strerror or str(exc), ms)
        deadline = start + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                ms = (time.perf_counter() - start) * 1000
                return ProbeResult(name, False, "timeout",
                                   f"no echo reply from {dst} within {timeout:g} s", ms)
            ready, _, _ = select.select([sock], [], [], left)
            answer = echo.read_answer(sock, dst, ident, seq) if ready else None
            if answer is not None:
                ms = (time.perf_counter() - start) * 1000
                return ProbeResult(name, answer.ok, "reply" if answer.ok else "unreachable",
                                   answer.detail, ms)
    finally:
        sock.close()


def free_port(path: str | None, dst: str = "0.0.0.0") -> int:  # noqa: S104
    """A TCP port nothing in the namespace at `path` uses now for `dst`'s family (the kernel's
    pick)."""
    sock = _open(path, _family(dst), socket.SOCK_STREAM)
    try:
        sock.bind((_any(dst), 0))  # a port number is all that is wanted
        return int(sock.getsockname()[1])
    finally:
        sock.close()
