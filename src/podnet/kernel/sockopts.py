"""Socket options a full-size probe needs: DF on its packets (and, for an echo, full-size
whatever the kernel learnt of the path), the segment size a TCP connection uses, how much it
sent is not acknowledged yet, and the path MTU the kernel holds for a destination (lowered by
an ICMP 'fragmentation needed': the proof that a full-size packet did not pass)."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

__all__ = ["dont_fragment", "max_segment", "path_mtu", "unacked"]

# linux/in.h and linux/in6.h (Python's socket module names none of them)
IP_MTU_DISCOVER, IP_MTU, IPV6_MTU_DISCOVER, IPV6_MTU = 10, 14, 23, 24
IP_PMTUDISC_DO = 2  # DF set; an ICMP 'fragmentation needed' lowers the path MTU
IP_PMTUDISC_PROBE = 3  # DF set, the learnt path MTU ignored (datagram and raw sockets only:
# TCP sends such packets without DF, and a router fragments them: no probe at all)


def dont_fragment(sock: socket.socket, *, ignore_path_mtu: bool = False) -> None:
    """DF on every packet; with `ignore_path_mtu` (not for TCP), full-size packets even after
    an ICMP 'fragmentation needed' lowered the path MTU."""
    level = socket.IPPROTO_IPV6 if sock.family == socket.AF_INET6 else socket.IPPROTO_IP
    option = IPV6_MTU_DISCOVER if sock.family == socket.AF_INET6 else IP_MTU_DISCOVER
    sock.setsockopt(level, option, IP_PMTUDISC_PROBE if ignore_path_mtu else IP_PMTUDISC_DO)


def max_segment(sock: socket.socket) -> int:
    """A connected TCP socket's segment payload (MSS less options): bytes that fill one packet."""
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))


def unacked(sock: socket.socket) -> int:
    """Bytes sent on a TCP socket (or queued) that the peer has not acknowledged (SIOCOUTQ)."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    return int(struct.unpack("i", raw)[0])


def path_mtu(sock: socket.socket) -> int:
    """The MTU of the route a connected socket uses (IP_MTU)."""
    level = socket.IPPROTO_IPV6 if sock.family == socket.AF_INET6 else socket.IPPROTO_IP
    option = IPV6_MTU if sock.family == socket.AF_INET6 else IP_MTU
    return int(sock.getsockopt(level, option))
