"""Several rtnetlink requests in one datagram: the hot path of attaching a pod.

The kernel runs the messages of one datagram in order and acknowledges each, so a pod's six
changes (lo up, address, eth0 up, three routes) cost one round trip instead of six. The requests
are packed by `kernel.rtnl_requests`; `kernel.rtnl.RawRtnl` carries them.
"""

from __future__ import annotations

import errno
import ipaddress

from podnet.kernel import rtnl_requests as req
from podnet.kernel.rtnl_requests import Request

__all__ = ["Batch"]

# Message types and flags (linux/rtnetlink.h, linux/netlink.h).
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR = 16, 17, 20
RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWNEIGH, RTM_DELNEIGH, RTM_NEWRULE, RTM_DELRULE = (
    24, 25, 28, 29, 32, 33)
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x100, 0x200, 0x400
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE  # `ip ... replace`
_ACKED = NLM_F_REQUEST | NLM_F_ACK  # a plain request: set or delete

# Attributes (linux/if_link.h, if_addr.h, rtnetlink.h, fib_rules.h, neighbour.h).
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS = 1, 3, 4, 10, 18, 20
IFLA_NET_NS_FD, IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES = 28, 31, 32
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING = 1, 3, 4, 7
IFLA_VXLAN_PORT, IFLA_VXLAN_LOCAL6 = 15, 17
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC = 1, 4, 5, 7
FRA_DST, FRA_SRC, FRA_PRIORITY, FRA_TABLE = 1, 2, 6, 15
NDA_DST, NDA_LLADDR = 1, 2

IFF_UP = 1
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200
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
        self.messages: list[Request] = []
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
        queues = req.u32(IFLA_NUM_TX_QUEUES, 1) + req.u32(IFLA_NUM_RX_QUEUES, 1)
        peer_msg = (req.ifinfomsg(peer_index) + req.string(IFLA_IFNAME, peer)
                    + req.u32(IFLA_NET_NS_FD, peer_netns_fd) + req.u32(IFLA_MTU, mtu) + queues)
        info = req.nested(IFLA_LINKINFO, req.string(IFLA_INFO_KIND, "veth"),
                           req.nested(IFLA_INFO_DATA, req.attr(VETH_INFO_PEER, peer_msg)))
        body = (req.ifinfomsg(index) + req.string(IFLA_IFNAME, ifname)
                + req.u32(IFLA_MTU, mtu) + queues
                + (req.lladdr(IFLA_ADDRESS, mac) if mac else b"") + info)
        return self._add(Request(RTM_NEWLINK, _CREATE, body),
                         f"creating veth {ifname} (peer {peer})")

    def bridge_add(self, ifname: str, index: int, mtu: int, *, exist_ok: bool = False) -> Batch:
        """`ip link add IFNAME mtu MTU type bridge`, at ifindex `index` (0: the kernel picks);
        with `exist_ok`, a link of that name already there is success (and left as it is)."""
        body = (req.ifinfomsg(index) + req.string(IFLA_IFNAME, ifname)
                + req.u32(IFLA_MTU, mtu)
                + req.nested(IFLA_LINKINFO, req.string(IFLA_INFO_KIND, "bridge")))
        return self._add(Request(RTM_NEWLINK, _CREATE, body), f"creating bridge {ifname}",
                         frozenset({errno.EEXIST}) if exist_ok else frozenset())

    def link_delete(self, index: int) -> Batch:
        """`ip link del DEV` (a veth takes its peer with it)."""
        return self._add(Request(RTM_DELLINK, _ACKED, req.ifinfomsg(index)),
                         f"deleting link {index}")

    def link_set(
        self, index: int, *, up: bool = True, alias: str | None = None, master: int | None = None
    ) -> Batch:
        body = req.ifinfomsg(index, IFF_UP if up else 0, IFF_UP)
        if alias is not None:
            body += req.string(IFLA_IFALIAS, alias)
        if master is not None:
            body += req.u32(IFLA_MASTER, master)
        state = "up" if up else "down"
        return self._add(Request(RTM_NEWLINK, _ACKED, body), f"setting link {index} {state}")

    def addr_add(
        self, index: int, cidr: str, *, noprefixroute: bool = False, nodad: bool = False,
        replace: bool = False,
    ) -> Batch:
        """`ip addr add|replace CIDR [brd +] dev INDEX [noprefixroute] [nodad]`: an IPv4 address
        below /31 gets its broadcast address, as `brd +` (and docker) give it."""
        iface = ipaddress.ip_interface(cidr)
        ip = str(iface.ip)
        family = AF_INET if iface.version == 4 else AF_INET6
        body = req.ifaddrmsg(family, iface.network.prefixlen, index)
        if iface.version == 4:  # IPv6 takes the address in IFA_ADDRESS alone
            body += req.ip(IFA_LOCAL, ip)
        body += req.ip(IFA_ADDRESS, ip)
        if iface.version == 4 and iface.network.prefixlen < 31:
            body += req.ip(IFA_BROADCAST, str(iface.network.broadcast_address))
        flags = (IFA_F_NOPREFIXROUTE if noprefixroute else 0) | (IFA_F_NODAD if nodad else 0)
        if flags:
            body += req.u32(IFA_FLAGS, flags)
        return self._add(Request(RTM_NEWADDR, _REPLACE if replace else _CREATE, body),
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
        body = self._route(dst, oif=oif, family=family, gateway=gateway, scope=scope, src=src,
                           flags=RTNH_F_ONLINK if onlink else 0)
        via = f" via {gateway}" if gateway else ""
        verb = "replacing" if replace else "adding"
        return self._add(Request(RTM_NEWROUTE, _REPLACE if replace else _CREATE, body),
                         f"{verb} route {dst}{via}")

    def rule_add(self, *, priority: int, table: str, family: int = 4, src: str | None = None,
                 dst: str | None = None) -> Batch:
        """`ip rule add [from SRC] [to DST] lookup TABLE priority PRIORITY`."""
        body = self._rule(priority=priority, table=table, family=family, src=src, dst=dst)
        return self._add(Request(RTM_NEWRULE, _CREATE, body),
                         f"adding rule {src or 'all'} -> {dst or 'all'} lookup {table}")

    def rule_delete(self, *, priority: int, table: str, family: int = 4,
                    src: str | None = None, dst: str | None = None) -> Batch:
        """`ip rule del [from SRC] [to DST] lookup TABLE priority PRIORITY`."""
        body = self._rule(priority=priority, table=table, family=family, src=src, dst=dst)
        # Deleting a rule already gone succeeds, as deleting a namespace twice does.
        return self._add(Request(RTM_DELRULE, _ACKED, body),
                         f"deleting rule {src or 'all'} -> {dst or 'all'} lookup {table}",
                         frozenset({errno.ENOENT}))

    @staticmethod
    def _rule(*, priority: int, table: str, family: int, src: str | None,
              dst: str | None) -> bytes:
        number = _TABLES.get(table) or int(table)
        nets = {name: ipaddress.ip_network(text) for name, text in (("src", src), ("dst", dst))
                if text}
        head = req.fib_rule_hdr(
            AF_INET if family == 4 else AF_INET6,
            dst_len=nets["dst"].prefixlen if "dst" in nets else 0,
            src_len=nets["src"].prefixlen if "src" in nets else 0,
            table=number if number < 256 else 252,  # RT_TABLE_COMPAT: the number follows
            action=FR_ACT_TO_TBL)
        body = head + req.u32(FRA_PRIORITY, priority) + req.u32(FRA_TABLE, number)
        for name, kind in (("src", FRA_SRC), ("dst", FRA_DST)):
            if name in nets:
                body += req.ip(kind, str(nets[name].network_address))
        return body

    def bridge_port(self, index: int, *, hairpin: bool) -> Batch:
        """`bridge link set dev INDEX hairpin on|off`: the port must already be enslaved (an
        earlier message of the same batch may do it)."""
        info = req.nested(IFLA_LINKINFO, req.string(IFLA_INFO_SLAVE_KIND, "bridge"),
                           req.nested(IFLA_INFO_SLAVE_DATA, req.u8(IFLA_BRPORT_MODE,
                                                                     int(hairpin))))
        state = "on" if hairpin else "off"
        return self._add(Request(RTM_NEWLINK, _ACKED, req.ifinfomsg(index) + info),
                         f"setting hairpin {state} on link {index}")

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
        data = req.nested(
            IFLA_INFO_DATA,
            req.u32(IFLA_VXLAN_ID, vni),
            req.ip(IFLA_VXLAN_LOCAL6 if ":" in local else IFLA_VXLAN_LOCAL, local),
            req.u32(IFLA_VXLAN_LINK, underlay),
            req.be16(IFLA_VXLAN_PORT, port),
            req.u8(IFLA_VXLAN_LEARNING, 0),  # remotes come from our FDB entries, not traffic
        )
        body = (req.ifinfomsg(index) + req.string(IFLA_IFNAME, ifname)
                + req.lladdr(IFLA_ADDRESS, mac) + req.u32(IFLA_MTU, mtu)
                + req.nested(IFLA_LINKINFO, req.string(IFLA_INFO_KIND, "vxlan"), data))
        return self._add(Request(RTM_NEWLINK, _CREATE, body),
                         f"creating vxlan {ifname} (VNI {vni})")

    def route_delete(self, dst: str, *, family: int = 4, oif: int | None = None) -> Batch:
        body = self._route(dst, oif=oif, family=family, gateway=None, scope="universe", src=None)
        return self._add(Request(RTM_DELROUTE, _ACKED, body), f"deleting route {dst}")

    def neigh_replace(self, index: int, ip: str, mac: str) -> Batch:
        """`ip neigh replace IP lladdr MAC dev INDEX nud permanent`."""
        body = (self._neigh(_family(ip), index, 0) + req.ip(NDA_DST, ip)
                + req.lladdr(NDA_LLADDR, mac))
        return self._add(Request(RTM_NEWNEIGH, _REPLACE, body),
                         f"setting neighbour {ip} to {mac}")

    def neigh_delete(self, index: int, ip: str, *, missing_ok: bool = False) -> Batch:
        """`ip neigh del IP dev INDEX`; with `missing_ok`, an entry gone already is success."""
        body = self._neigh(_family(ip), index, 0) + req.ip(NDA_DST, ip)
        return self._add(Request(RTM_DELNEIGH, _ACKED, body), f"deleting neighbour {ip}",
                         frozenset({errno.ENOENT}) if missing_ok else frozenset())

    def fdb_replace(self, index: int, mac: str, remote: str) -> Batch:
        """`bridge fdb replace MAC dev INDEX dst REMOTE self permanent`: frames for MAC go to
        the VXLAN endpoint REMOTE."""
        return self._add(Request(RTM_NEWNEIGH, _REPLACE, self._fdb(index, mac, remote)),
                         f"setting fdb {mac} to {remote}")

    def fdb_delete(self, index: int, mac: str, remote: str) -> Batch:
        return self._add(Request(RTM_DELNEIGH, _ACKED, self._fdb(index, mac, remote)),
                         f"deleting fdb {mac}")

    @classmethod
    def _fdb(cls, index: int, mac: str, remote: str) -> bytes:
        return (cls._neigh(AF_BRIDGE, index, NTF_SELF) + req.lladdr(NDA_LLADDR, mac)
                + req.ip(NDA_DST, remote))

    @staticmethod
    def _neigh(family: int, index: int, flags: int) -> bytes:
        return req.ndmsg(family, index, state=NUD_PERMANENT, flags=flags)

    @staticmethod
    def _route(dst: str, *, oif: int | None, family: int, gateway: str | None, scope: str,
               src: str | None, flags: int = 0) -> bytes:
        default = "0.0.0.0/0" if family == 4 else "::/0"
        net = ipaddress.ip_network(default if dst == "default" else dst)
        body = req.rtmsg(AF_INET if net.version == 4 else AF_INET6, net.prefixlen,
                          table=RT_TABLE_MAIN, proto=RTPROT_BOOT, scope=_SCOPES[scope],
                          kind=RTN_UNICAST, flags=flags)
        if oif is not None:
            body += req.u32(RTA_OIF, oif)
        if net.prefixlen:
            body += req.ip(RTA_DST, str(net.network_address))
        if gateway:
            body += req.ip(RTA_GATEWAY, gateway)
        if src:
            body += req.ip(RTA_PREFSRC, src)
        return body

    def _add(self, request: Request, note: str,
             tolerated: frozenset[int] = frozenset()) -> Batch:
        self.messages.append(request)
        self.notes.append(note)
        self.tolerated.append(tolerated)
        return self
