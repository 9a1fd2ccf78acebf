"""NetworkPolicy and Namespace documents into `model.policies`: selectors' semantics, the API
server's defaults, namespaces and their labels, named container ports."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from podnet.errors import TopologyError
from podnet.model import load_topology
from podnet.model.policies import (
    IPBlock,
    LabelSelector,
    NamespaceSpec,
    NetworkPolicySpec,
    Peer,
    PolicyPort,
    PolicyRule,
    Requirement,
)
from podnet.model.types import NamedPort


def policies(text: str) -> tuple[NetworkPolicySpec, ...]:
    return load_topology(textwrap.dedent(text)).policies


def one(spec: str, namespace: str = "default") -> NetworkPolicySpec:
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    (found,) = policies(f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                        f"metadata: {{name: p, namespace: {namespace}}}\nspec:\n{body}")
    return found


@pytest.mark.parametrize(("operator", "values", "labels", "expected"), [
    ("In", ("a", "b"), {"k": "a"}, True),
    ("In", ("a", "b"), {"k": "c"}, False),
    ("In", ("a",), {}, False),
    ("NotIn", ("a",), {"k": "b"}, True),
    ("NotIn", ("a",), {"k": "a"}, False),
    ("NotIn", ("a",), {}, True),  # an absent key is in no list
    ("Exists", (), {"k": ""}, True),
    ("Exists", (), {"other": "x"}, False),
    ("DoesNotExist", (), {}, True),
    ("DoesNotExist", (), {"k": "a"}, False),
])
def test_requirements_match_as_kubernetes_does(
    operator: str, values: tuple[str, ...], labels: dict[str, str], expected: bool
) -> None:
    requirement = Requirement("k", operator, values)  # type: ignore[arg-type]
    assert requirement.matches(labels) is expected


def test_a_selector_needs_all_its_labels_and_expressions_and_the_empty_one_takes_all() -> None:
    selector = LabelSelector((("app", "web"),), (Requirement("tier", "NotIn", ("db",)),))
    assert selector.matches({"app": "web"})
    assert selector.matches({"app": "web", "tier": "front"})
    assert not selector.matches({"app": "web", "tier": "db"})
    assert not selector.matches({"tier": "front"})
    assert LabelSelector().empty and LabelSelector().matches({})
    assert selector.text() == "app=web,tier notin (db)"
    assert LabelSelector((), (Requirement("a", "Exists"), Requirement("b", "DoesNotExist"),
                              Requirement("c", "In", ("x", "y")))).text() == "a,!b,c in (x,y)"


def test_ip_blocks_hold_addresses_of_their_own_family_outside_their_exceptions() -> None:
    block = IPBlock(ipaddress.ip_network("172.17.0.0/16"), (ipaddress.ip_network("172.17.1.0/24"),))
    assert block.contains(ipaddress.ip_address("172.17.0.9"))
    assert not block.contains(ipaddress.ip_address("172.17.1.9"))
    assert not block.contains(ipaddress.ip_address("172.18.0.1"))
    assert not block.contains(ipaddress.ip_address("::ffff:172.17.0.9"))
    assert block.text() == "172.17.0.0/16 except 172.17.1.0/24"


def test_the_documentations_example_reads_as_written() -> None:
    """The first example of the Kubernetes documentation's Network Policies page."""
    policy = one("""\
        podSelector: {matchLabels: {role: db}}
        policyTypes: [Ingress, Egress]
        ingress:
        - from:
          - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
          - namespaceSelector: {matchLabels: {project: myproject}}
          - podSelector: {matchLabels: {role: frontend}}
          ports: [{protocol: TCP, port: 6379}]
        egress:
        - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
          ports: [{protocol: TCP, port: 5978}]
        """)
    assert policy.key == "default/p"
    assert policy.pod_selector == LabelSelector((("role", "db"),))
    assert policy.policy_types == ("Ingress", "Egress")
    block = IPBlock(ipaddress.ip_network("172.17.0.0/16"), (ipaddress.ip_network("172.17.1.0/24"),))
    assert policy.ingress == (PolicyRule(
        (Peer(ip_block=block), Peer(namespace_selector=LabelSelector((("project", "myproject"),))),
         Peer(pod_selector=LabelSelector((("role", "frontend"),)))),
        (PolicyPort("TCP", 6379),)),)
    assert policy.egress == (PolicyRule((Peer(ip_block=IPBlock(
        ipaddress.ip_network("10.0.0.0/24"))),), (PolicyPort("TCP", 5978),)),)


@pytest.mark.parametrize(("spec", "types"), [
    ("podSelector: {}\n", ("Ingress",)),
    ("podSelector: {}\ningress: [{}]\n", ("Ingress",)),
    ("podSelector: {}\negress: [{}]\n", ("Ingress", "Egress")),  # Ingress always
    ("podSelector: {}\negress: []\n", ("Ingress",)),  # no egress rules: no Egress
    ("podSelector: {}\npolicyTypes: []\negress: [{}]\n", ("Ingress", "Egress")),
    ("podSelector: {}\npolicyTypes: [Egress]\n", ("Egress",)),
    ("podSelector: {}\npolicyTypes: [Egress, Ingress]\n", ("Egress", "Ingress")),
])
def test_policy_types_default_as_the_api_server_sets_them(
    spec: str, types: tuple[str, ...]
) -> None:
    assert one(spec).policy_types == types


def test_rules_of_a_type_the_policy_lacks_do_nothing() -> None:
    policy = one("podSelector: {}\npolicyTypes: [Egress]\ningress: [{}]\n")
    assert policy.ingress == (PolicyRule(),)  # kept as written
    assert policy.rules("Ingress") == () and not policy.affects("Ingress")
    spec = load_topology(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n"
        "spec: {podSelector: {}, policyTypes: [Egress], ingress: [{}]}\n")
    assert [w.field for w in spec.warnings] == ["spec.ingress"]


def test_ports_default_to_tcp_and_keep_names_and_ranges() -> None:
    policy = one("""\
        podSelector: {}
        ingress:
        - ports: [{port: 80}, {port: http}, {protocol: UDP}, {protocol: SCTP, port: 9000,
                   endPort: 9100}]
        """)
    assert policy.ingress[0].ports == (
        PolicyPort("TCP", 80), PolicyPort("TCP", "http"), PolicyPort("UDP"),
        PolicyPort("SCTP", 9000, 9100))
    assert [p.text() for p in policy.ingress[0].ports] == [
        "80/TCP", "http/TCP", "<any>/UDP", "9000-9100/SCTP"]


def test_null_selectors_are_absent_and_empty_ones_select_everything() -> None:
    policy = one("""\
        podSelector: {}
        ingress:
        - from:
          - {namespaceSelector: {}, podSelector: null}
          - {podSelector: {}}
        """)
    peers = policy.ingress[0].peers
    assert peers[0] == Peer(namespace_selector=LabelSelector())
    assert peers[1] == Peer(pod_selector=LabelSelector())
    assert peers[0].text() == "NamespaceSelector: <none>"


def test_ipv6_blocks_and_host_bits() -> None:
    spec = load_topology(textwrap.dedent("""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p}
        spec:
          podSelector: {}
          egress:
          - to:
            - ipBlock: {cidr: "2001:db8::/32", except: ["2001:db8:1::/48"]}
            - ipBlock: {cidr: 192.168.1.1/24}
        """))
    (first, second) = spec.policies[0].egress[0].peers
    assert first.ip_block == IPBlock(ipaddress.ip_network("2001:db8::/32"),
                                     (ipaddress.ip_network("2001:db8:1::/48"),))
    assert second.ip_block == IPBlock(ipaddress.ip_network("192.168.1.0/24"))
    assert [w.message for w in spec.warnings] == [
        "192.168.1.1/24 has host bits set: it means 192.168.1.0/24"]


def test_every_namespace_is_labelled_with_its_name() -> None:
    spec = load_topology(textwrap.dedent("""\
        apiVersion: v1
        kind: Namespace
        metadata: {name: dev, labels: {team: a}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: p, namespace: shop}
        spec: {containers: [{name: c}]}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny, namespace: audit}
        spec: {podSelector: {}}
        """))
    assert spec.namespaces == (
        NamespaceSpec("audit", (("kubernetes.io/metadata.name", "audit"),)),
        NamespaceSpec("default", (("kubernetes.io/metadata.name", "default"),)),
        NamespaceSpec("dev", (("kubernetes.io/metadata.name", "dev"), ("team", "a"))),
        NamespaceSpec("shop", (("kubernetes.io/metadata.name", "shop"),)),
    )


def test_named_container_ports_keep_their_protocol() -> None:
    spec = load_topology(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: c
            ports:
            - {containerPort: 53, protocol: UDP, name: dns}
            - {containerPort: 8080, name: http}
            - {containerPort: 9000}
        """))
    assert spec.pods[0].containers[0].named_ports == (
        NamedPort("dns", 53, "UDP"), NamedPort("http", 8080, "TCP"))


def test_a_file_without_policies_has_none_and_no_warnings() -> None:
    spec = load_topology("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n")  # no policy
    assert spec.policies == () and spec.warnings == ()
    assert [n.name for n in spec.namespaces] == ["default"]


def test_bad_policies_are_refused_with_the_rest_of_the_file() -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(textwrap.dedent("""\
            apiVersion: v1
            kind: Pod
            metadata: {name: p}
            spec: {containers: []}
            ---
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: p}
            spec: {podSelector: {matchExpressions: [{key: a, operator: Equals}]}}
            """))
    fields = [p.field for p in info.value.problems]
    assert fields == ["spec.containers", "spec.podSelector.matchExpressions[0].operator"]
