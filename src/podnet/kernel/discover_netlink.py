"""Read every link, address and route of a network namespace (and, for `check`, its neighbour
entries), without changing anything.

For each namespace: enter it in this thread (setns), open podnet's NETLINK_ROUTE socket
(`kernel.rtnl.RawRtnl`), come straight back (the socket stays bound to the namespace it was
opened in), then dump links, addresses and the main routing table through it. About 0.15 ms
per namespace, where a pyroute2 `IPRoute(netns=...)` forks a helper process (16 ms) and
`ip -n NS` starts a program (1.3 ms).

Message layouts come from pyroute2 (see `discover_schema`); only printed attributes are unpacked.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from socket import AF_INET, AF_INET6
from typing import NamedTuple

from podnet.errors import KernelError
from podnet.kernel import discover_schema as schema
from podnet.kernel import netns
from podnet.kernel.discover_schema import Rtnl
from podnet.kernel.discover_types import Address, Link, NamespaceDump, Nexthop, Route
from podnet.kernel.rtnl import RawRtnl

__all__ = ["Neighbour", "Session", "attributes", "neighbours", "peer_request", "route_message"]

_NLA = struct.Struct("=HH")
_RTNH = struct.Struct("=HBBi")  # struct rtnexthop: len, flags, hops, ifindex
_NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER
_U32_MAX = 0xFFFFFFFF
# A namespace that went away while podnet looked: its paths are gone (ENOENT, ESRCH), name
# something else now (ESTALE), or are no longer namespaces (EINVAL from setns).
_GONE = frozenset({errno.ENOENT, errno.ESRCH, errno.ESTALE, errno.EINVAL})


def attributes(
    data: bytes, pos: int, end: int, layout: schema.Layout, family: int
) -> dict[str, object]:
    """Walk one attribute chain; unpack only the attributes named in `layout`."""
    wanted = layout.attrs
    out: dict[str, object] = {}
    unpack = _NLA.unpack_from
    while pos + 4 <= end:
        length, kind = unpack(data, pos)
        if length < 4:
            break
        entry = wanted.get(kind & _NLA_TYPE_MASK)
        if entry is not None:
            out[entry[0]] = entry[1](data, pos + 4, pos + length, family)
        pos += (length + 3) & ~3
    return out


def _link(data: bytes, pos: int, end: int) -> Link:
    layout = schema.LINK
    _family, _type, index, flags, _change = layout.header.unpack_from(data, pos)
    a = attributes(data, pos + layout.header.size, end, layout, 0)
    info = a.get("IFLA_LINKINFO")
    kind = None
    if isinstance(info, bytes):
        kind = attributes(info, 0, len(info), schema.LINKINFO, 0).get("IFLA_INFO_KIND")
    if kind is None:
        kind = "loopback" if flags & Rtnl.IFF_LOOPBACK else "device"
    master = a.get("IFLA_MASTER")
    # The kernel leaves IFLA_LINK out when it equals the link's own ifindex, which happens for a
    # veth whose peer got the same ifindex in its namespace (both ends "2" is common). A veth
    # whose peer is gone reports IFLA_LINK 0; one whose peer's namespace is being torn down
    # reports IFLA_LINK_NETNSID -1 (no id can be given to a dying namespace).
    peer = a.get("IFLA_LINK", index if kind == "veth" else None)
    return Link(
        index=index,
        ifname=str(a.get("IFLA_IFNAME", "")),
        kind=str(kind),
        mac=a.get("IFLA_ADDRESS"),  # type: ignore[arg-type]
        mtu=a.get("IFLA_MTU"),  # type: ignore[arg-type]
        state=str(a.get("IFLA_OPERSTATE", "UNKNOWN")),
        up=bool(flags & Rtnl.IFF_UP),
        master=master or None,  # type: ignore[arg-type]
        peer_index=peer or None,  # type: ignore[arg-type]
        peer_netnsid=a.get("IFLA_LINK_NETNSID"),  # type: ignore[arg-type]
        qdisc=a.get("IFLA_QDISC"),  # type: ignore[arg-type]
    )


def _address(data: bytes, pos: int, end: int) -> Address:
    layout = schema.ADDR
    family, prefixlen, _flags, scope, index = layout.header.unpack_from(data, pos)
    a = attributes(data, pos + layout.header.size, end, layout, family)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links
    local = a.get("IFA_LOCAL", a.get("IFA_ADDRESS"))
    return Address(index, family, str(local), prefixlen, scope)


def _nexthops(blob: bytes, family: int) -> tuple[Nexthop, ...]:
    hops = []
    pos = 0
    while pos + _RTNH.size <= len(blob):
        length, _flags, _hops, ifindex = _RTNH.unpack_from(blob, pos)
        if length < _RTNH.size:
            break
        a = attributes(blob, pos + _RTNH.size, pos + length, schema.ROUTE, family)
        gateway = a.get("RTA_GATEWAY")
        hops.append(Nexthop(ifindex, str(gateway) if gateway else None))
        pos += (length + 3) & ~3
    return tuple(hops)


def route_message(data: bytes, pos: int, end: int) -> Route:
    """One RTM_NEWROUTE message (of a dump, or the answer to `ip route get`)."""
    layout = schema.ROUTE
    family, dst_len, _src_len, _tos, table, proto, scope, rtype, _flags = (
        layout.header.unpack_from(data, pos)
    )
    a = attributes(data, pos + layout.header.size, end, layout, family)
    multipath = a.get("RTA_MULTIPATH")
    return Route(
        family=family,
        dst=a.get("RTA_DST"),  # type: ignore[arg-type]
        dst_len=dst_len,
        gateway=a.get("RTA_GATEWAY"),  # type: ignore[arg-type]
        oif=a.get("RTA_OIF"),  # type: ignore[arg-type]
        prefsrc=a.get("RTA_PREFSRC"),  # type: ignore[arg-type]
        scope=Rtnl.RT_SCOPE.get(scope, str(scope)),
        protocol=Rtnl.RT_PROTO.get(proto, str(proto)),
        type=Rtnl.RT_TYPE.get(rtype, str(rtype)),
        metric=a.get("RTA_PRIORITY"),  # type: ignore[arg-type]
        table=a.get("RTA_TABLE", table),  # type: ignore[arg-type]
        nexthops=_nexthops(multipath, family) if isinstance(multipath, bytes) else (),
    )


# Requests are encoded once by pyroute2 and reused for every namespace.
# Family 0 (AF_UNSPEC): IPv4 and IPv6 in one dump; pyroute2's rtmsg would default to AF_INET.
_DUMP_LINKS = schema.request(
    "link", family=0, attrs={"IFLA_EXT_MASK": Rtnl.RTEXT_FILTER_SKIP_STATS}
)
_DUMP_ADDRS = schema.request("addr", family=0)
_DUMP_ROUTES = schema.request("route", family=0, table=Rtnl.RT_TABLE_MAIN)
# By family; 0: the ARP and the NDP tables in one dump.
_DUMP_NEIGHS: dict[int, bytes] = {0: schema.request("neigh", family=0)}
_NSID_FD_OFFSET = -4  # NETNSA_FD is the last attribute: its u32 value ends the message
_GET_NSID = bytearray(schema.request("nsid", dump=False, attrs={"NETNSA_FD": 0}))
# One link of a peer namespace, without its counters; the ifindex and the namespace id are
# patched in (the id is the last attribute) instead of encoding a request per question.
_GET_PEER = schema.request("link", dump=False, index=0, attrs={
    "IFLA_EXT_MASK": Rtnl.RTEXT_FILTER_SKIP_STATS, "IFLA_IF_NETNSID": 0})
_IFINDEX_OFFSET = 16 + 4  # after the netlink header: family, pad, type, then the ifindex
_S32 = struct.Struct("=i")


def peer_request(netnsid: int, ifindex: int) -> bytes:
    """RTM_GETLINK for link `ifindex` of the namespace called `netnsid` here."""
    request = bytearray(_GET_PEER)
    _S32.pack_into(request, _IFINDEX_OFFSET, ifindex)
    _S32.pack_into(request, len(request) - 4, netnsid)
    return bytes(request)


class Neighbour(NamedTuple):
    family: int  # AF_INET: ARP's table; AF_INET6: NDP's; AF_BRIDGE: a forwarding database's
    ifindex: int
    state: int  # NUD_* bits
    dst: str | None
    mac: str | None = None
    master: int | None = None  # a forwarding entry's bridge


def neighbours(rtnl: RawRtnl, family: int = 0) -> Iterator[Neighbour]:
    """The neighbour entries of the namespace `rtnl` was opened in: of both the ARP and the NDP
    table (`ip neigh`), or of one family (AF_BRIDGE: `bridge fdb`). OSError when the kernel
    refuses the dump."""
    layout = schema.NEIGH
    request = _DUMP_NEIGHS.get(family)
    if request is None:
        request = _DUMP_NEIGHS[family] = schema.request("neigh", family=family)
    for data, pos, end, _kind in rtnl.messages(request):
        got, index, state, _flags, _type = layout.header.unpack_from(data, pos)
        if family or got in (AF_INET, AF_INET6):
            a = attributes(data, pos + layout.header.size, end, layout, got)
            dst, mac, master = a.get("NDA_DST"), a.get("NDA_LLADDR"), a.get("NDA_MASTER")
            yield Neighbour(got, index, state, dst if isinstance(dst, str) else None,
                            mac if isinstance(mac, str) and mac else None,
                            master if isinstance(master, int) and master else None)


class _Reader(RawRtnl):
    """podnet's netlink socket, opened strict (the kernel filters route dumps by table), with
    the few questions inspect asks of a namespace."""

    def __init__(self) -> None:
        super().__init__(strict=True)

    def namespace(self) -> NamespaceDump:
        """Links, addresses and routes; again (up to 3 times) if the kernel flagged a dump as
        interrupted by a change made while it ran."""
        for _ in range(3):
            self.interrupted = False
            out = NamespaceDump()
            out.links = [_link(d, p, e) for d, p, e, _ in self.messages(_DUMP_LINKS)]
            out.addresses = [_address(d, p, e) for d, p, e, _ in self.messages(_DUMP_ADDRS)]
            routes = [route_message(d, p, e) for d, p, e, _ in self.messages(_DUMP_ROUTES)]
            out.routes = (routes if self.strict
                          else [r for r in routes if r.table == Rtnl.RT_TABLE_MAIN])
            if not self.interrupted:
                break
        return out

    def nsid_of(self, fd: int) -> int | None:
        """The id this socket's namespace gives the namespace behind `fd` (None: none given)."""
        _GET_NSID[_NSID_FD_OFFSET:] = struct.pack("=I", fd)
        for data, pos, end, mtype in self.messages(_GET_NSID):
            if mtype != Rtnl.RTM_NEWNSID:
                continue
            header = schema.NSID.header
            a = attributes(data, pos + header.size, end, schema.NSID, 0)
            nsid = a.get("NETNSA_NSID")
            if isinstance(nsid, int) and nsid not in (-1, 0xFFFFFFFF):
                return nsid
        return None

    def peer_link(self, netnsid: int, ifindex: int) -> Link | None:
        """Link `ifindex` of the namespace this one calls `netnsid` (IFLA_TARGET_NETNSID)."""
        if not 0 <= netnsid <= _U32_MAX or not 0 < ifindex <= _U32_MAX:
            return None  # -1: the peer's namespace has no id here, it is being torn down
        request = peer_request(netnsid, ifindex)
        try:
            for data, pos, end, _ in self.messages(request):
                return _link(data, pos, end)
        except OSError:
            return None  # no such namespace id or no such link: the peer is gone
        return None


class Session:
    """Enter namespaces from this thread and always come back to the one it started in.

    Read-only: it opens sockets and asks; it never sets a link, address, route or sysctl.
    """

    def close(self) -> None:
        """Nothing to release: each visit to a namespace comes back on its own (kept so that
        a Session is a context manager)."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_namespace(self, paths: list[str], inode: int) -> int:
        """An fd on the namespace: the first of `paths` that still names inode `inode`.

        A /proc/PID/ns/net path can be stale (the PID exited and was reused): the inode is
        checked on the open fd, before anything is asked of it.
        """
        last: OSError | None = None
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                last = exc
                continue
            if os.fstat(fd).st_ino == inode:
                return fd
            os.close(fd)
            last = OSError(errno.ESTALE, "names another namespace now", path)
        if last is None:
            last = OSError(errno.ENOENT, "no path to open", "")
        raise KernelError(
            f"cannot open network namespace {inode}: {last.strerror}"
            + (f" ({last.filename})" if last.filename else ""),
            errno=last.errno,
            hint="it probably went away while podnet was looking; run inspect again",
        )

    def socket_in(self, fd: int | None) -> _Reader:
        """A netlink socket in the namespace behind `fd` (None: the one this thread started in)."""
        if fd is None:
            return _Reader()
        with netns.entered(fd, hint="inspect needs root (CAP_SYS_ADMIN) to look inside other "
                                    "namespaces"):
            return _Reader()

    def dump(self, paths: list[str] | None, inode: int) -> NamespaceDump:
        """Links, addresses and main-table routes of one namespace; failures land in `.error`."""
        try:
            sock = self.reader(paths, inode)
        except OSError as exc:  # it could not be entered: gone, or not ours to enter
            if not isinstance(exc, KernelError):
                return NamespaceDump(error=f"cannot open a netlink socket: {exc.strerror}")
            return NamespaceDump(error=exc.message, gone=exc.errno in _GONE)
        try:
            return sock.namespace()
        except OSError as exc:  # entered, then the dump failed: say so, never hide it
            return NamespaceDump(error=f"netlink dump failed: {exc.strerror}")
        finally:
            sock.close()

    def reader(self, paths: list[str] | None, inode: int) -> _Reader:
        """A netlink socket inside namespace `inode` (paths None: this thread's own);
        KernelError if it cannot be entered."""
        fd = None if paths is None else self.open_namespace(paths, inode)
        try:
            return self.socket_in(fd)
        finally:
            if fd is not None:
                os.close(fd)

    def nsids(
        self, paths: list[str] | None, inode: int, others: dict[int, list[str]]
    ) -> dict[int, int | None]:
        """Inside the namespace `inode`, the nsid of each namespace in `others` (by inode)."""
        answers: dict[int, int | None] = {}
        sock = self.reader(paths, inode)
        try:
            for other, other_paths in others.items():
                try:
                    other_fd = self.open_namespace(other_paths, other)
                except KernelError:
                    answers[other] = None
                    continue
                try:
                    answers[other] = sock.nsid_of(other_fd)
                except OSError:
                    answers[other] = None
                finally:
                    os.close(other_fd)
        finally:
            sock.close()
        return answers

    def peer_links(
        self, paths: list[str] | None, inode: int, asks: list[tuple[int, int]]
    ) -> dict[tuple[int, int], Link | None]:
        """Inside namespace `inode`, the link of each (netnsid, ifindex) in `asks`, on one
        socket (None: no such link or namespace id). OSError if `inode` cannot be entered."""
        sock = self.reader(paths, inode)
        try:
            return {ask: sock.peer_link(*ask) for ask in asks}
        finally:
            sock.close()

    def peer_link(
        self, paths: list[str] | None, inode: int, netnsid: int, ifindex: int
    ) -> Link | None:
        """Ask namespace `inode` for link `ifindex` in its namespace `netnsid` (None: gone)."""
        try:
            sock = self.reader(paths, inode)
        except KernelError:
            return None
        try:
            return sock.peer_link(netnsid, ifindex)
        finally:
            sock.close()
