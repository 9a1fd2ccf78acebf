"""Joining a pod's namespace to its host (a lab node, or the real host under CNI) by a veth pair.

One code path for the lab and the CNI plugin, in the two shapes Kubernetes networks use:

- ptp (kindnet, the reference `ptp` plugin): the host end carries the gateway as a /32 and a host
  route per pod; the pod's address has no prefix route, so even same-subnet traffic goes through
  the gateway and the host routes it.
- bridge (docker0, cni0, flannel): the host end is a port of a bridge that holds the gateway.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Literal

from podnet.kernel import netns, sysctl
from podnet.kernel.netlink import Netlink

__all__ = ["PodAttachment", "attach_pod", "ensure_bridge"]


@dataclass(frozen=True)
class PodAttachment:
    host_ifname: str  # vethXXXXXXXX, the host end
    pod_ip: ipaddress.IPv4Interface  # 10.244.1.5/24: the address and the pod subnet
    gateway: ipaddress.IPv4Address  # 10.244.1.1
    mode: Literal["ptp", "bridge"] = "ptp"
    pod_ifname: str = "eth0"
    mtu: int = 1500
    bridge: str | None = None  # bridge mode: the bridge the host end joins
    hairpin: bool = False  # bridge mode: let a pod reach itself through a Service
    # CVE-2020-10749: the host end must not learn routes from pods' router advertisements.
    # True leaves accept_ra as inherited (the lab sets net.ipv6.conf.default.accept_ra=0 per node).
    host_accept_ra: bool = False
    host_netns_path: str | None = None  # where `host` lives (None: this thread's namespace)


def attach_pod(host: Netlink, pod: Netlink, pod_netns_path: str, a: PodAttachment) -> int:
    """Create and configure both ends; return the pod end's ifindex.

    The pod end is born inside the pod's namespace (moving it costs 15 ms). Nothing is undone
    here on failure: callers delete the host end (or the whole namespace) to roll back.
    """
    fd = os.open(pod_netns_path, os.O_RDONLY)
    try:
        host.add_veth(a.host_ifname, a.pod_ifname, fd, mtu=a.mtu)
    finally:
        os.close(fd)
    if not a.host_accept_ra:
        _disable_accept_ra(a.host_ifname, a.host_netns_path)
    if a.mode == "ptp":
        _host_side_ptp(host, a)
    else:
        _host_side_bridge(host, a)
    return _pod_side(pod, a)


def _disable_accept_ra(ifname: str, netns_path: str | None) -> None:
    # Only where IPv6 is on: the file is missing otherwise.
    key = f"net.ipv6.conf.{ifname}.accept_ra"
    if netns_path is None:
        if os.path.exists(f"/proc/sys/net/ipv6/conf/{ifname}"):
            sysctl.write(None, {key: "0"})
        return
    with netns.entered(netns_path):
        if os.path.exists(f"/proc/sys/net/ipv6/conf/{ifname}"):
            sysctl.write(None, {key: "0"})


def _host_side_ptp(host: Netlink, a: PodAttachment) -> None:
    index = host.index(a.host_ifname)
    host.set_link(index, up=True, owned=True)
    host.add_address(index, f"{a.gateway}/32", exist_ok=True)
    host.add_route(f"{a.pod_ip.ip}/32", dev=index, scope="host")


def _host_side_bridge(host: Netlink, a: PodAttachment) -> None:
    if a.bridge is None:
        raise ValueError("bridge mode needs a bridge name")
    index = host.index(a.host_ifname)
    host.set_link(index, up=True, owned=True, master=a.bridge)
    if a.hairpin:
        host.set_hairpin(index)


def _pod_side(pod: Netlink, a: PodAttachment) -> int:
    pod.set_link("lo", up=True)
    index = pod.index(a.pod_ifname)
    ip = str(a.pod_ip.ip)
    gw = str(a.gateway)
    if a.mode == "ptp":
        pod.add_address(index, str(a.pod_ip), noprefixroute=True)
        pod.set_link(index, up=True)
        pod.add_route(f"{gw}/32", dev=index, scope="link", src=ip)
        pod.add_route(str(a.pod_ip.network), gateway=gw, dev=index, src=ip)
    else:
        pod.add_address(index, str(a.pod_ip))
        pod.set_link(index, up=True)
    pod.add_route("default", gateway=gw, dev=index)
    return index


def ensure_bridge(host: Netlink, name: str, gateway: ipaddress.IPv4Interface, mtu: int) -> None:
    """A bridge holding the pods' gateway (cni0): created once, then reused."""
    from podnet.errors import ObjectExistsError

    try:
        host.add_bridge(name, mtu=mtu)
    except ObjectExistsError:
        pass
    host.set_link(name, up=True, owned=True)
    host.add_address(name, str(gateway), exist_ok=True)
