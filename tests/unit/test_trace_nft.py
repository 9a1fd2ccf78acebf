"""The nftables evaluator of `podnet trace`, on rulesets as `nft -j list ruleset` prints them.

`LAB` is the podnet table of a lab node (kube-proxy's nftables layout: a verdict map of Service
addresses, a numgen spread over endpoints, a mark for what to masquerade), recorded from a
running lab and rebuilt here with small helpers so the test reads like the rules.
"""

from __future__ import annotations

from typing import Any

from podnet.trace.nft import HookContext, Packet, evaluate, rule_text

T = ("ip", "podnet")


def chain(name: str, hook: str | None = None, prio: int = 0, policy: str = "accept",
          kind: str = "filter", family: str = "ip", table: str = "podnet") -> dict[str, Any]:
    body: dict[str, Any] = {"family": family, "table": table, "name": name}
    if hook:
        body.update(type=kind, hook=hook, prio=prio, policy=policy)
    return {"chain": body}


_handles = iter(range(100, 10_000))


def rule(chain_name: str, *expr: dict[str, Any], family: str = "ip",
         table: str = "podnet") -> dict[str, Any]:
    return {"rule": {"family": family, "table": table, "chain": chain_name,
                     "handle": next(_handles), "expr": list(expr)}}


def payload(proto: str, fld: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": fld}}


def meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def prefix(addr: str, length: int) -> dict[str, Any]:
    return {"prefix": {"addr": addr, "len": length}}


VIP = "10.96.217.183"
ENDPOINTS = ("10.244.2.2", "10.244.1.3", "10.244.2.3")
SVC = "svc-dev/demo/tcp/http"
PODS = prefix("10.244.0.0", 16)
SERVICE_KEY = {"concat": [payload("ip", "daddr"), meta("l4proto"), payload("th", "dport")]}

LAB: list[dict[str, Any]] = [
    {"table": {"family": "ip", "name": "podnet"}},
    {"map": {"family": "ip", "table": "podnet", "name": "service-ips", "map": "verdict",
             "elem": [[{"concat": [VIP, "tcp", 80]}, {"goto": {"target": SVC}}]]}},
    {"map": {"family": "ip", "table": "podnet", "name": "no-endpoint-services",
             "map": "verdict"}},
    chain("filter-prerouting", "prerouting", -110),
    chain("nat-prerouting", "prerouting", -100, kind="nat"),
    chain("nat-output", "output", -100, kind="nat"),
    chain("nat-postrouting", "postrouting", 100, kind="nat"),
    chain("services"), chain("mark-for-masquerade"), chain("masquerading"), chain(SVC),
    *(chain(f"ep-{ip}") for ip in ENDPOINTS),
    rule("filter-prerouting", {"vmap": {"key": SERVICE_KEY, "data": "@no-endpoint-services"}}),
    rule("nat-prerouting", {"jump": {"target": "services"}}),
    rule("nat-output", {"jump": {"target": "services"}}),
    rule("nat-postrouting", {"jump": {"target": "masquerading"}}),
    rule("nat-postrouting", match(payload("ip", "saddr"), PODS),
         match(payload("ip", "daddr"), PODS, "!="), {"masquerade": None}),
    rule("services", {"vmap": {"key": SERVICE_KEY, "data": "@service-ips"}}),
    rule("mark-for-masquerade",
         {"mangle": {"key": meta("mark"), "value": {"|": [meta("mark"), 16384]}}}),
    rule("masquerading", match({"&": [meta("mark"), 16384]}, 0), {"return": None}),
    rule("masquerading", {"mangle": {"key": meta("mark"), "value": {"^": [meta("mark"), 16384]}}}),
    rule("masquerading", {"masquerade": {"flags": "fully-random"}}),
    rule(SVC, match(payload("ip", "daddr"), VIP), match(payload("tcp", "dport"), 80),
         match(payload("ip", "saddr"), PODS, "!="), {"jump": {"target": "mark-for-masquerade"}}),
    rule(SVC, {"vmap": {"key": {"numgen": {"mode": "random", "mod": 3, "offset": 0}},
                        "data": {"set": [[i, {"goto": {"target": f"ep-{ip}"}}]
                                         for i, ip in enumerate(ENDPOINTS)]}}}),
    *(r for ip in ENDPOINTS for r in (
        rule(f"ep-{ip}", match(payload("ip", "saddr"), ip),
             {"jump": {"target": "mark-for-masquerade"}}),
        rule(f"ep-{ip}", match(meta("l4proto"), "tcp"), {"dnat": {"addr": ip, "port": 80}}),
    )),
]


def test_a_service_address_is_dnatted_to_one_endpoint_with_the_others_as_alternatives() -> None:
    pkt = Packet("10.244.1.2", VIP, "tcp", 40000, 80)
    result = evaluate(LAB, HookContext("prerouting", iif="veth1"), pkt)
    assert result.verdict == "accept"
    assert [n.kind for n in result.nat] == ["dnat"]
    nat = result.nat[0]
    assert (nat.addr, nat.port) == (ENDPOINTS[0], 80)
    assert {a for a, _ in nat.alternatives} == set(ENDPOINTS[1:])
    assert result.packet.dst == ENDPOINTS[0] and result.packet.dport == 80
    assert nat.rule.chain == f"ep-{ENDPOINTS[0]}"
    assert result.mark == 0  # a pod's own traffic is not marked for masquerade


def test_pick_follows_another_branch_of_the_spread() -> None:
    pkt = Packet("10.244.1.2", VIP, "tcp", 40000, 80)
    chosen = {evaluate(LAB, HookContext("prerouting"), pkt, pick=i).packet.dst for i in range(3)}
    assert chosen == set(ENDPOINTS)


def test_other_ports_and_protocols_of_the_service_address_are_left_alone() -> None:
    for pkt in (Packet("10.244.1.2", VIP, "tcp", 1, 443), Packet("10.244.1.2", VIP, "udp", 1, 80),
                Packet("10.244.1.2", VIP, "icmp")):
        result = evaluate(LAB, HookContext("prerouting"), pkt)
        assert result.nat == () and result.packet == pkt


def test_pod_to_pod_is_not_masqueraded_but_pod_to_outside_is() -> None:
    inside = evaluate(LAB, HookContext("postrouting", oif="eth0"),
                      Packet("10.244.1.2", "10.244.2.3", "tcp", 1, 80))
    assert inside.nat == ()
    outside = evaluate(LAB, HookContext("postrouting", oif="eth0"),
                       Packet("10.244.1.2", "198.51.100.100", "tcp", 1, 80))
    assert [n.kind for n in outside.nat] == ["masquerade"]
    assert outside.nat[0].rule.chain == "nat-postrouting"


def test_a_node_reaching_a_service_is_marked_then_masqueraded() -> None:
    pkt = Packet("172.18.0.3", VIP, "tcp", 1, 80)
    out = evaluate(LAB, HookContext("output", oif="eth0"), pkt)
    assert out.mark & 16384 and out.nat[0].kind == "dnat"
    post = evaluate(LAB, HookContext("postrouting", oif="eth0", mark=out.mark), out.packet)
    assert [n.kind for n in post.nat] == ["masquerade"]
    assert post.nat[0].rule.chain == "masquerading"
    assert post.mark == 0  # the rule clears the mark it tested


def test_replies_skip_nat_chains() -> None:
    pkt = Packet("10.244.1.2", VIP, "tcp", 1, 80)
    assert evaluate(LAB, HookContext("prerouting", ct_state="established"), pkt).nat == ()


def drop_table(*expr: dict[str, Any], hook: str = "forward",
               policy: str = "accept") -> list[dict[str, Any]]:
    return [
        {"table": {"family": "ip", "name": "t"}},
        chain("c", hook, 0, policy, table="t"),
        rule("c", {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                             "right": ["established", "related"]}}, {"accept": None}, table="t"),
        rule("c", *expr, table="t"),
    ]


def test_a_drop_rule_in_another_table_is_found_with_its_handle_and_text() -> None:
    rules = LAB + drop_table(match(payload("ip", "daddr"), "10.244.2.3"),
                             match(payload("tcp", "dport"), {"set": [80, 443]}), {"drop": None})
    result = evaluate(rules, HookContext("forward", iif="eth0", oif="veth2"),
                      Packet("10.244.1.2", "10.244.2.3", "tcp", 1, 80))
    assert result.verdict == "drop"
    assert result.rule is not None and result.rule.table == "t" and result.rule.chain == "c"
    assert result.rule.text == "ip daddr 10.244.2.3 tcp dport { 80, 443 } drop"
    assert result.rule.command() == "nft -a list chain ip t c"
    other = evaluate(rules, HookContext("forward"),
                     Packet("10.244.1.2", "10.244.2.3", "tcp", 1, 22))
    assert other.verdict == "accept"


def test_established_replies_pass_the_drop_rule() -> None:
    rules = drop_table(match(payload("ip", "daddr"), "10.244.2.3"), {"drop": None})
    ctx = HookContext("forward", ct_state="established")
    assert evaluate(rules, ctx, Packet("x", "10.244.2.3")).verdict == "accept"


def test_policy_drop_and_reject_and_interface_wildcards() -> None:
    policy = [chain("in", "input", 0, "drop", family="inet", table="f")]
    result = evaluate(policy, HookContext("input"), Packet("1.1.1.1", "2.2.2.2"))
    assert result.verdict == "drop" and result.rule is not None and result.rule.handle is None
    rejecting = drop_table(match(meta("iifname"), "veth*"),
                           match(payload("ip", "daddr"), {"range": ["10.1.2.3", "10.1.2.9"]}),
                           {"reject": {"type": "icmp", "expr": "host-unreachable"}})
    hit = evaluate(rejecting, HookContext("forward", iif="veth12"), Packet("a", "10.1.2.5"))
    assert hit.verdict == "reject"
    for iif, dst in (("eth0", "10.1.2.5"), ("veth12", "10.1.2.10")):
        assert evaluate(rejecting, HookContext("forward", iif=iif), Packet("a", dst)).verdict \
            == "accept"


def test_what_podnet_cannot_evaluate_is_said_not_guessed() -> None:
    rules = drop_table({"xt": {"type": "match", "name": "conntrack"}}, {"drop": None})
    result = evaluate(rules, HookContext("forward"), Packet("a", "b"))
    assert result.verdict == "accept"
    assert result.notes and "cannot evaluate" in result.notes[0]


def test_rules_print_in_nft_syntax() -> None:
    texts = [rule_text(r["rule"]["expr"]) for r in LAB if "rule" in r]
    assert "ip daddr . meta l4proto . th dport vmap @service-ips" in texts
    assert "meta mark & 0x4000 0 return" in texts
    assert "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade" in texts
    assert "meta l4proto tcp dnat to 10.244.1.3:80" in texts
