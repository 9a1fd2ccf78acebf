"""`trace` on nodes set up as kube-proxy's iptables mode sets them up (sandbox only): the rules of
tests/kube_proxy_rules.py, loaded with iptables-nft-restore on every node of a lab, for a Service
of the three demo pods. The trace names the Service and the endpoint chosen (the one the probe's
connection got, by conntrack), evaluates every xt match (comment, statistic, conntrack, addrtype,
mark) and target (MARK, DNAT, MASQUERADE) on the way, and a node's own connection is marked and
masqueraded as kube-proxy means it to be.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kube_proxy_rules import ruleset

pytestmark = pytest.mark.kernel

PODNET = [sys.executable, "-m", "podnet"]
VIP = "10.96.200.10"


def podnet(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODNET, *args], capture_output=True, text=True, timeout=120,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"podnet {' '.join(args)} -> {done.returncode}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def kube_proxy() -> Iterator[dict[str, Any]]:
    """The default lab, with kube-proxy's rules for dev/demo:http on VIP:80 on every node."""
    podnet("up", "-q")
    try:
        pods = {p["metadata"]["name"]: p for p in
                json.loads(podnet("get", "pods", "-o", "json").stdout)["items"]}
        demos = {p["status"]["podIP"]: f"dev/{n}" for n, p in pods.items()
                 if n.startswith("demo-")}
        rules = ruleset("dev/demo:http", VIP, 80, [f"{ip}:80" for ip in sorted(demos)],
                        "10.244.0.0/16")
        for node in json.loads(podnet("get", "nodes", "-o", "json").stdout)["items"]:
            subprocess.run(["ip", "netns", "exec", node["metadata"]["name"],
                            "iptables-nft-restore"], input=rules, text=True, check=True,
                           timeout=30)
        yield {"pods": pods, "demos": demos}
    finally:
        podnet("down", "-q")


def trace(*args: str) -> tuple[int, dict[str, Any]]:
    done = podnet("trace", "-o", "json", "--timeout", "1", *args, check=False)
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_trace_names_the_service_and_the_endpoint_the_probe_got(
        kube_proxy: dict[str, Any]) -> None:
    demos: dict[str, str] = kube_proxy["demos"]
    reached = set()
    for _ in range(6):
        code, report = trace("jumpbox", VIP, "--port", "80")
        assert code == 0, report["summary"]
        hops = report["forward"]["hops"]
        assert not [h for h in hops if h["reason"] == "rules not evaluated"], \
            [h["notes"] for h in hops]
        (nat,) = [h for h in hops if h["step"] == "nat"]
        endpoint = report["forward"]["packet"]["dst"]
        assert endpoint in demos
        assert nat["text"].startswith(f"dnat: destination {VIP}:80 -> {endpoint}:80 "
                                      "(kube-proxy: Service dev/demo:http, chain KUBE-SEP-")
        others = set(demos) - {endpoint}
        assert all(f"{ip}:80" in nat["text"] for ip in others), nat["text"]
        assert hops[-1]["owner"] == f"pod {demos[endpoint]}"  # where the probe went
        assert "iptables -t nat" not in nat["text"]
        reached.add(endpoint)
    assert reached  # each trace followed its own probe's endpoint


def test_a_nodes_own_connection_is_marked_and_masqueraded(kube_proxy: dict[str, Any]) -> None:
    """KUBE-SVC's first rule sends a source outside the pod range to KUBE-MARK-MASQ (an xt MARK
    target); the mark is what makes the node masquerade it. (The lab's own masquerade chain
    honours kube-proxy's mark too, and may run first: either masquerade proves the mark.)"""
    node = kube_proxy["pods"]["jumpbox"]["spec"]["nodeName"]
    code, report = trace(node, VIP, "--port", "80")
    assert code == 0, report["summary"]
    nats = [h for h in report["forward"]["hops"] if h["step"] == "nat"]
    assert [h["text"].split(":")[0] for h in nats] == ["dnat", "masquerade"], nats
    assert "kube-proxy: Service dev/demo:http" in nats[0]["text"]
