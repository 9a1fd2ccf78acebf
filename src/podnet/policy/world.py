"""What NetworkPolicies are judged against: pods with their labels, node and addresses, the
nodes' own addresses, namespaces with their labels, and the policies. Pure data.

`world_from(layout)` builds it from the lab's concrete layout; tests
build a `World` directly. Addresses are lists, one per family (IPv4 first in dual-stack).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from podnet.model.policies import (
    NAMESPACE_NAME_LABEL,
    Address,
    NamespaceSpec,
    NetworkPolicySpec,
)
from podnet.model.types import NamedPort

if TYPE_CHECKING:
    from podnet.plan.layout import Layout

__all__ = ["Host", "Member", "World", "world_from"]

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Member:
    """A pod, as policies see it."""

    namespace: str
    name: str
    node: str
    ips: tuple[Address, ...]
    labels: Labels = ()
    named_ports: tuple[NamedPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @cached_property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def ip(self, version: int) -> Address | None:
        return next((a for a in self.ips if a.version == version), None)

    def port_named(self, name: str, protocol: str) -> int | None:
        """The number of the container port called `name` with `protocol`, if any."""
        return next((n.port for n in self.named_ports
                     if n.name == name and n.protocol == protocol), None)


@dataclass(frozen=True)
class Host:
    """A node: the addresses its own namespace holds (node network, pod gateway, tunnel), any
    of which it may use to reach its pods."""

    name: str
    ips: tuple[Address, ...] = ()

    def ip(self, version: int) -> Address | None:
        return next((a for a in self.ips if a.version == version), None)


@dataclass(frozen=True)
class World:
    pods: tuple[Member, ...] = ()
    nodes: tuple[Host, ...] = ()
    namespaces: tuple[NamespaceSpec, ...] = ()
    policies: tuple[NetworkPolicySpec, ...] = ()

    @cached_property
    def _pods(self) -> dict[str, Member]:
        return {p.key: p for p in self.pods}

    @cached_property
    def _addresses(self) -> dict[Address, Member]:
        return {ip: p for p in self.pods for ip in p.ips}

    @cached_property
    def _hosts(self) -> dict[str, Host]:
        return {h.name: h for h in self.nodes}

    @cached_property
    def _namespace_labels(self) -> dict[str, dict[str, str]]:
        return {n.name: n.label_dict() for n in self.namespaces}

    def pod(self, key: str) -> Member | None:
        return self._pods.get(key)

    def pod_at(self, address: Address) -> Member | None:
        return self._addresses.get(address)

    def host(self, name: str) -> Host | None:
        return self._hosts.get(name)

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        """A namespace's labels; one nobody declared still has kubernetes.io/metadata.name."""
        found = self._namespace_labels.get(namespace)
        return found if found is not None else {NAMESPACE_NAME_LABEL: namespace}

    def pods_on(self, node: str) -> list[Member]:
        return [p for p in self.pods if p.node == node]


def world_from(lay: Layout) -> World:
    """The world of a lab: its pods where the layout put them, with their labels and named
    ports, its nodes' addresses, namespaces and policies (sorted by namespace/name, so that
    every rendering of them is stable)."""
    pods = tuple(
        Member(
            namespace=p.namespace,
            name=p.name,
            node=p.node,
            ips=tuple(ip.ip for ip in p.ips),
            labels=p.labels,
            named_ports=tuple(n for c in p.containers for n in c.named_ports),
        )
        # A hostNetwork pod is its node's traffic (its addresses are the node's), and no
        # policy selects it, as in Kubernetes.
        for p in lay.pods if not p.host_network
    )
    nodes = []
    for n in lay.nodes:
        # A node's traffic leaves from its own addresses, its pods' gateways (the addresses of
        # its veth ends or cni0) and, with VXLAN, its tunnels' addresses.
        ips: list[Address] = [ip.ip for ip in n.ips] + list(n.gateways)
        if lay.routing == "vxlan":
            ips += n.vtep_ips
        nodes.append(Host(n.name, tuple(dict.fromkeys(ips))))
    return World(
        pods=pods,
        nodes=tuple(nodes),
        namespaces=lay.namespaces,
        policies=tuple(sorted(lay.policies, key=lambda p: (p.namespace, p.name))),
    )
