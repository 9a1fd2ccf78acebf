"""Addresses of either family, and the few facts about families the rest of podnet needs. Pure.

Everything that holds addresses holds one per family, IPv4 first in a dual-stack cluster (kind's
order, and kubectl's `podIPs`): the singular names (`ip`, `pod_cidr`, `cluster_ip`) elsewhere are
the first of those, as `status.podIP` is the first of `status.podIPs`.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

__all__ = [
    "FAMILIES",
    "Family",
    "IPAddress",
    "IPFamily",
    "IPInterface",
    "IPNetwork",
    "family_name",
    "host_route",
    "interface",
    "network",
    "nth_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Family = Literal[4, 6]
IPFamily = Literal["ipv4", "ipv6", "dual"]  # kind's networking.ipFamily
FAMILIES: dict[str, tuple[Family, ...]] = {"ipv4": (4,), "ipv6": (6,), "dual": (4, 6)}


def family_name(version: int) -> str:
    """Kubernetes' name for a family, as in a Service's `ipFamilies`: IPv4 or IPv6."""
    return f"IPv{version}"


def network(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def interface(text: str) -> IPInterface:
    return ipaddress.ip_interface(text)


def nth_host(net: IPNetwork, n: int) -> IPAddress:
    """The address `n` places after the network's own (1: the first host, the gateway)."""
    return net.network_address + n


def host_route(ip: IPAddress) -> str:
    """The route to one address: 10.244.1.5/32, fd00::5/128."""
    return f"{ip}/{ip.max_prefixlen}"
