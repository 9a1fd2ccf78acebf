"""Reading `NetworkPolicy` (networking.k8s.io/v1) and `Namespace` documents, checked as the API
server checks them, into `model.policies`.

Each document is read on its own (`PolicyBook.read_policy`, `read_namespace`); what needs the
whole file waits for `PolicyBook.finish`: names used twice, the namespaces of the cluster (every
one declared or used, each labelled `kubernetes.io/metadata.name`), and named ports that no pod
declares. Kubernetes accepts those with a warning, and so does podnet: they are returned apart
from the problems, which refuse the file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import Problem
from podnet.model import naming
from podnet.model.drafts import Origin, PodDraft, did_you_mean
from podnet.model.fields import Reader
from podnet.model.policies import (
    NAMESPACE_NAME_LABEL,
    OPERATORS,
    POLICY_TYPES,
    PROTOCOLS,
    Direction,
    IPBlock,
    LabelSelector,
    NamespaceSpec,
    Network,
    NetworkPolicySpec,
    Operator,
    Peer,
    PolicyPort,
    PolicyRule,
    Protocol,
    Requirement,
)
from podnet.model.types import PodSpec
from podnet.model.validate import duplicates

__all__ = ["API_VERSION", "PolicyBook"]

API_VERSION = "networking.k8s.io/v1"

SPEC_KEYS = ("podSelector", "policyTypes", "ingress", "egress")
SELECTOR_KEYS = ("matchLabels", "matchExpressions")
EXPRESSION_KEYS = ("key", "operator", "values")
PEER_KEYS = ("podSelector", "namespaceSelector", "ipBlock")
IP_BLOCK_KEYS = ("cidr", "except")
PORT_KEYS = ("protocol", "port", "endPort")

PEERS_HINT = (
    "a peer is a podSelector, a namespaceSelector (both in one item: those pods in those "
    "namespaces), or an ipBlock"
)
OPERATORS_HINT = "the operators are In, NotIn, Exists and DoesNotExist"
WHY_POLICY_NAME = (
    "NetworkPolicy names are DNS-1123 subdomains: lowercase letters, digits, '-' and '.'"
)
WHY_NAMESPACE = "namespace names are DNS-1123 labels: lowercase letters, digits and '-'"
_PROTOCOL: dict[str, Protocol] = {p: p for p in PROTOCOLS}
_OPERATOR: dict[str, Operator] = {o: o for o in OPERATORS}


@dataclass
class _PolicyDraft:
    spec: NetworkPolicySpec
    origin: Origin


@dataclass
class _NamespaceDraft:
    spec: NamespaceSpec
    origin: Origin


@dataclass
class PolicyBook:
    """The NetworkPolicy and Namespace documents of one file, as they are read."""

    policies: list[_PolicyDraft] = field(default_factory=list)
    namespaces: list[_NamespaceDraft] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    # --- documents -------------------------------------------------------------------------

    def read_namespace(self, r: Reader, m: dict[Any, Any]) -> None:
        meta = r.mapping(m.get("metadata"), "metadata", required="add metadata: {name: ...}")
        need = "add metadata.name" if isinstance(m.get("metadata"), dict) else ""
        name = r.name(meta.get("name"), "metadata.name", naming.bad_dns1123_label, WHY_NAMESPACE,
                      required=need)
        labels = dict(r.labels(meta.get("labels"), "metadata.labels"))
        given = labels.get(NAMESPACE_NAME_LABEL)
        if name is not None and given is not None and given != name:
            r.add(f"metadata.labels.{NAMESPACE_NAME_LABEL}",
                  f"'{given}' is not the namespace's name '{name}'",
                  "Kubernetes sets this label to the namespace's own name: remove it")
        if name is None:
            return
        labels[NAMESPACE_NAME_LABEL] = name
        spec = NamespaceSpec(name, tuple(sorted(labels.items())))
        self.namespaces.append(_NamespaceDraft(spec, r.origin))

    def read_policy(self, r: Reader, m: dict[Any, Any]) -> None:
        name, namespace, labels = _metadata(r, m)
        spec = r.mapping(
            m.get("spec"), "spec",
            required="a NetworkPolicy needs spec.podSelector ({} selects every pod of its "
            "namespace)",
        )
        r.known(spec, "spec", SPEC_KEYS)
        if isinstance(m.get("spec"), dict) and "podSelector" not in spec:
            r.add("spec.podSelector", "is missing",
                  "write podSelector: {} to select every pod of the namespace, or give "
                  "matchLabels")
        selector = _selector(r, spec.get("podSelector"), "spec.podSelector") or LabelSelector()
        types = _policy_types(r, spec.get("policyTypes"))
        ingress = _rules(r, spec.get("ingress"), "spec.ingress", "from", self.warnings)
        egress = _rules(r, spec.get("egress"), "spec.egress", "to", self.warnings)
        if not types:  # the API server's default: Ingress, and Egress if there are egress rules
            has_egress = isinstance(spec.get("egress"), list) and bool(spec["egress"])
            types = ("Ingress", "Egress") if has_egress else ("Ingress",)
        for direction, rules in (("Ingress", ingress), ("Egress", egress)):
            if rules and direction not in types:
                self.warnings.append(Problem(
                    r.origin.where, f"spec.{direction.lower()}",
                    f"is ignored: spec.policyTypes does not list {direction}",
                    f"add {direction} to policyTypes, or remove these rules",
                ))
        if name is None:
            return
        policy = NetworkPolicySpec(name, namespace, selector, types, ingress, egress, labels)
        self.policies.append(_PolicyDraft(policy, r.origin))

    # --- the whole file --------------------------------------------------------------------

    def finish(
        self, pods: Sequence[PodDraft], used: Sequence[str]
    ) -> tuple[tuple[NamespaceSpec, ...], tuple[NetworkPolicySpec, ...], list[Problem]]:
        """(namespaces, policies, problems) once every document is read; warnings are added to
        `self.warnings`. `used` names the namespaces the other documents put objects in."""
        problems = duplicates(
            "NetworkPolicy", [(p.spec.key, p.origin, "metadata.name") for p in self.policies])
        first: dict[str, _NamespaceDraft] = {}
        for ns in self.namespaces:
            earlier = first.setdefault(ns.spec.name, ns)
            if earlier is not ns:
                problems.append(ns.origin.problem(
                    "metadata.name", f"namespace {ns.spec.name} is already declared in "
                    f"{earlier.origin.doc}", "declare each namespace once: merge their labels"))
        declared = {n.spec.name: n.spec for n in reversed(self.namespaces)}
        names = ["default", *used, *(p.spec.namespace for p in self.policies)]
        for name in names:
            declared.setdefault(name, NamespaceSpec(name, ((NAMESPACE_NAME_LABEL, name),),
                                                    declared=False))
        specs = [p.spec for p in pods]
        for draft in self.policies:
            self.warnings += _named_port_warnings(draft, specs, declared)
        namespaces = tuple(sorted(declared.values(), key=lambda n: n.name))
        return namespaces, tuple(p.spec for p in self.policies), problems


# --- fields ------------------------------------------------------------------------------------


def _metadata(r: Reader, m: dict[Any, Any]) -> tuple[str | None, str, tuple[tuple[str, str], ...]]:
    meta = r.mapping(m.get("metadata"), "metadata", required="add metadata: {name: ...}")
    need = "add metadata.name" if isinstance(m.get("metadata"), dict) else ""
    name = r.name(meta.get("name"), "metadata.name", naming.bad_dns1123_subdomain,
                  WHY_POLICY_NAME, required=need)
    namespace = "default"
    if "namespace" in meta:
        namespace = r.name(meta["namespace"], "metadata.namespace", naming.bad_dns1123_label,
                           WHY_NAMESPACE) or "default"
    return name, namespace, r.labels(meta.get("labels"), "metadata.labels")


def _policy_types(r: Reader, value: object) -> tuple[Direction, ...]:
    types: list[Direction] = []
    for i, item in enumerate(r.items(value, "spec.policyTypes")):
        path = f"spec.policyTypes[{i}]"
        kind = r.choice(item, path, POLICY_TYPES, "policyTypes lists Ingress, Egress or both")
        if kind is None:
            continue
        direction: Direction = "Ingress" if kind == "Ingress" else "Egress"
        if direction in types:
            r.add(path, f"{kind} is listed twice", "list each policy type once")
        else:
            types.append(direction)
    return tuple(types)


def _selector(r: Reader, value: object, path: str) -> LabelSelector | None:
    """A label selector; None when the field is absent (null), which is not the empty one."""
    if value is None:
        return None
    m = r.mapping(value, path)
    r.known(m, path, SELECTOR_KEYS)
    labels = r.labels(m.get("matchLabels"), f"{path}.matchLabels")
    expressions = []
    for i, item in enumerate(r.items(m.get("matchExpressions"), f"{path}.matchExpressions")):
        requirement = _requirement(r, item, f"{path}.matchExpressions[{i}]")
        if requirement is not None:
            expressions.append(requirement)
    return LabelSelector(labels, tuple(expressions))


def _requirement(r: Reader, item: object, path: str) -> Requirement | None:
    e = r.mapping(item, path)
    r.known(e, path, EXPRESSION_KEYS)
    key = r.text(e.get("key"), f"{path}.key", required="give the label key the expression tests")
    if key is not None and (bad := naming.bad_label_key(key)):
        r.add(f"{path}.key", bad, "a label key, such as app or example.com/tier")
    op = r.text(e.get("operator"), f"{path}.operator",
                required=f"give an operator: {OPERATORS_HINT}")
    if op is not None and op not in OPERATORS:
        r.add(f"{path}.operator", f"unknown operator '{op}'",
              did_you_mean(op, OPERATORS, OPERATORS_HINT))
        op = None
    values = []
    for j, raw in enumerate(r.items(e.get("values"), f"{path}.values")):
        text = r.text(raw, f"{path}.values[{j}]")
        if text is not None and (bad := naming.bad_label_value(text)):
            r.add(f"{path}.values[{j}]", bad, "label values: at most 63 letters, digits, '-', "
                  "'_' and '.'")
        elif text is not None:
            values.append(text)
    if op in ("In", "NotIn") and not e.get("values"):
        r.add(f"{path}.values", f"is empty: {op} needs at least one value",
              "list the label values to compare with, or use Exists")
    if op in ("Exists", "DoesNotExist") and e.get("values"):
        r.add(f"{path}.values", f"must be empty with {op}",
              f"remove values, or use {'In' if op == 'Exists' else 'NotIn'}")
    if key is None or op is None:
        return None
    return Requirement(key, _OPERATOR[op], tuple(values))


def _rules(
    r: Reader, value: object, path: str, peer_key: str, warnings: list[Problem]
) -> tuple[PolicyRule, ...]:
    rules = []
    other = "to" if peer_key == "from" else "from"
    for i, item in enumerate(r.items(value, path)):
        rpath = f"{path}[{i}]"
        m = r.mapping(item, rpath)
        if other in m:
            direction = "ingress" if peer_key == "from" else "egress"
            r.add(f"{rpath}.{other}", f"is not a field of {direction} rules",
                  f"{direction} rules list their peers under {peer_key}:")
        r.known({k: v for k, v in m.items() if k != other}, rpath, (peer_key, "ports"))
        peers = []
        for j, raw in enumerate(r.items(m.get(peer_key), f"{rpath}.{peer_key}")):
            peer = _peer(r, raw, f"{rpath}.{peer_key}[{j}]", warnings)
            if peer is not None:
                peers.append(peer)
        ports = []
        for j, raw in enumerate(r.items(m.get("ports"), f"{rpath}.ports")):
            port = _port(r, raw, f"{rpath}.ports[{j}]")
            if port is not None:
                ports.append(port)
        rules.append(PolicyRule(tuple(peers), tuple(ports)))
    return tuple(rules)


def _peer(r: Reader, item: object, path: str, warnings: list[Problem]) -> Peer | None:
    m = r.mapping(item, path)
    unknown = [k for k in m if k not in PEER_KEYS]
    for key in unknown:
        r.add(f"{path}.{key}", f"'{key}' is not a kind of peer a NetworkPolicy has",
              did_you_mean(str(key), PEER_KEYS, PEERS_HINT))
    pods = _selector(r, m.get("podSelector"), f"{path}.podSelector")
    namespaces = _selector(r, m.get("namespaceSelector"), f"{path}.namespaceSelector")
    block = None
    if m.get("ipBlock") is not None:
        block = _ip_block(r, m["ipBlock"], f"{path}.ipBlock", warnings)
    given = [k for k in PEER_KEYS if m.get(k) is not None]
    if not given:
        if not unknown and isinstance(item, dict):
            r.add(path, "names no peer", PEERS_HINT)
        return None
    if "ipBlock" in given and len(given) > 1:
        r.add(path, "has an ipBlock and a selector in one item",
              "an ipBlock stands alone: make them two items of the list (either then matches)")
        return None
    if block is None and "ipBlock" in given:
        return None  # reported
    return Peer(pods, namespaces, block)


def _ip_block(r: Reader, value: object, path: str, warnings: list[Problem]) -> IPBlock | None:
    m = r.mapping(value, path)
    r.known(m, path, IP_BLOCK_KEYS)
    cidr = _network(r, m.get("cidr"), f"{path}.cidr", warnings, required=True)
    excepts = []
    for k, raw in enumerate(r.items(m.get("except"), f"{path}.except")):
        epath = f"{path}.except[{k}]"
        net = _network(r, raw, epath, warnings)
        if net is None or cidr is None:
            continue
        if not _strictly_inside(net, cidr):
            what = "is all of" if net == cidr else "is not inside"
            r.add(epath, f"{net} {what} cidr {cidr}",
                  "an except range lies strictly inside cidr: the same addresses, a longer "
                  "prefix")
            continue
        excepts.append(net)
    return IPBlock(cidr, tuple(excepts)) if cidr is not None else None


def _strictly_inside(net: Network, cidr: Network) -> bool:
    """As the API server checks `except`: the same family, inside, and a longer prefix."""
    if isinstance(net, ipaddress.IPv4Network) and isinstance(cidr, ipaddress.IPv4Network):
        return net.prefixlen > cidr.prefixlen and net.subnet_of(cidr)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(cidr, ipaddress.IPv6Network):
        return net.prefixlen > cidr.prefixlen and net.subnet_of(cidr)
    return False


def _network(
    r: Reader, value: object, path: str, warnings: list[Problem], *, required: bool = False
) -> Network | None:
    example = "write an address and prefix length, such as 10.0.0.0/8 or 2001:db8::/32"
    text = r.text(value, path, required=example if required else "")
    if text is None:
        return None
    if "/" not in text:
        one = "128" if ":" in text else "32"
        r.add(path, f"{text} has no prefix length", f"add one: {text}/{one} is that address")
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        r.add(path, f"'{text}' is not a CIDR", example)
        return None
    if ipaddress.ip_interface(text).ip != net.network_address:
        # Kubernetes takes it (a legacy field) and means the network: say so.
        warnings.append(Problem(r.origin.where, path, f"{text} has host bits set: it means {net}",
                                f"write the network address: {net}"))
    return net


def _port(r: Reader, item: object, path: str) -> PolicyPort | None:
    m = r.mapping(item, path)
    r.known(m, path, PORT_KEYS)
    protocol = r.choice(m.get("protocol"), f"{path}.protocol", PROTOCOLS,
                        "NetworkPolicy ports are TCP, UDP or SCTP") or "TCP"
    raw = m.get("port")
    port: int | str | None = None
    if isinstance(raw, str):
        if bad := naming.bad_port_name(raw):
            hint = ("write the number without quotes" if raw.isdigit() else
                    "a port number, or the name of a container port (containers[].ports[].name)")
            r.add(f"{path}.port", bad, hint)
        else:
            port = raw
    elif raw is not None:
        port = r.integer(raw, f"{path}.port", 1, 65535,
                         "a port number is 1..65535, or the name of a container port")
    end = r.integer(m.get("endPort"), f"{path}.endPort", 1, 65535, "a port number is 1..65535")
    if end is not None:
        if raw is None:
            r.add(f"{path}.endPort", "is given without port",
                  "endPort ends the range that port starts: add port")
            end = None
        elif isinstance(raw, str):
            r.add(f"{path}.endPort", f"cannot end a range that starts at a named port ({raw})",
                  "give port as a number, or remove endPort")
            end = None
        elif isinstance(port, int) and end < port:
            r.add(f"{path}.endPort", f"{end} is below port {port}",
                  "endPort is the last port of the range: at least port")
            end = None
    if raw is not None and port is None:
        return None  # reported
    return PolicyPort(_PROTOCOL.get(protocol, "TCP"), port, end)


# --- across documents --------------------------------------------------------------------------


def _named_port_warnings(
    draft: _PolicyDraft, pods: Sequence[PodSpec], namespaces: dict[str, NamespaceSpec]
) -> list[Problem]:
    """Named ports that no pod they would resolve on declares (with that protocol). Kubernetes
    accepts them; the rule then allows nothing through them, which is worth a warning."""
    policy = draft.spec
    out = []
    for direction in POLICY_TYPES:
        for i, rule in enumerate(policy.rules(direction)):
            targets = (_selected(policy, pods) if direction == "Ingress"
                       else _destinations(policy, rule, pods, namespaces))
            for j, port in enumerate(rule.ports):
                if not isinstance(port.port, str):
                    continue
                named = [(pod, n) for pod in targets for c in pod.containers
                         for n in c.named_ports if n.name == port.port]
                if any(n.protocol == port.protocol for _, n in named):
                    continue
                whose = ("no pod this policy selects" if direction == "Ingress"
                         else "no pod this rule allows traffic to")
                hint = (f"name the port in those pods' containers[].ports[].name (protocol "
                        f"{port.protocol}), or give its number")
                if named:
                    pod, other = named[0]
                    hint = (f"{pod.key} has '{other.name}' as {other.protocol}: add protocol: "
                            f"{other.protocol} to this port")
                out.append(Problem(
                    draft.origin.where, f"spec.{direction.lower()}[{i}].ports[{j}].port",
                    f"{whose} has a container port named '{port.port}' ({port.protocol}): "
                    "the rule allows nothing through it", hint,
                ))
    return out


def _selected(policy: NetworkPolicySpec, pods: Sequence[PodSpec]) -> list[PodSpec]:
    return [p for p in pods if policy.selects(p.namespace, p.label_dict())]


def _destinations(
    policy: NetworkPolicySpec, rule: PolicyRule, pods: Sequence[PodSpec],
    namespaces: dict[str, NamespaceSpec],
) -> list[PodSpec]:
    """Pods an egress rule may reach: those its selectors pick, or any pod when it has no
    peers or an ipBlock (which may hold pods' addresses, not decided yet)."""
    if not rule.peers or any(peer.ip_block is not None for peer in rule.peers):
        return list(pods)

    def labels_of(namespace: str) -> dict[str, str]:
        ns = namespaces.get(namespace)
        return ns.label_dict() if ns is not None else {}

    return [p for p in pods if any(
        peer.selects_pod(policy.namespace, p.namespace, p.label_dict(), labels_of(p.namespace))
        for peer in rule.peers)]
