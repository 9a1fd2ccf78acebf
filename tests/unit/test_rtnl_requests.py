"""Every request `Batch` packs is byte for byte what pyroute2's message classes encode for the same
request: the kernel sees exactly what it saw when pyroute2 encoded them (`kernel.rtnl_requests`
packs them itself because pyroute2's encoding cost a quarter of a large lab's `up`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# pyroute2 is the oracle here: what it encodes is what the kernel was sent before.
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST  # noqa: TID251
from pyroute2.netlink.rtnl import (  # noqa: TID251
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_DELRULE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTM_NEWRULE,
)
from pyroute2.netlink.rtnl.fibmsg import fibmsg  # noqa: TID251
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: TID251
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: TID251
from pyroute2.netlink.rtnl.ndmsg import ndmsg  # noqa: TID251
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: TID251

from podnet.kernel.batch import Batch

CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
ACKED = NLM_F_REQUEST | NLM_F_ACK
SEQ = 4242


def pyroute2(cls: Any, kind: int, nl_flags: int, attrs: list[Any], /, **fields: int) -> bytes:
    msg = cls()
    for name, value in fields.items():
        msg[name] = value
    msg["attrs"] = attrs
    msg["header"]["type"] = kind
    msg["header"]["flags"] = nl_flags
    msg["header"]["sequence_number"] = SEQ
    msg.encode()
    return bytes(msg.data)


def link(kind: int, nl_flags: int, attrs: list[Any], /, **fields: int) -> bytes:
    return pyroute2(ifinfmsg, kind, nl_flags, attrs, **fields)


def route(kind: int, nl_flags: int, attrs: list[Any], /, **fields: int) -> bytes:
    base = {"table": 254, "proto": 3, "type": 1}
    return pyroute2(rtmsg, kind, nl_flags, attrs, **{**base, **fields})


QUEUES = [["IFLA_NUM_TX_QUEUES", 1], ["IFLA_NUM_RX_QUEUES", 1]]


def veth_info(peer: str, peer_index: int, fd: int, mtu: int) -> list[Any]:
    data = {"attrs": [["VETH_INFO_PEER", {"index": peer_index, "attrs": [
        ["IFLA_IFNAME", peer], ["IFLA_NET_NS_FD", fd], ["IFLA_MTU", mtu], *QUEUES]}]]}
    return ["IFLA_LINKINFO", {"attrs": [["IFLA_INFO_KIND", "veth"], ["IFLA_INFO_DATA", data]]}]


CASES: dict[str, tuple[Callable[[Batch], object], bytes]] = {
    "veth": (
        lambda b: b.veth_add("veth7beff33f", 1001, "eth0", 2, 7, 1450),
        link(RTM_NEWLINK, CREATE, [["IFLA_IFNAME", "veth7beff33f"], ["IFLA_MTU", 1450], *QUEUES,
                                   veth_info("eth0", 2, 7, 1450)], index=1001),
    ),
    "veth with a MAC": (
        lambda b: b.veth_add("eth0", 3, "vethb", 40, 9, 9000, mac="02:42:ac:12:00:02"),
        link(RTM_NEWLINK, CREATE, [["IFLA_IFNAME", "eth0"], ["IFLA_MTU", 9000], *QUEUES,
                                   ["IFLA_ADDRESS", "02:42:ac:12:00:02"],
                                   veth_info("vethb", 40, 9, 9000)], index=3),
    ),
    "bridge": (
        lambda b: b.bridge_add("cni0", 5, 1500, exist_ok=True),
        link(RTM_NEWLINK, CREATE, [["IFLA_IFNAME", "cni0"], ["IFLA_MTU", 1500], [
            "IFLA_LINKINFO", {"attrs": [["IFLA_INFO_KIND", "bridge"]]}]], index=5),
    ),
    "link delete": (lambda b: b.link_delete(12), link(RTM_DELLINK, ACKED, [], index=12)),
    "link up": (
        lambda b: b.link_set(2),
        link(RTM_NEWLINK, ACKED, [], index=2, flags=1, change=1),
    ),
    "link down, alias, master": (
        lambda b: b.link_set(7, up=False, alias="podnet", master=5),
        link(RTM_NEWLINK, ACKED, [["IFLA_IFALIAS", "podnet"], ["IFLA_MASTER", 5]], index=7,
             flags=0, change=1),
    ),
    "IPv4 /32": (
        lambda b: b.addr_add(1001, "10.244.1.1/32"),
        pyroute2(ifaddrmsg, RTM_NEWADDR, CREATE, [["IFA_LOCAL", "10.244.1.1"],
                 ["IFA_ADDRESS", "10.244.1.1"]], family=2, prefixlen=32, index=1001),
    ),
    "IPv4 /22 noprefixroute, replaced": (
        lambda b: b.addr_add(2, "10.240.16.2/22", noprefixroute=True, replace=True),
        pyroute2(ifaddrmsg, RTM_NEWADDR, REPLACE, [
            ["IFA_LOCAL", "10.240.16.2"], ["IFA_ADDRESS", "10.240.16.2"],
            ["IFA_BROADCAST", "10.240.19.255"], ["IFA_FLAGS", 0x200]],
            family=2, prefixlen=22, index=2),
    ),
    "IPv6 nodad": (
        lambda b: b.addr_add(2, "fd00:10:244:1::2/64", nodad=True, noprefixroute=True),
        pyroute2(ifaddrmsg, RTM_NEWADDR, CREATE, [["IFA_ADDRESS", "fd00:10:244:1::2"],
                 ["IFA_FLAGS", 0x202]], family=10, prefixlen=64, index=2),
    ),
    "host route, replaced": (
        lambda b: b.route_add("10.240.16.2/32", oif=1001, scope="host", replace=True),
        route(RTM_NEWROUTE, REPLACE, [["RTA_OIF", 1001], ["RTA_DST", "10.240.16.2"]],
              family=2, dst_len=32, scope=254),
    ),
    "gateway route with a source": (
        lambda b: b.route_add("10.240.16.0/22", oif=2, gateway="10.240.16.1", src="10.240.16.2"),
        route(RTM_NEWROUTE, CREATE, [["RTA_OIF", 2], ["RTA_DST", "10.240.16.0"],
              ["RTA_GATEWAY", "10.240.16.1"], ["RTA_PREFSRC", "10.240.16.2"]],
              family=2, dst_len=22, scope=0),
    ),
    "IPv6 default, onlink": (
        lambda b: b.route_add("default", oif=2, family=6, gateway="fe80::1", onlink=True),
        route(RTM_NEWROUTE, CREATE, [["RTA_OIF", 2], ["RTA_GATEWAY", "fe80::1"]],
              family=10, dst_len=0, scope=0, flags=4),
    ),
    "route without a device": (
        lambda b: b.route_add("10.96.0.0/12", oif=None, gateway="172.18.0.2"),
        route(RTM_NEWROUTE, CREATE, [["RTA_DST", "10.96.0.0"], ["RTA_GATEWAY", "172.18.0.2"]],
              family=2, dst_len=12, scope=0),
    ),
    "route delete": (
        lambda b: b.route_delete("10.244.2.0/24", oif=4),
        route(RTM_DELROUTE, ACKED, [["RTA_OIF", 4], ["RTA_DST", "10.244.2.0"]],
              family=2, dst_len=24, scope=0),
    ),
    "rule from a pod": (
        lambda b: b.rule_add(priority=512, table="main", src="172.18.0.9/32"),
        pyroute2(fibmsg, RTM_NEWRULE, CREATE, [["FRA_PRIORITY", 512], ["FRA_TABLE", 254],
                 ["FRA_SRC", "172.18.0.9"]], family=2, action=1, table=254, src_len=32),
    ),
    "rule to a table past 255, deleted": (
        lambda b: b.rule_delete(priority=1536, table="1001", family=6, dst="fd00::/8"),
        pyroute2(fibmsg, RTM_DELRULE, ACKED, [["FRA_PRIORITY", 1536], ["FRA_TABLE", 1001],
                 ["FRA_DST", "fd00::"]], family=10, action=1, table=252, dst_len=8),
    ),
    "hairpin": (
        lambda b: b.bridge_port(9, hairpin=True),
        link(RTM_NEWLINK, ACKED, [["IFLA_LINKINFO", {"attrs": [
            ["IFLA_INFO_SLAVE_KIND", "bridge"],
            ["IFLA_INFO_SLAVE_DATA", {"attrs": [["IFLA_BRPORT_MODE", 1]]}]]}]], index=9),
    ),
    "vxlan over IPv4": (
        lambda b: b.vxlan_add("flannel.1", 20, vni=1, local="172.18.0.3", port=8472,
                              underlay=3, mtu=1450, mac="0e:00:00:00:00:03"),
        link(RTM_NEWLINK, CREATE, [
            ["IFLA_IFNAME", "flannel.1"], ["IFLA_ADDRESS", "0e:00:00:00:00:03"],
            ["IFLA_MTU", 1450], ["IFLA_LINKINFO", {"attrs": [
                ["IFLA_INFO_KIND", "vxlan"], ["IFLA_INFO_DATA", {"attrs": [
                    ["IFLA_VXLAN_ID", 1], ["IFLA_VXLAN_LOCAL", "172.18.0.3"],
                    ["IFLA_VXLAN_LINK", 3], ["IFLA_VXLAN_PORT", 8472],
                    ["IFLA_VXLAN_LEARNING", 0]]}]]}]], index=20),
    ),
    "vxlan over IPv6": (
        lambda b: b.vxlan_add("flannel.2", 21, vni=2, local="fc00:f853:ccd:e793::3",
                              port=4789, underlay=3, mtu=1430, mac="0e:00:00:00:01:03"),
        link(RTM_NEWLINK, CREATE, [
            ["IFLA_IFNAME", "flannel.2"], ["IFLA_ADDRESS", "0e:00:00:00:01:03"],
            ["IFLA_MTU", 1430], ["IFLA_LINKINFO", {"attrs": [
                ["IFLA_INFO_KIND", "vxlan"], ["IFLA_INFO_DATA", {"attrs": [
                    ["IFLA_VXLAN_ID", 2], ["IFLA_VXLAN_LOCAL6", "fc00:f853:ccd:e793::3"],
                    ["IFLA_VXLAN_LINK", 3], ["IFLA_VXLAN_PORT", 4789],
                    ["IFLA_VXLAN_LEARNING", 0]]}]]}]], index=21),
    ),
    "neighbour": (
        lambda b: b.neigh_replace(2, "169.254.1.1", "ee:ee:ee:ee:ee:ee"),
        pyroute2(ndmsg, RTM_NEWNEIGH, REPLACE, [["NDA_DST", "169.254.1.1"],
                 ["NDA_LLADDR", "ee:ee:ee:ee:ee:ee"]], family=2, ifindex=2, state=0x80),
    ),
    "neighbour delete": (
        lambda b: b.neigh_delete(2, "fe80::1", missing_ok=True),
        pyroute2(ndmsg, RTM_DELNEIGH, ACKED, [["NDA_DST", "fe80::1"]], family=10, ifindex=2,
                 state=0x80),
    ),
    "fdb": (
        lambda b: b.fdb_replace(20, "0e:00:00:00:00:04", "172.18.0.4"),
        pyroute2(ndmsg, RTM_NEWNEIGH, REPLACE, [["NDA_LLADDR", "0e:00:00:00:00:04"],
                 ["NDA_DST", "172.18.0.4"]], family=7, ifindex=20, state=0x80, flags=2),
    ),
    "fdb delete": (
        lambda b: b.fdb_delete(20, "0e:00:00:00:00:04", "fc00::4"),
        pyroute2(ndmsg, RTM_DELNEIGH, ACKED, [["NDA_LLADDR", "0e:00:00:00:00:04"],
                 ["NDA_DST", "fc00::4"]], family=7, ifindex=20, state=0x80, flags=2),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_a_request_is_what_pyroute2_encodes(name: str) -> None:
    call, expected = CASES[name]
    batch = Batch("test")
    call(batch)
    (request,) = batch.messages
    assert request.encode(SEQ).hex() == expected.hex()


def test_every_request_batch_makes_is_covered() -> None:
    makers = {name for name in vars(Batch) if not name.startswith("_")} - {"what"}
    covered = set()
    for call, _ in CASES.values():
        recorder = _Recorder()
        call(recorder)  # type: ignore[arg-type]
        covered |= recorder.called
    assert makers <= covered, makers - covered


class _Recorder:
    """Notes which of Batch's methods a case calls."""

    def __init__(self) -> None:
        self.called: set[str] = set()

    def __getattr__(self, name: str) -> Callable[..., None]:
        self.called.add(name)
        return lambda *_args, **_kwargs: None
