"""Services in the concrete lab: virtual IPs, node ports and endpoints, decided once. Pure.

A Service's ClusterIP comes from `serviceSubnet` and its node ports from 30000-32767, as the API
server allocates them; once given they stay (the record keeps them), so a second `up` decides the
same addresses. New ones are drawn from a hash of the Service's name, so a lab rebuilt from
scratch gets the same addresses too. Endpoints are the pods the selector matches, in file order.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from podnet.ipam.pool import PoolExhaustedError
from podnet.model.addresses import IPAddress, IPNetwork
from podnet.model.types import ClusterSpec, ServiceSpec

__all__ = [
    "NODE_PORT_RANGE",
    "ServiceLayout",
    "ServicePortLayout",
    "cluster_domain_names",
    "place_services",
]

NODE_PORT_RANGE = range(30000, 32768)  # kube-apiserver's default --service-node-port-range
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class ServicePortLayout:
    name: str
    protocol: str  # "TCP" or "UDP"
    port: int  # on the ClusterIP
    target_port: int  # on each endpoint pod
    node_port: int | None = None  # on every node's addresses (type NodePort)

    @property
    def ident(self) -> str:
        """`tcp/http` (or `tcp/80` for an unnamed port): names its nftables chains."""
        return f"{self.protocol.lower()}/{self.name or self.port}"


@dataclass(frozen=True)
class ServiceLayout:
    namespace: str
    name: str
    type: str  # "ClusterIP" or "NodePort"
    cluster_ips: tuple[IPAddress, ...]  # one per family of the Service, its first family first
    ports: tuple[ServicePortLayout, ...] = ()
    selector: tuple[tuple[str, str], ...] = ()
    endpoints: tuple[str, ...] = ()  # keys of the selected pods
    ip_family_policy: str = "SingleStack"  # as the file gives it: or PreferDualStack, ...

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def cluster_ip(self) -> IPAddress:
        return self.cluster_ips[0]

    @property
    def headless(self) -> bool:
        """clusterIP: None: no address; DNS answers with the endpoints' own."""
        return not self.cluster_ips

    @property
    def ip_families(self) -> tuple[int, ...]:
        return tuple(ip.version for ip in self.cluster_ips)

    def hostnames(self, from_namespace: str, domain: str = CLUSTER_DOMAIN) -> tuple[str, ...]:
        """Names a pod of `from_namespace` resolves to the ClusterIP through the cluster DNS and
        its search path (the short name only works from the Service's own namespace)."""
        return cluster_domain_names(self.name, self.namespace, from_namespace, domain)


def cluster_domain_names(name: str, namespace: str, from_namespace: str,
                         domain: str = CLUSTER_DOMAIN) -> tuple[str, ...]:
    names = (f"{name}.{namespace}", f"{name}.{namespace}.svc",
             f"{name}.{namespace}.svc.{domain}")
    return (name, *names) if namespace == from_namespace else names


class _Pod(Protocol):
    """What endpoint selection needs of a pod (PodLayout and PodSpec both have it)."""

    @property
    def namespace(self) -> str: ...
    @property
    def labels(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def key(self) -> str: ...


def place_services(
    spec: ClusterSpec, pods: Sequence[_Pod], previous: Iterable[ServiceLayout] = ()
) -> tuple[ServiceLayout, ...]:
    """Every Service of `spec` with its ClusterIP, node ports and endpoints."""
    old = {s.key: s for s in previous}
    ips = _cluster_ips(spec, old)
    node_ports = _node_ports(spec, old)
    out = []
    for svc in spec.services:
        ports = tuple(
            ServicePortLayout(
                name=p.name,
                protocol=p.protocol,
                port=p.port,
                target_port=p.target_port,
                node_port=node_ports.get((svc.key, _port_key(p.name, p.port, p.protocol))),
            )
            for p in svc.ports
        )
        out.append(
            ServiceLayout(
                namespace=svc.namespace,
                name=svc.name,
                type=svc.type,
                cluster_ips=ips[svc.key],
                ports=ports,
                selector=svc.selector,
                endpoints=tuple(p.key for p in pods if _selects(svc, p)),
                ip_family_policy=svc.ip_family_policy,
            )
        )
    return tuple(out)


def _selects(svc: ServiceSpec, pod: _Pod) -> bool:
    if not svc.selector or pod.namespace != svc.namespace:
        return False
    labels = dict(pod.labels)
    return all(labels.get(k) == v for k, v in svc.selector)


def _draw(seed: str, size: int) -> int:
    return int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16) % size


def _cluster_ips(
    spec: ClusterSpec, old: dict[str, ServiceLayout]
) -> dict[str, tuple[IPAddress, ...]]:
    """Each Service's ClusterIP per family of its own (`ipFamilies`), in that order."""
    out: dict[str, dict[int, IPAddress]] = {svc.key: {} for svc in spec.services}
    for net in spec.service_subnets:
        family = net.version
        wanted = [svc for svc in spec.services if family in svc.ip_families and not svc.headless]
        for key, ip in _family_ips(spec, net, wanted, old).items():
            out[key][family] = ip
    return {
        svc.key: tuple(out[svc.key][f] for f in svc.ip_families if f in out[svc.key])
        for svc in spec.services
    }


def _family_ips(
    spec: ClusterSpec, net: IPNetwork, services: list[ServiceSpec],
    old: dict[str, ServiceLayout],
) -> dict[str, IPAddress]:
    # The network, the broadcast and the first address (the `kubernetes` Service's) stay free.
    reserved = {net.network_address, net.network_address + 1, net.broadcast_address}
    out: dict[str, IPAddress] = {}
    taken: set[IPAddress] = set(reserved)
    for svc in services:  # pinned in the file: theirs, whatever was recorded
        for text in svc.cluster_ips:
            ip = ipaddress.ip_address(text)
            if ip.version == net.version:
                out[svc.key] = ip
                taken.add(ip)
    for svc in services:  # recorded: kept while still valid
        kept = old.get(svc.key)
        mine = next((a for a in kept.cluster_ips if a.version == net.version), None) \
            if kept else None
        if svc.key not in out and mine is not None and mine in net and mine not in taken:
            out[svc.key] = mine
            taken.add(mine)
    size = net.num_addresses
    for svc in services:
        if svc.key in out:
            continue
        start = _draw(f"{spec.name}/{svc.key}", size)
        for step in range(min(size, 1 << 20)):
            candidate = net.network_address + (start + step) % size
            if candidate not in taken:
                out[svc.key] = candidate
                taken.add(candidate)
                break
        else:
            raise PoolExhaustedError(
                f"Service {svc.key}: no free address left in serviceSubnet {net}",
                hint="give networking.serviceSubnet a larger range",
            )
    return out


def _port_key(name: str, port: int, protocol: str) -> str:
    return f"{protocol}/{name or port}"


def _node_ports(spec: ClusterSpec, old: dict[str, ServiceLayout]) -> dict[tuple[str, str], int]:
    wanted = [
        (svc.key, _port_key(p.name, p.port, p.protocol), p.node_port)
        for svc in spec.services
        if svc.type == "NodePort"
        for p in svc.ports
    ]
    recorded = {
        (s.key, _port_key(p.name, p.port, p.protocol)): p.node_port
        for s in old.values()
        for p in s.ports
        if p.node_port is not None
    }
    out: dict[tuple[str, str], int] = {}
    taken: set[int] = set()
    for key, port_key, pinned in wanted:
        if pinned is not None:
            out[(key, port_key)] = pinned
            taken.add(pinned)
    for key, port_key, _ in wanted:
        kept = recorded.get((key, port_key))
        if (key, port_key) not in out and kept is not None and kept not in taken:
            out[(key, port_key)] = kept
            taken.add(kept)
    size = len(NODE_PORT_RANGE)
    for key, port_key, _ in wanted:
        if (key, port_key) in out:
            continue
        start = _draw(f"{spec.name}/{key}/{port_key}", size)
        for step in range(size):
            port = NODE_PORT_RANGE[(start + step) % size]
            if port not in taken:
                out[(key, port_key)] = port
                taken.add(port)
                break
        else:
            raise PoolExhaustedError(f"Service {key}: no free node port left in 30000-32767")
    return out
