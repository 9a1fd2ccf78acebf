"""A pcap read back with dpkt: each packet's addresses, ports and size, looking inside VXLAN.

dpkt does the decoding (Ethernet, Linux cooked captures, IPv4, IPv6, TCP, UDP, ICMP); a VXLAN
packet's payload is its 8-byte header (RFC 7348) and then an Ethernet frame, which dpkt decodes
like any other."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import dpkt
import dpkt.sll2

__all__ = ["VXLAN_PORTS", "Seen", "read_pcap"]

VXLAN_PORTS = (4789, 8472)  # IANA's, and the Linux (and flannel) default
_VXLAN_HEADER = 8
_ICMP_WORDS = {8: "echo request", 0: "echo reply", 3: "unreachable", 11: "time exceeded"}
# ICMPv6 numbers its types apart; a "packet too big" is IPv6's "fragmentation needed".
_ICMP6_WORDS = {128: "echo request", 129: "echo reply", 1: "unreachable", 2: "packet too big",
                3: "time exceeded"}
_TCP_FLAGS = ((dpkt.tcp.TH_SYN, "S"), (dpkt.tcp.TH_FIN, "F"), (dpkt.tcp.TH_RST, "R"),
              (dpkt.tcp.TH_PUSH, "P"), (dpkt.tcp.TH_ACK, "."))


@dataclass(frozen=True)
class Seen:
    """One IP packet as captured (for a VXLAN packet: the inner one, with `outer` set)."""

    src: str
    dst: str
    proto: str  # tcp, udp, icmp, icmpv6, or the IP protocol number
    sport: int | None
    dport: int | None
    size: int  # bytes of the IP packet
    flags: str = ""  # TCP flags as tcpdump writes them (S, S., P., F., R), or the ICMP type
    icmp_id: int | None = None  # an echo's identifier
    outer: tuple[str, str] | None = None  # (src, dst) of the VXLAN packet that carried it

    def words(self) -> str:
        """"10.244.1.2:43210 > 10.244.2.2:80 [S], 60 bytes" (and "in VXLAN a > b")."""
        ends = (f"{_end(self.src, self.sport)} > {_end(self.dst, self.dport)}"
                if self.sport is not None else f"{self.src} > {self.dst}")
        kind = f" [{self.flags}]" if self.flags else f" {self.proto}"
        carried = f", in VXLAN {self.outer[0]} > {self.outer[1]}" if self.outer else ""
        return f"{ends}{kind}, {self.size} bytes{carried}"


def _end(address: str, port: int | None) -> str:
    """`10.244.1.2:80`, `[fd00::2]:80`."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _address(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def _ip(packet: Any, outer: tuple[str, str] | None = None) -> Seen | None:
    if not isinstance(packet, dpkt.ip.IP | dpkt.ip6.IP6):
        return None
    src, dst = _address(packet.src), _address(packet.dst)
    size = len(packet) if isinstance(packet, dpkt.ip.IP) else 40 + packet.plen
    body = packet.data
    if isinstance(body, dpkt.tcp.TCP):
        flags = "".join(mark for bit, mark in _TCP_FLAGS if body.flags & bit)
        return Seen(src, dst, "tcp", body.sport, body.dport, size, flags, outer=outer)
    if isinstance(body, dpkt.udp.UDP):
        if outer is None and body.dport in VXLAN_PORTS and len(body.data) > _VXLAN_HEADER:
            inner = _frame(bytes(body.data)[_VXLAN_HEADER:], (src, dst))
            if inner is not None:
                return inner
        return Seen(src, dst, "udp", body.sport, body.dport, size, outer=outer)
    if isinstance(body, dpkt.icmp.ICMP | dpkt.icmp6.ICMP6):
        v6 = isinstance(body, dpkt.icmp6.ICMP6)
        echo = body.data if isinstance(body.data, dpkt.icmp.ICMP.Echo | dpkt.icmp6.ICMP6.Echo) \
            else None
        words = (_ICMP6_WORDS if v6 else _ICMP_WORDS).get(body.type, "")
        return Seen(src, dst, "icmpv6" if v6 else "icmp", None, None, size, words,
                    icmp_id=echo.id if echo is not None else None, outer=outer)
    return Seen(src, dst, str(packet.p if isinstance(packet, dpkt.ip.IP) else packet.nxt),
                None, None, size, outer=outer)


def _frame(data: bytes, outer: tuple[str, str] | None = None) -> Seen | None:
    try:
        return _ip(dpkt.ethernet.Ethernet(data).data, outer)
    except (dpkt.dpkt.UnpackError, IndexError):
        return None


_LINK_TYPES: dict[int, Callable[[bytes], Any]] = {
    dpkt.pcap.DLT_EN10MB: lambda d: dpkt.ethernet.Ethernet(d).data,  # veths, bridges, VXLAN
    dpkt.pcap.DLT_LINUX_SLL: lambda d: dpkt.sll.SLL(d).data,
    dpkt.pcap.DLT_LINUX_SLL2: lambda d: dpkt.sll2.SLL2(d).data,  # `-i any`
}


def read_pcap(fh: IO[bytes]) -> Iterator[tuple[float, Seen]]:
    """(timestamp, packet) of every IP packet in a pcap; others are skipped."""
    reader = dpkt.pcap.Reader(fh)
    decode = _LINK_TYPES.get(reader.datalink())
    if decode is None:
        return
    for ts, data in reader:
        try:
            seen = _ip(decode(data))
        except (dpkt.dpkt.UnpackError, IndexError):
            continue
        if seen is not None:
            yield float(ts), seen
