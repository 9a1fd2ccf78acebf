"""Labs to draw without a kernel: the planner decides every name and address (as `up` would),
and the host inspect would find is built from that, pair by pair. The picture tests use these
for shapes and sizes a test machine should not build for real (150 pods would take a seventh
of the machine's shared neighbour table)."""

from __future__ import annotations

import re
from pathlib import Path

from podnet.inspect.model import Holder, Host, Interface, Namespace, PairEnd, PeerRef, VethPair
from podnet.model.loader import load_topology
from podnet.plan.layout import TUNNEL, layout
from podnet.state import ContainerRecord, LabState, _encode
from podnet.trace.target import LabView

DEFAULT = (Path(__file__).parents[2] / "src/podnet/model/default.yaml").read_text()

__all__ = ["DEFAULT", "synthetic_lab", "topology"]


def topology(*, replicas: int = 3, attachment: str = "ptp", routing: str = "static",
             mtu: int = 1500, family: str = "ipv4") -> str:
    text = DEFAULT.replace("replicas: 3", f"replicas: {replicas}")
    if family == "dual":  # kind's dual-stack ranges
        text = text.replace("networking:\n", "networking:\n  ipFamily: dual\n", 1)
        for v4, v6 in (("10.244.0.0/16", "fd00:10:244::/56"), ("10.96.0.0/16", "fd00:10:96::/112"),
                       ("172.18.0.0/16", "fc00:f853:ccd:e793::/64")):
            text = text.replace(f": {v4}", f": {v4},{v6}", 1)
    text = re.sub(r"attachment: \w+", f"attachment: {attachment}", text)
    text = re.sub(r"routing: \w+", f"routing: {routing}", text)
    return re.sub(r"mtu: \d+", f"mtu: {mtu}", text)


class _Builder:
    def __init__(self) -> None:
        self.inode = 100
        self.namespaces: dict[str, list[Interface]] = {}
        self.inodes: dict[str, int] = {}
        self.pairs: list[VethPair] = []

    def ns(self, name: str) -> None:
        self.inode += 1
        self.inodes[name] = self.inode
        self.namespaces[name] = [Interface("lo", 1, "loopback", "00:00:00:00:00:00", 65536,
                                           "UNKNOWN", True, ("127.0.0.1/8",), None)]

    def add(self, ns: str, name: str, kind: str, addrs: tuple[str, ...] = (),
            master: str | None = None, peer: PeerRef | None = None) -> int:
        index = len(self.namespaces[ns]) + 1
        mac = f"02:00:{self.inodes[ns] % 256:02x}:00:00:{index % 256:02x}"
        self.namespaces[ns].append(Interface(name, index, kind, mac, 1500, "UP", True, addrs,
                                             master, peer))
        return index

    def pair(self, a_ns: str, a: str, a_addrs: tuple[str, ...], b_ns: str, b: str,
             b_addrs: tuple[str, ...], a_master: str | None = None) -> None:
        ia = len(self.namespaces[a_ns]) + 1
        ib = len(self.namespaces[b_ns]) + 1
        self.add(a_ns, a, "veth", a_addrs, a_master, PeerRef(b_ns, b, ib))
        self.add(b_ns, b, "veth", b_addrs, None, PeerRef(a_ns, a, ia))
        self.pairs.append(VethPair((PairEnd(a_ns, self.inodes[a_ns], a, ia, addresses=a_addrs,
                                            master=a_master),
                                    PairEnd(b_ns, self.inodes[b_ns], b, ib, addresses=b_addrs))))


def synthetic_lab(text: str | None = None) -> tuple[Host, LabView]:
    """The host and lab record `up` of this topology would leave (the default lab if None)."""
    lay = layout(load_topology(text or DEFAULT, source="synthetic"))
    b = _Builder()
    fab = lay.fabric_netns
    b.ns(fab)
    b.add(fab, lay.bridge, "bridge", tuple(map(str, lay.fabric_gateways)))
    containers: list[ContainerRecord] = []
    pid = 1000
    pods_of: dict[str, list[str]] = {}
    for node in lay.nodes:
        b.ns(node.netns)
        b.pair(fab, node.uplink, (), node.netns, "eth0", tuple(map(str, node.ips)),
               a_master=lay.bridge)
        if lay.routing == "vxlan":
            b.add(node.netns, TUNNEL, "vxlan", tuple(f"{ip}/{ip.max_prefixlen}"
                                                     for ip in node.vtep_ips))
        if lay.attachment == "bridge":
            b.add(node.netns, "cni0", "bridge", tuple(
                f"{gw}/{cidr.prefixlen}" for gw, cidr in zip(node.gateways, node.pod_cidrs,
                                                             strict=True)))
        for pod in lay.pods_on(node.name):
            b.ns(pod.netns)
            bridged = lay.attachment == "bridge"
            gateways = () if bridged else tuple(f"{gw}/{gw.max_prefixlen}"
                                                 for gw in node.gateways)
            b.pair(node.netns, pod.veth, gateways, pod.netns, "eth0", tuple(map(str, pod.ips)),
                   a_master="cni0" if bridged else None)
            for c in pod.containers:
                pid += 1
                containers.append(ContainerRecord(pod.key, c.name, pid, 1))
            pods_of.setdefault(pod.netns, []).append(pod.key)
    if lay.internet is not None:
        b.ns(lay.internet.netns)
        b.pair(fab, lay.internet.link, tuple(map(str, lay.internet.gateways)),
               lay.internet.netns, "eth0", tuple(map(str, lay.internet.addresses)))
    pod_by_netns = {p.netns: p.key for p in lay.pods}
    node_by_netns = {n.netns: n.name for n in lay.nodes}
    namespaces = tuple(
        Namespace(b.inodes[name], name, name, paths=(f"/run/netns/{name}",),
                  holders=(Holder(b.inodes[name] + 5000, "podnet-http"),)
                  if name in pod_by_netns else (),
                  pod=pod_by_netns.get(name), node=node_by_netns.get(name),
                  interfaces=tuple(ifaces))
        for name, ifaces in b.namespaces.items()
    )
    raw = _encode(LabState(lay, containers, complete=True))
    view = LabView(raw["cluster"], raw["pods"], raw["nodes"], raw["services"], raw)
    return Host(namespaces, tuple(b.pairs)), view
