"""The CNI result (SPEC.md, Section 5): read any supported version, write the one asked for.

Internally a result is the 1.1.0 shape. Writing for 1.0.0 drops the fields 1.1 added (interface
mtu/socketPath/pciID, route mtu/advmss/priority/table/scope); writing for 0.4.0 also puts back
the `version` of each IP that 1.0 removed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from podnet.cni.spec import version_at_least
from podnet.errors import CNI_DECODE_ERROR, CniError

__all__ = ["DNS", "IPConfig", "Interface", "Result", "Route"]

T = TypeVar("T")
_IFACE_11 = ("mtu", "socketPath", "pciID")
_ROUTE_11 = ("mtu", "advmss", "priority", "table", "scope")


def _bad(where: str, value: object, expected: str = "") -> CniError:
    shown = repr(value) if isinstance(value, str | int | float | bool) or value is None \
        else type(value).__name__
    wanted = f" ({expected} expected)" if expected else ""
    return CniError(CNI_DECODE_ERROR, f"{where}: {shown[:80]} is not valid{wanted}",
                    details="the runtime passes back the result an ADD returned, unchanged")


def _list(doc: dict[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{where}.{key}", value, "a list")
    return value


def _str(doc: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{where}.{key}", value)
    return value


def _interface(item: object, where: str) -> Interface:
    if not isinstance(item, dict):
        raise _bad(where, item)
    mtu = item.get("mtu", 0)
    if not isinstance(mtu, int) or isinstance(mtu, bool):
        raise _bad(f"{where}.mtu", mtu)
    return Interface(_str(item, "name", where, required=True), _str(item, "mac", where),
                     _str(item, "sandbox", where), mtu)


def _parsed(item: dict[str, Any], key: str, where: str, parse: Callable[[str], T],
            required: bool = False) -> T | None:
    """`item[key]` read by `parse` (an address, a prefix); None when absent and optional."""
    text = _str(item, key, where, required)
    if not text:
        return None
    try:
        return parse(text)
    except ValueError:
        raise _bad(f"{where}.{key}", text) from None


def _ip(item: object, where: str) -> IPConfig:
    if not isinstance(item, dict):
        raise _bad(where, item)
    address = _parsed(item, "address", where, ipaddress.ip_interface, required=True)
    if address is None:
        raise _bad(f"{where}.address", "")
    gateway = _parsed(item, "gateway", where, ipaddress.ip_address)
    index = item.get("interface")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)
                              or index < 0):
        raise _bad(f"{where}.interface", index)
    return IPConfig(address, gateway, index)


def _route(item: object, where: str) -> Route:
    if not isinstance(item, dict):
        raise _bad(where, item)
    dst = _parsed(item, "dst", where, lambda t: ipaddress.ip_network(t, strict=False),
                  required=True)
    if dst is None:
        raise _bad(f"{where}.dst", "")
    gw = _parsed(item, "gw", where, ipaddress.ip_address)
    extra = []
    for key in _ROUTE_11:
        if key in item:
            value = item[key]
            if not isinstance(value, int | str) or isinstance(value, bool):
                raise _bad(f"{where}.{key}", value)
            extra.append((key, value))
    return Route(dst, gw, tuple(extra))


def _dns(doc: dict[str, Any], where: str) -> DNS:
    def strings(key: str) -> tuple[str, ...]:
        values = _list(doc, key, where)
        if not all(isinstance(v, str) for v in values):
            raise _bad(f"{where}.{key}", values)
        return tuple(values)

    return DNS(strings("nameservers"), _str(doc, "domain", where), strings("search"),
               strings("options"))


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0

    def to_json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if self.mtu and version_at_least(version, "1.1.0"):
            out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        return out


@dataclass(frozen=True)
class IPConfig:
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    interface: int | None = None

    def to_json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not version_at_least(version, "1.0.0"):
            out["version"] = str(self.address.version)
        out["address"] = str(self.address)
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        if self.interface is not None:
            out["interface"] = self.interface
        return out


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gw: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    extra: tuple[tuple[str, Any], ...] = ()  # 1.1 attributes (mtu, priority, ...) passed through

    def to_json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        if version_at_least(version, "1.1.0"):
            out.update(self.extra)
        return out


@dataclass(frozen=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


@dataclass(frozen=True)
class Result:
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)

    def to_json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [i.to_json(version) for i in self.interfaces]
        out["ips"] = [ip.to_json(version) for ip in self.ips]
        if self.routes:
            out["routes"] = [r.to_json(version) for r in self.routes]
        out["dns"] = self.dns.to_json()
        return out

    @classmethod
    def from_json(cls, doc: object, where: str = "prevResult") -> Result:
        """Parse a result of any supported version (a prevResult, or an IPAM plugin's answer).
        Anything of the wrong shape is code 6 naming the field, e.g. `prevResult.ips[0].address`.
        """
        if not isinstance(doc, dict):
            raise _bad(where, doc)
        interfaces = tuple(_interface(item, f"{where}.interfaces[{i}]")
                           for i, item in enumerate(_list(doc, "interfaces", where)))
        ips = tuple(_ip(item, f"{where}.ips[{i}]")
                    for i, item in enumerate(_list(doc, "ips", where)))
        routes = tuple(_route(item, f"{where}.routes[{i}]")
                       for i, item in enumerate(_list(doc, "routes", where)))
        dns = doc.get("dns")
        if dns is not None and not isinstance(dns, dict):
            raise _bad(f"{where}.dns", dns)
        return cls(interfaces, ips, routes, _dns(dns or {}, f"{where}.dns"))

    def merged_after(self, prev: Result | None) -> Result:
        """Chaining: what earlier plugins reported, then ours, our interface indexes shifted."""
        if prev is None:
            return self
        shift = len(prev.interfaces)
        ips = tuple(
            IPConfig(ip.address, ip.gateway, None if ip.interface is None else ip.interface + shift)
            for ip in self.ips
        )
        dns = self.dns if self.dns.to_json() else prev.dns
        return Result(prev.interfaces + self.interfaces, prev.ips + ips,
                      prev.routes + self.routes, dns)
