"""NetworkPolicy in the lab, end to end through `podnet up`, with real packets: a default-deny in
namespace `dev` plus a rule that lets `client` (and only it) in on the web pods' named port, on
the same node and across nodes, direct and through the Service, over ptp and over a bridge with
VXLAN; `check` agrees with the policies cell by cell; `trace` names the isolation; a label change
and a new policy take effect on the next `up` without restarting any pod."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet import state as lab_state
from podnet.plan.layout import Layout
from tests.kernel.test_lab import podnet
from tests.kernel.topologies import web_lab

pytestmark = pytest.mark.kernel

CLUSTER = "np"
SHAPES = ["{attachment: ptp, routing: static}", "{attachment: bridge, routing: vxlan}"]

INTRUDER = """---
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: other}
spec:
  containers: [{name: c, command: [sleep, infinity]}]
"""
DENY = """---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: dev}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""
ALLOW = """---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: dev}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}
      podSelector: {matchLabels: {role: client}}
    ports: [{port: http}]
"""


def topology(networking: str, policies: str, *, client_role: str = "client") -> str:
    text = web_lab(CLUSTER, networking, replicas=4, client_node=f"{CLUSTER}-worker",
                   ports="[{name: http, port: 80, targetPort: http}]",
                   extra=INTRUDER + policies)
    text = text.replace("metadata: {name: client}",
                        f"metadata: {{name: client, labels: {{role: {client_role}}}}}")
    return text.replace("ports: [{containerPort: 80}]", "ports: [{containerPort: 80, name: http}]")


@pytest.fixture(scope="module", params=SHAPES, ids=["ptp", "bridge-vxlan"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Path, str]]:
    path = tmp_path_factory.mktemp("np") / "lab.yaml"
    path.write_text(topology(request.param, DENY + ALLOW))
    podnet("up", "-q", "-f", str(path))
    try:
        yield path, request.param
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def layout() -> Layout:
    record = lab_state.load(CLUSTER)
    assert record is not None
    return record.layout


def reaches(source: str, url: str) -> bool:
    pod = layout().pod(source)
    assert pod is not None
    result = subprocess.run(["ip", "netns", "exec", pod.netns, "curl", "-s", "-m", "1", url],
                            capture_output=True, text=True, check=False, timeout=20)
    return result.returncode == 0 and "answered" in result.stdout


def webs() -> list[str]:
    return [p.key for p in layout().pods if p.namespace == "dev"]


def test_allowed_and_denied_on_one_node_and_across(lab: tuple[Path, str]) -> None:
    lay = layout()
    client = lay.pod("default/client")
    assert client is not None
    nodes = {lay.pod(w).node == client.node for w in webs()}  # type: ignore[union-attr]
    assert nodes == {True, False}
    for key in webs():
        web = lay.pod(key)
        assert web is not None
        assert reaches("default/client", f"http://{web.ip.ip}/"), key
        assert not reaches("other/intruder", f"http://{web.ip.ip}/"), key
    (svc,) = [s for s in lay.services if s.namespace != "kube-system"]
    assert reaches("default/client", f"http://{svc.cluster_ip}/")
    assert not reaches("other/intruder", f"http://{svc.cluster_ip}/")
    # Not isolated for egress: the web pods still reach the intruder's namespace and beyond.
    assert lay.internet is not None and reaches(webs()[0], lay.internet.url)


def test_check_agrees_with_the_policies(lab: tuple[Path, str]) -> None:
    result = podnet("check", "-C", CLUSTER, "-o", "json", check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    out = podnet("check", "-C", CLUSTER, check=False).stdout
    assert "0 got through that policies deny, 0 failed that they allow" in out


def test_trace_names_the_isolation(lab: tuple[Path, str]) -> None:
    web = webs()[0]
    out = podnet("trace", "other/intruder", web, "--port", "80", check=False).stdout
    assert (f"dropped: {web} is isolated for ingress by NetworkPolicies dev/allow-client and "
            "dev/default-deny-ingress, and no policy allows other/intruder on 80/tcp") in out
    allowed = podnet("trace", "client", web, "--port", "80", check=False).stdout
    assert "allowed by NetworkPolicy dev/allow-client ingress[0]" in allowed


def test_explain_shows_the_rules_with_their_policies(lab: tuple[Path, str]) -> None:
    path, _ = lab
    text = podnet("explain", "-f", str(path)).stdout
    assert 'comment "np dev/allow-client ingress[0]"' in text
    assert "and the NetworkPolicies of its pods" in text


def _pids() -> dict[str, int]:
    with open(f"/run/podnet/{CLUSTER}/state.json") as fh:
        data = json.load(fh)
    return {p["name"]: p["containers"][0]["pid"] for p in data["pods"]}


def test_a_label_and_a_policy_change_take_effect_without_restarts(lab: tuple[Path, str]) -> None:
    path, networking = lab
    web = layout().pod(webs()[0])
    assert web is not None
    url = f"http://{web.ip.ip}/"
    before = _pids()
    path.write_text(topology(networking, DENY + ALLOW, client_role="stranger"))
    podnet("up", "-q", "-f", str(path))
    assert not reaches("default/client", url), "its new label is no longer allowed"
    path.write_text(topology(networking, ""))  # the policies removed: nothing isolated
    kept = podnet("up", "-q", "-f", str(path))
    assert "networkpolicy dev/allow-client" in kept.stderr, "kept unless pruned, as kubectl"
    podnet("up", "-q", "--prune", "-f", str(path))
    assert reaches("other/intruder", url) and reaches("default/client", url)
    path.write_text(topology(networking, DENY + ALLOW))
    podnet("up", "-q", "-f", str(path))
    assert reaches("default/client", url) and not reaches("other/intruder", url)
    assert _pids() == before, "no pod was restarted"
