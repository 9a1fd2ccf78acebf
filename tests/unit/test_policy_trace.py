"""The trace evaluator on policy rules as the kernel lists them (`nft -j list ruleset`), and the
sentences built from what it stopped at.

`data/policy_ruleset.json` is node n1's table for the world of test_policy_nft.py with the
policies below, loaded into a kernel and listed back. After changing the rendering, record it
again inside the sandbox (the kernel test checks the live equivalent on every run):

    ./podnet.sh sandbox python tests/unit/test_policy_trace.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from podnet.policy.verdict import verdict
from podnet.policy.words import trace_sentence
from podnet.policy.world import World
from podnet.trace.nft import HookContext, Packet, Ruleset, evaluate

try:
    from tests.unit.test_policy_nft import policy, world
except ImportError:  # run as a script, to record
    from test_policy_nft import policy, world  # type: ignore[no-redef]

DATA = Path(__file__).parent / "data" / "policy_ruleset.json"
POLICIES = (
    policy("default-deny-ingress", "podSelector: {}\n"),
    policy("allow-web", """\
        podSelector: {matchLabels: {app: web}}
        ingress:
        - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}}]
          ports: [{port: http}, {port: 9000, endPort: 9100, protocol: UDP}]
        """),
    policy("db-out", """\
        podSelector: {matchLabels: {app: db}}
        policyTypes: [Egress]
        egress:
        - to: [{podSelector: {matchLabels: {app: web}}}]
          ports: [{port: http}]
        - to: [{ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.128/25]}},
               {ipBlock: {cidr: "2001:db8::/32"}}]
        """),
)


def the_world() -> World:
    return world(*POLICIES)


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    return Ruleset(json.loads(DATA.read_text())["nftables"])


CASES = [  # (source, destination, port, protocol, family), every one through n1's forward hook
    ("other/client", "dev/web", 8080, "TCP", 4),  # allow-web, its named port
    ("other/client", "dev/web", 8080, "TCP", 6),
    ("other/client", "dev/web", 9090, "TCP", 4),  # web2's http, not web's
    ("other/client", "dev/web", 9050, "UDP", 6),  # the UDP range
    ("other/client", "dev/web", 9050, "TCP", 4),
    ("other/client", "dev/db", 5432, "TCP", 4),  # only default deny
    ("dev/db", "dev/web", 8080, "TCP", 4),  # db-out egress[0], then web's ingress: dev is no
    ("dev/db", "dev/web2", 9090, "TCP", 4),  # namespace `other`: dropped at web's ingress
    ("dev/db", "198.51.100.20", 443, "TCP", 4),  # db-out egress[1]
    ("dev/db", "198.51.100.200", 443, "TCP", 4),  # its except
    ("dev/db", "2001:db8::7", 53, "UDP", 6),
    ("dev/db", "other/client", 80, "TCP", 4),
    ("dev/web", "other/client", 80, "TCP", 4),  # web is not isolated for egress
]


def address(w: World, end: str, family: int) -> str:
    pod = w.pod(end)
    return end if pod is None else str(pod.ip(family))


@pytest.mark.parametrize(("src", "dst", "port", "protocol", "family"), CASES)
def test_the_evaluator_agrees_with_the_engine(rules: Ruleset, src: str, dst: str, port: int,
                                              protocol: str, family: int) -> None:
    w = the_world()
    v = verdict(w, src, dst, port, protocol, family=family)
    pkt = Packet(address(w, src, family), address(w, dst, family), protocol.lower(), 40000, port)
    result = evaluate(rules, HookContext("forward"), pkt)
    assert result.notes == ()  # every expression understood
    # n1 judges what its own pods send and receive: both ends here, or the one that is.
    here = {p.key for p in w.pods_on("n1")}
    local = [s for s in (v.egress, v.ingress) if s.pod in here]
    assert (result.verdict == "accept") is all(s.allowed for s in local)
    comments = [r.comment for r in result.accepted_by]
    dropped = result.rule.comment if result.rule is not None else None
    sentence = trace_sentence(v, dropped, comments)
    if result.verdict == "drop":
        assert sentence is not None and sentence.startswith("dropped: ")
        assert "differ" not in sentence
    elif any(s.reason == "allowed" for s in local):
        assert sentence is not None and sentence.startswith("allowed by NetworkPolicy")
        assert "differ" not in sentence


def test_the_sentences_say_which_policy(rules: Ruleset) -> None:
    w = the_world()
    pkt = Packet("10.244.1.6", "10.244.1.5", "tcp", 40000, 8080)
    result = evaluate(rules, HookContext("forward"), pkt)
    assert [r.comment for r in result.accepted_by] == ["np dev/db-out egress[0]"]
    assert result.rule is not None and result.rule.comment == (
        "np dev/web ingress: isolated by dev/allow-web, dev/default-deny-ingress")
    assert trace_sentence(verdict(w, "dev/db", "dev/web", 8080), result.rule.comment) == (
        "dropped: dev/web is isolated for ingress by NetworkPolicies dev/allow-web and "
        "dev/default-deny-ingress, and no policy allows dev/db on 8080/tcp")
    pkt = Packet("10.244.1.6", "198.51.100.20", "tcp", 40000, 443)
    result = evaluate(rules, HookContext("forward"), pkt)
    v = verdict(w, "dev/db", "198.51.100.20", 443)
    assert trace_sentence(v, None, [r.comment for r in result.accepted_by]) == (
        "allowed by NetworkPolicy dev/db-out egress[1]")
    pkt = Packet("10.244.1.6", "198.51.100.200", "tcp", 40000, 443)
    result = evaluate(rules, HookContext("forward"), pkt)
    assert result.rule is not None
    assert trace_sentence(verdict(w, "dev/db", "198.51.100.200", 443), result.rule.comment) == (
        "dropped: dev/db is isolated for egress by NetworkPolicy dev/db-out, and no policy "
        "allows it to reach 198.51.100.200 on 443/tcp")


def test_rules_older_than_the_policies_are_called_so(rules: Ruleset) -> None:
    """The kernel's rules came from other policies than the engine judges by (no `up` since)."""
    now = world(policy("allow-all", "podSelector: {}\ningress: [{}]\n"))
    pkt = Packet("10.244.2.7", "10.244.1.6", "tcp", 40000, 5432)
    result = evaluate(rules, HookContext("forward"), pkt)
    assert result.rule is not None
    sentence = trace_sentence(verdict(now, "other/client", "dev/db", 5432), result.rule.comment)
    assert sentence == ("dropped: dev/db is isolated for ingress by NetworkPolicy "
                        "dev/default-deny-ingress (the node's rules differ from the policies as "
                        "written: `podnet up` applies them)")
    assert trace_sentence(verdict(now, "other/client", "dev/db", 5432), "some other rule") is None


def test_replies_and_neighbour_discovery_pass_without_a_lookup(rules: Ruleset) -> None:
    pkt = Packet("10.244.2.7", "10.244.1.6", "tcp", 40000, 5432)
    result = evaluate(rules, HookContext("forward", ct_state="established"), pkt)
    assert result.verdict == "accept" and result.notes == ()
    assert {r.comment for r in result.accepted_by} == {
        "np: packets of connections already allowed"}


# --- address families in an inet table ---------------------------------------------------------


def rule(chain: str, *expr: dict[str, Any]) -> dict[str, Any]:
    return {"rule": {"family": "inet", "table": "t", "chain": chain, "handle": 1,
                     "comment": "mine", "expr": list(expr)}}


def match(proto: str, fld: str, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": {"payload": {"protocol": proto, "field": fld}},
                      "right": right}}


BASE = {"chain": {"family": "inet", "table": "t", "name": "f", "type": "filter",
                  "hook": "forward", "prio": 0, "policy": "accept"}}


@pytest.mark.parametrize(("expr", "src", "dropped"), [
    (match("ip", "saddr", "10.0.0.1", "!="), "fd00::1", False),  # no IPv4 header: no match
    (match("ip", "saddr", "10.0.0.1", "!="), "10.0.0.2", True),
    (match("ip6", "saddr", "fd00::1"), "fd00::1", True),
    (match("ip6", "saddr", "fd00::1"), "10.0.0.1", False),
    (match("icmpv6", "type", {"set": ["nd-neighbor-solicit"]}), "fd00::1", False),
    ({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv6"}},
     "fd00::1", True),
])
def test_family_matches_hold_for_their_family_only(expr: dict[str, Any], src: str,
                                                    dropped: bool) -> None:
    dst = "fd00::9" if ":" in src else "10.0.0.9"
    result = evaluate([BASE, rule("f", expr, {"drop": None})], HookContext("forward"),
                      Packet(src, dst, "tcp", 1, 80))
    assert (result.verdict == "drop") is dropped and result.notes == ()
    if dropped:
        assert result.rule is not None and result.rule.comment == "mine"


def record() -> None:  # pragma: no cover - run by hand in a sandbox, see the docstring
    import subprocess

    from podnet.kernel import nftables
    from podnet.policy.nft import policy_chains

    body = policy_chains(the_world(), "n1")
    nftables.run(nftables.Transaction(nftables.Table("inet", "podnet"), "record").replace(body))
    listed = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                            check=True).stdout
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps(json.loads(listed), indent=1) + "\n")


if __name__ == "__main__":
    record()
