"""Small pieces the kinds share: addresses of every family, interfaces and routes in words."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from podnet.inspect.model import Host, Interface, Namespace
from podnet.render.inspect_text import route_text

__all__ = ["addresses", "each_family", "interface_line", "namespace", "route_lines"]


def each_family(obj: Any, plural: str, singular: str) -> list[Any]:
    """One value per address family (`ips`, `pod_cidrs`, `cluster_ips` when the layout has
    them: dual-stack), else the one value of the single-family layout."""
    if hasattr(obj, plural):
        return list(getattr(obj, plural))
    single = getattr(obj, singular)
    return [] if single is None else [single]


def addresses(cidrs: Iterable[str], *, link_local: bool = True) -> list[str]:
    out = []
    for cidr in cidrs:
        try:
            addr = ipaddress.ip_interface(cidr)
        except ValueError:
            continue
        if link_local or not addr.is_link_local:
            out.append(cidr)
    return out


def namespace(host: Host, name: str) -> Namespace | None:
    return next((ns for ns in host.namespaces if ns.name == name), None)


def interface_line(iface: Interface) -> str:
    """`eth0 (ifindex 2) 10.244.1.2/24 fe80::1/64, veth, MAC ..., MTU 1500, UP`."""
    words = [f"{iface.ifname} (ifindex {iface.ifindex})", *iface.addresses]
    facts = [iface.kind]
    if iface.master:
        facts.append(f"port of {iface.master}")
    if iface.mac:
        facts.append(f"MAC {iface.mac}")
    if iface.mtu:
        facts.append(f"MTU {iface.mtu}")
    facts.append(iface.state if iface.up else f"{iface.state} (down)")
    return " ".join(words) + ", " + ", ".join(facts)


def route_lines(ns: Namespace, *, only_dev: str | None = None) -> list[str]:
    return [route_text(r) for r in ns.routes
            if only_dev is None or r.dev == only_dev
            or any(dev == only_dev for _gw, dev in r.nexthops)]
