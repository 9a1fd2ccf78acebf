"""The policy engine against cases written from the upstream conformance tests (test/e2e/network/
netpol: three namespaces x, y, z of pods a, b, c, and a truth table of who reaches whom) and
from the Kubernetes documentation's examples. Policies are read by the loader, so its defaults
are part of what is tested."""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Iterable

import pytest

from podnet.model import load_topology
from podnet.model.policies import Address
from podnet.policy.select import isolating
from podnet.policy.truth import Probe, TruthTable, truth_table, truth_tables
from podnet.policy.verdict import Allowance, verdict
from podnet.policy.words import side_sentence, verdict_sentence
from podnet.policy.world import Host, Member, World

NAMESPACES = ("x", "y", "z")
NAMES = ("a", "b", "c")
PODS = tuple(f"{ns}/{n}" for ns in NAMESPACES for n in NAMES)


def pod_docs(keys: Iterable[str], ports: str) -> list[str]:
    docs = []
    for key in keys:
        ns, name = key.split("/")
        docs.append(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, "
                    f"labels: {{pod: {name}}}}}\nspec: {{containers: [{{name: c, ports: "
                    f"{ports}}}]}}\n")
    return docs


UPSTREAM_PORTS = ("[{containerPort: 80, name: serve-80-tcp}, {containerPort: 81, name: "
                  "serve-81-tcp}, {containerPort: 80, protocol: UDP, name: serve-80-udp}, "
                  "{containerPort: 81, protocol: UDP, name: serve-81-udp}]")


def policy(name: str, namespace: str, spec: str) -> str:
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}")


def world_of(text: str, nodes: dict[str, str] | None = None,
             addresses: dict[str, tuple[str, ...]] | None = None) -> World:
    """The pods of `text` on nodes (default: a and c on n1, b on n2), 10.0.<ns>.<pod> each."""
    spec = load_topology(text)
    members = []
    for i, pod in enumerate(spec.pods):
        node = (nodes or {}).get(pod.key) or ("n2" if pod.name == "b" else "n1")
        ips = (addresses or {}).get(pod.key) or (f"10.0.{i // 3 + 1}.{i % 3 + 1}",
                                                  f"fd00::{i + 1}")
        members.append(Member(pod.namespace, pod.name, node,
                              tuple(ipaddress.ip_address(a) for a in ips), pod.labels,
                              tuple(n for c in pod.containers for n in c.named_ports)))
    hosts = (Host("n1", (ipaddress.ip_address("172.18.0.2"),)),
             Host("n2", (ipaddress.ip_address("172.18.0.3"),)))
    return World(tuple(members), hosts, spec.namespaces,
                 tuple(sorted(spec.policies, key=lambda p: p.key)))


def upstream(*policies: str) -> World:
    return world_of("---\n".join([*pod_docs(PODS, UPSTREAM_PORTS), *policies]))


class Reachability:
    """The upstream tests' expectations: everything reachable, then exceptions."""

    def __init__(self) -> None:
        self.expected = {(a, b): True for a in PODS for b in PODS}

    def expect(self, src: str, dst: str, ok: bool) -> Reachability:
        self.expected[(src, dst)] = ok
        return self

    def expect_peer(self, ok: bool, src_ns: str = "", src: str = "", dst_ns: str = "",
                    dst: str = "") -> Reachability:
        for a, b in self.expected:
            if all((not want or got == want) for want, got in (
                    (src_ns, a.split("/")[0]), (src, a.split("/")[1]),
                    (dst_ns, b.split("/")[0]), (dst, b.split("/")[1]))):
                self.expected[(a, b)] = ok
        return self

    def all_ingress(self, dst: str, ok: bool) -> Reachability:
        for src in PODS:
            self.expected[(src, dst)] = ok
        return self

    def mismatches(self, table: TruthTable) -> list[str]:
        """As upstream, pods reaching themselves are left out (ignoreLoopback)."""
        return [f"{a} -> {b}: expected {ok}\n{table.text()}"
                for (a, b), ok in self.expected.items()
                if a != b and table.expected(a, b) != ok]


def assert_table(world: World, reach: Reachability, port: int = 80, protocol: str = "TCP"
                 ) -> None:
    table = truth_table(world, Probe(port, protocol))  # type: ignore[arg-type]
    assert reach.mismatches(table) == []
    six = truth_table(world, Probe(port, protocol, family=6))  # type: ignore[arg-type]
    assert reach.mismatches(six) == []  # the same policies, over IPv6


# --- upstream: NetworkPolicy between server and client ----------------------------------------

DENY_INGRESS = "podSelector: {}\n"


def test_default_deny_ingress() -> None:
    world = upstream(policy("deny-ingress", "x", DENY_INGRESS))
    assert_table(world, Reachability().expect_peer(False, dst_ns="x"))


def test_default_deny_all() -> None:
    world = upstream(policy("deny-all", "x", "podSelector: {}\npolicyTypes: [Ingress, Egress]\n"))
    assert_table(world, Reachability().expect_peer(False, dst_ns="x")
                 .expect_peer(False, src_ns="x"))


def test_allow_from_pods_of_the_server_namespace_by_pod_selector() -> None:
    world = upstream(policy("x-a-allows-x-b", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
        """))
    assert_table(world, Reachability().all_ingress("x/a", False).expect("x/b", "x/a", True))


def test_deny_all_then_allow_all_to_a_target() -> None:
    world = upstream(policy("deny-all", "x", DENY_INGRESS), policy("allow-all-to-a", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{podSelector: {}, namespaceSelector: {}}]}]
        """))
    assert_table(world, Reachability().expect_peer(False, dst_ns="x").all_ingress("x/a", True))


def test_namespace_selector_by_the_name_label() -> None:
    world = upstream(policy("allow-client-a-via-ns-selector", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]}]
        """))
    assert_table(world, Reachability().expect_peer(False, src_ns="x", dst_ns="x", dst="a")
                 .expect_peer(False, src_ns="z", dst_ns="x", dst="a"))


def test_pod_selector_or_namespace_selector() -> None:
    world = upstream(policy("allow-ns-y-match-selector", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from:
          - namespaceSelector:
              matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]
          - podSelector: {matchLabels: {pod: b}}
        """))
    assert_table(world, Reachability().expect("x/c", "x/a", False))


def test_pod_selector_and_namespace_selector() -> None:
    world = upstream(policy("allow-ns-y-podselector-and-nsselector", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from:
          - namespaceSelector:
              matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]
            podSelector: {matchLabels: {pod: b}}
        """))
    assert_table(world, Reachability().all_ingress("x/a", False).expect("y/b", "x/a", True)
                 .expect("z/b", "x/a", True))


def test_multiple_pod_selectors_and_namespace_selectors() -> None:
    world = upstream(policy("allow-ns-y-z-pod-b-c", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from:
          - namespaceSelector:
              matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]
            podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}
        """))
    assert_table(world, Reachability().expect_peer(False, src_ns="x", dst_ns="x", dst="a")
                 .expect("y/a", "x/a", False).expect("z/a", "x/a", False))


def test_ports_and_stacked_policies() -> None:
    allow_81 = policy("allow-81", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]
          ports: [{port: 81, protocol: TCP}]
        """)
    world = upstream(allow_81)
    allowed = (Reachability().expect_peer(False, src_ns="x", dst_ns="x", dst="a")
               .expect_peer(False, src_ns="z", dst_ns="x", dst="a"))
    assert_table(world, allowed, 81)
    assert_table(world, Reachability().all_ingress("x/a", False), 80)
    world = upstream(allow_81, policy("allow-80", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]
          ports: [{port: 80, protocol: TCP}]
        """))
    assert_table(world, allowed, 80)  # policies add up


def test_named_ports_ingress_and_egress() -> None:
    world = upstream(policy("allow-all", "x", """\
        podSelector: {}
        ingress: [{ports: [{port: serve-81-tcp}]}]
        """))
    assert_table(world, Reachability(), 81)
    assert_table(world, Reachability().expect_peer(False, dst_ns="x"), 80)
    world = upstream(policy("allow-egress", "x", """\
        podSelector: {}
        policyTypes: [Egress]
        egress: [{ports: [{port: serve-80-tcp}]}]
        """))
    assert_table(world, Reachability(), 80)
    assert_table(world, Reachability().expect_peer(False, src_ns="x"), 81)


def test_egress_to_one_namespace_and_udp() -> None:
    world = upstream(policy("allow-to-y", "x", """\
        podSelector: {matchLabels: {pod: a}}
        policyTypes: [Egress]
        egress:
        - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]
          ports: [{protocol: UDP}]
        """))
    reach = Reachability()
    for dst in PODS:
        reach.expect("x/a", dst, dst.startswith("y/"))
    assert_table(world, reach, 80, "UDP")
    assert_table(world, Reachability().expect_peer(False, src_ns="x", src="a"), 80, "TCP")


def test_an_address_in_both_cidr_and_except_is_allowed_by_another_peer() -> None:
    """Upstream's IPBlock overlap case: the except cuts one peer, not the rule."""
    world = upstream(policy("overlap", "x", """\
        podSelector: {matchLabels: {pod: a}}
        egress:
        - to:
          - ipBlock: {cidr: 10.0.0.0/8, except: [10.0.2.0/24]}
          - podSelector: {}
            namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
        """))
    assert verdict(world, "x/a", "y/b", 80).allowed  # 10.0.2.2: excepted, but selected
    assert not verdict(world, "x/a", "10.0.2.9", 80).allowed
    assert verdict(world, "x/a", "10.9.9.9", 80).allowed
    assert not verdict(world, "x/a", "fd00:99::5", 80).allowed  # an IPv4 block, no IPv6


# --- the documentation's examples -------------------------------------------------------------


def docs_world() -> World:
    pods = [
        "apiVersion: v1\nkind: Pod\nmetadata: {name: db, labels: {role: db}}\n"
        "spec: {containers: [{name: c, ports: [{containerPort: 6379}]}]}\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: front, labels: {role: frontend}}\n"
        "spec: {containers: [{name: c}]}\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: other}\nspec: {containers: [{name: c}]}\n",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mine, labels: {project: myproject}}\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: any, namespace: mine}\n"
        "spec: {containers: [{name: c}]}\n",
    ]
    example = policy("test-network-policy", "default", """\
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
    return world_of("---\n".join([*pods, example]), addresses={
        "default/db": ("10.244.1.2",), "default/front": ("10.244.1.3",),
        "default/other": ("10.244.1.4",), "mine/any": ("10.244.1.5",)})


@pytest.mark.parametrize(("src", "dst", "port", "allowed"), [
    ("172.17.0.5", "default/db", 6379, True),  # the ipBlock
    ("172.17.1.5", "default/db", 6379, False),  # its except
    ("default/front", "default/db", 6379, True),  # the podSelector
    ("default/front", "default/db", 80, False),  # the port
    ("mine/any", "default/db", 6379, True),  # the namespaceSelector
    ("default/other", "default/db", 6379, False),
    ("default/db", "10.0.0.7", 5978, True),  # egress to the CIDR
    ("default/db", "10.0.0.7", 80, False),
    ("default/db", "10.0.1.7", 5978, False),
    ("default/db", "default/front", 5978, False),  # isolated for egress: pods too
    ("default/front", "default/other", 80, True),  # neither isolated
])
def test_the_documentations_first_example(src: str, dst: str, port: int, allowed: bool) -> None:
    assert verdict(docs_world(), src, dst, port).allowed is allowed


def test_and_versus_or_from_the_documentation() -> None:
    docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: alice, labels: {user: alice}}\n",
        *pod_docs(["alice/client", "alice/server", "default/client", "default/server"], "[]"),
    ]
    both = policy("p", "default", """\
        podSelector: {matchLabels: {pod: server}}
        ingress:
        - from:
          - namespaceSelector: {matchLabels: {user: alice}}
            podSelector: {matchLabels: {pod: client}}
        """)
    world = world_of("---\n".join([*docs, both]))
    assert verdict(world, "alice/client", "default/server", 80).allowed
    assert not verdict(world, "alice/server", "default/server", 80).allowed
    assert not verdict(world, "default/client", "default/server", 80).allowed
    either = policy("p", "default", """\
        podSelector: {matchLabels: {pod: server}}
        ingress:
        - from:
          - namespaceSelector: {matchLabels: {user: alice}}
          - podSelector: {matchLabels: {pod: client}}
        """)
    world = world_of("---\n".join([*docs, either]))
    assert verdict(world, "alice/server", "default/server", 80).allowed  # user=alice
    assert verdict(world, "default/client", "default/server", 80).allowed  # role=client here


@pytest.mark.parametrize(("spec", "ingress", "egress"), [
    ("podSelector: {}\npolicyTypes: [Ingress]\n", False, True),  # default deny ingress
    ("podSelector: {}\ningress: [{}]\npolicyTypes: [Ingress]\n", True, True),  # allow all
    ("podSelector: {}\npolicyTypes: [Egress]\n", True, False),  # default deny egress
    ("podSelector: {}\negress: [{}]\npolicyTypes: [Egress]\n", True, True),  # allow all egress
    ("podSelector: {}\npolicyTypes: [Ingress, Egress]\n", False, False),  # deny all
])
def test_the_documentations_default_policies(spec: str, ingress: bool, egress: bool) -> None:
    world = world_of("---\n".join([*pod_docs(["dev/a", "dev/b", "other/c"], "[]"),
                                   policy("p", "dev", spec)]))
    assert verdict(world, "other/c", "dev/a", 80).allowed is ingress
    assert verdict(world, "dev/a", "other/c", 80).allowed is egress
    assert verdict(world, "dev/a", "dev/b", 80).allowed is (ingress and egress)


@pytest.mark.parametrize(("port", "allowed"), [(31999, False), (32000, True), (32400, True),
                                               (32768, True), (32769, False)])
def test_a_port_range_from_the_documentation(port: int, allowed: bool) -> None:
    world = world_of("---\n".join([*pod_docs(["default/db"], "[]"), policy("p", "default", """\
        podSelector: {}
        policyTypes: [Egress]
        egress:
        - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
          ports: [{protocol: TCP, port: 32000, endPort: 32768}]
        """)]))
    assert verdict(world, "default/db", "10.0.0.9", port).allowed is allowed
    assert not verdict(world, "default/db", "10.0.0.9", port, "UDP").allowed


# --- the engine's own rules -------------------------------------------------------------------


def test_why_a_connection_is_allowed_or_denied() -> None:
    world = upstream(policy("deny", "x", DENY_INGRESS), policy("allow-b", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}, {ports: [{port: 81}]}]
        """))
    v = verdict(world, "x/b", "x/a", 81)
    assert v.allowed and v.ingress.reason == "allowed"
    assert v.ingress.allowed_by == (Allowance("x/allow-b", "Ingress", 0),
                                    Allowance("x/allow-b", "Ingress", 1))
    assert v.ingress.isolated_by == ("x/allow-b", "x/deny")
    assert v.egress.reason == "not-isolated"
    v = verdict(world, "y/a", "x/a", 80)
    assert not v.allowed and v.denied_by is v.ingress and v.ingress.allowed_by == ()
    assert verdict(world, "x/a", "x/a", 80).ingress.reason == "self"
    assert verdict(world, "n1", "x/a", 80).ingress.reason == "node"  # x/a runs on n1
    assert verdict(world, "n2", "x/a", 80).ingress.reason == "denied"  # another node
    assert verdict(world, "198.51.100.7", "x/a", 80).egress.reason == "no-pod"
    assert [p.key for p in isolating(world, world.pod("x/a"), "Egress")] == []  # type: ignore


def test_egress_is_judged_before_ingress_and_both_must_allow() -> None:
    world = upstream(policy("deny-out", "x", "podSelector: {}\npolicyTypes: [Egress]\n"),
                     policy("deny-in", "y", DENY_INGRESS))
    v = verdict(world, "x/a", "y/a", 80)
    assert not v.egress.allowed and not v.ingress.allowed and v.denied_by is v.egress


def test_named_ports_resolve_on_the_destination_pod() -> None:
    docs = pod_docs(["x/a"], "[{containerPort: 8080, name: web}]")
    docs += pod_docs(["x/b"], "[{containerPort: 9090, name: web}]")
    docs += pod_docs(["x/c"], "[{containerPort: 8080, protocol: UDP, name: web}]")
    world = world_of("---\n".join([*docs, policy("p", "x", """\
        podSelector: {}
        ingress: [{ports: [{port: web}]}]
        """)]))
    assert verdict(world, "x/b", "x/a", 8080).allowed
    assert not verdict(world, "x/b", "x/a", 9090).allowed
    assert verdict(world, "x/a", "x/b", 9090).allowed
    assert not verdict(world, "x/a", "x/c", 8080).allowed  # its web is UDP
    assert verdict(world, "x/a", "x/c", 8080, "UDP").allowed is False  # a TCP rule


def test_rules_without_ports_allow_every_protocol_and_with_ports_only_theirs() -> None:
    world = upstream(policy("p", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}, {ports: [{protocol: SCTP}]}]
        """))
    assert verdict(world, "x/b", "x/a", None, "ICMP").allowed
    assert not verdict(world, "x/c", "x/a", None, "ICMP").allowed
    assert verdict(world, "x/c", "x/a", 9, "SCTP").allowed


def test_the_address_family_of_a_connection() -> None:
    world = upstream(policy("v6-only", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{ipBlock: {cidr: "fd00::/64"}}]}]
        """))
    assert not verdict(world, "y/a", "x/a", 80).allowed
    assert verdict(world, "y/a", "x/a", 80, family=6).allowed
    v = verdict(world, "fd00::4", "x/a", 80)  # y/a's address: the pod itself
    assert v.src.pod is not None and v.src.label == "y/a" and v.allowed
    with pytest.raises(ValueError, match="no IPv6"):
        verdict(world_of("---\n".join(pod_docs(["x/a"], "[]")), addresses={
            "x/a": ("10.0.0.1",)}), "x/a", "fd00::9", 80)
    with pytest.raises(ValueError, match="no pod"):
        verdict(world, "x/nobody", "x/a", 80)


def test_truth_tables_print_and_compare_both_ways() -> None:
    world = upstream(policy("deny", "x", DENY_INGRESS))
    table = truth_table(world, Probe(80), ["x/a", "y/a"])
    assert table.text() == "80/TCP x/a y/a\nx/a      .   .\ny/a      X   ."
    assert table.allowed_count() == 3
    observed = {("x/a", "x/a"): True, ("x/a", "y/a"): False, ("y/a", "x/a"): True}
    result = table.compare(observed)
    assert result.checked == 3 and not result.ok
    assert [(m.src, m.dst) for m in result.denied_but_expected_allowed] == [("x/a", "y/a")]
    assert [(m.src, m.dst) for m in result.allowed_but_expected_denied] == [("y/a", "x/a")]
    assert result.mismatches[1].verdict.ingress.isolated_by == ("x/deny",)
    with pytest.raises(ValueError, match="no such pod: q/q"):
        truth_table(world, Probe(80), ["q/q"])
    tables = truth_tables(world, [Probe(80), Probe(53, "UDP", 6)])
    assert [t.probe.text() for t in tables] == ["80/TCP", "53/UDP IPv6"]
    assert all(len(t.cells) == len(PODS) ** 2 for t in tables)


def test_sentences() -> None:
    docs = pod_docs(["dev/demo-x", "other/intruder"], "[]")
    world = world_of("---\n".join([*docs, policy("default-deny-ingress", "dev", DENY_INGRESS)]),
                     nodes={"dev/demo-x": "n1", "other/intruder": "n2"})
    v = verdict(world, "other/intruder", "dev/demo-x", 80)
    assert verdict_sentence(v) == (
        "dropped: dev/demo-x is isolated for ingress by NetworkPolicy dev/default-deny-ingress, "
        "and no policy allows other/intruder on 80/tcp")
    v = verdict(world, "dev/demo-x", "other/intruder", 53, "UDP")
    assert verdict_sentence(v) == (
        "allowed: other/intruder is not isolated for ingress: no NetworkPolicy selects it for "
        "ingress")
    assert side_sentence(v, v.egress) == (
        "dev/demo-x is not isolated for egress: no NetworkPolicy selects it for egress")


def address(text: str) -> Address:
    return ipaddress.ip_address(text)
