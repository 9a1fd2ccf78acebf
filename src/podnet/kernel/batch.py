"""Several rtnetlink requests in one datagram: the hot path of attaching a pod.

The kernel runs the messages of one datagram in order and acknowledges each, so a pod's six
changes (lo up, address, eth0 up, three routes) cost one round trip instead of six. Messages are
pyroute2's own classes; `kernel.rtnl.RawRtnl` carries them.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

__all__ = ["Batch"]

IFF_UP = 1
IFA_F_NOPREFIXROUTE = 0x200
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_SCOPES = {"universe": 0, "link": 253, "host": 254}
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RTN_UNICAST = 1
RTNH_F_ONLINK = 4


class Batch:
    """Collects requests for one socket; `Netlink.send(batch)` sends them together."""

    def __init__(self, what: str) -> None:
        self.what = what  # for error messages: "attaching pod dev/x"
        self.messages: list[Any] = []
        self.notes: list[str] = []  # what each message does, for the error that names it

    def veth_add(
        self,
        ifname: str,
        index: int,
        peer: str,
        peer_index: int,
        peer_netns_fd: int,
        mtu: int,
    ) -> Batch:
        """A veth pair with both ifindexes chosen by us, so the next messages of the same batch
        can address both ends; the peer is born in `peer_netns_fd`."""
        msg = ifinfmsg()
        msg["index"] = index
        peer_attrs = [["IFLA_IFNAME", peer], ["IFLA_NET_NS_FD", peer_netns_fd], ["IFLA_MTU", mtu]]
        data = {"attrs": [["VETH_INFO_PEER", {"index": peer_index, "attrs": peer_attrs}]]}
        info = {"attrs": [["IFLA_INFO_KIND", "veth"], ["IFLA_INFO_DATA", data]]}
        msg["attrs"] = [["IFLA_IFNAME", ifname], ["IFLA_MTU", mtu], ["IFLA_LINKINFO", info]]
        return self._add(msg, RTM_NEWLINK, _CREATE, f"creating veth {ifname} (peer {peer})")

    def link_set(
        self, index: int, *, up: bool = True, alias: str | None = None, master: int | None = None
    ) -> Batch:
        msg = ifinfmsg()
        msg["index"] = index
        msg["flags"] = IFF_UP if up else 0
        msg["change"] = IFF_UP
        attrs: list[list[Any]] = []
        if alias is not None:
            attrs.append(["IFLA_IFALIAS", alias])
        if master is not None:
            attrs.append(["IFLA_MASTER", master])
        msg["attrs"] = attrs
        state = "up" if up else "down"
        flags = NLM_F_REQUEST | NLM_F_ACK
        return self._add(msg, RTM_NEWLINK, flags, f"setting link {index} {state}")

    def addr_add(self, index: int, cidr: str, *, noprefixroute: bool = False) -> Batch:
        iface = ipaddress.IPv4Interface(cidr)
        msg = ifaddrmsg()
        msg["family"] = 2
        msg["prefixlen"] = iface.network.prefixlen
        msg["index"] = index
        ip = str(iface.ip)
        attrs: list[list[Any]] = [["IFA_LOCAL", ip], ["IFA_ADDRESS", ip]]
        if iface.network.prefixlen < 31:
            attrs.append(["IFA_BROADCAST", str(iface.network.broadcast_address)])
        if noprefixroute:
            attrs.append(["IFA_FLAGS", IFA_F_NOPREFIXROUTE])
        msg["attrs"] = attrs
        return self._add(msg, RTM_NEWADDR, _CREATE, f"adding {cidr} to link {index}")

    def route_add(
        self,
        dst: str,
        *,
        oif: int,
        gateway: str | None = None,
        scope: str = "universe",
        src: str | None = None,
    ) -> Batch:
        net = ipaddress.IPv4Network("0.0.0.0/0" if dst == "default" else dst)
        msg = rtmsg()
        msg["family"] = 2
        msg["dst_len"] = net.prefixlen
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_STATIC
        msg["scope"] = _SCOPES[scope]
        msg["type"] = RTN_UNICAST
        attrs: list[list[Any]] = [["RTA_OIF", oif]]
        if net.prefixlen:
            attrs.append(["RTA_DST", str(net.network_address)])
        if gateway:
            attrs.append(["RTA_GATEWAY", gateway])
        if src:
            attrs.append(["RTA_PREFSRC", src])
        msg["attrs"] = attrs
        via = f" via {gateway}" if gateway else ""
        return self._add(msg, RTM_NEWROUTE, _CREATE, f"adding route {dst}{via}")

    def _add(self, msg: Any, kind: int, flags: int, note: str) -> Batch:
        msg["header"]["type"] = kind
        msg["header"]["flags"] = flags
        self.messages.append(msg)
        self.notes.append(note)
        return self
