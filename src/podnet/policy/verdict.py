"""Is a connection allowed, and why: the source's egress and the destination's ingress together.

    v = verdict(world, "other/intruder", "dev/demo-x", 80)
    v.allowed            False
    v.ingress.reason     "denied"
    v.ingress.isolated_by  ("dev/default-deny-ingress",)

Kubernetes' rules, in the order they are applied to each end:
- a pod may always reach itself (`self`), and traffic between a pod and its own node is always
  allowed (`node`);
- a pod that no policy of a type selects is not isolated for it (`not-isolated`);
- otherwise the connection needs one rule of one of those policies (additive, order does not
  matter) to allow it (`allowed`, naming every such rule), else it is `denied`;
- an end that is no pod (the outside world, a node) has no policies (`no-pod`).
A connection needs both ends to allow it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from podnet.model.policies import Address, Direction
from podnet.policy.select import isolating, rule_allows
from podnet.policy.world import Host, Member, World

__all__ = ["Allowance", "End", "Reason", "Side", "Verdict", "verdict"]

Reason = Literal["no-pod", "self", "node", "not-isolated", "allowed", "denied"]


@dataclass(frozen=True)
class Allowance:
    """One rule that allows the connection: `policy` (namespace/name), its `direction` and the
    rule's index in that list (spec.ingress[index] or spec.egress[index])."""

    policy: str
    direction: Direction
    index: int

    def text(self) -> str:
        return f"{self.policy} {self.direction.lower()}[{self.index}]"


@dataclass(frozen=True)
class Side:
    """What one end's policies say: the source's egress, or the destination's ingress."""

    direction: Direction
    pod: str | None  # the pod judged (namespace/name); None when this end is no pod
    reason: Reason
    isolated_by: tuple[str, ...] = ()  # the policies that select the pod for this direction
    allowed_by: tuple[Allowance, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.reason != "denied"


@dataclass(frozen=True)
class End:
    """One end of a connection: a pod, a node, or an address outside both."""

    label: str  # "dev/web", "node kind-worker", "198.51.100.100"
    ip: Address
    pod: Member | None = None


@dataclass(frozen=True)
class Verdict:
    src: End
    dst: End
    port: int | None
    protocol: str
    egress: Side  # the source's
    ingress: Side  # the destination's

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    @property
    def denied_by(self) -> Side | None:
        """The side that denies (egress first: a packet meets its source's rules first)."""
        return next((s for s in (self.egress, self.ingress) if not s.allowed), None)

    def what(self) -> str:
        """`80/tcp`, as the connection's port and protocol read in sentences."""
        proto = self.protocol.lower()
        return f"{self.port}/{proto}" if self.port is not None else proto


Endpoint = Member | Host | Address | str


def verdict(
    world: World, src: Endpoint, dst: Endpoint, port: int | None, protocol: str = "TCP",
    *, family: int | None = None,
) -> Verdict:
    """The fate of a new connection from `src` to `dst` (pods, nodes, addresses; strings are pod
    keys, node names or addresses) on `port`/`protocol`, by the policies of `world`. Between two
    pods, `family` picks the addresses (default: the first family both have)."""
    a, b = _resolve(world, src), _resolve(world, dst)
    # An end given as an address says the family; a pod or node has one per family.
    given = [_as_address(e) for e in (src, dst)]
    version = family or next((g.version for g in given if g is not None), None) or _family(a, b)
    s, d = _end(a, version), _end(b, version)
    return Verdict(
        src=s, dst=d, port=port, protocol=protocol,
        egress=_side(world, "Egress", s, d, port, protocol),
        ingress=_side(world, "Ingress", d, s, port, protocol),
    )


def _as_address(value: Endpoint) -> Address | None:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            return None
    return None


def _resolve(world: World, value: Endpoint) -> Member | Host | Address:
    if not isinstance(value, str):
        return value
    found: Member | Host | None = world.pod(value) or world.host(value)
    if found is not None:
        return found
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is no pod (namespace/name), node or address") from None
    return world.pod_at(address) or address


def _versions(value: Member | Host | Address) -> list[int]:
    if isinstance(value, Member | Host):
        return [a.version for a in value.ips]
    return [value.version]


def _family(a: Member | Host | Address, b: Member | Host | Address) -> int:
    common = [v for v in _versions(a) if v in _versions(b)]
    if not common:
        raise ValueError("the two ends have no address family in common")
    return common[0]


def _end(value: Member | Host | Address, version: int) -> End:
    if isinstance(value, Member | Host):
        ip = value.ip(version)
        if ip is None:
            raise ValueError(f"{_label(value)} has no IPv{version} address")
        return End(_label(value), ip, value if isinstance(value, Member) else None)
    if value.version != version:
        raise ValueError(f"{value} is not an IPv{version} address")
    return End(str(value), value)


def _label(value: Member | Host) -> str:
    return value.key if isinstance(value, Member) else f"node {value.name}"


def _side(
    world: World, direction: Direction, me: End, other: End, port: int | None, protocol: str
) -> Side:
    """`direction`'s judgement of the connection by the policies of `me` (other: its peer)."""
    pod = me.pod
    if pod is None:
        return Side(direction, None, "no-pod")
    if other.pod is not None and other.pod.key == pod.key:
        return Side(direction, pod.key, "self")
    host = world.host(pod.node)
    if host is not None and other.ip in host.ips:
        return Side(direction, pod.key, "node")
    policies = isolating(world, pod, direction)
    if not policies:
        return Side(direction, pod.key, "not-isolated")
    # A named port is the destination's: the pod judged for ingress, the peer for egress.
    target = pod if direction == "Ingress" else other.pod
    allowed = tuple(
        Allowance(p.key, direction, i)
        for p in policies
        for i, rule in enumerate(p.rules(direction))
        if rule_allows(world, p, rule, other.pod, other.ip, port, protocol, target)
    )
    return Side(direction, pod.key, "allowed" if allowed else "denied",
                tuple(p.key for p in policies), allowed)
