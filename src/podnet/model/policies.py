"""NetworkPolicy (networking.k8s.io/v1) and Namespace labels, as pure data.

The reader (`model.policy_docs`) applies the API server's defaults before building these, so
every value here is explicit: `policy_types` is never empty (Ingress always, Egress when the
policy has egress rules or says so), a port's protocol is always set (TCP by default).

Label selectors know whether they match a set of labels (the one definition of that, for the
loader's checks and the policy engine alike): `matchLabels` and every `matchExpressions`
requirement must hold; an empty selector matches everything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "NAMESPACE_NAME_LABEL",
    "OPERATORS",
    "POLICY_TYPES",
    "PROTOCOLS",
    "Address",
    "Direction",
    "IPBlock",
    "LabelSelector",
    "NamespaceSpec",
    "Network",
    "NetworkPolicySpec",
    "Operator",
    "Peer",
    "PolicyPort",
    "PolicyRule",
    "Protocol",
    "Requirement",
]

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace, as the API does

Direction = Literal["Ingress", "Egress"]
Protocol = Literal["TCP", "UDP", "SCTP"]
Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
POLICY_TYPES: tuple[Direction, ...] = ("Ingress", "Egress")
PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP", "SCTP")
OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Requirement:
    """One `matchExpressions` item."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":  # an absent key is "not in" any list, as in Kubernetes
            return not present or labels[self.key] not in self.values
        return present if self.operator == "Exists" else not present

    def text(self) -> str:
        """As kubectl prints it: `tier in (a,b)`, `tier notin (a)`, `tier`, `!tier`."""
        values = ",".join(self.values)
        return {
            "In": f"{self.key} in ({values})",
            "NotIn": f"{self.key} notin ({values})",
            "Exists": self.key,
            "DoesNotExist": f"!{self.key}",
        }[self.operator]


@dataclass(frozen=True)
class LabelSelector:
    match_labels: Labels = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        """An empty selector (`{}`) selects everything."""
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )

    def text(self) -> str:
        """As kubectl prints a selector (`app=web,tier in (a,b)`); '' when empty."""
        parts = [f"{k}={v}" for k, v in self.match_labels]
        return ",".join(parts + [r.text() for r in self.match_expressions])


@dataclass(frozen=True)
class IPBlock:
    cidr: Network
    excepts: tuple[Network, ...] = ()  # `except`, a keyword in Python

    def contains(self, address: Address) -> bool:
        """Whether the block holds `address`: in `cidr` and in no `except`; an address of the
        other family is never in it."""
        if address.version != self.cidr.version or address not in self.cidr:
            return False
        return not any(address in e for e in self.excepts)

    def text(self) -> str:
        if not self.excepts:
            return str(self.cidr)
        return f"{self.cidr} except {', '.join(str(e) for e in self.excepts)}"


@dataclass(frozen=True)
class Peer:
    """An item of `from` or `to`: pods by selector (in the policy's namespace, or in the
    namespaces `namespace_selector` picks, both together meaning AND), or an address block."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    def selects_pod(
        self, policy_namespace: str, namespace: str, labels: Mapping[str, str],
        namespace_labels: Mapping[str, str],
    ) -> bool:
        """Whether this peer of a policy in `policy_namespace` picks a pod of `namespace` with
        `labels` (`namespace_labels`: its namespace's). An ipBlock picks addresses, not pods."""
        if self.pod_selector is None and self.namespace_selector is None:
            return False
        if self.namespace_selector is None:
            in_scope = namespace == policy_namespace
        else:
            in_scope = self.namespace_selector.matches(namespace_labels)
        return in_scope and (self.pod_selector is None or self.pod_selector.matches(labels))

    def text(self) -> str:
        """As `kubectl describe networkpolicy` words a peer."""
        if self.ip_block is not None:
            return f"IPBlock: {self.ip_block.text()}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"NamespaceSelector: {self.namespace_selector.text() or '<none>'}")
        if self.pod_selector is not None:
            parts.append(f"PodSelector: {self.pod_selector.text() or '<none>'}")
        return "; ".join(parts)


@dataclass(frozen=True)
class PolicyPort:
    protocol: Protocol = "TCP"
    port: int | str | None = None  # None: every port of the protocol; a str is a port name
    end_port: int | None = None  # with a numeric port: the range port..end_port

    def text(self) -> str:
        """`80/TCP`, `8000-9000/TCP`, `http/TCP`, `<any>/UDP`."""
        if self.port is None:
            return f"<any>/{self.protocol}"
        span = f"{self.port}-{self.end_port}" if self.end_port is not None else str(self.port)
        return f"{span}/{self.protocol}"


@dataclass(frozen=True)
class PolicyRule:
    """An ingress or egress rule: it allows traffic that matches one of `peers` (none: any
    peer) on one of `ports` (none: any port and protocol)."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True)
class NetworkPolicySpec:
    name: str
    namespace: str
    pod_selector: LabelSelector
    policy_types: tuple[Direction, ...]
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()
    labels: Labels = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether the policy applies to a pod of `namespace` with `labels`."""
        return namespace == self.namespace and self.pod_selector.matches(labels)

    def affects(self, direction: Direction) -> bool:
        """Whether the policy isolates the pods it selects for `direction`."""
        return direction in self.policy_types

    def rules(self, direction: Direction) -> tuple[PolicyRule, ...]:
        """The rules of `direction`; those of a type the policy does not have do nothing."""
        if not self.affects(direction):
            return ()
        return self.ingress if direction == "Ingress" else self.egress


@dataclass(frozen=True)
class NamespaceSpec:
    name: str
    labels: Labels = ()  # always with kubernetes.io/metadata.name: <name>
    # False: only used by the file's objects, no Namespace document (what `delete -f` may take)
    declared: bool = field(default=True, compare=False)

    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)
