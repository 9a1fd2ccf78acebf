"""Questions `podnet trace` and `podnet graph` ask the kernel about one packet, read-only.

Where discovery (podnet.kernel.discover) dumps every namespace once, a trace asks a few precise
questions in the namespaces a packet crosses: the kernel's own route decision for it (as `ip
route get DST from SRC iif DEV` gives it, forwarding and reverse-path checks included), a
neighbour entry, the forwarding database of a bridge or VXLAN device, a VXLAN device's VNI and
port, the nftables ruleset (`nft -j list ruleset`, run inside the namespace), and the sockets
listening there.

Nothing here changes anything. The records are plain data. Netlink questions go out on podnet's
own socket (`kernel.rtnl`), packed and read with the layouts `kernel.discover_schema` takes from
pyroute2: pyroute2's IPRoute would cost more to import (about 0.1 s) than a whole trace's
questions. Only conntrack's question loads pyroute2's Conntrack, when a trace meets a Service.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import Any

from podnet.errors import KernelError
from podnet.kernel import discover_schema as schema
from podnet.kernel import netns
from podnet.kernel import rtnl_requests as req
from podnet.kernel.discover_netlink import neighbours, route_message
from podnet.kernel.discover_schema import Rtnl
from podnet.kernel.rtnl import RawRtnl

__all__ = [
    "FdbEntry",
    "Listener",
    "Lookup",
    "Neighbour",
    "NftRead",
    "RouteAnswer",
    "Vxlan",
]

_NUD = {
    0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
    0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT",
}
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"
_NFT_TIMEOUT = 10.0


@dataclass(frozen=True)
class RouteAnswer:
    """The kernel's route decision for one packet, or the error it gave instead."""

    dst: str
    type: str = "unicast"  # unicast, local, broadcast, blackhole, unreachable, prohibit, ...
    oif: int | None = None
    gateway: str | None = None
    src: str | None = None  # the preferred source address (what a new socket would use)
    table: int | None = None
    error: int | None = None  # errno: ENETUNREACH (no route), EHOSTUNREACH, EXDEV (rp_filter)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str | None
    state: str  # REACHABLE, STALE, PERMANENT, FAILED, INCOMPLETE, ...
    ifindex: int


@dataclass(frozen=True)
class FdbEntry:
    """One forwarding entry: on a bridge, MAC -> port; on a VXLAN device, MAC -> remote VTEP."""

    mac: str
    ifindex: int  # the port (bridge) or the VXLAN device itself
    master: int | None  # the bridge the port belongs to
    dst: str | None  # VXLAN: the remote VTEP address
    state: str


@dataclass(frozen=True)
class Vxlan:
    ifindex: int
    vni: int | None
    port: int | None
    local: str | None
    remote: str | None  # a fixed remote or multicast group, when the device has one
    underlay: int | None  # ifindex of the device the tunnel leaves by
    learning: bool


@dataclass(frozen=True)
class Listener:
    proto: str  # tcp or udp
    address: str  # 0.0.0.0, 10.244.1.2, ::
    port: int
    pids: tuple[tuple[int, str], ...] = ()  # (pid, command) of processes holding the socket


@dataclass(frozen=True)
class NftRead:
    """`nft -j list ruleset` inside a namespace: its objects, or why they could not be read."""

    objects: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    iptables: tuple[tuple[str, str], ...] = ()  # (family, iptables-nft-save's text) for xt rules


def _nft_binary() -> str | None:
    return shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None
    )


def _state(bits: int) -> str:
    return next((name for bit, name in _NUD.items() if bits & bit), "NONE")


class Lookup:
    """Read-only kernel questions, one netlink socket per namespace, opened on first use.

    A namespace is named by a path (/run/netns/NAME or /proc/PID/ns/net); None is the one this
    thread runs in.
    """

    def __init__(self) -> None:
        self._sockets: dict[str | None, RawRtnl] = {}
        self._nft: dict[str | None, NftRead] = {}

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def __enter__(self) -> Lookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rtnl(self, path: str | None) -> RawRtnl:
        sock = self._sockets.get(path)
        if sock is None:
            if path is None:
                sock = RawRtnl()
            else:
                with netns.entered(path):
                    sock = RawRtnl()  # the socket stays in the namespace it was opened in
            self._sockets[path] = sock
        return sock

    # --- routes ----------------------------------------------------------------------------

    def route(
        self, path: str | None, dst: str, *, src: str | None = None, iif: int | None = None
    ) -> RouteAnswer:
        """`ip route get DST [from SRC iif DEV]`: with `iif`, the decision for a packet that
        arrived on that interface (forwarding and reverse-path filtering included)."""
        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        numbers = schema.ROUTE.numbers
        body = req.rtmsg(family, 128 if family == socket.AF_INET6 else 32, table=0, proto=0,
                         scope=0, kind=0) + req.ip(numbers["RTA_DST"], dst)
        if src is not None and iif is not None:
            body += req.ip(numbers["RTA_SRC"], src)
        if iif is not None:
            body += req.u32(numbers["RTA_IIF"], iif)
        request = req.Request(Rtnl.RTM_GETROUTE, Rtnl.NLM_F_REQUEST, body).encode(1)
        try:
            answers = [route_message(data, pos, end)
                       for data, pos, end, _ in self._rtnl(path).messages(request)]
        except OSError as exc:
            return RouteAnswer(dst=dst, type="error", error=exc.errno or errno.EINVAL)
        if not answers:
            return RouteAnswer(dst=dst, type="error", error=errno.ENETUNREACH)
        found = answers[0]
        return RouteAnswer(dst=dst, type=found.type, oif=found.oif, gateway=found.gateway,
                           src=found.prefsrc, table=found.table)

    # --- neighbours and forwarding databases ------------------------------------------------

    def neighbours(self, path: str | None, ifindex: int | None = None,
                   version: int = 4) -> list[Neighbour]:
        """Neighbour entries of one family (IPv4: ARP, IPv6: NDP), of one interface when
        `ifindex` is given."""
        family = socket.AF_INET6 if version == 6 else socket.AF_INET
        return [Neighbour(n.dst, n.mac, _state(n.state), n.ifindex)
                for n in neighbours(self._rtnl(path), family)
                if n.dst and (ifindex is None or n.ifindex == ifindex)]

    def neighbour(self, path: str | None, ifindex: int, ip: str) -> Neighbour | None:
        version = 6 if ":" in ip else 4
        return next((n for n in self.neighbours(path, ifindex, version) if n.ip == ip), None)

    def fdb(self, path: str | None) -> list[FdbEntry]:
        """Every bridge and VXLAN forwarding entry in the namespace (`bridge fdb show`)."""
        return [FdbEntry(n.mac, n.ifindex, n.master, n.dst, _state(n.state))
                for n in neighbours(self._rtnl(path), Rtnl.AF_BRIDGE) if n.mac]

    def vxlan(self, path: str | None, ifindex: int) -> Vxlan | None:
        """A VXLAN device's VNI, UDP port, local address and underlay (None: not VXLAN)."""
        try:
            msg = self._rtnl(path).get_link(path or "this namespace", index=ifindex)
        except KernelError:
            return None
        info = msg.get("IFLA_LINKINFO")
        if not info or info.get("IFLA_INFO_KIND") != "vxlan":
            return None
        data = info.get("IFLA_INFO_DATA") or {}
        get = data.get if hasattr(data, "get") else (lambda _k: None)
        return Vxlan(
            ifindex=ifindex,
            vni=get("IFLA_VXLAN_ID"),
            port=get("IFLA_VXLAN_PORT"),
            local=get("IFLA_VXLAN_LOCAL") or get("IFLA_VXLAN_LOCAL6"),  # an IPv6 underlay's
            remote=get("IFLA_VXLAN_GROUP") or get("IFLA_VXLAN_GROUP6"),
            underlay=get("IFLA_VXLAN_LINK"),
            learning=bool(get("IFLA_VXLAN_LEARNING")),
        )

    def conntrack_reply(self, path: str | None, src: str, sport: int, dst: str,
                        dport: int) -> tuple[str, int | None] | None:
        """Who answered the connection src:sport -> dst:dport, as conntrack recorded it (the
        DNAT target a Service picked). None: no entry, or conntrack is not readable."""
        family = 10 if ":" in src else 2  # conntrack answers one family per socket
        try:
            from pyroute2 import Conntrack

            if path is None:
                ct = Conntrack(nfgen_family=family)
                entries = list(ct.dump_entries())
            else:
                with netns.entered(path):  # the socket is opened on first use: dump here
                    ct = Conntrack(nfgen_family=family)
                    entries = list(ct.dump_entries())
            ct.close()
        except Exception:  # no nf_conntrack module, no permission: not fatal
            return None
        for entry in entries:
            orig, reply = entry.tuple_orig, entry.tuple_reply
            if (orig.saddr, orig.daddr, orig.sport, orig.dport) == (src, dst, sport, dport):
                return str(reply.saddr), reply.sport
        return None

    # --- sysctls, nftables, sockets --------------------------------------------------------

    def sysctl(self, path: str | None, key: str) -> str | None:
        """A per-namespace sysctl (net.ipv4.conf.eth0.forwarding); None when it is missing."""
        file = "/proc/sys/" + key.replace(".", "/")
        try:
            if path is None:
                with open(file) as fh:
                    return fh.read().strip()
            with netns.entered(path), open(file) as fh:
                return fh.read().strip()
        except OSError:
            return None

    def ruleset(self, path: str | None) -> NftRead:
        """Every nftables table of the namespace as `nft -j list ruleset` prints it (cached)."""
        if path in self._nft:
            return self._nft[path]
        binary = _nft_binary()
        if binary is None:
            read = NftRead(error="nft is not installed: rules were not read")
        else:
            read = self._run_nft(path, binary)
        self._nft[path] = read
        return read

    @staticmethod
    def _run_nft(path: str | None, binary: str) -> NftRead:
        argv = [binary, "-j", "list", "ruleset"]
        try:
            if path is None:
                proc = subprocess.run(argv, capture_output=True, timeout=_NFT_TIMEOUT, check=False)
            else:
                # A child forked from this thread is born in the namespace the thread is in.
                with netns.entered(path):
                    proc = subprocess.run(argv, capture_output=True, timeout=_NFT_TIMEOUT,
                                          check=False)
        except (OSError, subprocess.TimeoutExpired, KernelError) as exc:
            return NftRead(error=f"nft could not run: {exc}")
        if proc.returncode != 0:
            return NftRead(error=proc.stderr.decode(errors="replace").strip() or "nft failed")
        try:
            objects = json.loads(proc.stdout or b"{}").get("nftables", [])
        except ValueError as exc:
            return NftRead(error=f"nft printed JSON podnet cannot read: {exc}")
        return NftRead(tuple(o for o in objects if isinstance(o, dict)))

    def listeners(self, path: str | None, pids: tuple[int, ...] = ()) -> list[Listener]:
        """TCP sockets listening and unconnected UDP sockets in the namespace, with the
        processes that own them: among `pids` (those holding the namespace) and their parents
        (a socket stays in the namespace it was made in, whoever holds it: podnet's podhost,
        the parent of its pods' pause processes, holds their listening sockets)."""
        tables = {}
        try:
            if path is None:
                tables = _read_socket_tables()
            else:
                with netns.entered(path):
                    tables = _read_socket_tables()  # /proc/thread-self/net answers for it
        except (OSError, KernelError):
            return []
        owners = _socket_owners(tuple(dict.fromkeys((*pids, *_parents(pids)))))
        out = []
        for (proto, state), rows in tables.items():
            wanted = _TCP_LISTEN if proto == "tcp" else _UDP_UNCONNECTED
            if state != wanted:
                continue
            for address, port, inode in rows:
                out.append(Listener(proto, address, port, tuple(owners.get(inode, ()))))
        return out


def _hex_address(text: str) -> str:
    import ipaddress

    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc prints IPv6 as four host-order 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    v6 = ipaddress.IPv6Address(words)
    return str(v6.ipv4_mapped) if v6.ipv4_mapped else str(v6)


def _read_socket_tables() -> dict[tuple[str, str], list[tuple[str, int, int]]]:
    """{(proto, state): [(address, port, inode)]} from /proc/thread-self/net/{tcp,udp}{,6}."""
    out: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for proto in ("tcp", "udp"):
        for suffix in ("", "6"):
            try:
                with open(f"/proc/thread-self/net/{proto}{suffix}") as fh:
                    lines = fh.read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) < 10:
                    continue
                address, port = fields[1].split(":")
                out.setdefault((proto, fields[3]), []).append(
                    (_hex_address(address), int(port, 16), int(fields[9]))
                )
    return out


def _parents(pids: tuple[int, ...]) -> list[int]:
    """The parent of each process (none for those gone, or whose parent is init)."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                raw = fh.read()
            parent = int(raw[raw.rindex(b")") + 1 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent > 1:
            out.append(parent)
    return out


def _socket_owners(pids: tuple[int, ...]) -> dict[int, list[tuple[int, str]]]:
    """{socket inode: [(pid, comm)]} for the sockets the processes `pids` hold open."""
    owners: dict[int, list[tuple[int, str]]] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            with open(f"/proc/{pid}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners.setdefault(int(target[8:-1]), []).append((pid, comm))
    return owners
