"""The concrete lab: every namespace, interface name and address, decided before anything is built.

`layout(spec, previous)` is pure. It keeps what `previous` (the recorded state of the running lab)
already decided for pods and nodes that stay, so a second `up` decides exactly the same things and
an `up` after an edit moves nothing that did not change.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from podnet.errors import Problem, TopologyError
from podnet.ipam.pool import Pool, PoolExhaustedError
from podnet.model.types import INTERNET_SUBNET, ClusterSpec, ContainerSpec, PodSpec
from podnet.plan.services import ServiceLayout, place_services

__all__ = [
    "INTERNET_KEY",
    "INTERNET_SUBNET",
    "STATE_ROOT",
    "TUNNEL",
    "VXLAN_OVERHEAD",
    "InternetLayout",
    "Layout",
    "NodeLayout",
    "PodLayout",
    "layout",
    "vtep_mac",
]

STATE_ROOT = "/run/podnet"
_NETNS_UUID_NAMESPACE = uuid.UUID("0b7f5a2e-4f4e-4c1b-9d8a-706f646e6574")
TUNNEL = "flannel.1"  # flannel's name for its VXLAN device (".1": VNI 1)
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 bytes
# The outside world: TEST-NET-2 (RFC 5737), reserved for documentation, so it can never be a
# real address; it exists only as a namespace of the lab's.
_POD_SUBNET = ipaddress.IPv4Network("10.244.0.0/16")  # kind's defaults
_SERVICE_SUBNET = ipaddress.IPv4Network("10.96.0.0/16")
INTERNET_KEY = "internet"  # the record's key for the internet's web server (pod keys have a /)


@dataclass(frozen=True)
class NodeLayout:
    name: str
    role: str
    netns: str  # the node's network namespace (named like the kind container: kind-worker)
    ip: ipaddress.IPv4Interface  # eth0 on the node network, 172.18.0.3/16
    pod_cidr: ipaddress.IPv4Network  # 10.244.1.0/24
    uplink: str  # the node's veth in the fabric namespace, enslaved to the node bridge
    uts: str  # bind-mounted UTS namespace holding hostname = node name
    hosts_file: str
    vtep_mac: str = ""  # MAC of the node's VXLAN device (flannel.1), chosen by us: see vtep_mac

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The pods' gateway: the first address of the pod CIDR (10.244.1.1)."""
        return self.pod_cidr.network_address + 1

    @property
    def vtep_ip(self) -> ipaddress.IPv4Address:
        """flannel.1's address: the pod CIDR's network address, as a /32 (10.244.1.0)."""
        return self.pod_cidr.network_address


@dataclass(frozen=True)
class PodLayout:
    namespace: str
    name: str
    node: str
    netns: str  # cni-<uuid>, as container runtimes name pod namespaces
    ip: ipaddress.IPv4Interface  # 10.244.1.5/24
    veth: str  # the node's end of the pod's veth pair: veth<8 hex>
    uts: str
    hosts_file: str
    containers: tuple[ContainerSpec, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class InternetLayout:
    """A namespace playing the world outside the cluster, routed through the fabric namespace
    (the docker host), with a web server that shows each client the address it came from."""

    netns: str  # kind-internet
    link: str  # the fabric's veth towards it (its peer is eth0 in `netns`)
    gateway: ipaddress.IPv4Interface  # 198.51.100.1/24, the fabric's end: the way back in
    address: ipaddress.IPv4Interface  # 198.51.100.100/24, the web server out there
    port: int = 80
    log: str = ""

    @property
    def url(self) -> str:
        port = "" if self.port == 80 else f":{self.port}"
        return f"http://{self.address.ip}{port}/"


@dataclass(frozen=True)
class Layout:
    cluster: str
    fabric_netns: str  # plays the docker host: holds the node network's bridge
    bridge: str  # the node network bridge (docker's br-<id>)
    fabric_gateway: ipaddress.IPv4Interface  # 172.18.0.1/16 on that bridge
    attachment: str
    routing: str
    mtu: int
    nodes: tuple[NodeLayout, ...] = ()
    pods: tuple[PodLayout, ...] = ()
    state_dir: str = field(default="")
    pod_subnet: ipaddress.IPv4Network = _POD_SUBNET
    service_subnet: ipaddress.IPv4Network = _SERVICE_SUBNET
    vxlan_vni: int = 1
    vxlan_port: int = 8472
    services: tuple[ServiceLayout, ...] = ()
    internet: InternetLayout | None = None

    @property
    def pod_mtu(self) -> int:
        """Pods' MTU: the node network's, less the VXLAN header when pods' packets get one."""
        return self.mtu - VXLAN_OVERHEAD if self.routing == "vxlan" else self.mtu

    def node(self, name: str) -> NodeLayout:
        return next(n for n in self.nodes if n.name == name)

    def pods_on(self, node: str) -> list[PodLayout]:
        return [p for p in self.pods if p.node == node]

    def pod(self, key: str) -> PodLayout | None:
        return next((p for p in self.pods if p.key == key), None)


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


def pod_netns_name(cluster: str, pod_key: str) -> str:
    return f"cni-{uuid.uuid5(_NETNS_UUID_NAMESPACE, f'{cluster}/{pod_key}')}"


def _unique_veth(seed: tuple[str, ...], taken: set[str]) -> str:
    salt = 0
    while True:
        name = "veth" + _short_hash(*seed, str(salt))
        if name not in taken:
            taken.add(name)
            return name
        salt += 1


def vtep_mac(cluster: str, node: str) -> str:
    """A stable, locally administered unicast MAC for a node's VXLAN device. flannel lets the
    kernel pick one and publishes it in a node annotation; deciding it here lets the plan (and
    `podnet explain`) name every neighbour and FDB entry before anything exists."""
    raw = bytearray(hashlib.sha256(f"vtep/{cluster}/{node}".encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def layout(spec: ClusterSpec, previous: Layout | None = None) -> Layout:
    """Decide every name and address of the lab described by `spec`."""
    _check_internet_free(spec)
    state_dir = f"{STATE_ROOT}/{spec.name}"
    prefix = spec.node_cidr_prefix
    cidrs = list(spec.pod_subnet.subnets(new_prefix=prefix))
    node_ips = spec.node_subnet.hosts()
    gateway_ip = next(node_ips)
    fabric_uplinks: set[str] = set()
    old_nodes = {n.name: n for n in previous.nodes} if previous else {}
    nodes = []
    for index, node in enumerate(spec.nodes):
        ip = ipaddress.IPv4Interface(f"{next(node_ips)}/{spec.node_subnet.prefixlen}")
        kept = old_nodes.get(node.name)
        nodes.append(
            NodeLayout(
                name=node.name,
                role=node.role,
                netns=node.name,
                ip=kept.ip if kept else ip,
                pod_cidr=kept.pod_cidr if kept else cidrs[index],
                uplink=kept.uplink
                if kept
                else _unique_veth((spec.name, node.name), fabric_uplinks),
                uts=f"{state_dir}/nodes/{node.name}.uts",
                hosts_file=f"{state_dir}/nodes/{node.name}.hosts",
                vtep_mac=vtep_mac(spec.name, node.name),
            )
        )
    pods = _place_pods(spec, nodes, previous, state_dir)
    services = place_services(spec, pods, previous.services if previous else ())
    internet = InternetLayout(
        netns=f"{spec.name}-internet",
        link="internet",
        gateway=ipaddress.IPv4Interface(f"{INTERNET_SUBNET.network_address + 1}/24"),
        address=ipaddress.IPv4Interface(f"{INTERNET_SUBNET.network_address + 100}/24"),
        log=f"{state_dir}/logs/internet.log",
    )
    return Layout(
        cluster=spec.name,
        fabric_netns=f"podnet-{spec.name}",
        bridge=f"br-{spec.name}",
        fabric_gateway=ipaddress.IPv4Interface(f"{gateway_ip}/{spec.node_subnet.prefixlen}"),
        attachment=spec.attachment,
        routing=spec.routing,
        mtu=spec.mtu,
        nodes=tuple(nodes),
        pods=tuple(pods),
        state_dir=state_dir,
        pod_subnet=spec.pod_subnet,
        service_subnet=spec.service_subnet,
        vxlan_vni=spec.vxlan_vni,
        vxlan_port=spec.vxlan_port,
        services=services,
        internet=internet,
    )


def _check_internet_free(spec: ClusterSpec) -> None:
    """The lab's outside world takes TEST-NET-2: no range of the cluster may overlap it."""
    clashes = [
        (key, net)
        for key, net in (("podSubnet", spec.pod_subnet), ("serviceSubnet", spec.service_subnet),
                         ("nodeSubnet", spec.node_subnet))
        if net.overlaps(INTERNET_SUBNET)
    ]
    if clashes:
        raise TopologyError([
            Problem(
                f"Cluster {spec.name}",
                f"networking.{key}",
                f"{net} overlaps {INTERNET_SUBNET}, which the lab's `internet` namespace uses",
                "pick a range outside 198.51.100.0/24",
            )
            for key, net in clashes
        ])


def _schedulable(nodes: list[NodeLayout]) -> list[NodeLayout]:
    # kind taints its control plane: pods land on workers unless there are none.
    workers = [n for n in nodes if n.role == "worker"]
    return workers or nodes


def _place_pods(
    spec: ClusterSpec, nodes: list[NodeLayout], previous: Layout | None, state_dir: str
) -> list[PodLayout]:
    by_name = {n.name: n for n in nodes}
    old = {p.key: p for p in previous.pods} if previous else {}
    load = {n.name: 0 for n in nodes}
    used: dict[str, set[ipaddress.IPv4Address]] = {n.name: set() for n in nodes}
    veths: dict[str, set[str]] = {n.name: set() for n in nodes}
    placed: dict[str, str] = {}
    # Pass 1: pods that stay keep their node, address and names.
    for pod in spec.pods:
        kept = old.get(pod.key)
        if kept and kept.node in by_name and pod.node in (None, kept.node):
            placed[pod.key] = kept.node
            used[kept.node].add(kept.ip.ip)
            veths[kept.node].add(kept.veth)
            load[kept.node] += 1
    # Pass 2: pinned pods, then the rest on the least-loaded schedulable node (ties: file order).
    candidates = _schedulable(nodes)
    for pod in sorted(spec.pods, key=lambda p: p.node is None):
        if pod.key in placed:
            continue
        node = pod.node or min(candidates, key=lambda n: load[n.name]).name
        placed[pod.key] = node
        load[node] += 1
    last: dict[str, ipaddress.IPv4Address | None] = {n.name: None for n in nodes}
    out = []
    for pod in spec.pods:
        host = by_name[placed[pod.key]]
        kept = old.get(pod.key)
        if kept and kept.node == host.name:
            ip, veth = kept.ip, kept.veth
        else:
            address = _allocate(host, used[host.name], last[host.name])
            used[host.name].add(address)
            last[host.name] = address
            ip = ipaddress.IPv4Interface(f"{address}/{host.pod_cidr.prefixlen}")
            veth = _unique_veth((spec.name, host.name, pod.key), veths[host.name])
        out.append(_pod_layout(spec.name, pod, host.name, ip, veth, state_dir))
    return out


def _allocate(
    node: NodeLayout, used: Iterable[ipaddress.IPv4Address], after: ipaddress.IPv4Address | None
) -> ipaddress.IPv4Address:
    try:
        return Pool(node.pod_cidr).allocate(used, after=after)
    except PoolExhaustedError as exc:
        raise PoolExhaustedError(
            f"node {node.name}: {exc.message}",
            hint="spread pods over more nodes or lower networking.nodeCIDRPrefix",
        ) from None


def _pod_layout(
    cluster: str, pod: PodSpec, node: str, ip: ipaddress.IPv4Interface, veth: str, state_dir: str
) -> PodLayout:
    slug = f"{pod.namespace}_{pod.name}"
    return PodLayout(
        namespace=pod.namespace,
        name=pod.name,
        node=node,
        netns=pod_netns_name(cluster, pod.key),
        ip=ip,
        veth=veth,
        uts=f"{state_dir}/pods/{slug}.uts",
        hosts_file=f"{state_dir}/pods/{slug}.hosts",
        containers=pod.containers,
        labels=pod.labels,
    )
