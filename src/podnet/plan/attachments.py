"""How a pod's namespace joins its host: one class per shape, chosen by name from `ATTACHMENTS`.

An attachment turns a `PodLink` (which namespaces, which names and addresses) into operations
(`podnet.plan.ops`), the same for a lab node and for a real host under the CNI plugin:

- ptp (kindnet, the reference `ptp` plugin): the host end holds each family's gateway as a host
  address and a host route per pod address; the pod's addresses have no prefix route, so even
  same-subnet traffic goes through the gateway and the host routes it.
- bridge (docker0, cni0, flannel): the host end is a port of a bridge that holds the gateway.
- vpc (AWS's VPC CNI, aws-node): the pod's address comes from the node network's own subnet as a
  /32; its default route goes to the link-local 169.254.1.1, which a permanent neighbour entry
  maps to the host end's MAC; the host end has no address, the host routes the /32 to it (with a
  rule per pod, as aws-node writes them) and answers ARP for it on the node network (proxy ARP).

A new shape is one class here plus its tests.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from podnet.model.addresses import IPAddress, IPInterface, host_route
from podnet.plan.ops import (
    AddAddress,
    AddBridge,
    AddRoute,
    AddRule,
    AddVeth,
    Op,
    SetBridgePort,
    SetLink,
    SetNeighbour,
    SetSysctls,
)

__all__ = [
    "ATTACHMENTS",
    "VPC_GATEWAY",
    "Attachment",
    "Bridge",
    "HostSide",
    "PodLink",
    "Ptp",
    "Vpc",
    "attachment",
]

VPC_GATEWAY = ipaddress.IPv4Address("169.254.1.1")  # aws-node's gateway for every pod
VPC_TO_POD_PRIORITY = 512  # aws-node's "to pod" rule: from all to POD lookup main


@dataclass(frozen=True)
class HostSide:
    """The host's side of every pod of one attachment: where the pods' gateways live."""

    ns: str | None  # the node's namespace (None: the namespace podnet runs in)
    gateways: tuple[IPInterface, ...]  # per family, with the pod subnet's prefix (10.244.1.1/24)
    mtu: int
    bridge: str = "cni0"  # bridge attachment: the bridge's name
    uplink: str = "eth0"  # vpc: the link to the node network, which answers ARP for pods
    # bridge: conntrack must see bridged frames (br_netfilter), as Services between pods of
    # one bridge need; without, the setting is made where the kernel has it.
    conntrack_bridged: bool = False
    # A real host others configure too (the CNI plugin's): what every pod needs there (the
    # bridge, its gateway) is made only when missing, and br_netfilter's switches are left to
    # the host's owner.
    shared: bool = False


@dataclass(frozen=True)
class PodLink:
    """One pod joined to its host by a veth pair."""

    host: HostSide
    pod_ns: str  # the pod's namespace: a name (cni-...) or a namespace file's path
    host_ifname: str  # veth<8 hex>
    ips: tuple[IPInterface, ...]  # per family: 10.244.1.5/24
    pod_ifname: str = "eth0"
    host_mac: str = ""  # vpc: the MAC the pod's neighbour entry for its gateway points at
    hairpin: bool = True  # bridge: a pod reaches itself through a Service
    # CVE-2020-10749: a host end must not learn routes from a pod's router advertisements. A lab
    # node's namespace default already says so; a real host's does not.
    host_accept_ra_off: bool = False
    # Both ends' IPv6 link-locals usable at once (accept_dad=0 before the links come up): a
    # tentative one sends no neighbour solicitation, so for about 2 s a host could not resolve
    # the pod it forwards to. A lab's namespaces are born with it; a real host's are not.
    no_dad: bool = False

    def gateway(self, family: int) -> IPAddress:
        return next(g.ip for g in self.host.gateways if g.version == family)


def _scope(ip: IPInterface, scope: str) -> str | None:
    """IPv4 routes carry a scope; the kernel ignores it for IPv6, so the plan does not say it."""
    return scope if ip.version == 4 else None


class Attachment:
    """Builds the ops that attach pods; subclasses are the shapes."""

    name: ClassVar[str]
    routes_node_ranges: ClassVar[bool] = True  # nodes hold pod CIDRs other nodes route to
    pins_host_mac: ClassVar[bool] = False  # the pod's neighbour entry names the host end's MAC
    needs_uplink: ClassVar[bool] = False  # host_ops name the host's link to the node network

    def host_ops(self, host: HostSide) -> list[Op]:
        """What the host needs once, before its first pod (a bridge, a sysctl...)."""
        return []

    def pod_gateway(self, link: PodLink, family: int) -> IPAddress:
        """The next hop of the pod's default route in `family` (what a CNI result calls its
        gateway)."""
        return link.gateway(family)

    def pod_ops(self, link: PodLink) -> list[Op]:
        """The veth pair with both ends configured, host side first, then the pod side."""
        host, pod = self._host_side(link), self._pod_side(link)
        veth = AddVeth(link.host.ns, link.host_ifname, link.pod_ifname, link.pod_ns,
                       link.host.mtu, link.host_mac)
        return [veth, *self._guards(link), *host, SetLink(link.pod_ns, "lo"), *pod]

    @staticmethod
    def _guards(link: PodLink) -> list[Op]:
        """Per-link IPv6 settings, made before the links come up (optional: IPv6 may be off)."""
        host = [("accept_ra", "0")] if link.host_accept_ra_off else []  # a pod sends RAs
        host += [("accept_dad", "0")] if link.no_dad else []  # without an IPv6 address too
        out: list[Op] = []
        if host:
            out.append(SetSysctls(link.host.ns, tuple(
                (f"net.ipv6.conf.{link.host_ifname}.{key}", value) for key, value in host),
                optional=True))
        if link.no_dad:
            out.append(SetSysctls(link.pod_ns, ((f"net.ipv6.conf.{link.pod_ifname}.accept_dad",
                                                 "0"),), optional=True))
        return out

    def departure_ops(self, link: PodLink) -> list[Op]:
        """What removes the pod's work from its host once the veth is gone: the routes and
        addresses go with the veth, a routing rule (vpc) does not. Shared host objects (the
        bridge) stay."""
        undone = (op.undo() for op in reversed(self.pod_ops(link))
                  if getattr(op, "ns", "") == link.host.ns)
        return [op for op in undone if op is not None]

    def _host_side(self, link: PodLink) -> list[Op]:
        raise NotImplementedError

    def _pod_side(self, link: PodLink) -> list[Op]:
        raise NotImplementedError


class Ptp(Attachment):
    name = "ptp"

    def _host_side(self, link: PodLink) -> list[Op]:
        ns, dev = link.host.ns, link.host_ifname
        ops: list[Op] = [SetLink(ns, dev, owned=True)]
        for ip in link.ips:
            gw = link.gateway(ip.version)
            ops.append(AddAddress(ns, dev, host_route(gw), nodad=ip.version == 6))
            # replace: a pod removed a moment ago may still hold this route while the kernel
            # frees its veth; ours replaces it at once instead of failing with "File exists".
            ops.append(AddRoute(ns, host_route(ip.ip), ip.version, dev=dev,
                                scope=_scope(ip, "host"), replace=True))
        return ops

    def _pod_side(self, link: PodLink) -> list[Op]:
        ns, dev = link.pod_ns, link.pod_ifname
        ops: list[Op] = []
        for ip in link.ips:
            ops.append(AddAddress(ns, dev, str(ip), noprefixroute=True, nodad=ip.version == 6))
        ops.append(SetLink(ns, dev))
        for ip in link.ips:
            gw = str(link.gateway(ip.version))
            src = str(ip.ip)
            ops += [
                AddRoute(ns, host_route(link.gateway(ip.version)), ip.version, dev=dev,
                         scope=_scope(ip, "link"), src=src),
                AddRoute(ns, str(ip.network), ip.version, via=gw, dev=dev, src=src),
                AddRoute(ns, "default", ip.version, via=gw, dev=dev),
            ]
        return ops


class Bridge(Attachment):
    name = "bridge"

    def host_ops(self, host: HostSide) -> list[Op]:
        ops: list[Op] = [AddBridge(host.ns, host.bridge, host.mtu, exist_ok=host.shared),
                         SetLink(host.ns, host.bridge, owned=True)]
        ops += [AddAddress(host.ns, host.bridge, str(gw), nodad=gw.version == 6,
                           replace=host.shared) for gw in host.gateways]
        if host.shared:
            return ops
        # Service replies between two pods of one bridge are bridged, not routed: only
        # br_netfilter shows them to conntrack, which turns the source back into the Service.
        keys = (("net.bridge.bridge-nf-call-iptables", "1"),
                ("net.bridge.bridge-nf-call-ip6tables", "1"))
        return [*ops, SetSysctls(host.ns, keys, optional=not host.conntrack_bridged)]

    def _host_side(self, link: PodLink) -> list[Op]:
        ns, dev = link.host.ns, link.host_ifname
        ops: list[Op] = [SetLink(ns, dev, master=link.host.bridge, owned=True)]
        if link.hairpin:
            ops.append(SetBridgePort(ns, dev, hairpin=True))
        return ops

    def _pod_side(self, link: PodLink) -> list[Op]:
        ns, dev = link.pod_ns, link.pod_ifname
        ops: list[Op] = [AddAddress(ns, dev, str(ip), nodad=ip.version == 6) for ip in link.ips]
        ops.append(SetLink(ns, dev))
        ops += [AddRoute(ns, "default", ip.version, via=str(link.gateway(ip.version)), dev=dev)
                for ip in link.ips]
        return ops


class Vpc(Attachment):
    name = "vpc"
    routes_node_ranges = False  # pods are on the node network: nothing to route between nodes
    pins_host_mac = True
    needs_uplink = True

    def pod_gateway(self, link: PodLink, family: int) -> IPAddress:
        return VPC_GATEWAY

    def host_ops(self, host: HostSide) -> list[Op]:
        # The node answers ARP on the node network for the pods it routes to their veths.
        return [SetSysctls(host.ns, ((f"net.ipv4.conf.{host.uplink}.proxy_arp", "1"),))]

    def _host_side(self, link: PodLink) -> list[Op]:
        ns, dev = link.host.ns, link.host_ifname
        ops: list[Op] = [SetLink(ns, dev, owned=True)]
        for ip in link.ips:
            ops += [
                AddRoute(ns, host_route(ip.ip), ip.version, dev=dev, scope="link", replace=True),
                AddRule(ns, VPC_TO_POD_PRIORITY, dst=host_route(ip.ip), family=ip.version),
            ]
        return ops

    def _pod_side(self, link: PodLink) -> list[Op]:
        ns, dev = link.pod_ns, link.pod_ifname
        gw = str(VPC_GATEWAY)
        ops: list[Op] = [AddAddress(ns, dev, host_route(ip.ip)) for ip in link.ips]
        return [
            *ops,
            SetLink(ns, dev),
            AddRoute(ns, host_route(VPC_GATEWAY), dev=dev, scope="link"),
            AddRoute(ns, "default", via=gw, dev=dev),
            SetNeighbour(ns, dev, gw, link.host_mac),
        ]


ATTACHMENTS: dict[str, Attachment] = {a.name: a for a in (Ptp(), Bridge(), Vpc())}


def attachment(name: str) -> Attachment:
    return ATTACHMENTS[name]
