"""One podnet-cni attachment in the lab's terms: a `PodLink` and the operations that make it.

ADD, CHECK, DEL and GC all start here, from the same few facts (the configuration, the pod's
addresses with their gateways, the host end's name), so what ADD makes, what CHECK expects and
what DEL removes are one description (`podnet.plan.attachments`, the lab's own shapes):

- the host's namespace is the plugin's own (`ns` None) and the pod's is CNI_NETNS, opened and
  checked (a `/proc/self/fd/N` path, which operations reach through `nsenter --net=PATH`);
- `ops()` is forwarding on for the pod's families, the shape's host operations (the bridge and
  its gateway, made only when missing; vpc's proxy ARP on the uplink), its pod operations (the
  veth with both ends configured, the host end's `accept_ra` off, no DAD on either end) and the
  IPAM's other routes;
- the CNI result is read off the same operations (the links they create, the addresses the pod's
  interface gets) and the MACs the kernel gave.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from podnet.cni.result import DNS, Interface, IPConfig, Result, Route
from podnet.errors import CNI_INVALID_CONFIG, CniError
from podnet.model.addresses import IPAddress, IPInterface
from podnet.model.naming import link_mac
from podnet.plan.attachments import Attachment, HostSide, PodLink, attachment
from podnet.plan.ops import AddAddress, AddBridge, AddRoute, AddVeth, Op, SetSysctls

__all__ = ["CniLink", "build"]

_FORWARDING = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}


@dataclass(frozen=True)
class CniLink:
    """What one (network, container, interface) attachment is: built from the IPAM's answer on
    ADD, and from podnet's record of it on CHECK, DEL and GC."""

    mode: str
    link: PodLink
    host: HostSide  # what host_ops get: no gateway on the bridge unless isGateway
    routes: tuple[Route, ...] = ()  # the IPAM's routes of the pod's families, as it gave them

    @property
    def shape(self) -> Attachment:
        return attachment(self.mode)

    def gateway(self, family: int) -> IPAddress:
        return self.shape.pod_gateway(self.link, family)

    def ops(self) -> list[Op]:
        families = sorted({ip.version for ip in self.link.ips})
        forwarding = SetSysctls(None, tuple((_FORWARDING[f], "1") for f in families))
        return [forwarding, *self.shape.host_ops(self.host), *self.shape.pod_ops(self.link),
                *self._route_ops()]

    def _route_ops(self) -> list[Op]:
        """The IPAM's routes besides the default ones (which every shape makes itself)."""
        ops: list[Op] = []
        for route in self.routes:
            gateway = self.gateway(route.dst.version)
            if route.dst.prefixlen == 0:
                if route.gw is not None and route.gw != gateway:
                    raise CniError(CNI_INVALID_CONFIG, f"the IPAM's route to {route.dst} names "
                                   f"gateway {route.gw}; mode {self.mode} routes it via {gateway}",
                                   details="leave out gw on the default routes of the ipam "
                                   "section")
                continue
            ops.append(AddRoute(self.link.pod_ns, str(route.dst), route.dst.version,
                                via=str(route.gw or gateway), dev=self.link.pod_ifname,
                                replace=True))
        return ops

    def undo_ops(self) -> list[Op]:
        """What removes the pod's work from the host once its veth is gone (the routes go with
        it; vpc's rules do not). Host operations shared by every pod (the bridge) stay."""
        return self.shape.departure_ops(self.link)

    def pod_addresses(self) -> list[IPInterface]:
        """The addresses the operations give the pod's interface (vpc's are /32)."""
        return [ipaddress.ip_interface(op.cidr) for op in self.shape.pod_ops(self.link)
                if isinstance(op, AddAddress) and op.ns == self.link.pod_ns
                and op.dev == self.link.pod_ifname]

    def result(self, sandbox: str, mac_of: Callable[[str | None, str], str],
               dns: DNS) -> Result:
        """The CNI result, in the reference plugins' shape: the host links the operations
        create (the bridge first), then the pod's interface with its sandbox."""
        ops = self.ops()
        host_links = [op.name for op in ops if isinstance(op, AddBridge | AddVeth)
                      and op.ns is None]
        interfaces = [Interface(name, mac_of(None, name)) for name in host_links]
        pod = self.link.pod_ifname
        interfaces.append(Interface(pod, mac_of(self.link.pod_ns, pod), sandbox,
                                    self.link.host.mtu))
        index = len(interfaces) - 1
        ips = tuple(IPConfig(ip, self.gateway(ip.version), index) for ip in self.pod_addresses())
        return Result(tuple(interfaces), ips, self._reported_routes(), dns)

    def _reported_routes(self) -> tuple[Route, ...]:
        """The IPAM's routes as it gave them (as the reference plugins report them), after a
        default route for each family the IPAM gave none (every shape makes one)."""
        given = {r.dst.version for r in self.routes if r.dst.prefixlen == 0}
        made = [Route(ipaddress.ip_network("0.0.0.0/0" if f == 4 else "::/0"), self.gateway(f))
                for f in sorted({ip.version for ip in self.link.ips}) if f not in given]
        return (*made, *self.routes)


def build(*, mode: str, network: str, container_id: str, ifname: str, pod_ns: str,
          host_ifname: str, ips: Sequence[IPInterface], gateways: Sequence[IPAddress | None],
          mtu: int, bridge: str = "", is_gateway: bool = True, hairpin: bool = False,
          uplink: str = "", routes: Sequence[Route] = ()) -> CniLink:
    """The attachment of `ips` (one per family, each with its subnet's prefix), whose gateways
    are `gateways` (None: the subnet's first address, host-local's default)."""
    shape = attachment(mode)
    gws = tuple(ipaddress.ip_interface(f"{gw or ip.network.network_address + 1}/"
                                       f"{ip.network.prefixlen}")
                for ip, gw in zip(ips, gateways, strict=True))
    on_host = HostSide(None, gws, mtu, bridge=bridge or "cni0", uplink=uplink or "eth0",
                       shared=True)
    # isGateway false: the bridge holds no address; pods still route via the IPAM's gateway,
    # as the reference bridge plugin has it.
    host_ops_side = on_host if is_gateway else HostSide(
        None, (), mtu, bridge=on_host.bridge, uplink=on_host.uplink, shared=True)
    link = PodLink(
        host=on_host, pod_ns=pod_ns, host_ifname=host_ifname, ips=tuple(ips),
        pod_ifname=ifname, hairpin=hairpin, host_accept_ra_off=True, no_dad=True,
        host_mac=link_mac(f"cni/{network}/{container_id}/{ifname}")
        if shape.pins_host_mac else "",
    )
    families = {ip.version for ip in ips}
    kept = tuple(r for r in routes if r.dst.version in families)
    return CniLink(mode, link, host_ops_side, kept)
