"""NetworkPolicies over IPv6 (sandbox only): the lab's policies rule both families of a
dual-stack pod and the one of an IPv6-only pod; `check` judges every probe per family and agrees
with the packets; `trace -6` names the isolation that drops a connection, and the rule that
allows another."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet import state as lab_state
from podnet.plan.layout import Layout
from tests.kernel.test_lab import podnet
from tests.kernel.test_policy_lab import ALLOW, CLUSTER, DENY, topology

pytestmark = pytest.mark.kernel

SHAPES = ["{attachment: ptp, routing: static, ipFamily: dual}",
          "{attachment: bridge, routing: vxlan, ipFamily: ipv6}"]


@pytest.fixture(scope="module", params=SHAPES, ids=["ptp-dual", "bridge-vxlan-ipv6"])
def lay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        Layout]:
    path: Path = tmp_path_factory.mktemp("np6") / "lab.yaml"
    text = topology(request.param, DENY + ALLOW)
    path.write_text(text.replace("  ports: [{name: http, port: 80, targetPort: http}]",
                                 "  ports: [{name: http, port: 80, targetPort: http}]\n"
                                 "  ipFamilyPolicy: PreferDualStack"))
    podnet("up", "-q", "-f", str(path))
    try:
        record = lab_state.load(CLUSTER)
        assert record is not None
        yield record.layout
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def test_check_judges_each_family_and_agrees_with_the_packets(lay: Layout) -> None:
    done = podnet("check", "-C", CLUSTER, "-o", "json", "--timeout", "1", check=False)
    report = json.loads(done.stdout)
    assert done.returncode == 0, [p for p in report["probes"] if not p["ok"]]
    denied = {f"IPv{f}": 0 for f in lay.families}
    for probe in report["probes"]:
        if probe["detail"].startswith("denied, as policies say"):
            denied[probe["family"]] += 1
    assert len(set(denied.values())) == 1 and next(iter(denied.values())) > 0, denied
    text = podnet("check", "-C", CLUSTER, "--timeout", "1", check=False).stdout
    assert "0 got through that policies deny, 0 failed that they allow" in text


def test_trace_over_ipv6_names_the_isolation_and_the_allowing_rule(lay: Layout) -> None:
    web = next(p.key for p in lay.pods if p.namespace == "dev")
    done = podnet("trace", "-6", "-C", CLUSTER, "other/intruder", web, "--port", "80",
                  "--timeout", "1", check=False)
    assert done.returncode == 1, done.stdout
    assert (f"dropped: {web} is isolated for ingress by NetworkPolicies dev/allow-client and "
            "dev/default-deny-ingress, and no policy allows other/intruder on 80/tcp") \
        in done.stdout
    allowed = podnet("trace", "-6", "-C", CLUSTER, "client", web, "--port", "80")
    assert "allowed by NetworkPolicy dev/allow-client ingress[0]" in allowed.stdout
    assert "works: path works" in allowed.stdout
