"""rtnetlink requests in their wire format, packed with `struct`: the hot path of `up`.

pyroute2's message classes encode through layers of generic Python (name lookups, nested
dictionaries, per-field dispatch): about 1 ms per pod for its ten requests, a quarter of a large
lab's `up`. The requests `Batch` makes are few and fixed, so they are packed here directly;
`tests/unit/test_rtnl_requests.py` holds every one of them byte for byte against pyroute2's
encoding. `kernel.lookup` packs `trace`'s questions with the same pieces, and
`tests/kernel/test_lookup.py` holds their answers to iproute2's. Reading the kernel's answers
stays with pyroute2's layouts.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

__all__ = [
    "Request",
    "attr",
    "be16",
    "fib_rule_hdr",
    "ifaddrmsg",
    "ifinfomsg",
    "ip",
    "lladdr",
    "ndmsg",
    "nested",
    "rtmsg",
    "string",
    "u8",
    "u32",
]

_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, sequence, port id


@dataclass(frozen=True)
class Request:
    """One request: its type and flags, and its body (the fixed header and attributes)."""

    kind: int
    flags: int
    body: bytes

    def encode(self, sequence: int) -> bytes:
        return _HEADER.pack(_HEADER.size + len(self.body), self.kind, self.flags, sequence,
                            0) + self.body


# --- attributes (struct nlattr: length, type, value padded to 4 bytes) ---------------------------


def attr(kind: int, value: bytes) -> bytes:
    size = 4 + len(value)
    return struct.pack("=HH", size, kind) + value + bytes(-size % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind, b"".join(attrs))


def string(kind: int, text: str) -> bytes:
    """A NUL-terminated string, as the kernel's NLA_STRING and NLA_NUL_STRING policies take."""
    return attr(kind, text.encode() + b"\0")


def u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def be16(kind: int, value: int) -> bytes:
    """A 16-bit value in network order (a VXLAN's UDP port)."""
    return attr(kind, struct.pack("!H", value))


def ip(kind: int, text: str) -> bytes:
    """An IPv4 or IPv6 address: 4 or 16 bytes (inet_pton: a tenth of ip_address's cost, and
    `up` packs a few per pod)."""
    try:
        return attr(kind, socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET,
                                           text))
    except OSError:
        raise ValueError(f"{text!r} is not an IP address") from None


def lladdr(kind: int, mac: str) -> bytes:
    """A link-layer address written `aa:bb:cc:dd:ee:ff`."""
    return attr(kind, bytes.fromhex(mac.replace(":", "")))


# --- the fixed headers of each family of requests -------------------------------------------------


def ifinfomsg(index: int, flags: int = 0, change: int = 0) -> bytes:
    """struct ifinfomsg: links (family AF_UNSPEC, any type)."""
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def ifaddrmsg(family: int, prefixlen: int, index: int) -> bytes:
    return struct.pack("=BBBBI", family, prefixlen, 0, 0, index)


def rtmsg(family: int, dst_len: int, *, table: int, proto: int, scope: int, kind: int,
          flags: int = 0) -> bytes:
    return struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, proto, scope, kind, flags)


def fib_rule_hdr(family: int, *, dst_len: int, src_len: int, table: int, action: int) -> bytes:
    return struct.pack("=BBBBBBBBI", family, dst_len, src_len, 0, table, 0, 0, action, 0)


def ndmsg(family: int, index: int, *, state: int, flags: int) -> bytes:
    return struct.pack("=B3xiHBB", family, index, state, flags, 0)
