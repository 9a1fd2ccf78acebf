"""NetworkPolicy enforcement with real packets, on a network built by hand (no planner).

For each shape (ptp veths routed host-gw; a cni0 bridge through br_netfilter, nodes joined by
VXLAN), two nodes, five pods in namespaces x and y, and an outside namespace, all dual-stack.
Each test loads the policies of one upstream-style case (`policy.nft`, through
`kernel.nftables`), then checks three answers against each other for every probe: the engine's
verdict (the truth table), real TCP and UDP packets, and the trace evaluator reading
`nft -j list ruleset` on the nodes the packet crosses. Replacing policies and labels between
steps, with the servers running, is the convergence `up` relies on.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from podnet.model import load_topology
from podnet.policy.verdict import verdict
from podnet.policy.words import trace_sentence
from podnet.policy.world import World
from podnet.trace.nft import HookContext, Packet, Ruleset, evaluate
from tests.kernel.policynet import OUTSIDE, HandNet, PodPlace

pytestmark = pytest.mark.kernel

PLACES = (PodPlace("x/a", 1, 5), PodPlace("x/b", 1, 6), PodPlace("y/a", 1, 7),
          PodPlace("x/c", 2, 5), PodPlace("y/b", 2, 6))
PODS = tuple(p.key for p in PLACES)


def pods_yaml(labels: dict[str, str] | None = None) -> str:
    """Namespaces x (team red) and y (team blue); pods labelled pod=<name>. Every pod names its
    port 80 `http`, except x/b, whose `http` is 81 (named ports resolve pod by pod)."""
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {team: red}}\n",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: y, labels: {team: blue}}\n"]
    for key in PODS:
        ns, name = key.split("/")
        http, alt = (81, 80) if key == "x/b" else (80, 81)
        label = (labels or {}).get(key, name)
        docs.append(textwrap.dedent(f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: {name}, namespace: {ns}, labels: {{pod: {label}}}}}
            spec:
              containers:
              - name: serve
                ports:
                - {{containerPort: {http}, name: http}}
                - {{containerPort: {alt}, name: alt}}
                - {{containerPort: 82, name: metrics}}
                - {{containerPort: 80, protocol: UDP, name: udp-80}}
                - {{containerPort: 81, protocol: UDP, name: udp-81}}
            """))
    return "---\n".join(docs)


def policy(name: str, namespace: str, spec: str) -> str:
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}")


@pytest.fixture(scope="module", params=[("ptp", "host-gw"), ("bridge", "vxlan")],
                ids=["ptp-host-gw", "bridge-vxlan"])
def net(request: pytest.FixtureRequest) -> Iterator[HandNet]:
    attachment, routing = request.param
    hand = HandNet(attachment, routing, PLACES)
    try:
        yield hand.build()
    finally:
        hand.close()


def apply(net: HandNet, *policies: str, labels: dict[str, str] | None = None,
          extra: dict[str, str] | None = None) -> World:
    spec = load_topology("---\n".join([pods_yaml(labels), *policies]))
    world = net.world(spec)
    net.load(world, extra)
    return world


@dataclass(frozen=True)
class Cell:
    src: str  # pod key, node name, or an outside address
    dst: str  # pod key, node name, or an outside address
    port: int
    protocol: str
    family: int


def address(net: HandNet, world: World, end: str, family: int) -> str:
    if end in OUTSIDE:
        return end
    pod = world.pod(end)
    if pod is not None:
        return str(pod.ip(family))
    host = world.host(end)
    assert host is not None
    return str(next(a for a in host.ips if a.version == family and str(a).startswith(
        ("172.18.", "fd00:18:"))))


def cells(sources: Sequence[str], destinations: Sequence[str], ports: Sequence[int] = (80,),
          protocols: Sequence[str] = ("TCP",)) -> list[Cell]:
    out = []
    for family in (4, 6):
        for src in sources:
            if src in OUTSIDE and (":" in src) != (family == 6):
                continue
            for dst in destinations:
                if dst in OUTSIDE and (":" in dst) != (family == 6):
                    continue
                out += [Cell(src, dst, port, proto, family)
                        for port in ports for proto in protocols]
    return out


def expected(net: HandNet, world: World, cell: Cell) -> bool:
    dst = cell.dst if cell.dst in PODS else address(net, world, cell.dst, cell.family)
    return verdict(world, cell.src, dst, cell.port, cell.protocol, family=cell.family).allowed


def traced(rules: dict[str, Ruleset], world: World, cell: Cell) -> bool | None:
    """What the trace evaluator says the forward hooks do to the first packet of a pod-to-pod
    connection, on its source's node and then its destination's; None for other cells."""
    if cell.src not in PODS or cell.dst not in PODS or cell.src == cell.dst:
        return None
    a, b = world.pod(cell.src), world.pod(cell.dst)
    assert a is not None and b is not None
    pkt = Packet(str(a.ip(cell.family)), str(b.ip(cell.family)), cell.protocol.lower(), 40000,
                 cell.port)
    for node in dict.fromkeys((a.node, b.node)):
        result = evaluate(rules[node], HookContext("forward"), pkt)
        assert not result.notes, result.notes  # every expression of ours is understood
        if result.verdict != "accept":
            return False
    return True


def check(net: HandNet, world: World, wanted: Sequence[Cell]) -> None:
    """Engine, kernel and tracer agree on every cell; the failure lists each disagreement."""
    probes = [(c.src, address(net, world, c.dst, c.family), c.port, c.protocol) for c in wanted]
    observed = net.probe_all(probes)
    rules = {node: Ruleset(net.ruleset(node)) for node in net.nodes}
    wrong = []
    for cell, seen in zip(wanted, observed, strict=True):
        want = expected(net, world, cell)
        by_trace = traced(rules, world, cell)
        if seen != want or by_trace not in (None, want):
            wrong.append(f"{cell}: policies say {'allowed' if want else 'denied'}, packets "
                         f"{'passed' if seen else 'were dropped'}, trace says {by_trace}")
    assert not wrong, "\n".join(wrong)


def allowed(net: HandNet, src: str, dst: str, port: int = 80, protocol: str = "TCP",
            family: int = 4) -> bool:
    return net.probe(src, net.ip_of(dst, family) if dst in PODS else dst, port, protocol)


ALL = (*PODS, "n1", "n2")
DENY_INGRESS_X = policy("default-deny-ingress", "x", "podSelector: {}\n")


def test_default_deny_ingress(net: HandNet) -> None:
    world = apply(net, DENY_INGRESS_X)
    check(net, world, cells([*ALL, OUTSIDE[0], OUTSIDE[2]], PODS))
    assert not allowed(net, "y/a", "x/a") and not allowed(net, "y/b", "x/c", family=6)
    assert allowed(net, "x/a", "y/b")  # its replies come back: conntrack, not a policy
    assert allowed(net, "n1", "x/a") and allowed(net, "n2", "x/c", family=6)  # its own node
    assert not allowed(net, "n2", "x/a")  # another node is no exception


def test_default_deny_egress_spares_the_pods_own_node(net: HandNet) -> None:
    world = apply(net, policy("default-deny-egress", "x", """\
        podSelector: {}
        policyTypes: [Egress]
        """))
    net.forget_neighbours()  # isolated pods must still resolve their neighbours (IPv6: ICMPv6)
    check(net, world, cells(PODS, [*ALL, OUTSIDE[0], OUTSIDE[2]]))
    assert not allowed(net, "x/a", "y/a") and not allowed(net, "x/a", OUTSIDE[0])
    assert allowed(net, "y/a", "x/a")  # ingress is open, and x/a's replies are no new egress
    assert allowed(net, "x/a", "172.18.0.2") and not allowed(net, "x/a", "172.18.0.3")


def test_namespace_and_pod_selector_in_one_peer_is_and_in_two_is_or(net: HandNet) -> None:
    both = policy("and", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from:
          - namespaceSelector: {matchLabels: {team: blue}}
            podSelector: {matchLabels: {pod: b}}
        """)
    world = apply(net, both)
    check(net, world, cells(PODS, PODS))
    assert allowed(net, "y/b", "x/a") and not allowed(net, "y/a", "x/a")
    assert not allowed(net, "x/b", "x/a")
    either = policy("and", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from:
          - namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [blue]}]}
          - podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a, c]}]}
        """)
    world = apply(net, either)  # the same policy, changed: the next load converges on it
    check(net, world, cells(PODS, PODS))
    assert allowed(net, "y/a", "x/a") and allowed(net, "x/b", "x/a")
    assert not allowed(net, "x/c", "x/a")


def test_ip_block_with_except_both_ways(net: HandNet) -> None:
    world = apply(net, policy("from-node-1", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from:
          - ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24]}
          - ipBlock: {cidr: "fd00:10:244::/48", except: ["fd00:10:244:2::/64"]}
        """), policy("out-low-half", "x", """\
        podSelector: {matchLabels: {pod: b}}
        policyTypes: [Egress]
        egress:
        - to:
          - ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.128/25]}
          - ipBlock: {cidr: "2001:db8:100::/64", except: ["2001:db8:100::200/128"]}
        """))
    check(net, world, cells([*PODS, *OUTSIDE], ["x/a"]))
    check(net, world, cells(["x/b"], [*PODS, *OUTSIDE]))
    assert allowed(net, "y/a", "x/a") and not allowed(net, "y/b", "x/a", family=6)
    assert allowed(net, "x/b", OUTSIDE[0]) and not allowed(net, "x/b", OUTSIDE[1])
    assert allowed(net, "x/b", OUTSIDE[2]) and not allowed(net, "x/b", OUTSIDE[3])


def test_named_port_port_range_and_udp(net: HandNet) -> None:
    world = apply(net, policy("ports", "x", """\
        podSelector: {}
        ingress:
        - ports: [{port: http}]
        - from: [{namespaceSelector: {matchLabels: {team: blue}}}]
          ports: [{port: 81, endPort: 82}]
        - ports: [{protocol: UDP, port: udp-81}]
        """), policy("named-egress", "y", """\
        podSelector: {matchLabels: {pod: a}}
        policyTypes: [Egress]
        egress:
        - to: [{namespaceSelector: {matchLabels: {team: red}}}]
          ports: [{port: http}]
        """))
    check(net, world, cells(PODS, PODS, (80, 81, 82), ("TCP",))
                     + cells(PODS, PODS, (80, 81), ("UDP",)))  # no UDP server on 82
    assert allowed(net, "x/c", "x/a", 80) and not allowed(net, "x/c", "x/a", 81)
    assert allowed(net, "x/c", "x/b", 81) and not allowed(net, "x/c", "x/b", 80)  # its http
    assert allowed(net, "y/b", "x/a", 82) and not allowed(net, "x/c", "x/a", 82)
    assert allowed(net, "y/b", "x/a", 81, "UDP") and not allowed(net, "y/b", "x/a", 80, "UDP")
    assert allowed(net, "y/a", "x/b", 81) and not allowed(net, "y/a", "x/b", 80)  # egress too


SERVICE = {node: textwrap.dedent("""\
    chain services {
      type nat hook prerouting priority dstnat; policy accept;
      ip daddr 10.96.0.10 tcp dport 80 dnat ip to 10.244.1.5:80
      ip6 daddr fd00:96::10 tcp dport 80 dnat ip6 to [fd00:10:244:1::5]:80
    }
    """) for node in ("n1", "n2")}


def test_service_traffic_is_judged_after_dnat(net: HandNet) -> None:
    """A ClusterIP whose endpoint is x/a, on every node: policies see the endpoint pod."""
    world = apply(net, DENY_INGRESS_X, policy("allow-y-a", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}]
        """), extra=SERVICE)
    for family, vip in ((4, "10.96.0.10"), (6, "fd00:96::10")):
        got = {src: net.probe(src, vip, 80) for src in ("y/a", "x/b", "y/b", "x/c")}
        want = {src: verdict(world, src, "x/a", 80, family=family).allowed for src in got}
        assert got == want == {"y/a": True, "x/b": False, "y/b": False, "x/c": False}
    # The tracer: prerouting's DNAT first, then forward judges the endpoint.
    rules = net.ruleset("n1")
    pkt = Packet("10.244.1.6", "10.96.0.10", "tcp", 40000, 80)
    nat = evaluate(rules, HookContext("prerouting"), pkt)
    assert nat.packet.dst == "10.244.1.5"
    result = evaluate(rules, HookContext("forward"), nat.packet)
    assert result.verdict == "drop" and result.rule is not None
    v = verdict(world, "x/b", "x/a", 80)
    assert trace_sentence(v, result.rule.comment) == (
        "dropped: x/a is isolated for ingress by NetworkPolicies x/allow-y-a and "
        "x/default-deny-ingress, and no policy allows x/b on 80/tcp")


def test_label_changes_converge(net: HandNet) -> None:
    allow_b = policy("allow-b", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
        """)
    apply(net, allow_b)
    assert allowed(net, "x/b", "x/a") and not allowed(net, "x/c", "x/a")
    world = apply(net, allow_b, labels={"x/c": "b", "x/b": "z"})
    check(net, world, cells(PODS, ["x/a"]))
    assert allowed(net, "x/c", "x/a") and not allowed(net, "x/b", "x/a")
    world = apply(net)  # no policies left: the tables go, everything passes again
    assert all(net.load(world).get(n) == "" for n in ("n1", "n2"))
    assert allowed(net, "x/b", "x/a") and allowed(net, "y/b", "x/a", family=6)


def test_the_trace_names_the_policy_that_allowed_or_dropped(net: HandNet) -> None:
    world = apply(net, DENY_INGRESS_X, policy("allow-web", "x", """\
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}], ports: [{port: http}]}]
        """))
    pkt = Packet("10.244.1.7", "10.244.1.5", "tcp", 40000, 80)
    result = evaluate(net.ruleset("n1"), HookContext("forward"), pkt)
    assert result.verdict == "drop" and result.rule is not None
    assert result.rule.comment == ("np x/a ingress: isolated by x/allow-web, "
                                   "x/default-deny-ingress")
    assert trace_sentence(verdict(world, "y/a", "x/a", 80), result.rule.comment) == (
        "dropped: x/a is isolated for ingress by NetworkPolicies x/allow-web and "
        "x/default-deny-ingress, and no policy allows y/a on 80/tcp")
    pkt = Packet("fd00:10:244:2::5", "fd00:10:244:1::5", "tcp", 40000, 80)
    result = evaluate(net.ruleset("n1"), HookContext("forward"), pkt)
    assert result.verdict == "accept"
    comments = [r.comment for r in result.accepted_by]
    assert trace_sentence(verdict(world, "x/c", "x/a", 80, family=6), None, comments) == (
        "allowed by NetworkPolicy x/allow-web ingress[0]")
    assert allowed(net, "x/c", "x/a", family=6) and not allowed(net, "y/a", "x/a")
