"""A live host as `podnet inspect` sees it: pure data, built by inspect.build, read by render."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = [
    "Holder",
    "Host",
    "Interface",
    "Namespace",
    "PairEnd",
    "PairStatus",
    "PeerRef",
    "Route",
    "VethPair",
]

PairStatus = Literal["ok", "peer-hidden", "peer-gone"]


@dataclass(frozen=True)
class Holder:
    pid: int
    comm: str
    container_id: str | None = None


@dataclass(frozen=True)
class PeerRef:
    """Where a veth's other end is: `netns` is a namespace label, None when not visible."""

    netns: str | None
    ifname: str | None
    ifindex: int | None
    status: PairStatus = "ok"


@dataclass(frozen=True)
class Interface:
    ifname: str
    ifindex: int
    kind: str
    mac: str | None
    mtu: int | None
    state: str
    up: bool
    addresses: tuple[str, ...]  # CIDR, e.g. 10.244.3.1/32 and fe80::1/64
    master: str | None  # the bridge (or bond, VRF) it is enslaved to
    peer: PeerRef | None = None  # veths only
    qdisc: str | None = None  # its root qdisc's kind, as the kernel lists the link (not in JSON)


@dataclass(frozen=True)
class Route:
    dst: str  # "default" or a CIDR
    family: int  # 4 or 6
    gateway: str | None = None
    dev: str | None = None
    src: str | None = None
    scope: str = "universe"
    protocol: str = "boot"
    type: str = "unicast"
    metric: int | None = None
    nexthops: tuple[tuple[str | None, str | None], ...] = ()  # (gateway, dev) for multipath


@dataclass(frozen=True)
class Namespace:
    inode: int
    label: str  # what people call it: its name, "host", "pid:157" or a mount path
    name: str | None = None  # the `ip netns` name
    current: bool = False  # podnet ran in it
    paths: tuple[str, ...] = ()  # nsfs bind mounts
    holders: tuple[Holder, ...] = ()
    pod: str | None = None  # "namespace/name"
    node: str | None = None  # a podnet lab node
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    error: str | None = None  # why it could not be read

    def interface(self, ifname: str) -> Interface | None:
        return next((i for i in self.interfaces if i.ifname == ifname), None)


@dataclass(frozen=True)
class PairEnd:
    netns: str | None  # namespace label; None: a namespace podnet cannot see (or none left)
    inode: int | None
    ifname: str | None
    ifindex: int | None
    mac: str | None = None
    mtu: int | None = None
    state: str | None = None
    addresses: tuple[str, ...] | None = ()  # None: unknown (the namespace is not visible)
    master: str | None = None


@dataclass(frozen=True)
class VethPair:
    ends: tuple[PairEnd, PairEnd]
    status: PairStatus = "ok"
    netnsid: int | None = None  # the id ends[0]'s namespace gives ends[1]'s (None: the same)

    def touches(self, inode: int) -> bool:
        return any(end.inode == inode for end in self.ends)


@dataclass(frozen=True)
class Host:
    namespaces: tuple[Namespace, ...] = ()
    veth_pairs: tuple[VethPair, ...] = ()
    by_inode: dict[int, Namespace] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_inode.update({ns.inode: ns for ns in self.namespaces})

    def find(self, selector: str) -> list[Namespace]:
        """Namespaces matching a name, label, inode, pod (ns/name), node or mount path."""
        return [
            ns for ns in self.namespaces
            if selector in (ns.name, ns.label, str(ns.inode), ns.pod, ns.node, *ns.paths)
        ]

    def focus(self, namespace: Namespace) -> Host:
        """One namespace, the veth pairs touching it and the namespaces at their other ends."""
        pairs = tuple(p for p in self.veth_pairs if p.touches(namespace.inode))
        keep = {namespace.inode} | {e.inode for p in pairs for e in p.ends if e.inode}
        return replace(
            self,
            namespaces=tuple(ns for ns in self.namespaces if ns.inode in keep),
            veth_pairs=pairs,
            by_inode={},
        )
