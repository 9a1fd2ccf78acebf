"""How a node reaches the pods of the other nodes: one class per way, chosen from `ROUTINGS`.

A routing names, per remote node and family, the path the node wants (`PeerPath`): a route to the
remote pod CIDR, and with VXLAN the permanent neighbour and FDB entries that carry it through a
tunnel. The planner compares those with what the node's kernel holds and plans the difference, so
the same description builds a node and repairs one.

- static (kindnet): `ip route add 10.244.2.0/24 via 172.18.0.4`, next hop on the node network;
- host-gw (flannel's host-gw backend): the same, bound to eth0;
- vxlan (flannel's vxlan backend): a flannel.1 device per node (flannel-v6.1 for IPv6), and per
  remote node a route via its VTEP address (onlink), that address's MAC as a permanent
  neighbour, and that MAC's FDB entry pointing at the remote node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from podnet.plan.layout import TUNNELS, Layout, NodeLayout
from podnet.plan.ops import AddAddress, AddVxlan, Op, SetLink

__all__ = ["ROUTINGS", "HostGw", "PeerPath", "Routing", "Static", "Vxlan", "routing"]


@dataclass(frozen=True)
class PeerPath:
    """What a node needs to reach one remote node's pods of one family."""

    family: int
    dst: str  # the remote pod CIDR
    via: str  # the next hop
    dev: str | None = None
    onlink: bool = False
    neighbour: tuple[str, str] | None = None  # (ip, mac) on `dev`
    fdb: tuple[str, str] | None = None  # (mac, remote node address) on `dev`


class Routing:
    name: ClassVar[str]
    words: ClassVar[str]  # how `explain` says it

    def node_ops(self, lay: Layout, node: NodeLayout) -> list[Op]:
        """Devices a node needs for this routing (the VXLAN devices)."""
        return []

    def paths(self, lay: Layout, node: NodeLayout) -> list[PeerPath]:
        raise NotImplementedError

    @staticmethod
    def _remote(lay: Layout, node: NodeLayout) -> list[tuple[NodeLayout, int]]:
        return [(o, f) for o in lay.nodes if o.name != node.name for f in lay.families
                if o.pod_cidr_of(f) is not None and o.ip_of(f) is not None]


class Static(Routing):
    name = "static"
    words = "reaches other nodes' pods through those nodes (kindnet's static routes)"

    def paths(self, lay: Layout, node: NodeLayout) -> list[PeerPath]:
        return [PeerPath(f, str(o.pod_cidr_of(f)), str(o.ip_of(f).ip))  # type: ignore[union-attr]
                for o, f in self._remote(lay, node)]


class HostGw(Routing):
    name = "host-gw"
    words = ("reaches other nodes' pods through those nodes (flannel's host-gw: direct routes "
             "on the shared node network)")

    def paths(self, lay: Layout, node: NodeLayout) -> list[PeerPath]:
        return [PeerPath(f, str(o.pod_cidr_of(f)), str(o.ip_of(f).ip),  # type: ignore[union-attr]
                         dev="eth0")
                for o, f in self._remote(lay, node)]


class Vxlan(Routing):
    name = "vxlan"
    words = ("sends other nodes' pods through its VXLAN device (flannel's vxlan backend): a "
             "route, a neighbour and an FDB entry per node")

    def node_ops(self, lay: Layout, node: NodeLayout) -> list[Op]:
        ops: list[Op] = []
        for cidr, mac, vtep in zip(node.pod_cidrs, node.vtep_macs, node.vtep_ips, strict=True):
            local = node.ip_of(cidr.version)
            if local is None:
                continue
            dev = TUNNELS[cidr.version]
            ops += [
                AddVxlan(node.netns, dev, mac, lay.pod_mtu, lay.vxlan_vni, str(local.ip), "eth0",
                         lay.vxlan_port),
                AddAddress(node.netns, dev, f"{vtep}/{vtep.max_prefixlen}",
                           nodad=cidr.version == 6),
                SetLink(node.netns, dev, owned=True),
            ]
        return ops

    def paths(self, lay: Layout, node: NodeLayout) -> list[PeerPath]:
        out = []
        for other, family in self._remote(lay, node):
            index = [int(c.version) for c in other.pod_cidrs].index(family)
            vtep, mac = str(other.vtep_ips[index]), other.vtep_macs[index]
            remote = str(other.ip_of(family).ip)  # type: ignore[union-attr]
            out.append(PeerPath(family, str(other.pod_cidrs[index]), vtep, dev=TUNNELS[family],
                                onlink=True, neighbour=(vtep, mac), fdb=(mac, remote)))
        return out


ROUTINGS: dict[str, Routing] = {r.name: r for r in (Static(), HostGw(), Vxlan())}


def routing(name: str) -> Routing:
    return ROUTINGS[name]
