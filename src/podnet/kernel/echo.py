"""ICMP echo over a raw socket (IPv4): the request podnet sends, and what an answer read back
means: the reply, a 'destination unreachable' about it (with the next hop's MTU when the code is
'fragmentation needed'), or someone else's packet. `trace` and `check --mtu` both send these."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

__all__ = ["Answer", "read_answer", "request"]

_ECHO_REQUEST = 8
_ECHO_REPLY = 0
_UNREACHABLE = 3
_FRAG_NEEDED = 4  # an unreachable's code when DF forbids the fragmenting a hop needs
_HEADERS = 28  # IPv4 20 + ICMP 8: an echo of `size` bytes carries size - 28 of payload


@dataclass(frozen=True)
class Answer:
    ok: bool
    detail: str  # "echo reply from X" or "X says destination unreachable (...)"
    next_hop_mtu: int | None = None  # from a 'fragmentation needed'


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(x) for x in struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def request(ident: int, seq: int, size: int = 0) -> bytes:
    """An echo request; `size`: the whole IP packet's bytes (0: a small one)."""
    payload = b"podnet trace"
    if size:
        payload = (payload * (size // len(payload) + 1))[: max(0, size - _HEADERS)]
    header = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", _ECHO_REQUEST, 0, _checksum(header + payload), ident,
                       seq) + payload


def read_answer(sock: socket.socket, dst: str, ident: int, seq: int) -> Answer | None:
    """Read one packet from a raw ICMP socket: what it says about our request, or None when it
    is not about it (another probe's, another host's)."""
    data, (sender, _) = sock.recvfrom(65536)
    body = data[(data[0] & 0x0F) * 4:]  # past the IP header
    if len(body) < 8:
        return None
    kind, code = body[0], body[1]
    if kind == _ECHO_REPLY and sender == dst and struct.unpack("!HH", body[4:8]) == (ident, seq):
        return Answer(True, f"echo reply from {dst}")
    if kind != _UNREACHABLE or len(body) < 36:
        return None
    inner = body[8:]
    inner_icmp = inner[(inner[0] & 0x0F) * 4:]
    if len(inner_icmp) < 8 or struct.unpack("!HH", inner_icmp[4:8]) != (ident, seq):
        return None
    if code == _FRAG_NEEDED:
        mtu = struct.unpack("!H", body[6:8])[0]
        return Answer(False, f"{sender} says destination unreachable (fragmentation needed: "
                      f"its next hop carries {mtu} bytes)", mtu)
    return Answer(False, f"{sender} says destination unreachable (code {code})")
