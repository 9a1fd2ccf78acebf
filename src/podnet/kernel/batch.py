"""Several rtnetlink requests in one datagram: the hot path of attaching a pod.

The kernel runs the messages of one datagram in order and acknowledges each, so a pod's six
changes (lo up, address, eth0 up, three routes) cost one round trip instead of six. Messages are
pyroute2's own classes; `kernel.rtnl.RawRtnl` carries them.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.rtnl import (
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

__all__ = ["Batch"]

IFF_UP = 1
IFA_F_NOPREFIXROUTE = 0x200
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE  # `ip ... replace`
_ACKED = NLM_F_REQUEST | NLM_F_ACK  # a plain request: set or delete
AF_INET = 2
AF_BRIDGE = 7
NUD_PERMANENT = 0x80
NTF_SELF = 0x02  # an FDB entry of the device itself (a VXLAN's remote), not of a bridge
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
        msg = self._route(dst, oif=oif, gateway=gateway, scope=scope, src=src)
        via = f" via {gateway}" if gateway else ""
        return self._add(msg, RTM_NEWROUTE, _CREATE, f"adding route {dst}{via}")

    def bridge_port(self, index: int, *, hairpin: bool) -> Batch:
        """`bridge link set dev INDEX hairpin on|off`: the port must already be enslaved (an
        earlier message of the same batch may do it)."""
        msg = ifinfmsg()
        msg["index"] = index
        data = {"attrs": [["IFLA_BRPORT_MODE", int(hairpin)]]}
        info = {"attrs": [["IFLA_INFO_SLAVE_KIND", "bridge"], ["IFLA_INFO_SLAVE_DATA", data]]}
        msg["attrs"] = [["IFLA_LINKINFO", info]]
        state = "on" if hairpin else "off"
        return self._add(msg, RTM_NEWLINK, _ACKED, f"setting hairpin {state} on link {index}")

    # --- VXLAN: the device, and per remote node a route, a neighbour and an FDB entry -------

    def vxlan_add(
        self,
        ifname: str,
        index: int,
        *,
        vni: int,
        local: str,
        port: int,
        underlay: int,
        mtu: int,
        mac: str,
    ) -> Batch:
        """`ip link add IFNAME address MAC mtu MTU type vxlan id VNI local LOCAL dev UNDERLAY
        dstport PORT nolearning`, at ifindex `index` (flannel's flannel.1)."""
        msg = ifinfmsg()
        msg["index"] = index
        data = {
            "attrs": [
                ["IFLA_VXLAN_ID", vni],
                ["IFLA_VXLAN_LOCAL", local],
                ["IFLA_VXLAN_LINK", underlay],
                ["IFLA_VXLAN_PORT", port],
                ["IFLA_VXLAN_LEARNING", 0],  # remotes come from our FDB entries, not from traffic
            ]
        }
        info = {"attrs": [["IFLA_INFO_KIND", "vxlan"], ["IFLA_INFO_DATA", data]]}
        msg["attrs"] = [
            ["IFLA_IFNAME", ifname],
            ["IFLA_ADDRESS", mac],
            ["IFLA_MTU", mtu],
            ["IFLA_LINKINFO", info],
        ]
        return self._add(msg, RTM_NEWLINK, _CREATE, f"creating vxlan {ifname} (VNI {vni})")

    def route_replace(
        self,
        dst: str,
        *,
        oif: int,
        gateway: str | None = None,
        onlink: bool = False,
    ) -> Batch:
        """`ip route replace DST [via GW] dev OIF [onlink]`: idempotent."""
        msg = self._route(dst, oif=oif, gateway=gateway, scope="universe", src=None)
        if onlink:
            msg["flags"] = RTNH_F_ONLINK
        via = f" via {gateway}" if gateway else ""
        return self._add(msg, RTM_NEWROUTE, _REPLACE, f"replacing route {dst}{via}")

    def route_delete(self, dst: str, *, oif: int) -> Batch:
        msg = self._route(dst, oif=oif, gateway=None, scope="universe", src=None)
        return self._add(msg, RTM_DELROUTE, _ACKED, f"deleting route {dst}")

    def neigh_replace(self, index: int, ip: str, mac: str) -> Batch:
        """`ip neigh replace IP lladdr MAC dev INDEX nud permanent`."""
        msg = self._neigh(AF_INET, index, 0)
        msg["attrs"] = [["NDA_DST", ip], ["NDA_LLADDR", mac]]
        return self._add(msg, RTM_NEWNEIGH, _REPLACE, f"setting neighbour {ip} to {mac}")

    def neigh_delete(self, index: int, ip: str) -> Batch:
        msg = self._neigh(AF_INET, index, 0)
        msg["attrs"] = [["NDA_DST", ip]]
        return self._add(msg, RTM_DELNEIGH, _ACKED, f"deleting neighbour {ip}")

    def fdb_replace(self, index: int, mac: str, remote: str) -> Batch:
        """`bridge fdb replace MAC dev INDEX dst REMOTE self permanent`: frames for MAC go to
        the VXLAN endpoint REMOTE."""
        msg = self._neigh(AF_BRIDGE, index, NTF_SELF)
        msg["attrs"] = [["NDA_LLADDR", mac], ["NDA_DST", remote]]
        return self._add(msg, RTM_NEWNEIGH, _REPLACE, f"setting fdb {mac} to {remote}")

    def fdb_delete(self, index: int, mac: str, remote: str) -> Batch:
        msg = self._neigh(AF_BRIDGE, index, NTF_SELF)
        msg["attrs"] = [["NDA_LLADDR", mac], ["NDA_DST", remote]]
        return self._add(msg, RTM_DELNEIGH, _ACKED, f"deleting fdb {mac}")

    @staticmethod
    def _neigh(family: int, index: int, flags: int) -> Any:
        msg = ndmsg()
        msg["family"] = family
        msg["ifindex"] = index
        msg["state"] = NUD_PERMANENT
        msg["flags"] = flags
        return msg

    @staticmethod
    def _route(dst: str, *, oif: int, gateway: str | None, scope: str, src: str | None) -> Any:
        net = ipaddress.IPv4Network("0.0.0.0/0" if dst == "default" else dst)
        msg = rtmsg()
        msg["family"] = AF_INET
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
        return msg

    def _add(self, msg: Any, kind: int, flags: int, note: str) -> Batch:
        msg["header"]["type"] = kind
        msg["header"]["flags"] = flags
        self.messages.append(msg)
        self.notes.append(note)
        return self
