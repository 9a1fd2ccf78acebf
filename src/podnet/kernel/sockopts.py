"""Socket options a full-size probe needs: DF on its packets (and, for an echo, full-size
whatever the kernel learnt of the path), the segment size a TCP connection uses, how much it
sent is not acknowledged yet, and the path MTU the kernel holds for a destination (lowered by
an ICMP 'fragmentation needed': the proof that a full-size packet did not pass)."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

__all__ = ["FullSegment", "dont_fragment", "max_segment", "path_mtu", "unacked"]

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


_TCPI_OPT_TIMESTAMPS = 1


class FullSegment:
    """One segment that fills a packet, sent on a connected TCP socket whose DF is set (see
    `dont_fragment`), and what became of it. It fails when it is not acknowledged (dropped
    without a word: a black hole), or when an ICMP 'fragmentation needed' lowered the path MTU
    below `mtu`, the first link's (TCP then resends smaller pieces; UDP, and paths that drop
    ICMP, would not). `verdict` is (ok, words) once known."""

    def __init__(self, sock: socket.socket, mtu: int | None = None) -> None:
        self.sock = sock
        self.mtu = mtu or path_mtu(sock)
        data = max_segment(sock)
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        options = 12 if info[5] & _TCPI_OPT_TIMESTAMPS else 0
        self.size = data + (40 if sock.family == socket.AF_INET6 else 20) + 20 + options
        self.verdict: tuple[bool, str] | None = None
        # What a hop sends back about a packet too big for its next link.
        v6 = sock.family == socket.AF_INET6
        self.refusal = "'packet too big'" if v6 else "'fragmentation needed'"
        icmp = "ICMPv6" if v6 else "ICMP"
        held = path_mtu(sock)
        if held < self.mtu:
            self.size = self.mtu  # what a full-size packet is; TCP would send only `held`
            self.verdict = (False, f"the kernel already holds a path MTU of {held} for this "
                            f"destination, below the first link's {self.mtu}: an {icmp} "
                            f"{self.refusal} lowered it (`ip route get` shows it)")
            return
        head = b"GET / HTTP/1.0\r\nX-Podnet-Probe: "
        sock.setblocking(False)
        try:
            sock.send(head + b"x" * max(0, data - len(head)))
        except OSError as exc:
            self.verdict = (False, f"the full-size segment could not be sent: {exc.strerror}")

    def poll(self) -> tuple[bool, str] | None:
        """The verdict, once the segment was acknowledged; None while it is not."""
        if self.verdict is None and not unacked(self.sock):
            learnt = path_mtu(self.sock)
            self.verdict = (True, f"a {self.size}-byte packet (DF) was acknowledged") \
                if learnt >= self.mtu else \
                (False, f"a {self.size}-byte packet (DF) was refused: a hop answered "
                 f"{self.refusal}, the path carries {learnt} bytes; TCP resent it in "
                 "smaller pieces")
        return self.verdict

    def give_up(self, timeout: float) -> tuple[bool, str]:
        return self.poll() or (False, f"a {self.size}-byte packet (DF) was not acknowledged "
                               f"within {timeout:g} s, though the handshake was: dropped "
                               "without an ICMP")
