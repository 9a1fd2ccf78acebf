"""The nftables rules that enforce policies, as text: what each node gets, the comments that
name policies, address and port sets (exceptions cut out, ranges merged, named ports resolved
pod by pod), and limits nft sets (names, comments). Loading them into a kernel is
tests/kernel/test_policy_nft.py's part; evaluating them, test_policy_trace.py's."""

from __future__ import annotations

import ipaddress
import re
import textwrap

from podnet.model import load_topology
from podnet.model.policies import NetworkPolicySpec
from podnet.policy.comments import COMMENT_MAX, fit, isolated_comment, parse_comment
from podnet.policy.nft import policy_chains, policy_tables
from podnet.policy.world import Host, Member, World

PODS = """\
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web2, namespace: dev, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 9090, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: dev, labels: {app: db}}
spec: {containers: [{name: c, ports: [{containerPort: 5432, name: pg}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: other, labels: {app: client}}
spec: {containers: [{name: c}]}
"""
PLACES = {"dev/web": ("n1", "10.244.1.5", "fd00:1::5"), "dev/web2": ("n2", "10.244.2.5", ""),
          "dev/db": ("n1", "10.244.1.6", "fd00:1::6"),
          "other/client": ("n2", "10.244.2.7", "fd00:2::7")}


def world(*policies: str) -> World:
    spec = load_topology("---\n".join([PODS, *(textwrap.dedent(p) for p in policies)]))
    members = []
    for pod in spec.pods:
        node, *ips = PLACES[pod.key]
        members.append(Member(pod.namespace, pod.name, node,
                              tuple(ipaddress.ip_address(a) for a in ips if a), pod.labels,
                              tuple(n for c in pod.containers for n in c.named_ports)))
    return World(tuple(members), (Host("n1"), Host("n2")), spec.namespaces,
                 tuple(sorted(spec.policies, key=lambda p: p.key)))


def policy(name: str, spec: str, namespace: str = "dev") -> str:
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}")


def block(text: str, kind: str, name: str) -> str:
    """The body of `kind name { ... }` in rendered text."""
    found = re.search(rf"^{kind} {re.escape(name)} {{\n(.*?)^}}", text, re.S | re.M)
    assert found, f"no {kind} {name} in:\n{text}"
    return textwrap.dedent(found[1])


def test_no_policy_or_no_isolated_pod_here_means_no_rules() -> None:
    assert policy_tables(world()) == {"n1": "", "n2": ""}
    only_client = world(policy("c", "podSelector: {}\n", namespace="other"))
    assert policy_chains(only_client, "n1") == ""
    assert "np-pod-in/other/client" in policy_chains(only_client, "n2")


def test_default_deny_ingress_is_a_map_a_pod_chain_and_a_drop_that_names_the_policy() -> None:
    text = policy_chains(world(policy("default-deny-ingress", "podSelector: {}\n")), "n1")
    assert block(text, "map", "np-ingress4") == textwrap.dedent("""\
        type ipv4_addr : verdict
        comment "pods of this node isolated for ingress: their chain"
        elements = {
          10.244.1.5 : goto np-pod-in/dev/web,
          10.244.1.6 : goto np-pod-in/dev/db,
        }
        """)
    assert block(text, "chain", "np-pod-in/dev/web") == textwrap.dedent("""\
        ip saddr 10.244.1.5 accept comment "np dev/web ingress: a pod may always reach itself"
        ip6 saddr fd00:1::5 accept comment "np dev/web ingress: a pod may always reach itself"
        drop comment "np dev/web ingress: isolated by dev/default-deny-ingress"
        """)
    assert block(text, "chain", "np-ingress") == textwrap.dedent("""\
        type filter hook forward priority filter + 10; policy accept;
        ct state established,related accept comment "np: packets of connections already allowed"
        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept comment "np: IPv6 neighbour discovery is no connection (as ARP)"
        ip daddr vmap @np-ingress4
        ip6 daddr vmap @np-ingress6
        """)  # noqa: E501
    assert "np-egress" not in text  # nobody isolated for egress: no egress chain at all


def test_a_policy_chain_is_shared_and_named_ports_resolve_pod_by_pod() -> None:
    w = world(policy("allow-web", """\
        podSelector: {matchLabels: {app: web}}
        ingress:
        - from: [{namespaceSelector: {matchLabels: {team: a}}}, {podSelector: {}}]
          ports: [{port: http}, {port: 80}, {port: 80, endPort: 90}, {port: 85},
                  {protocol: UDP}]
        """))
    one, two = policy_chains(w, "n1"), policy_chains(w, "n2")
    rules = block(one, "chain", "np-in/dev/allow-web").splitlines()
    assert rules == [
        "ip saddr @np-in/dev/allow-web/0/peers4 meta l4proto . th dport "
        '@np-in/dev/allow-web/0/ports accept comment "np dev/allow-web ingress[0]"',
        "ip saddr @np-in/dev/allow-web/0/peers4 ip daddr . meta l4proto . th dport "
        '@np-in/dev/allow-web/0/named4 accept comment "np dev/allow-web ingress[0]"',
        "ip6 saddr @np-in/dev/allow-web/0/peers6 meta l4proto . th dport "
        '@np-in/dev/allow-web/0/ports accept comment "np dev/allow-web ingress[0]"',
        "ip6 saddr @np-in/dev/allow-web/0/peers6 ip6 daddr . meta l4proto . th dport "
        '@np-in/dev/allow-web/0/named6 accept comment "np dev/allow-web ingress[0]"',
    ]
    assert "tcp . 80-90" in block(one, "set", "np-in/dev/allow-web/0/ports")  # merged
    assert "udp . 0-65535" in block(one, "set", "np-in/dev/allow-web/0/ports")
    assert "10.244.1.5 . tcp . 8080," in block(one, "set", "np-in/dev/allow-web/0/named4")
    assert "10.244.2.5 . tcp . 9090," in block(two, "set", "np-in/dev/allow-web/0/named4")
    assert "9090" not in one  # each node holds its own pods' ports
    peers = block(one, "set", "np-in/dev/allow-web/0/peers4")
    assert "10.244.1.5,\n  10.244.1.6,\n  10.244.2.5," in peers  # dev's pods, either peer
    assert "10.244.2.7" not in peers
    assert "named6" not in two  # dev/web2 has no IPv6 address


def test_ip_blocks_lose_their_exceptions_but_not_pods_other_peers_select() -> None:
    w = world(policy("out", """\
        podSelector: {matchLabels: {app: db}}
        policyTypes: [Egress]
        egress:
        - to:
          - ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24, 10.244.1.0/25]}
          - podSelector: {}
            namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}
          - ipBlock: {cidr: "2001:db8::/32", except: ["2001:db8::/33"]}
        """))
    text = policy_chains(w, "n1")
    elements = re.findall(r"^  (\S+),$", block(text, "set", "np-out/dev/out/0/peers4"), re.M)
    nets = [ipaddress.ip_network(e) for e in elements]
    inside = {str(a) for n in nets for a in (n.network_address, n.broadcast_address)}
    assert "10.244.2.7" in inside  # other/client: selected by the second peer
    assert not any(ipaddress.ip_address("10.244.2.8") in n for n in nets)
    assert not any(ipaddress.ip_address("10.244.1.5") in n for n in nets)
    assert any(ipaddress.ip_address("10.244.1.200") in n for n in nets)
    assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    assert "2001:db8:8000::/33" in block(text, "set", "np-out/dev/out/0/peers6")
    assert "fd00:2::7" in block(text, "set", "np-out/dev/out/0/peers6")


def test_egress_named_ports_resolve_on_the_destinations_the_peers_allow() -> None:
    w = world(policy("to-web", """\
        podSelector: {matchLabels: {app: db}}
        policyTypes: [Egress]
        egress:
        - to: [{podSelector: {matchLabels: {app: web}}}]
          ports: [{port: http}, {port: pg}]
        """))
    text = policy_chains(w, "n1")
    assert block(text, "chain", "np-out/dev/to-web").splitlines() == [
        "ip daddr . meta l4proto . th dport @np-out/dev/to-web/0/named4 accept comment "
        '"np dev/to-web egress[0]"',
        "ip6 daddr . meta l4proto . th dport @np-out/dev/to-web/0/named6 accept comment "
        '"np dev/to-web egress[0]"',
    ]
    named = block(text, "set", "np-out/dev/to-web/0/named4")
    assert "10.244.1.5 . tcp . 8080," in named and "10.244.2.5 . tcp . 9090," in named
    assert "5432" not in named  # dev/db is no peer of this rule
    assert "np-out/dev/to-web/0/peers4" not in text  # the elements carry the peers


def test_rules_without_peers_or_ports_and_a_policy_without_rules() -> None:
    w = world(policy("all", "podSelector: {}\ningress: [{}]\n"),
              policy("deny", "podSelector: {}\n"))
    text = policy_chains(w, "n1")
    assert block(text, "chain", "np-in/dev/all") == 'accept comment "np dev/all ingress[0]"\n'
    assert "np-in/dev/deny" not in text  # nothing to jump to: it only isolates
    assert block(text, "chain", "np-pod-in/dev/db").splitlines()[-2:] == [
        "jump np-in/dev/all", 'drop comment "np dev/db ingress: isolated by dev/all, dev/deny"']


def test_long_names_fit_nftables_and_comments_fit_128_bytes() -> None:
    long = "p" * 60 + "." + "q" * 60 + "." + "r" * 60
    policies = [policy(f"{long}{i}", "podSelector: {}\ningress: [{}]\n") for i in range(6)]
    text = policy_chains(world(*policies), "n1")
    for name in re.findall(r"^(?:chain|set|map) (\S+) \{", text, re.M):
        assert len(name) <= 200
    for comment in re.findall(r'comment "([^"]*)"', text):
        assert len(comment.encode()) < COMMENT_MAX
    assert "+5 more" in text or "+4 more" in text
    names = [f"dev/{long}{i}" for i in range(6)]
    cut = isolated_comment("dev/web", "Ingress", names)
    found = parse_comment(cut)
    assert found is not None and found.kind == "isolated" and found.policies == tuple(
        fit(n) for n in names[: len(found.policies)])
    assert fit(names[0]) != fit(names[1]) and fit("dev/web") == "dev/web"


def test_comments_round_trip() -> None:
    allow = parse_comment("np dev/allow-web ingress[3]")
    assert allow is not None and (allow.kind, allow.subject, allow.direction, allow.index) == (
        "allow", "dev/allow-web", "Ingress", 3)
    own = parse_comment("np dev/web egress: a pod may always reach itself")
    assert own is not None and (own.kind, own.direction) == ("self", "Egress")
    assert parse_comment("np: packets of connections already allowed") is None
    assert parse_comment("podnet ipMasq: net") is None and parse_comment(None) is None


def test_the_rendering_is_stable() -> None:
    a = world(policy("x", "podSelector: {}\ningress: [{from: [{podSelector: {}}]}]\n"))
    assert policy_tables(a) == policy_tables(a)
    reordered = World(tuple(reversed(a.pods)), a.nodes, a.namespaces, a.policies)
    assert policy_tables(reordered)["n1"].count("\n") == policy_tables(a)["n1"].count("\n")


def test_policies_of_another_namespace_select_nothing_here() -> None:
    w = world(policy("deny", "podSelector: {}\n", namespace="elsewhere"))
    assert policy_tables(w) == {"n1": "", "n2": ""}
    assert isinstance(w.policies[0], NetworkPolicySpec)


def test_the_world_of_a_lab_layout() -> None:
    """`world_from` reads what the planner decided: pods where it put them, with the spec's
    labels and named ports; nodes with every address they own (node network, pod gateway, and
    the VXLAN device's when there is one)."""
    from podnet.plan.layout import layout
    from podnet.policy.world import world_from

    cluster = ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: lab\n"
               "nodes: [{role: control-plane}, {role: worker}, {role: worker}]\n"
               "networking: {routing: vxlan}\n---\n")
    spec = load_topology(cluster + PODS + "---\n" + policy("deny", "podSelector: {}\n"))
    lay = layout(spec)
    w = world_from(lay)
    web = w.pod("dev/web")
    assert web is not None and web.labels == (("app", "web"),)
    placed = lay.pod("dev/web")
    assert placed is not None and web.node == placed.node and web.ips == (placed.ip.ip,)
    assert [(n.name, n.port) for n in web.named_ports] == [("http", 8080)]
    node = lay.node(web.node)
    host = w.host(web.node)
    assert host is not None and host.ips == (node.ip.ip, node.gateway, node.vtep_ips[0])
    assert [p.key for p in w.policies] == ["dev/deny"]
    text = policy_chains(w, web.node)
    assert f"{placed.ip.ip} : goto np-pod-in/dev/web" in text
