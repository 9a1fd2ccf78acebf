"""Joining a pod's namespace to its host (a lab node, or the real host under CNI) by a veth pair.

One code path for the lab and the CNI plugin, in the two shapes Kubernetes networks use:

- ptp (kindnet, the reference `ptp` plugin): the host end carries the gateway as a /32 and a host
  route per pod; the pod's address has no prefix route, so even same-subnet traffic goes through
  the gateway and the host routes it.
- bridge (docker0, cni0, flannel): the host end is a port of a bridge that holds the gateway.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from dataclasses import dataclass
from typing import Literal

from podnet.errors import ObjectExistsError
from podnet.kernel import sysctl
from podnet.kernel.batch import Batch
from podnet.kernel.netlink import OWNER_ALIAS, Netlink

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


def attach_pod(
    host: Netlink,
    pod: Netlink,
    pod_netns_path: str,
    a: PodAttachment,
    *,
    indexes: tuple[int, int] | None = None,
) -> int:
    """Create and configure both ends; return the pod end's ifindex.

    The pod end is born inside the pod's namespace (moving it costs 15 ms). With `indexes`
    (host end, pod end) free in their namespaces, each side is one round trip: the veth and the
    host side's address and route go in one batch. Without, the kernel picks the indexes and
    one lookup learns them. Nothing is undone here on failure: callers delete the host end (or
    the whole namespace) to roll back.
    """
    fd = os.open(pod_netns_path, os.O_RDONLY)
    try:
        if indexes is None:
            host.add_veth(a.host_ifname, a.pod_ifname, fd, mtu=a.mtu)
            created = host.link(a.host_ifname)  # one answer gives both ends' indexes
            host_index, pod_index = int(created["index"]), int(created["link"])
            batch = Batch(f"attaching {a.pod_ip}")
        else:
            host_index, pod_index = indexes
            batch = Batch(f"attaching {a.pod_ip}").veth_add(
                a.host_ifname, host_index, a.pod_ifname, pod_index, fd, a.mtu
            )
        if a.host_accept_ra:
            host.send(_host_side(host, a, host_index, batch))
        else:
            host.send(batch)  # the sysctl needs the interface to exist
            _disable_accept_ra(a.host_ifname, a.host_netns_path)
            host.send(_host_side(host, a, host_index, Batch(batch.what)))
    finally:
        os.close(fd)
    pod.send(_pod_side(a, pod_index))
    return pod_index


def _disable_accept_ra(ifname: str, netns_path: str | None) -> None:
    key = f"net.ipv6.conf.{ifname}.accept_ra"
    sysctl.write(netns_path, {key: "0"}, optional={key})  # only where IPv6 is on


def _host_side(host: Netlink, a: PodAttachment, index: int, batch: Batch) -> Batch:
    if a.mode == "ptp":
        batch.link_set(index, up=True, alias=OWNER_ALIAS)
        batch.addr_add(index, f"{a.gateway}/32")
        batch.route_add(f"{a.pod_ip.ip}/32", oif=index, scope="host")
        return batch
    if a.bridge is None:
        raise ValueError("bridge mode needs a bridge name")
    batch.link_set(index, up=True, alias=OWNER_ALIAS, master=host.index(a.bridge))
    if a.hairpin:
        batch.bridge_port(index, hairpin=True)  # after the enslaving message, same datagram
    return batch


def _pod_side(a: PodAttachment, index: int) -> Batch:
    batch = Batch(f"configuring {a.pod_ifname} {a.pod_ip}")
    batch.link_set(1, up=True)  # lo is always ifindex 1
    ip = str(a.pod_ip.ip)
    gw = str(a.gateway)
    if a.mode == "ptp":
        # No prefix route: even same-subnet traffic goes through the gateway (the host routes it).
        batch.addr_add(index, str(a.pod_ip), noprefixroute=True)
        batch.link_set(index, up=True)
        batch.route_add(f"{gw}/32", oif=index, scope="link", src=ip)
        batch.route_add(str(a.pod_ip.network), oif=index, gateway=gw, src=ip)
    else:
        batch.addr_add(index, str(a.pod_ip))
        batch.link_set(index, up=True)
    batch.route_add("default", oif=index, gateway=gw)
    return batch


def ensure_bridge(host: Netlink, name: str, gateway: ipaddress.IPv4Interface, mtu: int) -> None:
    """A bridge holding the pods' gateway (cni0): created once, then reused."""
    with contextlib.suppress(ObjectExistsError):
        host.add_bridge(name, mtu=mtu)
    host.set_link(name, up=True, owned=True)
    host.add_address(name, str(gateway), exist_ok=True)
