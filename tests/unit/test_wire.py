"""The capture's pure half: pcaps (built with dpkt, as tcpdump writes them) read back into
packets, VXLAN looked inside; a path's hops marked with what each capture saw; tcpdump's
command line and its closing counts."""

from __future__ import annotations

import io
import socket

import dpkt

from podnet.capture.decode import read_pcap
from podnet.capture.tcpdump import CaptureSpec, Stats
from podnet.trace.model import Hop, Path
from podnet.trace.nft import Packet
from podnet.trace.text import wire_line
from podnet.trace.wire import Point, expression, mark, points_of


def tcp(src: str, dst: str, sport: int, dport: int, flags: int = dpkt.tcp.TH_SYN,
        payload: bytes = b"") -> dpkt.ethernet.Ethernet:
    segment = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, data=segment)
    ip.len = len(ip)
    return dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)


def in_vxlan(frame: dpkt.ethernet.Ethernet, src: str, dst: str) -> dpkt.ethernet.Ethernet:
    header = b"\x08\x00\x00\x00\x00\x00\x01\x00"  # flags I, VNI 1
    udp = dpkt.udp.UDP(sport=40000, dport=8472, data=header + bytes(frame))
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=17, data=udp)
    ip.len = len(ip)
    return dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)


def pcap(*frames: dpkt.ethernet.Ethernet) -> io.BytesIO:
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out)
    for i, frame in enumerate(frames):
        writer.writepkt(bytes(frame), ts=1.0 + i)
    out.seek(0)
    return out


def test_packets_read_back_with_their_addresses_and_flags() -> None:
    got = [s for _, s in read_pcap(pcap(
        tcp("10.244.1.2", "10.96.0.10", 43210, 80),
        tcp("10.96.0.10", "10.244.1.2", 80, 43210, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK),
        tcp("10.244.1.2", "10.96.0.10", 43210, 80, dpkt.tcp.TH_ACK, b"x" * 1448)))]
    assert [(s.src, s.dport, s.flags, s.size) for s in got] == [
        ("10.244.1.2", 80, "S", 40), ("10.96.0.10", 43210, "S.", 40),
        ("10.244.1.2", 80, ".", 1488)]
    assert got[0].words() == "10.244.1.2:43210 > 10.96.0.10:80 [S], 40 bytes"


def test_a_vxlan_packet_is_read_as_the_packet_it_carries() -> None:
    inner = tcp("10.244.1.2", "10.244.2.2", 43210, 80)
    (_, seen), = read_pcap(pcap(in_vxlan(inner, "172.18.0.3", "172.18.0.4")))
    assert (seen.src, seen.dst, seen.sport, seen.outer) == (
        "10.244.1.2", "10.244.2.2", 43210, ("172.18.0.3", "172.18.0.4"))
    assert seen.words().endswith(", in VXLAN 172.18.0.3 > 172.18.0.4")


def hop(step: str, netns: str, dev: str | None) -> Hop:
    return Hop(step, netns, f"node {netns}", "...", dev=dev, mtu=1500 if dev else None)


def test_hops_are_marked_seen_or_not_seen_and_the_last_sighting_named() -> None:
    path = Path((hop("route", "pa", "eth0"), hop("veth", "pa", "eth0"), hop("nat", "n1", None),
                 hop("route", "n1", "veth2"), hop("deliver", "pb", "eth0")), "delivered",
                Packet("10.244.1.2", "10.244.2.2"))
    assert points_of(path) == [Point("pa", "eth0"), Point("n1", "veth2"), Point("pb", "eth0")]
    seen = {Point("pa", "eth0"): [s for _, s in read_pcap(pcap(
                tcp("10.244.1.2", "10.96.0.10", 43210, 80),
                tcp("10.96.0.10", "10.244.1.2", 80, 43210, dpkt.tcp.TH_RST)))],
            Point("n1", "veth2"): [], Point("pb", "eth0"): []}
    marked = mark(path, seen, 43210, 0)
    assert [h.seen for h in marked.hops] == [True, True, None, False, False]
    assert marked.hops[0].wire.startswith("seen on eth0: 10.244.1.2:43210 > 10.96.0.10:80 [S]")
    assert marked.hops[0].wire.endswith("; 1 replies")
    assert marked.hops[3].wire == "NOT seen on veth2"
    assert wire_line(marked) == ("captures: last seen at hop 2 (node pa, eth0); not seen from "
                                 "hop 4 (node n1) on")


def test_the_filter_and_tcpdumps_arguments() -> None:
    assert expression(43210) == ["(tcp port 43210) or (udp port 4789 or udp port 8472)"]
    assert expression(None)[0].startswith("(icmp) or ")
    spec = CaptureSpec("eth0", ("tcp", "port", "80"), count=5)
    assert spec.argv("tcpdump", pcap=True) == [
        "tcpdump", "-i", "eth0", "-n", "-U", "-w", "-", "-c", "5", "--", "tcp", "port", "80"]
    assert spec.argv("tcpdump", pcap=False)[:6] == [
        "tcpdump", "-i", "eth0", "-n", "--immediate-mode", "-l"]
    stats = Stats.parse("12 packets captured\n14 packets received by filter\n"
                        "0 packets dropped by kernel\n")
    assert (stats.captured, stats.received, stats.dropped) == (12, 14, 0)
