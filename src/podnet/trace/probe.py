"""A real packet from a namespace: a TCP connect, or an ICMP echo when no port is given; then,
once that got through, a full-size one: a TCP segment that fills a packet of the first link's
MTU (acknowledged, or not), or an echo of that size, with DF set and path MTU discovery off, so
an MTU black hole cannot hide behind a working handshake.

The socket is opened inside the source namespace (the thread enters it, opens the socket and
comes back; the socket stays there), so the probe takes exactly the path a process in that pod
would take. Bounded by `timeout`; nothing is left open.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from dataclasses import replace

from podnet.kernel import netns
from podnet.kernel.sockopts import dont_fragment, max_segment, path_mtu, unacked
from podnet.trace.model import FullSize, ProbeResult

__all__ = ["full_segment", "probe"]

_ICMP_ECHO_REQUEST = 8
_ICMP_ECHO_REPLY = 0
_ICMP_UNREACHABLE = 3
_FRAG_NEEDED = 4  # an ICMP unreachable's code when DF forbids the fragmenting a hop needs


def _open(path: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    if path is None:
        return socket.socket(family, kind, proto)
    with netns.entered(path):
        return socket.socket(family, kind, proto)


def probe(path: str | None, dst: str, port: int | None, *, timeout: float = 2.0,
          full: bool = True, mtu: int | None = None) -> ProbeResult:
    """Send one probe from the namespace at `path` (None: this one) to `dst`; then, when it got
    through and `full` is set, a full-size one: as large as `mtu` (the first link's MTU; None:
    the route's, as the kernel holds it for `dst`)."""
    if port is None:
        result = _echo(path, dst, timeout)
        if result.ok and full:
            result = replace(result, full=_full_echo(path, dst, timeout, mtu))
        return result
    return _connect(path, dst, port, timeout, mtu if full else 0)


_TCPI_OPT_TIMESTAMPS = 1


def full_segment(sock: socket.socket, timeout: float, mtu: int | None = None) -> FullSize:
    """Send one segment that fills a packet on a connected TCP socket (DF set) and wait until
    the peer acknowledges it. It fails when it is not acknowledged (dropped without a word: a
    black hole), or when an ICMP 'fragmentation needed' lowered the path MTU below `mtu` (TCP
    then resends smaller pieces; UDP, and paths that drop ICMP, would not)."""
    start = time.perf_counter()
    mtu = mtu or path_mtu(sock)
    data = max_segment(sock)
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    options = 12 if info[5] & _TCPI_OPT_TIMESTAMPS else 0
    size = data + (40 if sock.family == socket.AF_INET6 else 20) + 20 + options
    head = b"GET / HTTP/1.0\r\nX-Podnet-Probe: "

    def done(ok: bool, detail: str) -> FullSize:
        return FullSize(ok, size, detail, (time.perf_counter() - start) * 1000)

    if path_mtu(sock) < mtu:
        return done(False, f"the kernel already holds a path MTU of {path_mtu(sock)} for this "
                    f"destination, below the first link's {mtu}: an ICMP 'fragmentation "
                    "needed' lowered it (`ip route get` shows it; `ip route flush cache` "
                    "forgets it)")
    sock.setblocking(False)
    try:
        sock.send(head + b"x" * max(0, data - len(head)))
    except OSError as exc:
        return done(False, f"the full-size segment could not be sent: {exc.strerror}")
    deadline = start + timeout
    while unacked(sock):
        if time.perf_counter() > deadline:
            return done(False, f"a {size}-byte packet (DF) was not acknowledged within "
                        f"{timeout:g} s, though the handshake was: dropped without an ICMP")
        time.sleep(0.002)
    learnt = path_mtu(sock)
    if learnt < mtu:
        return done(False, f"a {size}-byte packet (DF) was refused: a hop answered "
                    f"'fragmentation needed', the path carries {learnt} bytes; TCP resent it "
                    "in smaller pieces")
    return done(True, f"a {size}-byte packet (DF) was acknowledged")


def _connect(path: str | None, dst: str, port: int, timeout: float,
             mtu: int | None) -> ProbeResult:
    """`mtu` 0: no full-size segment."""
    start = time.perf_counter()
    sock = _open(path, socket.AF_INET, socket.SOCK_STREAM)
    local = None
    try:
        sock.settimeout(timeout)
        dont_fragment(sock)
        code = sock.connect_ex((dst, port))
        ms = (time.perf_counter() - start) * 1000
        try:
            host, sport = sock.getsockname()[:2]
            local = f"{host}:{sport}"
        except OSError:
            local = None
        if code == 0:
            return ProbeResult("tcp", True, "connected", f"connected to {dst}:{port}", ms, local,
                               None if mtu == 0 else full_segment(sock, timeout, mtu))
        if code in (errno.EAGAIN, errno.EINPROGRESS, errno.ETIMEDOUT) or ms >= timeout * 1000:
            return ProbeResult("tcp", False, "timeout",
                               f"no answer from {dst}:{port} within {timeout:g} s", ms, local)
        if code == errno.ECONNREFUSED:
            return ProbeResult("tcp", False, "refused",
                               f"{dst} answered with a reset: nothing accepts on port {port} "
                               "(or a rule rejects it)", ms, local)
        if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return ProbeResult("tcp", False, "unreachable", os.strerror(code), ms, local)
        return ProbeResult("tcp", False, "error", os.strerror(code), ms, local)
    finally:
        sock.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(x) for x in struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _full_echo(path: str | None, dst: str, timeout: float, mtu: int | None) -> FullSize:
    """An echo request as large as the first link's MTU, DF set: the reply is as large."""
    size = mtu
    if size is None:
        udp = _open(path, socket.AF_INET, socket.SOCK_DGRAM)
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
    ident = os.getpid() & 0xFFFF
    payload = b"podnet trace"
    if size:
        payload = (payload * (size // len(payload) + 1))[: max(0, size - 28)]
    header = struct.pack("!BBHHH", _ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", _ICMP_ECHO_REQUEST, 0, _checksum(header + payload), ident,
                         seq) + payload
    start = time.perf_counter()
    sock = _open(path, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        if size:
            dont_fragment(sock, ignore_path_mtu=True)
        try:
            sock.sendto(packet, (dst, 0))
        except OSError as exc:
            ms = (time.perf_counter() - start) * 1000
            return ProbeResult("icmp", False, "unreachable", exc.strerror or str(exc), ms)
        deadline = start + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                ms = (time.perf_counter() - start) * 1000
                return ProbeResult("icmp", False, "timeout",
                                   f"no echo reply from {dst} within {timeout:g} s", ms)
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                continue
            data, (sender, _) = sock.recvfrom(65536)
            ms = (time.perf_counter() - start) * 1000
            body = data[(data[0] & 0x0F) * 4:]  # past the IP header
            if len(body) < 8:
                continue
            kind, code = body[0], body[1]
            if kind == _ICMP_ECHO_REPLY and sender == dst:
                if struct.unpack("!HH", body[4:8]) == (ident, seq):
                    return ProbeResult("icmp", True, "reply", f"echo reply from {dst}", ms)
            elif kind == _ICMP_UNREACHABLE and len(body) >= 36:
                inner = body[8:]
                inner_icmp = inner[(inner[0] & 0x0F) * 4:]
                if len(inner_icmp) >= 6 and struct.unpack("!H", inner_icmp[4:6])[0] == ident:
                    why = (f"fragmentation needed: its next hop carries {body[6] << 8 | body[7]}"
                           " bytes" if code == _FRAG_NEEDED else f"code {code}")
                    return ProbeResult("icmp", False, "unreachable",
                                       f"{sender} says destination unreachable ({why})", ms)
    finally:
        sock.close()
