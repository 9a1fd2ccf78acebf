"""ICMP echo over a raw socket, IPv4 (ICMP) and IPv6 (ICMPv6): the request podnet sends, and
what an answer read back means: the reply, an error about it (with the next hop's MTU when it is
IPv4's 'fragmentation needed' or IPv6's 'packet too big'), or someone else's packet. `trace` and
`check --mtu` both send these.

The two families differ in little: the type numbers, the headers a request of a given size
carries, who computes the checksum (the kernel, for a raw ICMPv6 socket: RFC 3542), and what a
raw socket hands back (an IPv4 one the IP header too, an IPv6 one only the ICMPv6 message).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

__all__ = ["Answer", "Icmp", "icmp_of", "read_answer", "request"]


@dataclass(frozen=True)
class Icmp:
    """One family's ICMP: its socket, its numbers, its headers."""

    version: int
    family: int  # AF_INET, AF_INET6
    proto: int  # IPPROTO_ICMP, IPPROTO_ICMPV6
    echo_request: int
    echo_reply: int
    unreachable: int
    too_big: tuple[int, int]  # (type, code) of the error that carries the next hop's MTU
    headers: int  # IP + ICMP header bytes: an echo of `size` bytes carries size - headers
    errors: tuple[int, ...]  # types that quote our request: unreachable, too big, time exceeded

    def too_big_words(self, sender: str, mtu: int) -> str:
        if self.version == 6:
            return f"{sender} says packet too big (its next hop carries {mtu} bytes)"
        return (f"{sender} says destination unreachable (fragmentation needed: its next hop "
                f"carries {mtu} bytes)")


ICMP4 = Icmp(4, socket.AF_INET, socket.IPPROTO_ICMP, 8, 0, 3, (3, 4), 28, (3, 11))
ICMP6 = Icmp(6, socket.AF_INET6, socket.IPPROTO_ICMPV6, 128, 129, 1, (2, 0), 48, (1, 2, 3))


def icmp_of(address: str) -> Icmp:
    return ICMP6 if ":" in address else ICMP4


@dataclass(frozen=True)
class Answer:
    ok: bool
    detail: str  # "echo reply from X" or "X says destination unreachable (...)"
    next_hop_mtu: int | None = None  # from a 'fragmentation needed' or 'packet too big'


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(x) for x in struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def request(ident: int, seq: int, size: int = 0, icmp: Icmp = ICMP4) -> bytes:
    """An echo request; `size`: the whole IP packet's bytes (0: a small one)."""
    payload = b"podnet trace"
    if size:
        payload = (payload * (size // len(payload) + 1))[: max(0, size - icmp.headers)]
    header = struct.pack("!BBHHH", icmp.echo_request, 0, 0, ident, seq)
    # The kernel fills in an ICMPv6 checksum (it covers a pseudo-header only it knows).
    check = _checksum(header + payload) if icmp.version == 4 else 0
    return struct.pack("!BBHHH", icmp.echo_request, 0, check, ident, seq) + payload


def _past_ip(data: bytes) -> bytes:
    """An IPv4 packet's payload (past its header, options included)."""
    return data[(data[0] & 0x0F) * 4:] if data else b""


def read_answer(sock: socket.socket, dst: str, ident: int, seq: int) -> Answer | None:
    """Read one packet from a raw ICMP (ICMPv6) socket: what it says about our request, or
    None when it is not about it (another probe's, another host's)."""
    icmp = ICMP6 if sock.family == socket.AF_INET6 else ICMP4
    data, address = sock.recvfrom(65536)
    sender = str(address[0])
    body = data if icmp.version == 6 else _past_ip(data)
    if len(body) < 8:
        return None
    kind, code = body[0], body[1]
    if (kind == icmp.echo_reply and sender == dst
            and struct.unpack("!HH", body[4:8]) == (ident, seq)):
        return Answer(True, f"echo reply from {dst}")
    if kind not in icmp.errors:
        return None
    quoted = body[8:]  # the packet that caused the error, as it left us
    inner = quoted[40:] if icmp.version == 6 else _past_ip(quoted)
    if (len(inner) < 8 or inner[0] != icmp.echo_request
            or struct.unpack("!HH", inner[4:8]) != (ident, seq)):
        return None
    if (kind, code) == icmp.too_big:
        mtu = struct.unpack("!I", body[4:8])[0] if icmp.version == 6 else \
            struct.unpack("!H", body[6:8])[0]
        return Answer(False, icmp.too_big_words(sender, mtu), mtu)
    what = "destination unreachable" if kind == icmp.unreachable else "time exceeded"
    return Answer(False, f"{sender} says {what} (code {code})")
