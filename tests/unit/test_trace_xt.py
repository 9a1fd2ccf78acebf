"""kube-proxy's iptables mode as iptables-nft writes it, evaluated: recorded `nft -j list
ruleset` and `iptables-nft-save` of the same rules (tests/unit/data/kube_proxy.json, from
tests/kube_proxy_rules.py through iptables-nft-restore), walked the way the kernel would for a
connection's first packet. tests/kernel/test_kube_proxy.py does it on a live node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from podnet.trace.nft import HookContext, Packet, Ruleset, evaluate
from podnet.trace.nft_xt import bind, parse_save
from podnet.trace.words import nat_text

DATA = json.loads((Path(__file__).parent / "data" / "kube_proxy.json").read_text())
ENDPOINTS = ["10.244.1.2", "10.244.2.2", "10.244.2.3"]
NODE = frozenset({"172.18.0.3", "10.244.1.1"})


@pytest.fixture
def rules() -> Ruleset:
    rules = Ruleset(DATA["nftables"])
    bind(rules, [("ip", DATA["iptables_save"])])
    return rules


def test_iptables_save_lines_read_as_modules_with_options() -> None:
    parsed = parse_save(DATA["iptables_save"])
    svc = next(k for k in parsed if k[1].startswith("KUBE-SVC-"))
    first = parsed[svc][1]
    assert [(m.kind, m.name[:9]) for m in first.modules] == [
        ("match", "comment"), ("match", "statistic"), ("target", "KUBE-SEP-")]
    # the kernel keeps the probability as a 32-bit fraction: 1/3 comes back a little off
    assert first.modules[1].get("--probability") == (("0.33333333349",), False)
    assert first.comment == "dev/demo:http -> 10.244.1.2:80"
    masq = parsed[("nat", "KUBE-POSTROUTING")][0]
    assert masq.modules[0].get("--mark") == (("0x4000/0x4000",), True)  # ! --mark


def test_every_xt_expression_is_paired_with_its_options(rules: Ruleset) -> None:
    xt_rules = [(r["family"], r["table"], r["chain"], r["handle"])
                for o in DATA["nftables"] if "rule" in o for r in [o["rule"]]
                if any("xt" in e for e in r["expr"])]
    assert xt_rules and set(xt_rules) == set(rules.xt)
    assert all(m is not None for _line, modules in rules.xt.values() for m in modules)


def prerouting(rules: Ruleset, src: str = "10.244.1.5", **how: Any) -> Any:
    ctx = HookContext("prerouting", "veth1", None, NODE)
    return evaluate(rules, ctx, Packet(src, "10.96.0.10", "tcp", 40000, 80), **how)


def test_the_service_is_dnatted_to_one_endpoint_and_names_the_others(rules: Ruleset) -> None:
    result = prerouting(rules)
    assert result.notes == ()  # nothing left "not evaluated"
    (nat,) = result.nat
    assert (nat.kind, nat.addr, nat.port) == ("dnat", ENDPOINTS[0], 80)
    assert sorted(a for a, _ in nat.alternatives) == ENDPOINTS[1:]
    assert nat.rule.chain.startswith("KUBE-SEP-") and nat.rule.comment == "dev/demo:http"
    assert nat.rule.text.endswith("-j DNAT --to-destination 10.244.1.2:80")
    text = nat_text("prerouting", nat, Packet("10.244.1.5", "10.96.0.10", "tcp", 40000, 80),
                    result.packet)
    assert text.startswith("dnat: destination 10.96.0.10:80 -> 10.244.1.2:80 (kube-proxy: "
                           f"Service dev/demo:http, chain {nat.rule.chain}; ")
    assert result.mark == 0, "a pod's own connection is not marked for masquerade"


@pytest.mark.parametrize(("how", "endpoint"), [({"pick": 1}, ENDPOINTS[1]),
                                               ({"pick": 2}, ENDPOINTS[2]),
                                               ({"prefer": ENDPOINTS[2]}, ENDPOINTS[2]),
                                               ({"prefer": ENDPOINTS[1]}, ENDPOINTS[1])])
def test_the_walk_follows_the_branch_it_is_asked_for(rules: Ruleset, how: dict[str, Any],
                                                     endpoint: str) -> None:
    (nat,) = prerouting(rules, **how).nat
    assert nat.addr == endpoint
    assert sorted([*(a for a, _ in nat.alternatives), endpoint]) == ENDPOINTS


def test_a_node_reaching_a_service_is_marked_then_masqueraded(rules: Ruleset) -> None:
    out = evaluate(rules, HookContext("output", None, "eth0", NODE),
                   Packet("172.18.0.3", "10.96.0.10", "tcp", 40000, 80))
    assert out.nat[0].kind == "dnat" and out.mark & 0x4000
    post = evaluate(rules, HookContext("postrouting", None, "eth0", NODE, mark=out.mark),
                    out.packet)
    assert [n.kind for n in post.nat] == ["masquerade"] and post.notes == ()
    unmarked = evaluate(rules, HookContext("postrouting", None, "eth0", NODE), out.packet)
    assert unmarked.nat == ()


def test_conntrack_states_in_the_forward_chain(rules: Ruleset) -> None:
    pkt = Packet("10.244.1.5", "10.244.2.2", "tcp", 40000, 80)
    invalid = evaluate(rules, HookContext("forward", "veth1", "eth0", NODE, "invalid"), pkt)
    assert invalid.verdict == "drop" and "--ctstate INVALID -j DROP" in invalid.rule.text
    assert evaluate(rules, HookContext("forward", "veth1", "eth0", NODE), pkt).verdict == \
        "accept"


def test_without_iptables_save_the_xt_rules_are_not_evaluated_and_say_so() -> None:
    result = prerouting(Ruleset(DATA["nftables"]))
    assert result.nat == ()
    assert any("xt match comment podnet cannot evaluate" in n for n in result.notes)
