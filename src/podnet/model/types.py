"""The desired cluster, as pure data: what the topology file asks for, Deployments expanded.

Nothing here knows about the kernel, addresses chosen for pods, or state on disk: the planner
(`podnet.plan`) turns a `ClusterSpec` into concrete namespaces, names and addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from podnet.errors import Problem
from podnet.model.addresses import FAMILIES, Family, IPFamily, IPNetwork
from podnet.model.policies import NamespaceSpec, NetworkPolicySpec
from podnet.model.shape import Shape

__all__ = [
    "DEFAULT_NODE_SUBNETS",
    "DEFAULT_POD_SUBNETS",
    "DEFAULT_SERVICE_SUBNETS",
    "INTERNET_SUBNET",
    "INTERNET_SUBNET6",
    "Attachment",
    "ClusterSpec",
    "ContainerSpec",
    "DNSPolicy",
    "HostPort",
    "Impairment",
    "NamedPort",
    "NodeSpec",
    "PodDNSConfig",
    "PodSpec",
    "Routing",
    "ServicePort",
    "ServiceSpec",
]

# The lab's `internet` namespace plays the outside world on TEST-NET-2 (RFC 5737): an address
# range that is never routed anywhere real, so no lab traffic can reach a real host.
INTERNET_SUBNET = ipaddress.IPv4Network("198.51.100.0/24")
INTERNET_SUBNET6 = ipaddress.IPv6Network("2001:db8:5100::/64")  # RFC 3849's documentation range

# kind's defaults per family: pods, Services, and docker's `kind` network for the nodes.
DEFAULT_POD_SUBNETS: dict[Family, IPNetwork] = {
    4: ipaddress.IPv4Network("10.244.0.0/16"),
    6: ipaddress.IPv6Network("fd00:10:244::/56"),
}
DEFAULT_SERVICE_SUBNETS: dict[Family, IPNetwork] = {
    4: ipaddress.IPv4Network("10.96.0.0/16"),
    6: ipaddress.IPv6Network("fd00:10:96::/112"),
}
DEFAULT_NODE_SUBNETS: dict[Family, IPNetwork] = {
    4: ipaddress.IPv4Network("172.18.0.0/16"),
    6: ipaddress.IPv6Network("fc00:f853:ccd:e793::/64"),
}

# kindnet's /32 per veth; a cni0-style bridge; AWS VPC CNI's pods on the node network's subnet
Attachment = Literal["ptp", "bridge", "vpc"]
Routing = Literal["static", "host-gw", "vxlan"]  # how a node reaches other nodes' pod CIDRs
DNSPolicy = Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]


@dataclass(frozen=True)
class NamedPort:
    """A container port with a name (`ports[].name`): what a NetworkPolicy's or a Service's
    named port resolves to, pod by pod."""

    name: str
    port: int
    protocol: Literal["TCP", "UDP"] = "TCP"


@dataclass(frozen=True)
class HostPort:
    """A container port published on the node's addresses (`ports[].hostPort`), as kubelet's
    portmap plugin publishes it: connections to the node's `host_port` reach the pod's
    `container_port`. A hostNetwork pod's ports are host ports of its node, the same number
    on both sides (the API server fills hostPort in so)."""

    host_port: int
    container_port: int
    protocol: Literal["TCP", "UDP"] = "TCP"


@dataclass(frozen=True)
class Impairment:
    """What the link of a pod or node does to its packets, from that pod's or node's side:
    `sent` shapes what it sends, `received` what reaches it (a pod's
    kubernetes.io/egress-bandwidth and ingress-bandwidth annotations, podnet's own delay, jitter,
    loss and rate). The planner turns it into tc shaping (`podnet.kernel.tc`) of the right end."""

    sent: Shape = field(default_factory=Shape)
    received: Shape = field(default_factory=Shape)

    @property
    def empty(self) -> bool:
        return self.sent.empty and self.received.empty

    def words(self) -> str:
        """For people: "sent: rate 10mbit; received: delay 50ms"."""
        parts = [f"{way}: {shape.words()}" for way, shape in
                 (("sent", self.sent), ("received", self.received)) if not shape.empty]
        return "; ".join(parts) or "none"


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
    # Ports published on the node (hostPort). Left out of equality too: publishing a port
    # changes the node's rules, not the process, so it restarts nothing.
    host_ports: tuple[HostPort, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class PodDNSConfig:
    """spec.dnsConfig: merged into the resolv.conf the policy gives (see podnet.dns.resolv)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[tuple[str, str | None], ...] = ()  # (name, value): ndots:2 is ("ndots", "2")


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str = "default"
    labels: tuple[tuple[str, str], ...] = ()
    containers: tuple[ContainerSpec, ...] = ()
    node: str | None = None  # spec.nodeName: pinned; None lets the planner place it
    owner: str | None = None  # the Deployment that made it, if any
    hostname: str | None = None  # spec.hostname and spec.subdomain: with a headless Service
    subdomain: str | None = None  # named <subdomain>, DNS has <hostname>.<subdomain>.<ns>.svc
    dns_policy: DNSPolicy = "ClusterFirst"
    dns_config: PodDNSConfig | None = None
    impairment: Impairment = field(default_factory=Impairment)  # its annotations' shaping
    host_network: bool = False  # spec.hostNetwork: runs in its node's network namespace

    @property
    def key(self) -> str:
        """`namespace/name`, unique in a cluster."""
        return f"{self.namespace}/{self.name}"

    @property
    def host_ports(self) -> tuple[HostPort, ...]:
        """Every port the pod takes on its node's addresses (two pods cannot share one)."""
        return tuple(hp for c in self.containers for hp in c.host_ports)

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
    ip_families: tuple[Family, ...] = (4,)  # decided from ipFamilyPolicy and ipFamilies
    cluster_ips: tuple[str, ...] = ()  # spec.clusterIPs if the file pins them
    ip_family_policy: str = "SingleStack"  # or PreferDualStack, RequireDualStack
    # clusterIP: None: no virtual address, no DNAT; the cluster DNS answers its name with the
    # addresses of the pods it selects
    headless: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: Literal["control-plane", "worker"] = "worker"
    impairment: Impairment = field(default_factory=Impairment)  # nodes[].netem: its uplink


@dataclass(frozen=True)
class ClusterSpec:
    name: str = "kind"
    nodes: tuple[NodeSpec, ...] = ()
    ip_family: IPFamily = "ipv4"
    # One network per family, in the order of `families` (IPv4 first in dual-stack, as kind).
    pod_subnets: tuple[IPNetwork, ...] = (DEFAULT_POD_SUBNETS[4],)
    service_subnets: tuple[IPNetwork, ...] = (DEFAULT_SERVICE_SUBNETS[4],)
    node_subnets: tuple[IPNetwork, ...] = (DEFAULT_NODE_SUBNETS[4],)
    node_cidr_prefix: int = 24  # a node's IPv4 pod CIDR: 10.244.N.0/24 (kube-controller-manager)
    node_cidr_prefix6: int = 64  # and its IPv6 one (--node-cidr-mask-size-ipv6)
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
    # False for a file of objects alone (no Cluster document): applied to a running lab, it
    # leaves that lab's cluster (nodes, ranges, shape) as it is.
    cluster_given: bool = True
    # networking.dnsDomain (kubeadm's name for it): the cluster DNS zone, <svc>.<ns>.svc.<domain>
    dns_domain: str = "cluster.local"

    @property
    def families(self) -> tuple[Family, ...]:
        return FAMILIES[self.ip_family]

    @property
    def pod_subnet(self) -> IPNetwork:
        return self.pod_subnets[0]

    @property
    def service_subnet(self) -> IPNetwork:
        return self.service_subnets[0]

    @property
    def node_subnet(self) -> IPNetwork:
        return self.node_subnets[0]

    def node(self, name: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.name == name), None)
