"""The concrete lab: every namespace, interface name and address, decided before anything is built.

`layout(spec, previous)` is pure. It keeps what `previous` (the recorded state of the running lab)
already decided for pods and nodes that stay, so a second `up` decides exactly the same things and
an `up` after an edit moves nothing that did not change.

Every address is held once per family of the cluster (IPv4 first in dual-stack, as kind): a node
has an address on the node network and a pod CIDR per family, a pod an address per family, a
Service a ClusterIP per family of its own. The singular properties (`ip`, `pod_cidr`, ...) are
the first family's, as `status.podIP` is the first of `status.podIPs`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from podnet.errors import Problem, TopologyError
from podnet.ipam.pool import Pool, PoolExhaustedError
from podnet.model.addresses import Family, IPAddress, IPInterface, IPNetwork, nth_host
from podnet.model.naming import pod_netns_name, unique_veth, vtep_mac
from podnet.model.policies import NamespaceSpec, NetworkPolicySpec
from podnet.model.types import (
    INTERNET_SUBNET,
    INTERNET_SUBNET6,
    ClusterSpec,
    ContainerSpec,
    DNSPolicy,
    HostPort,
    Impairment,
    PodDNSConfig,
    PodSpec,
)
from podnet.plan.addons import with_addons
from podnet.plan.services import ServiceLayout, place_services

__all__ = [
    "INTERNET_KEY",
    "INTERNET_SUBNET",
    "INTERNET_SUBNET6",
    "STATE_ROOT",
    "TUNNEL",
    "TUNNELS",
    "VXLAN_OVERHEAD",
    "InternetLayout",
    "Layout",
    "NodeLayout",
    "PodLayout",
    "layout",
]

STATE_ROOT = "/run/podnet"
# flannel's names for its VXLAN devices (".1": VNI 1), one per family.
TUNNELS: dict[int, str] = {4: "flannel.1", 6: "flannel-v6.1"}
TUNNEL = TUNNELS[4]
# Outer Ethernet 14 + IP (20 for IPv4, 40 for IPv6) + UDP 8 + VXLAN 8 bytes.
VXLAN_OVERHEAD: dict[int, int] = {4: 50, 6: 70}
INTERNET_KEY = "internet"  # the record's key for the internet's web server (pod keys have a /)
_INTERNET_NETS: dict[int, IPNetwork] = {4: INTERNET_SUBNET, 6: INTERNET_SUBNET6}


def _first(values: tuple[IPNetwork, ...]) -> IPNetwork | None:
    return values[0] if values else None


@dataclass(frozen=True)
class NodeLayout:
    name: str
    role: str
    netns: str  # the node's network namespace (named like the kind container: kind-worker)
    ips: tuple[IPInterface, ...]  # eth0 on the node network: 172.18.0.3/16, fc00:...::3/64
    # Pod CIDRs: 10.244.1.0/24, fd00:10:244:1::/64 (none with vpc: pods share the node network)
    pod_cidrs: tuple[IPNetwork, ...]
    uplink: str  # the node's veth in the fabric namespace, enslaved to the node bridge
    uts: str  # bind-mounted UTS namespace holding hostname = node name
    hosts_file: str
    vtep_macs: tuple[str, ...] = ()  # per family: MACs of the VXLAN devices, see vtep_mac
    impairment: Impairment = field(default_factory=Impairment)  # of its uplink, eth0

    @property
    def ip(self) -> IPInterface:
        return self.ips[0]

    @property
    def pod_cidr(self) -> IPNetwork | None:
        return _first(self.pod_cidrs)

    @property
    def gateways(self) -> tuple[IPAddress, ...]:
        """The pods' gateways: the first address of each pod CIDR (10.244.1.1)."""
        return tuple(nth_host(cidr, 1) for cidr in self.pod_cidrs)

    @property
    def gateway(self) -> IPAddress | None:
        return self.gateways[0] if self.gateways else None

    @property
    def vtep_ips(self) -> tuple[IPAddress, ...]:
        """The VXLAN devices' addresses: each pod CIDR's network address (10.244.1.0), as
        flannel gives them."""
        return tuple(cidr.network_address for cidr in self.pod_cidrs)

    @property
    def vtep_mac(self) -> str:
        return self.vtep_macs[0] if self.vtep_macs else ""

    def ip_of(self, family: int) -> IPInterface | None:
        return next((ip for ip in self.ips if ip.version == family), None)

    def pod_cidr_of(self, family: int) -> IPNetwork | None:
        return next((c for c in self.pod_cidrs if c.version == family), None)


@dataclass(frozen=True)
class PodLayout:
    """A pod, placed. A hostNetwork pod has no namespace, veth or hosts file of its own: its
    `netns`, `ips`, `uts` and `hosts_file` are its node's, and `veth` is empty."""

    namespace: str
    name: str
    node: str
    netns: str  # cni-<uuid>, as container runtimes name pod namespaces
    ips: tuple[IPInterface, ...]  # 10.244.1.5/24, fd00:10:244:1::5/64
    veth: str  # the node's end of the pod's veth pair: veth<8 hex>
    uts: str
    hosts_file: str
    containers: tuple[ContainerSpec, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    owner: str | None = None  # the Deployment that made it, if any
    impairment: Impairment = field(default_factory=Impairment)  # shaping of its veth
    host_network: bool = False
    hostname: str | None = None  # spec.hostname, spec.subdomain: its hostname and DNS names
    subdomain: str | None = None
    dns_policy: DNSPolicy = "ClusterFirst"  # what its /etc/resolv.conf says (podnet.plan.dns)
    dns_config: PodDNSConfig | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def resolv_file(self) -> str:
        """Its /etc/resolv.conf, beside its /etc/hosts (a node has none: a hostNetwork pod
        sees the machine's)."""
        return resolv_file(self.hosts_file)

    @property
    def host_ports(self) -> tuple[HostPort, ...]:
        """The ports it takes on its node's addresses (a hostNetwork pod's: its own ports)."""
        return tuple(hp for c in self.containers for hp in c.host_ports)

    @property
    def ip(self) -> IPInterface:
        return self.ips[0]

    def ip_of(self, family: int) -> IPInterface | None:
        return next((ip for ip in self.ips if ip.version == family), None)


@dataclass(frozen=True)
class InternetLayout:
    """A namespace playing the world outside the cluster, routed through the fabric namespace
    (the docker host), with a web server that shows each client the address it came from."""

    netns: str  # kind-internet
    link: str  # the fabric's veth towards it (its peer is eth0 in `netns`)
    gateways: tuple[IPInterface, ...]  # 198.51.100.1/24: the fabric's end, the way back in
    addresses: tuple[IPInterface, ...]  # 198.51.100.100/24: the web server out there
    port: int = 80
    log: str = ""

    @property
    def gateway(self) -> IPInterface:
        return self.gateways[0]

    @property
    def address(self) -> IPInterface:
        return self.addresses[0]

    @property
    def url(self) -> str:
        host = str(self.address.ip)
        host = f"[{host}]" if self.address.version == 6 else host
        port = "" if self.port == 80 else f":{self.port}"
        return f"http://{host}{port}/"


@dataclass(frozen=True)
class Layout:
    cluster: str
    fabric_netns: str  # plays the docker host: holds the node network's bridge
    bridge: str  # the node network bridge (docker's br-<id>)
    fabric_gateways: tuple[IPInterface, ...]  # 172.18.0.1/16 on that bridge, per family
    attachment: str
    routing: str
    mtu: int
    nodes: tuple[NodeLayout, ...] = ()
    pods: tuple[PodLayout, ...] = ()
    state_dir: str = field(default="")
    # Where pods' addresses come from, per family (with vpc: the node network's subnets).
    pod_subnets: tuple[IPNetwork, ...] = (ipaddress.IPv4Network("10.244.0.0/16"),)
    service_subnets: tuple[IPNetwork, ...] = (ipaddress.IPv4Network("10.96.0.0/16"),)
    vxlan_vni: int = 1
    vxlan_port: int = 8472
    services: tuple[ServiceLayout, ...] = ()
    internet: InternetLayout | None = None
    namespaces: tuple[NamespaceSpec, ...] = ()  # with their labels, for policies' selectors
    policies: tuple[NetworkPolicySpec, ...] = ()
    dns_domain: str = "cluster.local"  # networking.dnsDomain

    @property
    def families(self) -> tuple[Family, ...]:
        return tuple(4 if net.version == 4 else 6 for net in self.pod_subnets)

    @property
    def fabric_gateway(self) -> IPInterface:
        return self.fabric_gateways[0]

    @property
    def pod_subnet(self) -> IPNetwork:
        return self.pod_subnets[0]

    @property
    def service_subnet(self) -> IPNetwork:
        return self.service_subnets[0]

    @property
    def pod_mtu(self) -> int:
        """Pods' MTU: the node network's, less the VXLAN headers when pods' packets get them
        (an IPv6 underlay's are 20 bytes longer; one MTU serves every family of a pod)."""
        if self.routing != "vxlan":
            return self.mtu
        return self.mtu - max(VXLAN_OVERHEAD[f] for f in self.families)

    @cached_property
    def _nodes_by_name(self) -> dict[str, NodeLayout]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def _pods_by_key(self) -> dict[str, PodLayout]:
        return {p.key: p for p in self.pods}

    @cached_property
    def _pods_by_node(self) -> dict[str, list[PodLayout]]:
        out: dict[str, list[PodLayout]] = {n.name: [] for n in self.nodes}
        for pod in self.pods:
            out.setdefault(pod.node, []).append(pod)
        return out

    def node(self, name: str) -> NodeLayout:
        return self._nodes_by_name[name]

    def pods_on(self, node: str) -> list[PodLayout]:
        return self._pods_by_node.get(node, [])

    def pod(self, key: str) -> PodLayout | None:
        return self._pods_by_key.get(key)


def resolv_file(hosts_file: str) -> str:
    """The resolv.conf that goes with a pod's hosts file (runtime.enter mounts both)."""
    from podnet.runtime.hosts import resolv_path

    return resolv_path(hosts_file)


def _node_prefix(spec: ClusterSpec, net: IPNetwork) -> int:
    return spec.node_cidr_prefix if net.version == 4 else spec.node_cidr_prefix6


def _slot(node: NodeLayout | None, spec: ClusterSpec) -> int:
    """The slot of a kept node on the node network (172.18.0.3 -> 1): its pod CIDRs follow it
    when a record from a vpc lab, which has none, becomes a ptp or bridge lab."""
    assert node is not None
    return int(node.ip.ip) - int(spec.node_subnets[0].network_address) - 2


def _cidr_at(net: IPNetwork, prefix: int, index: int) -> IPNetwork:
    """The `index`-th /prefix range of `net` (10.244.0.0/16, 24, 1 -> 10.244.1.0/24)."""
    start = int(net.network_address) + index * (1 << (net.max_prefixlen - prefix))
    return ipaddress.ip_network((start, prefix))


def layout(spec: ClusterSpec, previous: Layout | None = None) -> Layout:
    """Decide every name and address of the lab described by `spec`."""
    _check_internet_free(spec)
    state_dir = f"{STATE_ROOT}/{spec.name}"
    spec = with_addons(spec, state_dir)  # as kubeadm installs them: the cluster DNS
    shared_network = spec.attachment == "vpc"  # pods take addresses from the node network
    fabric_uplinks: set[str] = set()
    old_nodes = {n.name: n for n in previous.nodes} if previous else {}
    families = [net.version for net in spec.node_subnets]
    # Nodes that stay keep their addresses and pod CIDRs; new ones take the first free slot.
    kept_nodes = {
        node.name: old_nodes[node.name]
        for node in spec.nodes
        if node.name in old_nodes and [ip.version for ip in old_nodes[node.name].ips] == families
    }
    taken = {ip.ip for n in kept_nodes.values() for ip in n.ips}
    slots = (i for i in range(1 << 24) if nth_host(spec.node_subnets[0], i + 2) not in taken)
    nodes = []
    for node in spec.nodes:
        kept = kept_nodes.get(node.name)
        index = -1 if kept else next(slots)
        ips = kept.ips if kept else tuple(
            ipaddress.ip_interface((nth_host(net, index + 2), net.prefixlen))
            for net in spec.node_subnets
        )
        cidrs: tuple[IPNetwork, ...] = ()
        if not shared_network:
            cidrs = kept.pod_cidrs if kept and kept.pod_cidrs else tuple(
                _cidr_at(net, _node_prefix(spec, net), index if index >= 0 else _slot(kept, spec))
                for net in spec.pod_subnets
            )
        nodes.append(
            NodeLayout(
                name=node.name,
                role=node.role,
                netns=node.name,
                ips=ips,
                pod_cidrs=cidrs,
                uplink=kept.uplink
                if kept
                else unique_veth((spec.name, node.name), fabric_uplinks),
                uts=f"{state_dir}/nodes/{node.name}.uts",
                hosts_file=f"{state_dir}/nodes/{node.name}.hosts",
                vtep_macs=tuple(vtep_mac(spec.name, node.name, c.version) for c in cidrs),
                impairment=node.impairment,
            )
        )
    fabric_gateways = tuple(
        ipaddress.ip_interface((nth_host(net, 1), net.prefixlen)) for net in spec.node_subnets
    )
    pods = _place_pods(spec, nodes, previous, state_dir, fabric_gateways)
    services = place_services(spec, pods, previous.services if previous else ())
    worlds = [_INTERNET_NETS[f] for f in spec.families]
    internet = InternetLayout(
        netns=f"{spec.name}-internet",
        link="internet",
        gateways=tuple(ipaddress.ip_interface((nth_host(n, 1), n.prefixlen)) for n in worlds),
        # the web server: 198.51.100.100, 2001:db8:5100::100
        addresses=tuple(ipaddress.ip_interface((nth_host(n, 100 if n.version == 4 else 0x100),
                                                n.prefixlen)) for n in worlds),
        log=f"{state_dir}/logs/internet.log",
    )
    return Layout(
        cluster=spec.name,
        fabric_netns=f"podnet-{spec.name}",
        bridge=f"br-{spec.name}",
        fabric_gateways=fabric_gateways,
        attachment=spec.attachment,
        routing=spec.routing,
        mtu=spec.mtu,
        nodes=tuple(nodes),
        pods=tuple(pods),
        state_dir=state_dir,
        pod_subnets=spec.node_subnets if shared_network else spec.pod_subnets,
        service_subnets=spec.service_subnets,
        vxlan_vni=spec.vxlan_vni,
        vxlan_port=spec.vxlan_port,
        services=services,
        internet=internet,
        namespaces=spec.namespaces,
        policies=spec.policies,
        dns_domain=spec.dns_domain,
    )


def _check_internet_free(spec: ClusterSpec) -> None:
    """The lab's outside world takes TEST-NET-2 (and 2001:db8:5100::/64): no range of the
    cluster may overlap it."""
    ranges = (("podSubnet", spec.pod_subnets), ("serviceSubnet", spec.service_subnets),
              ("nodeSubnet", spec.node_subnets))
    clashes = [
        (key, net, _INTERNET_NETS[net.version])
        for key, nets in ranges
        for net in nets
        if net.overlaps(_INTERNET_NETS[net.version])  # type: ignore[arg-type,unused-ignore]
    ]
    if clashes:
        raise TopologyError([
            Problem(
                f"Cluster {spec.name}",
                f"networking.{key}",
                f"{net} overlaps {world}, which the lab's `internet` namespace uses",
                f"pick a range outside {world}",
            )
            for key, net, world in clashes
        ])


def _schedulable(nodes: list[NodeLayout]) -> list[NodeLayout]:
    # kind taints its control plane: pods land on workers unless there are none.
    workers = [n for n in nodes if n.role == "worker"]
    return workers or nodes


class _Addresses:
    """Pod addresses, per node and family (or per family across the cluster, with vpc), handed
    out round-robin after the last one given, as host-local does."""

    def __init__(self, spec: ClusterSpec, nodes: list[NodeLayout],
                 fabric: tuple[IPInterface, ...]) -> None:
        self.pools: dict[tuple[str, int], Pool[Any]] = {}
        if spec.attachment == "vpc":
            taken = [ip.ip for n in nodes for ip in n.ips]
            for gateway in fabric:
                net = gateway.network
                self.pools[("", net.version)] = Pool(
                    net, gateway=gateway.ip,
                    reserved=frozenset(ip for ip in taken if ip.version == net.version),
                )
        else:
            for node in nodes:
                for cidr in node.pod_cidrs:
                    self.pools[(node.name, cidr.version)] = Pool(cidr)
        # As integers: one set per pool, kept across allocations, so a lab of N pods costs O(N)
        # (the pool's own allocate() rebuilds its set of used addresses on every call).
        self.used: dict[tuple[str, int], set[int]] = {k: set() for k in self.pools}
        self.last: dict[tuple[str, int], IPAddress | None] = dict.fromkeys(self.pools)
        self.shared = spec.attachment == "vpc"

    def _key(self, node: str, family: int) -> tuple[str, int]:
        return ("" if self.shared else node, family)

    def keep(self, node: str, ips: Iterable[IPInterface]) -> None:
        for ip in ips:
            self.used.setdefault(self._key(node, ip.version), set()).add(int(ip.ip))

    def fits(self, node: str, ips: tuple[IPInterface, ...], families: tuple[int, ...]) -> bool:
        """Whether recorded addresses still belong to the node's pools, one per family."""
        if tuple(ip.version for ip in ips) != families:
            return False
        keys = [self._key(node, ip.version) for ip in ips]
        return all(key in self.pools and ip.ip in self.pools[key].subnet
                   for key, ip in zip(keys, ips, strict=True))

    def allocate(self, node: str, families: tuple[int, ...]) -> tuple[IPInterface, ...]:
        out = []
        for family in families:
            key = self._key(node, family)
            pool = self.pools[key]
            used = self.used[key]
            address = next((a for a in pool.candidates(self.last[key]) if int(a) not in used),
                           None)
            if address is None:
                where = "the node network" if self.shared else f"node {node}"
                raise PoolExhaustedError(
                    f"{where}: {pool.exhausted().message}",
                    hint="spread pods over more nodes or lower networking.nodeCIDRPrefix",
                )
            used.add(int(address))
            self.last[key] = address
            out.append(ipaddress.ip_interface((address, pool.subnet.prefixlen)))
        return tuple(out)


def _place_pods(
    spec: ClusterSpec,
    nodes: list[NodeLayout],
    previous: Layout | None,
    state_dir: str,
    fabric: tuple[IPInterface, ...],
) -> list[PodLayout]:
    by_name = {n.name: n for n in nodes}
    old = {p.key: p for p in previous.pods} if previous else {}
    addresses = _Addresses(spec, nodes, fabric)
    load = {n.name: 0 for n in nodes}
    veths: dict[str, set[str]] = {n.name: set() for n in nodes}
    ports = _HostPorts()
    placed: dict[str, str] = {}
    kept_ips: dict[str, tuple[IPInterface, ...]] = {}
    # Pass 1: pods that stay keep their node, addresses and names (and their host ports, unless
    # another pod that stays took them first).
    for pod in spec.pods:
        kept = old.get(pod.key)
        if (kept and kept.node in by_name and pod.node in (None, kept.node)
                and ports.free(kept.node, pod)):
            placed[pod.key] = kept.node
            ports.take(kept.node, pod)
            if kept.veth:
                veths[kept.node].add(kept.veth)
            load[kept.node] += 1
            if not kept.host_network and addresses.fits(kept.node, kept.ips, spec.families):
                addresses.keep(kept.node, kept.ips)
                kept_ips[pod.key] = kept.ips
    # Pass 2: pinned pods, then the rest on the least-loaded schedulable node (ties: file
    # order) that has their host ports free, as the scheduler's NodePorts filter does.
    candidates = _schedulable(nodes)
    for pod in sorted(spec.pods, key=lambda p: p.node is None):
        if pod.key in placed:
            continue
        fits = [n for n in candidates if ports.free(n.name, pod)]
        if pod.node is not None and not ports.free(pod.node, pod):
            raise ports.conflict(pod, pod.node)
        if pod.node is None and not fits:
            raise ports.conflict(pod, None)
        node = pod.node or min(fits, key=lambda n: load[n.name]).name
        placed[pod.key] = node
        ports.take(node, pod)
        load[node] += 1
    out = []
    for pod in spec.pods:
        host = by_name[placed[pod.key]]
        kept = old.get(pod.key)
        if pod.host_network:
            out.append(_host_network_layout(spec.name, pod, host, state_dir))
            continue
        if kept and kept.node == host.name and pod.key in kept_ips:
            ips, veth = kept_ips[pod.key], kept.veth
        else:
            ips = addresses.allocate(host.name, spec.families)
            veth = unique_veth((spec.name, host.name, pod.key), veths[host.name])
        out.append(_pod_layout(spec.name, pod, host.name, ips, veth, state_dir))
    return out


class _HostPorts:
    """The host ports each node has given (hostPort, and hostNetwork pods' own ports)."""

    def __init__(self) -> None:
        self.taken: dict[str, dict[tuple[int, str], str]] = {}  # node -> port -> pod key

    def free(self, node: str, pod: PodSpec) -> bool:
        mine = self.taken.get(node, {})
        return not any((hp.host_port, hp.protocol) in mine for hp in pod.host_ports)

    def take(self, node: str, pod: PodSpec) -> None:
        for hp in pod.host_ports:
            self.taken.setdefault(node, {})[(hp.host_port, hp.protocol)] = pod.key

    def conflict(self, pod: PodSpec, node: str | None) -> TopologyError:
        """Nowhere to run `pod` (pinned to `node`, or anywhere): the loader catches the cases a
        file alone decides; this one involves what the running lab already holds."""
        wanted = ", ".join(f"{hp.host_port}/{hp.protocol}" for hp in pod.host_ports)
        holders = sorted({key for n, taken in self.taken.items() if node in (None, n)
                          for hp in pod.host_ports
                          if (key := taken.get((hp.host_port, hp.protocol)))})
        where = f"node {node}" if node else "every node it may run on"
        return TopologyError([Problem(
            f"pod {pod.key}", "hostPort",
            f"host port {wanted} is already taken on {where} (by {', '.join(holders)})",
            "give it another hostPort, remove the pod holding it (`podnet delete pod ...`), or "
            "add worker nodes")])


def _host_network_layout(cluster: str, pod: PodSpec, node: NodeLayout,
                         state_dir: str) -> PodLayout:
    """A hostNetwork pod: its node's namespace, addresses, hostname and /etc/hosts, as kubelet
    gives them (the pod's own log files only)."""
    plain = _pod_layout(cluster, pod, node.name, node.ips, "", state_dir)
    return replace(plain, netns=node.netns, uts=node.uts, hosts_file=node.hosts_file)


def _pod_layout(
    cluster: str, pod: PodSpec, node: str, ips: tuple[IPInterface, ...], veth: str,
    state_dir: str,
) -> PodLayout:
    slug = f"{pod.namespace}_{pod.name}"
    return PodLayout(
        namespace=pod.namespace,
        name=pod.name,
        node=node,
        netns=pod_netns_name(cluster, pod.key),
        ips=ips,
        veth=veth,
        uts=f"{state_dir}/pods/{slug}.uts",
        hosts_file=f"{state_dir}/pods/{slug}.hosts",
        containers=pod.containers,
        labels=pod.labels,
        owner=pod.owner,
        impairment=pod.impairment,
        host_network=pod.host_network,
        hostname=pod.hostname,
        subdomain=pod.subdomain,
        dns_policy=pod.dns_policy,
        dns_config=pod.dns_config,
    )
