"""A real packet from a namespace: a TCP connect, or an ICMP echo when no port is given.

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

from podnet.kernel import netns
from podnet.trace.model import ProbeResult

__all__ = ["probe"]

_ICMP_ECHO_REQUEST = 8
_ICMP_ECHO_REPLY = 0
_ICMP_UNREACHABLE = 3


def _open(path: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    if path is None:
        return socket.socket(family, kind, proto)
    with netns.entered(path):
        return socket.socket(family, kind, proto)


def probe(path: str | None, dst: str, port: int | None, *, timeout: float = 2.0) -> ProbeResult:
    """Send one probe from the namespace at `path` (None: this one) to `dst`."""
    if port is None:
        return _echo(path, dst, timeout)
    return _connect(path, dst, port, timeout)


def _connect(path: str | None, dst: str, port: int, timeout: float) -> ProbeResult:
    start = time.perf_counter()
    sock = _open(path, socket.AF_INET, socket.SOCK_STREAM)
    local = None
    try:
        sock.settimeout(timeout)
        code = sock.connect_ex((dst, port))
        ms = (time.perf_counter() - start) * 1000
        try:
            host, sport = sock.getsockname()[:2]
            local = f"{host}:{sport}"
        except OSError:
            local = None
        if code == 0:
            return ProbeResult("tcp", True, "connected", f"connected to {dst}:{port}", ms, local)
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


def _echo(path: str | None, dst: str, timeout: float) -> ProbeResult:
    ident = os.getpid() & 0xFFFF
    payload = b"podnet trace"
    header = struct.pack("!BBHHH", _ICMP_ECHO_REQUEST, 0, 0, ident, 1)
    packet = struct.pack("!BBHHH", _ICMP_ECHO_REQUEST, 0, _checksum(header + payload), ident,
                         1) + payload
    start = time.perf_counter()
    sock = _open(path, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
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
            data, (sender, _) = sock.recvfrom(2048)
            ms = (time.perf_counter() - start) * 1000
            body = data[(data[0] & 0x0F) * 4:]  # past the IP header
            if len(body) < 8:
                continue
            kind, code = body[0], body[1]
            if kind == _ICMP_ECHO_REPLY and sender == dst:
                if struct.unpack("!H", body[4:6])[0] == ident:
                    return ProbeResult("icmp", True, "reply", f"echo reply from {dst}", ms)
            elif kind == _ICMP_UNREACHABLE and len(body) >= 36:
                inner = body[8:]
                inner_icmp = inner[(inner[0] & 0x0F) * 4:]
                if len(inner_icmp) >= 6 and struct.unpack("!H", inner_icmp[4:6])[0] == ident:
                    return ProbeResult("icmp", False, "unreachable",
                                       f"{sender} says destination unreachable (code {code})",
                                       ms)
    finally:
        sock.close()
