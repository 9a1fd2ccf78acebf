"""Netlink message layouts for `podnet inspect`, taken from pyroute2's message classes.

Why not let pyroute2 decode the dumps: measured on a host with 200 pods, pyroute2 turns one
RTM_NEWLINK message into about 50 attribute objects (270 us per link, 245 ms for the host), and
handing it only the attributes we print still costs 115 us per link. `podnet inspect` must read
1,000 namespaces in under a second, so it walks each message's attribute chain itself (10 us per
link) and unpacks only what it prints.

What pyroute2 still supplies, so no number is copied by hand: the attribute numbers and value
formats (`ifinfmsg.nla_map`, ...), the fixed header layouts (`ifinfmsg.fields`, ...), the request
encodings, the message type numbers and the names of operstates, route protocols, scopes and
types. A kernel test compares every decoded value with pyroute2's own full decode.

`import pyroute2` runs a package `__init__` that imports every protocol pyroute2 speaks (115 to
200 ms). `_light_import` loads only the submodules named here (about 25 ms); the package's own
`__init__` still runs, in full, the first time anything asks for a top-level name such as
`pyroute2.IPRoute`, so other code in the same process sees the ordinary package.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from podnet.kernel.pyroute2_light import light_import

__all__ = [
    "ADDR",
    "LINK",
    "LINKINFO",
    "NEIGH",
    "NSID",
    "ROUTE",
    "Layout",
    "Rtnl",
    "request",
]

Decoder = Callable[[bytes, int, int, int], Any]  # (data, start, end, family) -> value


_netlink = light_import("pyroute2.netlink")
_rtnl = light_import("pyroute2.netlink.rtnl")
_ifinf = light_import("pyroute2.netlink.rtnl.ifinfmsg")
_ifaddr = light_import("pyroute2.netlink.rtnl.ifaddrmsg")
_rt = light_import("pyroute2.netlink.rtnl.rtmsg")
_nsid = light_import("pyroute2.netlink.rtnl.nsidmsg")
_nd = light_import("pyroute2.netlink.rtnl.ndmsg")


def _by_number(names: dict[Any, Any]) -> dict[int, str]:
    """pyroute2's two-way maps ({2: "kernel", "kernel": 2}) reduced to number -> name."""
    return {k: v for k, v in names.items() if isinstance(k, int)}


class Rtnl:
    """Numbers for route netlink, read as Rtnl.NAME."""

    NLM_F_REQUEST: int = _netlink.NLM_F_REQUEST
    NLM_F_DUMP: int = _netlink.NLM_F_DUMP
    RTM_GETLINK: int = _rtnl.RTM_GETLINK
    RTM_GETADDR: int = _rtnl.RTM_GETADDR
    RTM_GETROUTE: int = _rtnl.RTM_GETROUTE
    RTM_GETNSID: int = _rtnl.RTM_GETNSID
    RTM_GETNEIGH: int = _rtnl.RTM_GETNEIGH
    RTM_NEWNSID: int = _rtnl.RTM_NEWNSID
    AF_BRIDGE = socket.AF_BRIDGE  # the family of bridge and VXLAN forwarding entries
    RT_TABLE_MAIN = 254  # `ip route` shows the main table
    # linux/rtnetlink.h (pyroute2 names it only in a comment): leave IFLA_STATS* out of link
    # dumps, as `ip link` does without -s; the kernel then skips summing per-CPU counters.
    RTEXT_FILTER_SKIP_STATS = 1 << 3
    IFF_UP = 0x1
    IFF_LOOPBACK = 0x8
    OPERSTATES: ClassVar[dict[int, str]] = dict(_ifinf.state_by_code)
    RT_PROTO: ClassVar[dict[int, str]] = _by_number(_rt.rt_proto)
    RT_SCOPE: ClassVar[dict[int, str]] = _by_number(_rt.rt_scope)
    RT_TYPE: ClassVar[dict[int, str]] = _by_number(_rt.rt_type)


def _asciiz(data: bytes, start: int, end: int, family: int) -> str:
    raw = data[start:end]
    cut = raw.find(b"\0")
    return (raw if cut < 0 else raw[:cut]).decode(errors="replace")


def _l2addr(data: bytes, start: int, end: int, family: int) -> str:
    return data[start:end].hex(":")


def _ipaddr(data: bytes, start: int, end: int, family: int) -> str:
    if family not in (socket.AF_INET, socket.AF_INET6):  # a forwarding entry's remote VTEP
        family = socket.AF_INET if end - start == 4 else socket.AF_INET6
    return socket.inet_ntop(family, data[start:end])


def _unpacker(code: str) -> Decoder:
    fmt = struct.Struct("=" + code)

    def decode(data: bytes, start: int, end: int, family: int) -> Any:
        return fmt.unpack_from(data, start)[0]

    return decode


def _state(data: bytes, start: int, end: int, family: int) -> str:
    return Rtnl.OPERSTATES.get(data[start], str(data[start]))


def _raw(data: bytes, start: int, end: int, family: int) -> bytes:
    return bytes(data[start:end])


# pyroute2 value formats (the second item of an nla_map entry) -> how to unpack them.
_BY_FORMAT: dict[str, Decoder] = {
    "asciiz": _asciiz,
    "l2addr": _l2addr,
    "lladdr": _l2addr,  # ndmsg's name for it
    "ipaddr": _ipaddr,
    "target": _ipaddr,
    "state": _state,
}


def _decoder_for(cls: type, fmt_name: str) -> Decoder:
    fmt_name = fmt_name.split("(", maxsplit=1)[0].lstrip("*")
    if fmt_name in _BY_FORMAT:
        return _BY_FORMAT[fmt_name]
    atom = getattr(cls, fmt_name, None)
    fields = getattr(atom, "fields", None)
    if fields is not None and len(fields) == 1 and fields[0][0] == "value":
        return _unpacker(fields[0][1])  # uint8/uint16/uint32/int32/...: one struct code
    return _raw  # nested or composite: the caller walks it (IFLA_LINKINFO, RTA_MULTIPATH)


def _nla_numbers(cls: type) -> dict[str, tuple[int, str]]:
    """{name: (attribute number, pyroute2 format)}; nla_map lists are numbered by position."""
    table: Iterable[Any] = cls.nla_map  # type: ignore[attr-defined]
    items = list(table)
    if isinstance(items[0][0], int):
        return {item[1]: (item[0], item[2]) for item in items}
    return {item[0]: (number, item[1]) for number, item in enumerate(items)}


@dataclass(frozen=True)
class Layout:
    """One message type: its fixed header and the attributes podnet reads from it."""

    header: struct.Struct  # the family-specific header after the 16-byte nlmsghdr
    attrs: dict[int, tuple[str, Decoder]]  # attribute number -> (pyroute2 name, decoder)
    numbers: dict[str, int]  # pyroute2 name -> attribute number, for requests

    @classmethod
    def of(cls, msg_class: type, wanted: Iterable[str], extra: Iterable[str] = ()) -> Layout:
        fields = msg_class.fields  # type: ignore[attr-defined]
        header = struct.Struct("=" + "".join(code for _, code in fields))
        table = _nla_numbers(msg_class)
        attrs = {}
        for name in wanted:
            number, fmt_name = table[name]
            attrs[number] = (name, _decoder_for(msg_class, fmt_name))
        numbers = {name: table[name][0] for name in (*wanted, *extra) if name in table}
        return cls(header, attrs, numbers)


LINK = Layout.of(
    _ifinf.ifinfmsg,
    ("IFLA_IFNAME", "IFLA_ADDRESS", "IFLA_MTU", "IFLA_OPERSTATE", "IFLA_MASTER", "IFLA_LINK",
     "IFLA_LINK_NETNSID", "IFLA_LINKINFO", "IFLA_QDISC"),
    # IFLA_IF_NETNSID is the kernel's IFLA_TARGET_NETNSID: look into a peer's namespace by its id
    extra=("IFLA_IF_NETNSID", "IFLA_EXT_MASK"),
)
LINKINFO = Layout.of(_ifinf.ifinfmsg.ifinfo, ("IFLA_INFO_KIND",))
ADDR = Layout.of(_ifaddr.ifaddrmsg, ("IFA_ADDRESS", "IFA_LOCAL"))
ROUTE = Layout.of(
    _rt.rtmsg,
    ("RTA_DST", "RTA_OIF", "RTA_GATEWAY", "RTA_PRIORITY", "RTA_PREFSRC", "RTA_TABLE",
     "RTA_MULTIPATH"),
    extra=("RTA_SRC", "RTA_IIF"),  # what `ip route get ... from SRC iif DEV` asks with
)
NSID = Layout.of(_nsid.nsidmsg, ("NETNSA_NSID",), extra=("NETNSA_FD",))
# Neighbour and forwarding entries: the address, the link-layer address, and (forwarding
# entries) the bridge a port belongs to.
NEIGH = Layout.of(_nd.ndmsg, ("NDA_DST", "NDA_LLADDR", "NDA_MASTER"))


def request(kind: str, *, dump: bool = True, attrs: dict[str, int] | None = None,
            **fields: int) -> bytes:
    """Encode one request with pyroute2's message class (done once per kind, then reused)."""
    msg_class = {
        "link": _ifinf.ifinfmsg,
        "addr": _ifaddr.ifaddrmsg,
        "route": _rt.rtmsg,
        "nsid": _nsid.nsidmsg,
        "neigh": _nd.ndmsg,
    }[kind]
    msg_type = {
        "link": Rtnl.RTM_GETLINK,
        "addr": Rtnl.RTM_GETADDR,
        "route": Rtnl.RTM_GETROUTE,
        "nsid": Rtnl.RTM_GETNSID,
        "neigh": Rtnl.RTM_GETNEIGH,
    }[kind]
    msg = msg_class()
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = Rtnl.NLM_F_REQUEST | (Rtnl.NLM_F_DUMP if dump else 0)
    msg["header"]["sequence_number"] = 1
    for name, value in fields.items():
        msg[name] = value
    msg["attrs"] = [[name, value] for name, value in (attrs or {}).items()]
    msg.encode()
    return bytes(msg.data)
