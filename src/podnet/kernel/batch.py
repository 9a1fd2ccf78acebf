"""Several rtnetlink requests in one datagram: the hot path of attaching a pod.

The kernel runs the messages of one datagram in order and acknowledges each, so a pod's six
changes (lo up, address, eth0 up, three routes) cost one round trip instead of six. Messages are
pyroute2's own classes; `kernel.rtnl.RawRtnl` carries them.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.rtnl import (
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
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

__all__ = ["Batch"]

IFF_UP = 1
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE  # `ip ... replace`
_ACKED = NLM_F_REQUEST | NLM_F_ACK  # a plain request: set or delete
AF_INET = 2
AF_INET6 = 10
AF_BRIDGE = 7
NUD_PERMANENT = 0x80
NTF_SELF = 0x02  # an FDB entry of the device itself (a VXLAN's remote), not of a bridge
_SCOPES = {"universe": 0, "link": 253, "host": 254}
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3  # what `ip route add` says: the plan's routes match the commands it prints
RTN_UNICAST = 1
RTNH_F_ONLINK = 4
FR_ACT_TO_TBL = 1
_TABLES = {"main": 254, "local": 255, "default": 253}


def _family(text: str) -> int:
    return AF_INET6 if ":" in text else AF_INET


class Batch:
    """Collects requests for one socket; `Netlink.send(batch)` sends them together."""

    def __init__(self, what: str) -> None:
        self.what = what  # for error messages: "attaching pod dev/x"
        self.messages: list[Any] = []
        self.notes: list[str] = []  # what each message does, for the error that names it
        # errnos that mean success for each message ("create it unless it exists")
        self.tolerated: list[frozenset[int]] = []

    def veth_add(
        self,
        ifname: str,
        index: int,
        peer: str,
        peer_index: int,
        peer_netns_fd: int,
        mtu: int,
        mac: str = "",
    ) -> Batch:
        """A veth pair with both ifindexes chosen by us, so the next messages of the same batch
        can address both ends; the peer is born in `peer_netns_fd`, both ends at `mtu`.

        Both ends get one transmit and one receive queue from the start: without a count, the
        kernel allocates one per CPU and then cuts the veth down to one, waiting for an
        expedited RCU grace period under the rtnl lock each time (a third of `up`'s waiting)."""
        msg = ifinfmsg()
        msg["index"] = index
        queues = [["IFLA_NUM_TX_QUEUES", 1], ["IFLA_NUM_RX_QUEUES", 1]]
        peer_attrs = [["IFLA_IFNAME", peer], ["IFLA_NET_NS_FD", peer_netns_fd], ["IFLA_MTU", mtu],
                      *queues]
        data = {"attrs": [["VETH_INFO_PEER", {"index": peer_index, "attrs": peer_attrs}]]}
        info = {"attrs": [["IFLA_INFO_KIND", "veth"], ["IFLA_INFO_DATA", data]]}
        attrs: list[list[Any]] = [["IFLA_IFNAME", ifname], ["IFLA_MTU", mtu], *queues]
        if mac:
            attrs.append(["IFLA_ADDRESS", mac])
        msg["attrs"] = [*attrs, ["IFLA_LINKINFO", info]]
        return self._add(msg, RTM_NEWLINK, _CREATE, f"creating veth {ifname} (peer {peer})")

    def bridge_add(self, ifname: str, index: int, mtu: int, *, exist_ok: bool = False) -> Batch:
        """`ip link add IFNAME mtu MTU type bridge`, at ifindex `index` (0: the kernel picks);
        with `exist_ok`, a link of that name already there is success (and left as it is)."""
        msg = ifinfmsg()
        msg["index"] = index
        info = {"attrs": [["IFLA_INFO_KIND", "bridge"]]}
        msg["attrs"] = [["IFLA_IFNAME", ifname], ["IFLA_MTU", mtu], ["IFLA_LINKINFO", info]]
        return self._add(msg, RTM_NEWLINK, _CREATE, f"creating bridge {ifname}",
                         frozenset({errno.EEXIST}) if exist_ok else frozenset())

    def link_delete(self, index: int) -> Batch:
        """`ip link del DEV` (a veth takes its peer with it)."""
        msg = ifinfmsg()
        msg["index"] = index
        return self._add(msg, RTM_DELLINK, _ACKED, f"deleting link {index}")

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

    def addr_add(
        self, index: int, cidr: str, *, noprefixroute: bool = False, nodad: bool = False,
        replace: bool = False,
    ) -> Batch:
        """`ip addr add|replace CIDR [brd +] dev INDEX [noprefixroute] [nodad]`: an IPv4 address
        below /31 gets its broadcast address, as `brd +` (and docker) give it."""
        iface = ipaddress.ip_interface(cidr)
        msg = ifaddrmsg()
        msg["family"] = AF_INET if iface.version == 4 else AF_INET6
        msg["prefixlen"] = iface.network.prefixlen
        msg["index"] = index
        ip = str(iface.ip)
        attrs: list[list[Any]] = [["IFA_LOCAL", ip], ["IFA_ADDRESS", ip]]
        if iface.version == 4 and iface.network.prefixlen < 31:
            attrs.append(["IFA_BROADCAST", str(iface.network.broadcast_address)])
        flags = (IFA_F_NOPREFIXROUTE if noprefixroute else 0) | (IFA_F_NODAD if nodad else 0)
        if flags:
            attrs.append(["IFA_FLAGS", flags])
        if iface.version == 6:
            del attrs[0]  # IPv6 takes the address in IFA_ADDRESS alone
        msg["attrs"] = attrs
        return self._add(msg, RTM_NEWADDR, _REPLACE if replace else _CREATE,
                         f"adding {cidr} to link {index}")

    def route_add(
        self,
        dst: str,
        *,
        oif: int | None,
        family: int = 4,
        gateway: str | None = None,
        scope: str = "universe",
        src: str | None = None,
        onlink: bool = False,
        replace: bool = False,
    ) -> Batch:
        """`ip route add|replace DST [via GW] dev OIF [scope S] [src SRC] [onlink]`."""
        msg = self._route(dst, oif=oif, family=family, gateway=gateway, scope=scope, src=src)
        if onlink:
            msg["flags"] = RTNH_F_ONLINK
        via = f" via {gateway}" if gateway else ""
        verb = "replacing" if replace else "adding"
        return self._add(msg, RTM_NEWROUTE, _REPLACE if replace else _CREATE,
                         f"{verb} route {dst}{via}")

    def rule_add(self, *, priority: int, table: str, family: int = 4, src: str | None = None,
                 dst: str | None = None) -> Batch:
        """`ip rule add [from SRC] [to DST] lookup TABLE priority PRIORITY`."""
        msg = self._rule(priority=priority, table=table, family=family, src=src, dst=dst)
        return self._add(msg, RTM_NEWRULE, _CREATE,
                         f"adding rule {src or 'all'} -> {dst or 'all'} lookup {table}")

    def rule_delete(self, *, priority: int, table: str, family: int = 4,
                    src: str | None = None, dst: str | None = None) -> Batch:
        """`ip rule del [from SRC] [to DST] lookup TABLE priority PRIORITY`."""
        msg = self._rule(priority=priority, table=table, family=family, src=src, dst=dst)
        # Deleting a rule already gone succeeds, as deleting a namespace twice does.
        return self._add(msg, RTM_DELRULE, _ACKED,
                         f"deleting rule {src or 'all'} -> {dst or 'all'} lookup {table}",
                         frozenset({errno.ENOENT}))

    @staticmethod
    def _rule(*, priority: int, table: str, family: int, src: str | None,
              dst: str | None) -> Any:
        msg = fibmsg()
        msg["family"] = AF_INET if family == 4 else AF_INET6
        msg["action"] = FR_ACT_TO_TBL
        number = _TABLES.get(table) or int(table)
        msg["table"] = number if number < 256 else 252  # RT_TABLE_COMPAT: the number follows
        attrs: list[list[Any]] = [["FRA_PRIORITY", priority], ["FRA_TABLE", number]]
        for name, text in (("FRA_SRC", src), ("FRA_DST", dst)):
            if text:
                net = ipaddress.ip_network(text)
                msg["src_len" if name == "FRA_SRC" else "dst_len"] = net.prefixlen
                attrs.append([name, str(net.network_address)])
        msg["attrs"] = attrs
        return msg

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
        dstport PORT nolearning`, at ifindex `index` (flannel's flannel.1, over IPv4 or IPv6)."""
        msg = ifinfmsg()
        msg["index"] = index
        data = {
            "attrs": [
                ["IFLA_VXLAN_ID", vni],
                ["IFLA_VXLAN_LOCAL6" if ":" in local else "IFLA_VXLAN_LOCAL", local],
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

    def route_delete(self, dst: str, *, family: int = 4, oif: int | None = None) -> Batch:
        msg = self._route(dst, oif=oif, family=family, gateway=None, scope="universe", src=None)
        return self._add(msg, RTM_DELROUTE, _ACKED, f"deleting route {dst}")

    def neigh_replace(self, index: int, ip: str, mac: str) -> Batch:
        """`ip neigh replace IP lladdr MAC dev INDEX nud permanent`."""
        msg = self._neigh(_family(ip), index, 0)
        msg["attrs"] = [["NDA_DST", ip], ["NDA_LLADDR", mac]]
        return self._add(msg, RTM_NEWNEIGH, _REPLACE, f"setting neighbour {ip} to {mac}")

    def neigh_delete(self, index: int, ip: str, *, missing_ok: bool = False) -> Batch:
        """`ip neigh del IP dev INDEX`; with `missing_ok`, an entry gone already is success."""
        msg = self._neigh(_family(ip), index, 0)
        msg["attrs"] = [["NDA_DST", ip]]
        return self._add(msg, RTM_DELNEIGH, _ACKED, f"deleting neighbour {ip}",
                         frozenset({errno.ENOENT}) if missing_ok else frozenset())

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
    def _route(dst: str, *, oif: int | None, family: int, gateway: str | None, scope: str,
               src: str | None) -> Any:
        default = "0.0.0.0/0" if family == 4 else "::/0"
        net = ipaddress.ip_network(default if dst == "default" else dst)
        msg = rtmsg()
        msg["family"] = AF_INET if net.version == 4 else AF_INET6
        msg["dst_len"] = net.prefixlen
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["scope"] = _SCOPES[scope]
        msg["type"] = RTN_UNICAST
        attrs: list[list[Any]] = [["RTA_OIF", oif]] if oif is not None else []
        if net.prefixlen:
            attrs.append(["RTA_DST", str(net.network_address)])
        if gateway:
            attrs.append(["RTA_GATEWAY", gateway])
        if src:
            attrs.append(["RTA_PREFSRC", src])
        msg["attrs"] = attrs
        return msg

    def _add(self, msg: Any, kind: int, flags: int, note: str,
             tolerated: frozenset[int] = frozenset()) -> Batch:
        msg["header"]["type"] = kind
        msg["header"]["flags"] = flags
        self.messages.append(msg)
        self.notes.append(note)
        self.tolerated.append(tolerated)
        return self
