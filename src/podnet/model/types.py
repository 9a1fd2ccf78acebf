"""The desired cluster, as pure data: what the topology file asks for, Deployments expanded.

Nothing here knows about the kernel, addresses chosen for pods, or state on disk: the planner
(`podnet.plan`) turns a `ClusterSpec` into concrete namespaces, names and addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from podnet.errors import Problem
from podnet.model.policies import NamespaceSpec, NetworkPolicySpec

__all__ = [
    "INTERNET_SUBNET",
    "Attachment",
    "ClusterSpec",
    "ContainerSpec",
    "NamedPort",
    "NodeSpec",
    "PodSpec",
    "Routing",
    "ServicePort",
    "ServiceSpec",
]

# The lab's `internet` namespace plays the outside world on TEST-NET-2 (RFC 5737): an address
# range that is never routed anywhere real, so no lab traffic can reach a real host.
INTERNET_SUBNET = ipaddress.IPv4Network("198.51.100.0/24")

Attachment = Literal["ptp", "bridge"]  # kindnet's /32 per veth, or a cni0-style bridge
Routing = Literal["static", "host-gw", "vxlan"]  # how a node reaches other nodes' pod CIDRs


@dataclass(frozen=True)
class NamedPort:
    """A container port with a name (`ports[].name`): what a NetworkPolicy's or a Service's
    named port resolves to, pod by pod."""

    name: str
    port: int
    protocol: Literal["TCP", "UDP"] = "TCP"


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    # None: no command given. With ports, podnet's built-in HTTP responder serves them;
    # without, the container idles (signal.pause()), as a pause container does.
    command: tuple[str, ...] | None = None
    ports: tuple[int, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # The ports of `ports` that have a name. Left out of equality: a name changes what policies
    # and Services resolve, not the container, so renaming a port restarts nothing (and the
    # lab record, which predates names, compares equal).
    named_ports: tuple[NamedPort, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str = "default"
    labels: tuple[tuple[str, str], ...] = ()
    containers: tuple[ContainerSpec, ...] = ()
    node: str | None = None  # spec.nodeName: pinned; None lets the planner place it
    owner: str | None = None  # the Deployment that made it, if any

    @property
    def key(self) -> str:
        """`namespace/name`, unique in a cluster."""
        return f"{self.namespace}/{self.name}"

    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int
    protocol: Literal["TCP", "UDP"] = "TCP"
    node_port: int | None = None
    name: str = ""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    namespace: str = "default"
    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    selector: tuple[tuple[str, str], ...] = ()
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: str | None = None  # spec.clusterIP if the file pins one

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: Literal["control-plane", "worker"] = "worker"


@dataclass(frozen=True)
class ClusterSpec:
    name: str = "kind"
    nodes: tuple[NodeSpec, ...] = ()
    pod_subnet: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network("10.244.0.0/16")
    )
    service_subnet: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network("10.96.0.0/16")
    )
    node_subnet: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network("172.18.0.0/16")
    )
    node_cidr_prefix: int = 24  # each node's pod CIDR: 10.244.N.0/24, as kube-controller-manager
    attachment: Attachment = "ptp"
    routing: Routing = "static"
    mtu: int = 1500
    vxlan_vni: int = 1
    vxlan_port: int = 8472
    pods: tuple[PodSpec, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    # Every namespace the file declares or uses, each labelled kubernetes.io/metadata.name.
    namespaces: tuple[NamespaceSpec, ...] = ()
    policies: tuple[NetworkPolicySpec, ...] = ()
    # What Kubernetes accepts with a warning (a named port no selected pod declares): loading
    # succeeds, and the caller shows these.
    warnings: tuple[Problem, ...] = ()

    def node(self, name: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.name == name), None)
