"""Which pods a policy applies to, which peers and ports its rules allow: networking.k8s.io/v1's
rules, pure. The verdict (`verdict`), the truth table (`truth`) and the nftables rendering
(`nft`) are all built on these, so that the three cannot disagree.
"""

from __future__ import annotations

from podnet.model.policies import (
    Address,
    Direction,
    NetworkPolicySpec,
    Peer,
    PolicyPort,
    PolicyRule,
)
from podnet.policy.world import Member, World

__all__ = [
    "isolating",
    "peer_allows",
    "peer_pods",
    "port_allows",
    "rule_allows",
    "selected",
    "selects",
]


def selects(policy: NetworkPolicySpec, pod: Member) -> bool:
    return policy.selects(pod.namespace, pod.label_dict)


def selected(world: World, policy: NetworkPolicySpec) -> list[Member]:
    """The pods `policy` applies to."""
    return [p for p in world.pods if selects(policy, p)]


def isolating(world: World, pod: Member, direction: Direction) -> tuple[NetworkPolicySpec, ...]:
    """The policies that isolate `pod` for `direction`: those that select it and have that
    policy type. None: the pod is not isolated, and every connection is allowed that way."""
    return tuple(p for p in world.policies if p.affects(direction) and selects(p, pod))


def peer_allows(
    world: World, policy: NetworkPolicySpec, peer: Peer, pod: Member | None, address: Address
) -> bool:
    """Whether `peer` (of a rule of `policy`) matches the other end of a connection: `pod`, or
    only an `address` outside every pod. An ipBlock matches addresses, pods' included."""
    if peer.ip_block is not None:
        return peer.ip_block.contains(address)
    if pod is None:
        return False
    return peer.selects_pod(policy.namespace, pod.namespace, pod.label_dict,
                            world.namespace_labels(pod.namespace))


def peer_pods(world: World, policy: NetworkPolicySpec, peer: Peer) -> list[Member]:
    """The pods a selector peer picks (none for an ipBlock, which picks addresses)."""
    return [p for p in world.pods
            if peer.selects_pod(policy.namespace, p.namespace, p.label_dict,
                                world.namespace_labels(p.namespace))]


def port_allows(
    allowed: PolicyPort, port: int | None, protocol: str, target: Member | None
) -> bool:
    """Whether a rule's port entry lets `port`/`protocol` through. A named port is looked up
    in the containers of `target`, the pod the connection goes to (none: it never matches)."""
    if allowed.protocol != protocol:
        return False
    if allowed.port is None:
        return True
    if port is None:
        return False
    if isinstance(allowed.port, str):
        return target is not None and target.port_named(allowed.port, protocol) == port
    return allowed.port <= port <= (allowed.end_port or allowed.port)


def rule_allows(
    world: World, policy: NetworkPolicySpec, rule: PolicyRule, other: Member | None,
    other_ip: Address, port: int | None, protocol: str, target: Member | None,
) -> bool:
    """Whether `rule` allows a connection with `other` (the peer end) on `port`/`protocol`;
    no peers means every peer, no ports every port and protocol."""
    if rule.peers and not any(peer_allows(world, policy, p, other, other_ip) for p in rule.peers):
        return False
    return not rule.ports or any(port_allows(p, port, protocol, target) for p in rule.ports)
