"""The hop-by-hop walk, pure: a hand-built host and the kernel's answers given as recorded data.

The host is the smallest cluster with every hop kind: pod `a` on node n1 (ptp veth), pod `b` on
node n2, both nodes on a bridge in namespace `fab`, plus a VXLAN variant. The kernel's answers
(`ip route get`, neighbours, FDB) are tables keyed by what the tracer asks; the kernel tests
(tests/kernel/test_trace.py) ask the real kernel the same questions.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace

from podnet.inspect.model import Host, Interface, Namespace, PeerRef, Route
from podnet.kernel import tc_shape
from podnet.kernel.lookup import FdbEntry, Listener, Neighbour, NftRead, RouteAnswer, Vxlan
from podnet.kernel.tc_read import LinkQdiscs, Qdisc
from podnet.trace.nft import Packet
from podnet.trace.text import mtu_line
from podnet.trace.walk import walk


def iface(ifname: str, index: int, kind: str = "veth", *, addrs: tuple[str, ...] = (),
          peer: tuple[str, int] | None = None, master: str | None = None, mac: str = "",
          up: bool = True, state: str = "UP") -> Interface:
    ref = PeerRef(peer[0], None, peer[1]) if peer else None
    return Interface(ifname, index, kind, mac or f"02:00:00:00:{index:02x}:{len(ifname):02x}",
                     1500, state, up, addrs, master, ref)


def ns(label: str, inode: int, *ifaces: Interface, pod: str | None = None,
       node: str | None = None, routes: tuple[Route, ...] = ()) -> Namespace:
    return Namespace(inode, label, label, interfaces=(iface("lo", 1, "loopback"), *ifaces),
                     pod=pod, node=node, routes=routes)


BR_MAC = "02:00:00:00:aa:aa"
N2_ETH0_MAC = "02:00:00:00:22:22"


def cluster() -> Host:
    return Host((
        ns("pa", 10, iface("eth0", 2, addrs=("10.244.1.2/24",), peer=("n1", 3)), pod="dev/a",
           routes=(Route("default", 4, "10.244.1.1", "eth0"),)),
        ns("pb", 11, iface("eth0", 2, addrs=("10.244.2.2/24",), peer=("n2", 3)), pod="dev/b"),
        ns("n1", 20, iface("eth0", 2, addrs=("172.18.0.3/16",), peer=("fab", 3)),
           iface("vetha", 3, addrs=("10.244.1.1/32",), peer=("pa", 2)), node="n1",
           routes=(Route("default", 4, "172.18.0.1", "eth0"),
                   Route("10.244.2.0/24", 4, "172.18.0.4", "eth0"))),
        ns("n2", 21, iface("eth0", 2, addrs=("172.18.0.4/16",), peer=("fab", 4),
                           mac=N2_ETH0_MAC),
           iface("vethb", 3, addrs=("10.244.2.1/32",), peer=("pb", 2)), node="n2",
           routes=(Route("10.244.2.2/32", 4, None, "vethb"),)),
        ns("fab", 30, iface("br", 2, "bridge", addrs=("172.18.0.1/16",), mac=BR_MAC),
           iface("p1", 3, peer=("n1", 2), master="br"), iface("p2", 4, peer=("n2", 2),
                                                                  master="br")),
    ))


@dataclass
class Recorded:
    """The kernel's answers, recorded: (namespace, destination, in-interface) -> route."""

    routes: dict[tuple[str, str, int | None], RouteAnswer]
    neighbours: dict[tuple[str, int, str], Neighbour] = field(default_factory=dict)
    fdbs: dict[str, list[FdbEntry]] = field(default_factory=dict)
    tunnels: dict[tuple[str, int], Vxlan] = field(default_factory=dict)
    listening: dict[str, list[Listener]] = field(default_factory=dict)
    shaping: dict[str, dict[str, LinkQdiscs]] = field(default_factory=dict)
    asked: list[tuple[str, str, int | None]] = field(default_factory=list)

    def route(self, ns: Namespace, dst: str, *, src: str | None = None,
              iif: int | None = None) -> RouteAnswer:
        self.asked.append((ns.label, dst, iif))
        return self.routes.get((ns.label, dst, iif),
                               RouteAnswer(dst, "error", error=errno.ENETUNREACH))

    def neighbour(self, ns: Namespace, ifindex: int, ip: str) -> Neighbour | None:
        return self.neighbours.get((ns.label, ifindex, ip))

    def fdb(self, ns: Namespace) -> list[FdbEntry]:
        return self.fdbs.get(ns.label, [])

    def vxlan(self, ns: Namespace, ifindex: int) -> Vxlan | None:
        return self.tunnels.get((ns.label, ifindex))

    def ruleset(self, ns: Namespace) -> NftRead:
        return NftRead()

    def listeners(self, ns: Namespace) -> list[Listener]:
        return self.listening.get(ns.label, [])

    def sysctl(self, ns: Namespace, key: str) -> str | None:
        return "1"

    def conntrack_backend(self, ns: Namespace, request: Packet) -> str | None:
        return None

    def qdiscs(self, ns: Namespace) -> dict[str, LinkQdiscs]:
        return self.shaping.get(ns.label, {})


def ptp_answers() -> Recorded:
    dst = "10.244.2.2"
    return Recorded(
        routes={
            ("pa", dst, None): RouteAnswer(dst, oif=2, gateway="10.244.1.1", src="10.244.1.2"),
            ("n1", dst, 3): RouteAnswer(dst, oif=2, gateway="172.18.0.4"),
            ("n2", dst, 2): RouteAnswer(dst, oif=3),
            ("pb", dst, 2): RouteAnswer(dst, "local", oif=1),
        },
        neighbours={("n1", 2, "172.18.0.4"): Neighbour("172.18.0.4", N2_ETH0_MAC, "REACHABLE",
                                                        2)},
        fdbs={"fab": [FdbEntry(N2_ETH0_MAC, 4, 2, None, "REACHABLE")]},
        listening={"pb": [Listener("tcp", "0.0.0.0", 80, ((7, "podnet-http"),))]},
    )


PKT = Packet("10.244.1.2", "10.244.2.2", "tcp", 40000, 80)


def test_pod_to_pod_across_nodes_names_every_hop_in_order() -> None:
    host = cluster()
    reads = ptp_answers()
    path = walk(host, reads, host.find("pa")[0], PKT)
    assert path.outcome == "delivered" and path.broken is None and path.end == "pb"
    assert [(h.netns, h.step) for h in path.hops] == [
        ("pa", "route"), ("pa", "veth"), ("n1", "route"), ("n1", "veth"), ("fab", "bridge"),
        ("fab", "veth"), ("n2", "route"), ("n2", "veth"), ("pb", "deliver"),
    ]
    assert "fdb reachable" in path.hops[4].notes[0]
    assert "PID 7 (podnet-http)" in path.hops[-1].text
    # Each router was asked about the packet as it arrived: from its in-interface.
    assert reads.asked == [("pa", PKT.dst, None), ("n1", PKT.dst, 3), ("n2", PKT.dst, 2),
                           ("pb", PKT.dst, 2)]
    assert path.hops[2].commands == ("ip -n n1 route get 10.244.2.2 from 10.244.1.2 iif vetha",)


def test_a_link_that_is_down_is_the_broken_hop() -> None:
    host = cluster()
    n2 = host.find("n2")[0]
    down = replace(n2, interfaces=tuple(replace(i, up=False, state="DOWN")
                                        if i.ifname == "vethb" else i for i in n2.interfaces))
    host = Host(tuple(down if x.label == "n2" else x for x in host.namespaces))
    path = walk(host, ptp_answers(), host.find("pa")[0], PKT)
    assert path.outcome == "broken"
    hop = path.broken_hop
    assert hop is not None and hop.netns == "n2" and hop.reason == "interface down"
    assert "vethb is down" in hop.text


def test_a_missing_route_is_blamed_on_the_node_that_took_its_default_route() -> None:
    reads = ptp_answers()
    reads.routes[("n1", PKT.dst, 3)] = RouteAnswer(PKT.dst, oif=2, gateway="172.18.0.1")
    host = cluster()
    n1 = host.find("n1")[0]
    n1 = replace(n1, routes=n1.routes[:1])  # 10.244.2.0/24 deleted: only the default is left
    host = Host(tuple(n1 if x.label == "n1" else x for x in host.namespaces))
    path = walk(host, reads, host.find("pa")[0], PKT)
    assert path.outcome == "broken"
    assert path.hops[-1].netns == "fab" and path.hops[-1].reason == "no route"
    blamed = path.broken_hop
    assert blamed is not None and blamed.netns == "n1" and blamed.step == "route"
    assert any("no route for it other than the default" in n for n in blamed.notes)


def test_nothing_listening_is_the_broken_hop() -> None:
    reads = ptp_answers()
    reads.listening = {}
    host = cluster()
    path = walk(host, reads, host.find("pa")[0], PKT)
    hop = path.broken_hop
    assert hop is not None and hop.step == "deliver" and hop.reason == "no listener"


def test_a_reply_walks_back_from_the_destination() -> None:
    reads = ptp_answers()
    back = "10.244.1.2"
    reads.routes.update({
        ("pb", back, None): RouteAnswer(back, oif=2, gateway="10.244.2.1", src="10.244.2.2"),
    })
    host = cluster()
    forward = walk(host, reads, host.find("pa")[0], PKT)
    reply = walk(host, reads, host.find("pb")[0], Packet(PKT.dst, PKT.src, "tcp", 80, 40000),
                 reply_to=forward)
    assert reply.outcome == "broken"  # n2 has no route back in this recording
    hop = reply.broken_hop
    assert hop is not None and hop.netns == "n2" and hop.reason == "no route"


def vxlan_host() -> tuple[Host, Recorded]:
    host = cluster()
    n1, n2 = host.find("n1")[0], host.find("n2")[0]
    n1 = replace(n1, interfaces=(*n1.interfaces, iface("flannel.1", 4, "vxlan",
                                                       addrs=("10.244.1.0/32",))))
    n2 = replace(n2, interfaces=(*n2.interfaces, iface("flannel.1", 4, "vxlan",
                                                       addrs=("10.244.2.0/32",),
                                                       mac="02:00:00:00:f2:f2")))
    host = Host(tuple({"n1": n1, "n2": n2}.get(x.label, x) for x in host.namespaces))
    reads = ptp_answers()
    reads.routes[("n1", PKT.dst, 3)] = RouteAnswer(PKT.dst, oif=4, gateway="10.244.2.0")
    reads.routes[("n1", "172.18.0.4", None)] = RouteAnswer("172.18.0.4", oif=2,
                                                           src="172.18.0.3")
    reads.routes[("n2", "172.18.0.4", 2)] = RouteAnswer("172.18.0.4", "local", oif=1)
    reads.routes[("n2", PKT.dst, 4)] = RouteAnswer(PKT.dst, oif=3)
    reads.neighbours[("n1", 4, "10.244.2.0")] = Neighbour("10.244.2.0", "02:00:00:00:f2:f2",
                                                          "PERMANENT", 4)
    reads.neighbours[("n1", 2, "172.18.0.4")] = Neighbour("172.18.0.4", N2_ETH0_MAC,
                                                          "REACHABLE", 2)
    reads.fdbs["n1"] = [FdbEntry("02:00:00:00:f2:f2", 4, None, "172.18.0.4", "PERMANENT")]
    for node, local in (("n1", "172.18.0.3"), ("n2", "172.18.0.4")):
        reads.tunnels[(node, 4)] = Vxlan(4, 1, 8472, local, None, 2, False)
    return host, reads


def test_vxlan_encapsulates_crosses_the_underlay_and_decapsulates() -> None:
    host, reads = vxlan_host()
    path = walk(host, reads, host.find("pa")[0], PKT)
    assert path.outcome == "delivered", [h.text for h in path.hops]
    assert [(h.netns, h.step) for h in path.hops] == [
        ("pa", "route"), ("pa", "veth"), ("n1", "route"), ("n1", "vxlan"), ("n1", "route"),
        ("n1", "veth"), ("fab", "bridge"), ("fab", "veth"), ("n2", "decap"), ("n2", "route"),
        ("n2", "veth"), ("pb", "deliver"),
    ]
    assert "VNI 1" in path.hops[3].text and "remote 172.18.0.4" in path.hops[3].text
    assert "UDP 8472" in path.hops[8].text
    assert path.packet == PKT  # the inner packet, unchanged, is what was delivered


def test_vxlan_without_an_fdb_entry_is_broken_at_the_tunnel() -> None:
    host, reads = vxlan_host()
    reads.fdbs["n1"] = []
    path = walk(host, reads, host.find("pa")[0], PKT)
    hop = path.broken_hop
    assert hop is not None and hop.step == "vxlan" and hop.reason == "no fdb entry"


# --- the full-size packet: each link's MTU ------------------------------------------------------


def with_mtu(host: Host, label: str, ifname: str, mtu: int) -> Host:
    ns = host.find(label)[0]
    changed = replace(ns, interfaces=tuple(replace(i, mtu=mtu) if i.ifname == ifname else i
                                           for i in ns.interfaces))
    return Host(tuple(changed if x.label == label else x for x in host.namespaces))


def test_pods_larger_than_the_tunnel_are_too_big_where_the_node_routes_into_it() -> None:
    host, reads = vxlan_host()
    host = with_mtu(host, "n1", "flannel.1", 1450)  # the pods stay at 1500
    path = walk(host, reads, host.find("pa")[0], PKT, size=0)
    assert path.outcome == "delivered" and path.broken is None  # small packets pass
    assert path.size == 1500 and path.too_big == 2
    hop = path.hops[2]
    assert (hop.netns, hop.step, hop.status, hop.reason) == ("n1", "route", "warn", "too big")
    assert (hop.dev, hop.mtu) == ("flannel.1", 1450)
    assert any("does not fit flannel.1 (mtu 1450)" in n and "fragmentation needed" in n
               for n in hop.notes)
    assert path.hops[3].notes[0].startswith("VXLAN adds 50 bytes")
    line = mtu_line(path)
    assert line is not None and "flannel.1 1450 (+50 VXLAN) > eth0 1500" in line
    assert line.endswith("a 1500-byte packet does not pass hop 3 (node n1)")


def test_a_tunnel_as_large_as_its_underlay_is_too_big_on_the_underlay() -> None:
    host, reads = vxlan_host()  # flannel.1 at 1500 over an eth0 of 1500: no room for 50 bytes
    path = walk(host, reads, host.find("pa")[0], PKT, size=0)
    assert path.too_big == 4 and path.hops[4].dev == "eth0"
    assert any("tunnel's overhead" in n for n in path.hops[4].notes)
    assert path.size == 1500  # the inner size, as the walk started


def test_a_veth_end_smaller_than_its_peer_drops_without_a_word() -> None:
    host = with_mtu(cluster(), "n1", "vetha", 1400)
    path = walk(host, ptp_answers(), host.find("pa")[0], PKT, size=0)
    assert path.too_big == 1
    hop = path.hops[1]
    assert (hop.netns, hop.step, hop.dev, hop.mtu) == ("pa", "veth", "eth0", 1500)
    assert any("vetha in node n1 drops larger frames as they arrive" in n for n in hop.notes)


def test_without_a_size_no_mtu_is_judged() -> None:
    host = with_mtu(cluster(), "n1", "vetha", 1400)
    path = walk(host, ptp_answers(), host.find("pa")[0], PKT)
    assert path.size is None and path.too_big is None
    assert all(h.status == "ok" for h in path.hops)
    assert [(h.dev, h.mtu) for h in path.hops] == [
        ("eth0", 1500), ("eth0", 1500), ("eth0", 1500), ("eth0", 1500), ("p2", 1500),
        ("p2", 1500), ("vethb", 1500), ("vethb", 1500), ("eth0", 1500)]  # where it leaves


# --- qdiscs: what netem and tbf do to the packet -------------------------------------------------


def test_netem_and_a_rate_limit_are_named_where_the_packet_meets_them() -> None:
    reads = ptp_answers()
    netem = Qdisc("netem", "70d:", None, {"delay": {"delay": 0.05, "jitter": 0.005},
                                          "loss-random": {"loss": 0.01}})
    tbf = Qdisc("tbf", "70e:", "70d:1", {"rate": 1250000})
    reads.shaping = {
        "n1": {"eth0": LinkQdiscs("eth0", (netem, tbf))},
        "pb": {"eth0": LinkQdiscs("eth0", (Qdisc("ingress", "ffff:", "ffff:fff1"),),
                                  "pnifb1", tc_shape.Shape(rate_bps=5_000_000))},
    }
    host = cluster()
    path = walk(host, reads, host.find("pa")[0], PKT)
    n1_route = path.hops[2]
    assert n1_route.netns == "n1" and n1_route.notes[-1] == (
        "delayed 50ms +/- 5ms by netem on eth0; 1% of packets dropped by netem on eth0; "
        "rate-limited to 10mbit by tbf on eth0")
    assert not any("netem" in n for h in path.hops[3:] for n in h.notes), "said once"
    into_pb = path.hops[7]
    assert into_pb.step == "veth" and into_pb.notes[-1] == (
        "rate-limited to 5mbit by tbf on pnifb1 (arriving on eth0)")
