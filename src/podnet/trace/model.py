"""`podnet trace` as data: the hops of one packet, the probe, and the verdict. Pure.

`Reads` is everything the tracer asks the kernel, by namespace; `podnet.trace.world`
answers it from the live kernel, tests can answer it from recorded data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from podnet.inspect.model import Namespace
from podnet.kernel.lookup import FdbEntry, Listener, Neighbour, NftRead, RouteAnswer, Vxlan
from podnet.kernel.tc_read import LinkQdiscs
from podnet.trace.nft import Nat, Packet

__all__ = [
    "FullSize",
    "Hop",
    "HopStatus",
    "Outcome",
    "Path",
    "ProbeResult",
    "Reads",
    "TraceReport",
]

HopStatus = Literal["ok", "warn", "broken"]
Outcome = Literal["delivered", "broken", "left", "loop"]


class Reads(Protocol):
    """The kernel's answers the tracer needs, asked in namespace `ns`."""

    def route(self, ns: Namespace, dst: str, *, src: str | None = None,
              iif: int | None = None) -> RouteAnswer: ...

    def neighbour(self, ns: Namespace, ifindex: int, ip: str) -> Neighbour | None: ...

    def fdb(self, ns: Namespace) -> list[FdbEntry]: ...

    def vxlan(self, ns: Namespace, ifindex: int) -> Vxlan | None: ...

    def ruleset(self, ns: Namespace) -> NftRead: ...

    def listeners(self, ns: Namespace) -> list[Listener]: ...

    def sysctl(self, ns: Namespace, key: str) -> str | None: ...

    def conntrack_backend(self, ns: Namespace, request: Packet) -> str | None:
        """The address that answered `request` after NAT, as conntrack in `ns` saw it."""
        ...

    def qdiscs(self, ns: Namespace) -> Mapping[str, LinkQdiscs]:
        """Each interface's qdiscs (netem, tbf, an ingress redirect), by name."""
        ...


@dataclass(frozen=True)
class Hop:
    step: str  # route, veth, bridge, vxlan, decap, nat, filter, deliver, leave
    netns: str  # the namespace's label
    owner: str  # who people know it as: "pod dev/demo-...", "node kind-worker", "podnet-kind"
    text: str
    commands: tuple[str, ...] = ()  # what a person runs to see the same answer
    status: HopStatus = "ok"
    reason: str = ""  # for warn and broken: no route, interface down, rule drop, ...
    notes: tuple[str, ...] = ()
    dev: str | None = None  # the interface the packet leaves by here (arrives on, at the end)
    mtu: int | None = None  # that interface's MTU
    seen: bool | None = None  # `trace --capture`: the probe was seen on `dev` (None: no capture)
    wire: str = ""  # what that capture saw, for people


@dataclass(frozen=True)
class Path:
    hops: tuple[Hop, ...]
    outcome: Outcome
    packet: Packet  # as it was when the walk ended (after NAT)
    end: str | None = None  # the namespace it was delivered to (label)
    broken: int | None = None  # index of the hop to blame
    nat: tuple[tuple[str, Nat, Packet], ...] = ()  # (namespace label, NAT, packet before it)
    size: int | None = None  # the full-size packet the walk carried (bytes), if any
    too_big: int | None = None  # index of the hop where a packet of `size` cannot pass

    @property
    def broken_hop(self) -> Hop | None:
        return None if self.broken is None else self.hops[self.broken]


@dataclass(frozen=True)
class FullSize:
    """A packet as large as the path's first link allows, DF set, PMTU discovery off: what an
    MTU black hole swallows while handshakes and pings pass."""

    ok: bool
    size: int  # bytes of the IP packet
    detail: str
    elapsed_ms: float


@dataclass(frozen=True)
class ProbeResult:
    proto: str  # tcp or icmp
    ok: bool
    outcome: str  # connected, refused, timeout, unreachable, reply, error
    detail: str
    elapsed_ms: float
    local: str | None = None  # the source address:port the probe used
    full: FullSize | None = None  # sent once the small probe got through


@dataclass(frozen=True)
class TraceReport:
    source: str  # "pod dev/demo-... (10.244.2.2)"
    destination: str  # "pod default/jumpbox 10.244.1.2:80/tcp"
    forward: Path
    reverse: Path | None
    probe: ProbeResult | None
    verdict: Literal["works", "broken", "unknown"]
    summary: str
    lookup: tuple[str, ...] = ()  # the DNS questions that named the destination, and answers
