"""The CNI result (SPEC.md, Section 5): read any supported version, write the one asked for.

Internally a result is the 1.1.0 shape. Writing for 1.0.0 drops the fields 1.1 added (interface
mtu/socketPath/pciID, route mtu/advmss/priority/table/scope); writing for 0.4.0 also puts back
the `version` of each IP that 1.0 removed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from podnet.cni.spec import version_at_least
from podnet.errors import CNI_DECODE_ERROR, CniError

__all__ = ["DNS", "IPConfig", "Interface", "Result", "Route"]

_IFACE_11 = ("mtu", "socketPath", "pciID")
_ROUTE_11 = ("mtu", "advmss", "priority", "table", "scope")


def _bad(what: str, value: object) -> CniError:
    return CniError(CNI_DECODE_ERROR, f"prevResult: {what} {value!r} is not valid")


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

    @classmethod
    def from_json(cls, doc: object) -> DNS:
        if not isinstance(doc, dict):
            return cls()
        return cls(
            nameservers=tuple(str(x) for x in doc.get("nameservers") or ()),
            domain=str(doc.get("domain") or ""),
            search=tuple(str(x) for x in doc.get("search") or ()),
            options=tuple(str(x) for x in doc.get("options") or ()),
        )


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
    def from_json(cls, doc: object) -> Result:
        """Parse a result of any supported version (a prevResult, or an IPAM plugin's answer)."""
        if not isinstance(doc, dict):
            raise _bad("result", doc)
        interfaces = []
        for item in doc.get("interfaces") or ():
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise _bad("interface", item)
            mtu = item.get("mtu", 0)
            interfaces.append(Interface(
                name=item["name"], mac=str(item.get("mac") or ""),
                sandbox=str(item.get("sandbox") or ""), mtu=mtu if isinstance(mtu, int) else 0,
            ))
        ips = []
        for item in doc.get("ips") or ():
            try:
                address = ipaddress.ip_interface(item["address"])
                gateway = ipaddress.ip_address(item["gateway"]) if item.get("gateway") else None
            except (KeyError, TypeError, ValueError):
                raise _bad("ip", item) from None
            index = item.get("interface")
            ips.append(IPConfig(address, gateway, index if isinstance(index, int) else None))
        routes = []
        for item in doc.get("routes") or ():
            try:
                dst = ipaddress.ip_network(item["dst"], strict=False)
                gw = ipaddress.ip_address(item["gw"]) if item.get("gw") else None
            except (KeyError, TypeError, ValueError):
                raise _bad("route", item) from None
            extra = tuple((k, item[k]) for k in _ROUTE_11 if k in item)
            routes.append(Route(dst, gw, extra))
        return cls(tuple(interfaces), tuple(ips), tuple(routes), DNS.from_json(doc.get("dns")))

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
