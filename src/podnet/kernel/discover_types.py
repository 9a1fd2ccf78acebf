"""What discovery reads from the kernel, as plain records (no pyroute2: cheap to import and to
build by hand in tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = [
    "NETNS_DIRS",
    "Address",
    "Holder",
    "Link",
    "NamespaceDump",
    "NamespaceRef",
    "Nexthop",
    "Route",
    "netns_name",
]

NETNS_DIRS = ("/run/netns", "/var/run/netns")  # where `ip netns` keeps its names


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    ifname: str
    kind: str  # veth, bridge, vxlan, loopback, device (no rtnl kind: a physical NIC), ...
    mac: str | None
    mtu: int | None
    state: str  # operstate: UP, DOWN, UNKNOWN, LOWERLAYERDOWN, ...
    up: bool  # IFF_UP: administratively up
    master: int | None  # ifindex of the bridge (or bond, VRF) it is enslaved to
    peer_index: int | None  # IFLA_LINK: for a veth, the peer's ifindex in the peer's namespace
    # IFLA_LINK_NETNSID: an id local to THIS namespace; None: the same one; -1: another one,
    # with no id here because it is being torn down (its end is as good as gone)
    peer_netnsid: int | None
    qdisc: str | None = None  # IFLA_QDISC: the kind of its root qdisc ("noqueue" for a veth)


@dataclass(frozen=True, slots=True)
class Address:
    index: int
    family: int  # socket.AF_INET or AF_INET6
    address: str
    prefixlen: int
    scope: int


@dataclass(frozen=True, slots=True)
class Nexthop:
    oif: int
    gateway: str | None


@dataclass(frozen=True, slots=True)
class Route:
    family: int
    dst: str | None  # None: the default route
    dst_len: int
    gateway: str | None
    oif: int | None
    prefsrc: str | None
    scope: str
    protocol: str
    type: str
    metric: int | None
    table: int
    nexthops: tuple[Nexthop, ...] = ()


@dataclass(slots=True)
class NamespaceDump:
    links: list[Link] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    error: str | None = None  # set when the namespace could not be entered or read
    gone: bool = False  # with error: it no longer exists (it went away while podnet looked)


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    comm: str
    container_id: str | None  # the 64-hex id in the process's cgroup path, when there is one


@dataclass(frozen=True, slots=True)
class NamespaceRef:
    """One network namespace and every handle on it that podnet could find."""

    inode: int
    mounts: tuple[str, ...] = ()  # nsfs bind mounts, /run/netns/NAME first
    holders: tuple[Holder, ...] = ()  # processes inside it, by PID
    current: bool = False  # the namespace podnet itself runs in
    name: str | None = None  # the `ip netns` name: see netns_name()

    @classmethod
    def make(cls, inode: int, mounts: tuple[str, ...] = (), holders: tuple[Holder, ...] = (),
             current: bool = False) -> NamespaceRef:
        return cls(inode, mounts, holders, current, netns_name(mounts))

    @property
    def paths(self) -> list[str]:
        """Paths that open it: bind mounts first (stable), then /proc/PID/ns/net."""
        return [*self.mounts, *(f"/proc/{h.pid}/ns/net" for h in self.holders)]


def netns_name(mounts: tuple[str, ...]) -> str | None:
    """The `ip netns` name among a namespace's bind mounts, when it has one."""
    for mount in mounts:
        if os.path.dirname(mount) in NETNS_DIRS:
            return os.path.basename(mount)
    return None
