"""`podnet trace` over IPv6, pure: the walk on a hand-built IPv6 (and dual-stack) host with the
kernel's answers recorded, the nftables evaluator on the lab's `ip6` rules, ICMPv6 echoes read
back, and destinations resolved per family. The kernel tests (tests/kernel/test_tools_ipv6.py)
ask the real kernel the same questions on IPv6-only and dual-stack labs.

Every interface carries a link-local address, as on a real host, and several carry the same one
(fe80::1, as Calico and kube-router give every pod's gateway): none of them names an owner.
"""

from __future__ import annotations

import io
import socket
import struct
from dataclasses import replace
from typing import Any

import dpkt
import pytest

from podnet.capture.decode import read_pcap
from podnet.errors import ObjectMissingError, StateError
from podnet.inspect.model import Host, Namespace, Route
from podnet.kernel import echo
from podnet.kernel.lookup import FdbEntry, Listener, Neighbour, NftRead, RouteAnswer, Vxlan
from podnet.trace.nft import HookContext, Packet, evaluate, rule_text
from podnet.trace.target import LabView, resolve_destination
from podnet.trace.walk import HostIndex, walk
from podnet.trace.wire import expression
from podnet.trace.words import endpoint, matched_route
from tests.unit.test_trace_nft import chain, match, meta, payload, prefix, rule
from tests.unit.test_trace_walk import N2_ETH0_MAC, Recorded, iface, ns

A, B = "fd00:10:244:1::2", "fd00:10:244:2::2"
GW1, GW2 = "fd00:10:244:1::1", "fd00:10:244:2::1"
N1, N2 = "fc00:f853:ccd:e793::3", "fc00:f853:ccd:e793::4"
LL = "fe80::1/64"  # the same link-local address on many interfaces


def cluster6() -> Host:
    """Pod a on n1 and pod b on n2 (ptp: the gateway as a /128 on each node end), the nodes on
    a bridge in `fab`; dual-stack pod a also has 10.244.1.2."""
    return Host((
        ns("pa", 10, iface("eth0", 2, addrs=("10.244.1.2/24", f"{A}/64", "fe80::a/64"),
                           peer=("n1", 3)), pod="dev/a",
           routes=(Route("default", 4, "10.244.1.1", "eth0"), Route("default", 6, GW1, "eth0"),
                   Route("fd00:10:244:1::/64", 6, None, "eth0"))),
        ns("pb", 11, iface("eth0", 2, addrs=(f"{B}/64", "fe80::b/64"), peer=("n2", 3)),
           pod="dev/b"),
        ns("n1", 20, iface("eth0", 2, addrs=(f"{N1}/64", LL), peer=("fab", 3)),
           iface("vetha", 3, addrs=(f"{GW1}/128", LL), peer=("pa", 2)), node="n1",
           routes=(Route("default", 6, "fc00:f853:ccd:e793::1", "eth0"),
                   Route("fd00:10:244:2::/64", 6, N2, "eth0"))),
        ns("n2", 21, iface("eth0", 2, addrs=(f"{N2}/64", LL), peer=("fab", 4), mac=N2_ETH0_MAC),
           iface("vethb", 3, addrs=(f"{GW2}/128", LL), peer=("pb", 2)), node="n2"),
        ns("fab", 30, iface("br", 2, "bridge", addrs=("fc00:f853:ccd:e793::1/64", LL)),
           iface("p1", 3, peer=("n1", 2), master="br"),
           iface("p2", 4, peer=("n2", 2), master="br")),
    ))


def answers6() -> Recorded:
    return Recorded(
        routes={
            ("pa", B, None): RouteAnswer(B, oif=2, gateway=GW1, src=A),
            ("n1", B, 3): RouteAnswer(B, oif=2, gateway=N2),
            ("n2", B, 2): RouteAnswer(B, oif=3),
            ("pb", B, 2): RouteAnswer(B, "local", oif=1),
        },
        neighbours={("n1", 2, N2): Neighbour(N2, N2_ETH0_MAC, "REACHABLE", 2)},
        fdbs={"fab": [FdbEntry(N2_ETH0_MAC, 4, 2, None, "REACHABLE")]},
        listening={"pb": [Listener("tcp", "::", 80, ((7, "podnet-http"),))]},
    )


PKT6 = Packet(A, B, "tcp", 40000, 80)


def test_the_index_knows_ipv6_owners_but_not_link_local_or_shared_gateways() -> None:
    index = HostIndex(cluster6())
    assert index.owners[A][0].label == "pa" and index.owners[B][0].label == "pb"
    assert index.owners["10.244.1.2"][0].label == "pa"  # both families of a dual-stack pod
    assert index.owners[N2][0].label == "n2"
    assert "fe80::1" not in index.owners and "fe80::a" not in index.owners
    assert GW1 not in index.owners  # a /128 on a node end, as a /32 in kindnet's IPv4
    assert {GW1, N1, "fe80::1"} <= index.local[20]  # but local to n1, for `fib daddr type`


def test_ipv6_pod_to_pod_across_nodes_names_every_hop_with_ndp() -> None:
    host = cluster6()
    reads = answers6()
    path = walk(host, reads, host.find("pa")[0], PKT6)
    assert path.outcome == "delivered" and path.broken is None, [h.text for h in path.hops]
    assert [(h.netns, h.step) for h in path.hops] == [
        ("pa", "route"), ("pa", "veth"), ("n1", "route"), ("n1", "veth"), ("fab", "bridge"),
        ("fab", "veth"), ("n2", "route"), ("n2", "veth"), ("pb", "deliver"),
    ]
    assert path.hops[0].notes == (f"matched route: default via {GW1} dev eth0",)
    assert path.hops[1].notes[0] == (f"{GW1} not in the neighbour table yet: a neighbour "
                                     "solicitation (NDP) asks, 02:00:00:00:03:05 answers")
    assert f"ip -n pa -6 neigh show {GW1} dev eth0" in path.hops[1].commands
    assert path.hops[3].notes[0] == f"{N2} is {N2_ETH0_MAC} (REACHABLE)"
    assert path.hops[-1].text.endswith("PID 7 (podnet-http) listens on [::]:80")
    assert path.hops[2].commands == (f"ip -n n1 route get {B} from {A} iif vetha",)


def test_an_ipv4_only_listener_does_not_take_ipv6() -> None:
    reads = answers6()
    reads.listening = {"pb": [Listener("tcp", "0.0.0.0", 80, ())]}
    host = cluster6()
    hop = walk(host, reads, host.find("pa")[0], PKT6).broken_hop
    assert hop is not None and hop.reason == "no listener"


def test_a_failed_ipv6_neighbour_says_it_does_not_answer_ndp() -> None:
    reads = answers6()
    reads.neighbours[("n1", 2, N2)] = Neighbour(N2, None, "FAILED", 2)
    host = cluster6()
    hop = walk(host, reads, host.find("pa")[0], PKT6).broken_hop
    assert hop is not None and hop.reason == "no neighbour"
    assert hop.text == f"{N2} does not answer neighbour solicitations (NDP) on eth0 " \
        "(neighbour FAILED)"
    assert hop.commands == (f"ip -n n1 -6 neigh show {N2} dev eth0",)


def test_a_router_drops_a_packet_too_big_with_icmpv6_packet_too_big() -> None:
    host = cluster6()
    n1 = host.find("n1")[0]
    n1 = replace(n1, interfaces=tuple(replace(i, mtu=1280) if i.ifname == "eth0" else i
                                      for i in n1.interfaces))
    host = Host(tuple(n1 if x.label == "n1" else x for x in host.namespaces))
    path = walk(host, answers6(), host.find("pa")[0], PKT6, size=0)
    assert path.too_big == 2
    assert any("IPv6 routers never fragment" in n and "ICMPv6 'packet too big' back to "
               f"{A}" in n for n in path.hops[2].notes)


def test_the_forwarding_sysctl_asked_is_the_packet_family() -> None:
    asked: list[str] = []

    class Off(Recorded):
        def sysctl(self, ns: Any, key: str) -> str | None:
            asked.append(key)
            return "0"

    reads = Off(dict(answers6().routes))
    reads.routes[("n1", B, 3)] = RouteAnswer(B, "error", error=113)  # EHOSTUNREACH
    host = cluster6()
    hop = walk(host, reads, host.find("pa")[0], PKT6).broken_hop
    assert hop is not None and hop.reason == "forwarding off"
    assert asked == ["net.ipv6.conf.vetha.forwarding"]
    assert "ip netns exec n1 sysctl net.ipv6.conf.vetha.forwarding" in hop.commands


TUNNEL_MAC = "02:00:00:00:f2:f2"


def vxlan6(*, dual: bool = False) -> tuple[Host, Recorded]:
    """The IPv6 cluster with flannel-v6.1 on both nodes (ifindex 4 on n1; on n2 4, or 5 when
    `dual` puts an IPv4 flannel.1 at 4 with the same VNI and port, as flannel's dual-stack)."""
    host = cluster6()
    n1, n2 = host.find("n1")[0], host.find("n2")[0]
    tunnel = "fd00:10:244:2::"
    at = 5 if dual else 4
    n1 = replace(n1, interfaces=(*n1.interfaces, iface("flannel-v6.1", 4, "vxlan",
                                                       addrs=("fd00:10:244:1::/128", LL))))
    v4 = (iface("flannel.1", 4, "vxlan", addrs=("10.244.2.0/32",)),) if dual else ()
    n2 = replace(n2, interfaces=(*n2.interfaces, *v4,
                                 iface("flannel-v6.1", at, "vxlan", addrs=(f"{tunnel}/128", LL),
                                       mac=TUNNEL_MAC)))
    host = Host(tuple({"n1": n1, "n2": n2}.get(x.label, x) for x in host.namespaces))
    reads = answers6()
    reads.routes.update({
        ("n1", B, 3): RouteAnswer(B, oif=4, gateway=tunnel),
        ("n1", N2, None): RouteAnswer(N2, oif=2, src=N1),
        ("n2", N2, 2): RouteAnswer(N2, "local", oif=1),
        ("n2", B, at): RouteAnswer(B, oif=3),
    })
    reads.neighbours[("n1", 4, tunnel)] = Neighbour(tunnel, TUNNEL_MAC, "PERMANENT", 4)
    reads.fdbs["n1"] = [FdbEntry(TUNNEL_MAC, 4, None, N2, "PERMANENT")]
    reads.tunnels[("n1", 4)] = Vxlan(4, 1, 8472, N1, None, 2, False)
    reads.tunnels[("n2", at)] = Vxlan(at, 1, 8472, N2, None, 2, False)
    if dual:
        reads.tunnels[("n2", 4)] = Vxlan(4, 1, 8472, "172.18.0.4", None, 2, False)
    return host, reads


def test_vxlan_over_an_ipv6_underlay_adds_70_bytes() -> None:
    host, reads = vxlan6()
    path = walk(host, reads, host.find("pa")[0], PKT6, size=0)
    assert path.outcome == "delivered", [h.text for h in path.hops]
    vx = path.hops[3]
    assert vx.step == "vxlan" and f"encapsulated in UDP to [{N2}]:8472" in vx.text
    assert vx.notes[0].startswith("VXLAN adds 70 bytes")
    assert [h.step for h in path.hops[4:9]] == ["route", "veth", "bridge", "veth", "decap"]
    assert path.packet == PKT6


def test_masquerade_takes_the_outgoing_interface_address_of_the_packet_family() -> None:
    rules = [
        {"table": {"family": "inet", "name": "podnet"}},
        chain("nat-postrouting", "postrouting", 100, kind="nat", family="inet"),
        rule("nat-postrouting", match(payload("ip6", "saddr"), prefix("fd00:10:244::", 56)),
             match(payload("ip6", "daddr"), prefix("fd00:10:244::", 56), "!="),
             {"masquerade": None}, family="inet"),
    ]
    class Ruled(Recorded):
        def ruleset(self, ns: Namespace) -> NftRead:
            return NftRead(tuple(rules)) if ns.label == "n1" else NftRead()

    world = "2001:db8:5100::100"
    host = cluster6()
    reads = Ruled({("pa", world, None): RouteAnswer(world, oif=2, gateway=GW1, src=A),
                   ("n1", world, 3): RouteAnswer(world, oif=2, gateway="fc00:f853:ccd:e793::1")})
    path = walk(host, reads, host.find("pa")[0], Packet(A, world, "tcp", 40000, 80))
    nat = next(h for h in path.hops if h.step == "nat")
    assert nat.text.startswith(f"masquerade: source {A} -> {N1} (")  # not the link-local


# --- the nftables evaluator over IPv6 --------------------------------------------------------

VIP6 = "fd00:10:96::4dfc"
EP6 = "fd00:10:244:2::2"
KEY6 = {"concat": [payload("ip6", "daddr"), meta("l4proto"), payload("th", "dport")]}
KEY4 = {"concat": [payload("ip", "daddr"), meta("l4proto"), payload("th", "dport")]}
INET: list[dict[str, Any]] = [
    {"table": {"family": "inet", "name": "podnet"}},
    {"map": {"family": "inet", "table": "podnet", "name": "service-ips", "map": "verdict",
             "elem": [[{"concat": ["10.96.0.10", "tcp", 80]}, {"goto": {"target": "svc4"}}]]}},
    {"map": {"family": "inet", "table": "podnet", "name": "service-ips6", "map": "verdict",
             "elem": [[{"concat": [VIP6, "tcp", 80]}, {"goto": {"target": "svc6"}}]]}},
    chain("nat-prerouting", "prerouting", -100, kind="nat", family="inet"),
    chain("services", family="inet"), chain("svc4", family="inet"),
    chain("svc6", family="inet"), chain("filter-input", "input", 0, "drop", family="inet"),
    rule("nat-prerouting", {"jump": {"target": "services"}}, family="inet"),
    rule("services", {"vmap": {"key": KEY4, "data": "@service-ips"}}, family="inet"),
    rule("services", {"vmap": {"key": KEY6, "data": "@service-ips6"}}, family="inet"),
    rule("svc4", match(meta("l4proto"), "tcp"),
         {"dnat": {"family": "ip", "addr": "10.244.2.2", "port": 80}}, family="inet"),
    rule("svc6", match(meta("l4proto"), "tcp"),
         {"dnat": {"family": "ip6", "addr": EP6, "port": 80}}, family="inet"),
    rule("filter-input", match(meta("l4proto"), "ipv6-icmp"),
         match(payload("icmpv6", "type"), "echo-request"), {"accept": None}, family="inet"),
    rule("filter-input", match(payload("icmp", "type"), "echo-request"), {"accept": None},
         family="inet"),
]


def test_an_ipv6_clusterip_is_dnatted_by_the_ip6_map_and_never_by_the_ip_one() -> None:
    result = evaluate(INET, HookContext("prerouting", iif="veth1"),
                      Packet(A, VIP6, "tcp", 40000, 80))
    assert [(n.kind, n.addr, n.port) for n in result.nat] == [("dnat", EP6, 80)]
    assert result.packet.dst == EP6
    assert result.nat[0].rule.text == f"meta l4proto tcp dnat ip6 to [{EP6}]:80"
    v4 = evaluate(INET, HookContext("prerouting"), Packet("10.244.1.2", "10.96.0.10", "tcp",
                                                          40000, 80))
    assert [n.addr for n in v4.nat] == ["10.244.2.2"]


def test_an_icmpv6_echo_meets_icmpv6_rules_and_not_icmp_ones() -> None:
    ctx = HookContext("input", iif="eth0")
    six = evaluate(INET, ctx, Packet(A, B, "icmpv6"))
    assert six.verdict == "accept" and six.accepted_by[0].text.startswith(
        "meta l4proto ipv6-icmp icmpv6 type echo-request")
    four = evaluate(INET, ctx, Packet("10.244.1.2", "10.244.2.2", "icmp"))
    assert four.verdict == "accept" and four.accepted_by[0].text == "icmp type echo-request accept"
    assert evaluate(INET, ctx, Packet(A, B, "tcp", 1, 80)).verdict == "drop"
    # A reply (conntrack established) is an echo reply: the request rules do not take it.
    replied = evaluate(INET, HookContext("input", ct_state="established"),
                       Packet(B, A, "icmpv6"))
    assert replied.verdict == "drop"


def test_nat_rules_print_their_family_and_bracket_ipv6() -> None:
    assert rule_text([{"dnat": {"family": "ip6", "addr": EP6, "port": 80}}]) == \
        f"dnat ip6 to [{EP6}]:80"
    assert rule_text([{"snat": {"family": "ip", "addr": "10.0.0.1"}}]) == "snat ip to 10.0.0.1"


def test_words_for_ipv6() -> None:
    assert endpoint(EP6, 80) == f"[{EP6}]:80" and endpoint("10.0.0.1", 80) == "10.0.0.1:80"
    pod = cluster6().find("pa")[0]
    route = matched_route(pod, B)
    assert route is not None and (route.dst, route.gateway) == ("default", GW1)
    local = matched_route(pod, "fd00:10:244:1::9")
    assert local is not None and local.dst == "fd00:10:244:1::/64"
    v4 = matched_route(pod, "10.244.9.9")
    assert v4 is not None and v4.gateway == "10.244.1.1"


# --- ICMPv6 echoes --------------------------------------------------------------------------


def test_an_icmpv6_request_leaves_its_checksum_to_the_kernel_and_has_the_size_asked() -> None:
    data = echo.request(7, 2, 1430, echo.ICMP6)
    assert data[0] == 128 and data[1] == 0 and data[2:4] == b"\0\0"
    assert struct.unpack("!HH", data[4:8]) == (7, 2)
    assert len(data) + 40 == 1430  # the IPv6 header (40 bytes) makes the packet 1430
    v4 = echo.request(7, 2, 1500)
    assert v4[0] == 8 and len(v4) + 20 == 1500 and v4[2:4] != b"\0\0"


class _Raw:
    """A raw ICMPv6 socket's one answer (such a socket gives no IP header)."""

    family = socket.AF_INET6

    def __init__(self, data: bytes, sender: str) -> None:
        self.data, self.sender = data, sender

    def recvfrom(self, _size: int) -> tuple[bytes, tuple[str, int, int, int]]:
        return self.data, (self.sender, 0, 0, 0)


def _quoted(ident: int, seq: int) -> bytes:
    """The start of our request as an ICMPv6 error quotes it: its IPv6 header, then ICMPv6."""
    return bytes(40) + echo.request(ident, seq, 0, echo.ICMP6)


def test_icmpv6_answers_are_read_as_reply_packet_too_big_or_not_ours() -> None:
    reply = struct.pack("!BBHHH", 129, 0, 0, 7, 2) + b"x"
    answer = echo.read_answer(_Raw(reply, B), B, 7, 2)  # type: ignore[arg-type]
    assert answer is not None and answer.ok and answer.detail == f"echo reply from {B}"
    too_big = struct.pack("!BBHI", 2, 0, 0, 1280) + _quoted(7, 2)
    answer = echo.read_answer(_Raw(too_big, GW1), B, 7, 2)  # type: ignore[arg-type]
    assert answer is not None and not answer.ok and answer.next_hop_mtu == 1280
    assert answer.detail == f"{GW1} says packet too big (its next hop carries 1280 bytes)"
    unreachable = struct.pack("!BBHI", 1, 3, 0, 0) + _quoted(7, 2)
    answer = echo.read_answer(_Raw(unreachable, GW1), B, 7, 2)  # type: ignore[arg-type]
    assert answer is not None and answer.detail == f"{GW1} says destination unreachable (code 3)"
    assert echo.read_answer(_Raw(struct.pack("!BBHI", 2, 0, 0, 1280) + _quoted(8, 2), GW1),
                            B, 7, 2) is None  # type: ignore[arg-type]  # another's probe
    assert echo.read_answer(_Raw(struct.pack("!BBHHH", 129, 0, 0, 7, 2), "fd00::9"), B, 7,
                            2) is None  # type: ignore[arg-type]  # a reply from elsewhere


# --- destinations, per family -----------------------------------------------------------------


def lab_view() -> LabView:
    return LabView(
        cluster="ds",
        pods=[{"namespace": "dev", "name": "a", "ips": ["10.244.1.2/24", f"{A}/64"]},
              {"namespace": "dev", "name": "b", "ips": [f"{B}/64"], "ip": f"{B}/64"}],
        services=[{"namespace": "dev", "name": "both", "cluster_ips": ["10.96.0.10", VIP6],
                   "ports": [{"port": 80}]},
                  {"namespace": "dev", "name": "four", "cluster_ip": "10.96.0.11"}],
        raw={"pod_subnets": ["10.244.0.0/16", "fd00:10:244::/56"],
             "internet": {"addresses": ["198.51.100.100/24", "2001:db8:5100::100/64"],
                          "port": 80}},
    )


def test_a_dual_stack_destination_is_its_first_family_unless_one_is_asked() -> None:
    host, lab = cluster6(), lab_view()
    src = host.find("pb")[0]
    assert resolve_destination(host, lab, "dev/a", None, src).ip == "10.244.1.2"
    assert resolve_destination(host, lab, "dev/a", None, src, 6).ip == A
    both = resolve_destination(host, lab, "both.dev", None, src, 6)
    assert (both.ip, both.port, both.text) == (VIP6, 80, f"service dev/both {VIP6}")
    assert resolve_destination(host, lab, "internet", None, src, 6).ip == "2001:db8:5100::100"
    literal = resolve_destination(host, lab, B, None, src)
    assert literal.ip == B and literal.namespace is not None and literal.namespace.label == "pb"


def test_a_family_a_destination_lacks_is_refused_with_what_to_do() -> None:
    host, lab = cluster6(), lab_view()
    src = host.find("pa")[0]
    with pytest.raises(ObjectMissingError) as single:
        resolve_destination(host, lab, "four.dev", None, src, 6)
    assert "Service dev/four has no IPv6 address (only IPv4)" in str(single.value)
    assert "PreferDualStack" in single.value.hint
    with pytest.raises(ObjectMissingError) as pod:
        resolve_destination(host, lab, "dev/b", None, src, 4)
    assert "pod dev/b has no IPv4 address (only IPv6)" in str(pod.value)
    with pytest.raises(StateError) as mixed:
        resolve_destination(host, lab, B, None, src, 4)
    assert f"{B} is an IPv6 address, not IPv4" in str(mixed.value)
    lab.raw["pod_subnets"] = ["fd00:10:244::/56"]
    with pytest.raises(ObjectMissingError) as v6lab:
        resolve_destination(host, lab, "four.dev", None, src, 6)
    assert "Service dev/four has no IPv6" in str(v6lab.value)
    lab.raw["pod_subnets"] = ["10.244.0.0/16"]
    with pytest.raises(ObjectMissingError) as v4lab:
        resolve_destination(host, lab, "four.dev", None, src, 6)
    assert "the lab has no IPv6" in v4lab.value.hint


def test_an_ip6_table_sees_ipv6_packets_and_an_ip_table_ipv4_ones() -> None:
    tables: list[dict[str, Any]] = []
    for family, addr in (("ip6", B), ("ip", "10.244.2.2")):
        tables += [
            {"table": {"family": family, "name": "block"}},
            chain("in_fwd", "forward", 0, family=family, table="block"),
            rule("in_fwd", match(payload(family, "daddr"), addr),
                 match(payload("tcp", "dport"), 80), {"drop": None}, family=family,
                 table="block"),
        ]
    ctx = HookContext("forward", iif="eth0", oif="veth1")
    six = evaluate(tables, ctx, Packet(A, B, "tcp", 40000, 80))
    assert six.verdict == "drop" and six.rule is not None
    assert six.rule.where() == "table ip6 block chain in_fwd"
    assert six.rule.text == f"ip6 daddr {B} tcp dport 80 drop"
    four = evaluate(tables, ctx, Packet("10.244.1.2", "10.244.2.2", "tcp", 40000, 80))
    assert four.verdict == "drop" and four.rule is not None and four.rule.family == "ip"
    assert four.chains == ("ip block in_fwd",)  # the ip6 table's chain never saw it


def test_a_dual_stack_node_decapsulates_ipv6_vxlan_on_its_ipv6_device() -> None:
    """flannel.1 and flannel-v6.1 share VNI 1 and UDP 8472: the outer packet's family picks."""
    host, reads = vxlan6(dual=True)
    path = walk(host, reads, host.find("pa")[0], PKT6)
    assert path.outcome == "delivered", [h.text for h in path.hops]
    decap = next(h for h in path.hops if h.step == "decap")
    assert decap.dev == "flannel-v6.1" and "decapsulated by flannel-v6.1" in decap.text


# --- captures of IPv6 packets -------------------------------------------------------------------


def _ip6(src: str, dst: str, nxt: int, body: Any) -> bytes:
    ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src),
                      dst=socket.inet_pton(socket.AF_INET6, dst), nxt=nxt, hlim=64, data=body)
    ip.plen = len(bytes(body))
    return bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP6, data=ip))


def test_ipv6_captures_read_back_with_bracketed_ends_and_icmpv6_words() -> None:
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out)
    syn = dpkt.tcp.TCP(sport=43210, dport=80, flags=dpkt.tcp.TH_SYN)
    echo_request = dpkt.icmp6.ICMP6(type=128, data=dpkt.icmp6.ICMP6.Echo(id=7, seq=1))
    too_big = dpkt.icmp6.ICMP6(type=2, data=b"\0\0\x05\x96" + bytes(48))
    for i, frame in enumerate((_ip6(A, B, 6, syn), _ip6(A, B, 58, echo_request),
                               _ip6(GW1, A, 58, too_big))):
        writer.writepkt(frame, ts=1.0 + i)
    out.seek(0)
    tcp, request, error = (seen for _, seen in read_pcap(out))
    assert tcp.words() == f"[{A}]:43210 > [{B}]:80 [S], 60 bytes"
    assert (request.proto, request.flags, request.icmp_id) == ("icmpv6", "echo request", 7)
    assert error.flags == "packet too big"
    assert expression(None, "icmpv6")[0].startswith("(icmp6) or ")
    assert expression(None)[0].startswith("(icmp) or ")
