"""Shapes over a lab's life: rules that go missing come back, Services added to a live lab, a
change of shape, stable ClusterIPs, and `down` leaving no namespace or rule behind (sandbox only).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.kernel.test_lab import host_snapshot, netns_list, podnet
from tests.kernel.test_shapes import CLUSTER, INTERNET_IP, read_lab, topology

pytestmark = pytest.mark.kernel

EXTRA_SERVICE = """---
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: dev}
spec:
  selector: {app: demo}
  ports: [{port: 81, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec:
  selector: {app: demo}   # the demo pods live in dev: this one selects nothing
  ports: [{port: 80}]
"""


def nft_here() -> str:
    """This namespace's ruleset: podnet must never touch it."""
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                          check=True).stdout


def write(tmp_path: Path, text: str, name: str = "lab.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def services() -> dict[str, dict[str, object]]:
    with open(f"/run/podnet/{CLUSTER}/state.json") as fh:
        state = json.load(fh)
    return {f"{s['namespace']}/{s['name']}": s for s in state["services"]}


def egress(pod: str) -> subprocess.CompletedProcess[str]:
    return podnet("exec", "-C", CLUSTER, pod, "--", "curl", "-s", "-m", "2", "-H",
                  "Accept: text/plain", f"http://{INTERNET_IP}/", check=False)


def test_up_and_down_touch_no_rule_outside_the_lab(tmp_path: Path) -> None:
    mine = "table inet mine {\n chain c {\n  type filter hook input priority 0;\n }\n}\n"
    subprocess.run(["nft", "-f", "-"], input=mine, text=True, check=True)
    before_rules, before_links = nft_here(), host_snapshot()
    podnet("up", "-q", "-f", write(tmp_path, topology("bridge", "vxlan")))
    assert nft_here() == before_rules and host_snapshot() == before_links
    podnet("down", "-q", "-C", CLUSTER)
    assert nft_here() == before_rules and host_snapshot() == before_links
    assert netns_list() == ""  # nodes (and their tables), the internet, the fabric: all gone
    assert not Path(f"/run/podnet/{CLUSTER}").exists()
    subprocess.run(["nft", "delete", "table", "inet", "mine"], check=True)


def test_egress_is_the_masquerade_and_up_puts_a_lost_table_back(tmp_path: Path) -> None:
    podnet("up", "-q", "-f", write(tmp_path, topology("ptp", "static")))
    try:
        lab = read_lab("ptp", "static")
        node = lab.node_of("client")
        assert egress("client").returncode == 0
        # Without the node's table nothing rewrites the source: the internet has no route back
        # to pod addresses, and the request times out.
        subprocess.run(["ip", "netns", "exec", node, "nft", "delete", "table", "inet", "podnet"],
                       check=True)
        assert egress("client").returncode != 0
        out = podnet("up", "-q", "-f", str(tmp_path / "lab.yaml"), "--dry-run").stdout
        assert out.splitlines()[0] == f"node.rules    {node}  # each node's nftables table: " \
            "Services as kube-proxy's nftables mode writes them, and pods' egress masqueraded " \
            "to the node's address (one atomic transaction per node)"
        assert out.splitlines()[1].startswith("dry run: 1 steps: 0 pods to create")
        podnet("up", "-q", "-f", str(tmp_path / "lab.yaml"))
        page = egress("client").stdout
        assert f"client:    {lab.nodes[node]}:" in page
        assert "nothing to do" in podnet("up", "-f", str(tmp_path / "lab.yaml")).stdout
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def test_a_dead_internet_server_is_restarted(tmp_path: Path) -> None:
    podnet("up", "-q", "-f", write(tmp_path, topology("ptp", "static")))
    try:
        with open(f"/run/podnet/{CLUSTER}/state.json") as fh:
            pid = json.load(fh)["internet"]["containers"][0]["pid"]
        subprocess.run(["kill", str(pid)], check=True)
        out = podnet("up", "-f", str(tmp_path / "lab.yaml")).stdout
        assert "1 steps" in out
        assert egress("client").returncode == 0
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def test_a_service_added_to_a_live_lab_gets_dns_names_and_rules(tmp_path: Path) -> None:
    podnet("up", "-q", "-f", write(tmp_path, topology("bridge", "static")))
    try:
        first = services()
        podnet("up", "-q", "-f", write(tmp_path, topology("bridge", "static", extra=EXTRA_SERVICE),
                                      "more.yaml"))
        second = services()
        assert {k: v["cluster_ip"] for k, v in first.items()} == \
            {k: v["cluster_ip"] for k, v in second.items() if k in first}
        extra_ip = second["dev/extra"]["cluster_ip"]
        # The cluster DNS answers the new name at once; /etc/hosts holds no Service names.
        named = podnet("exec", "-C", CLUSTER, "client", "--", "getent", "hosts", "extra.dev")
        assert named.stdout.split()[:2] == [str(extra_ip), "extra.dev.svc.cluster.local"]
        hosts = podnet("exec", "-C", CLUSTER, "client", "--", "cat", "/etc/hosts").stdout
        assert "extra" not in hosts
        page = podnet("exec", "-C", CLUSTER, "client", "--", "curl", "-s", "-m", "2",
                      "http://extra.dev:81/").stdout
        assert "answered" in page
        # A Service that selects no pod is refused at once (curl 7), not left to time out.
        empty = podnet("exec", "-C", CLUSTER, "client", "--", "curl", "-s", "-m", "5",
                       "-w", "%{time_total}", "http://empty/", check=False)
        assert empty.returncode == 7 and float(empty.stdout) < 1
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def test_changing_the_shape_rebuilds_and_keeps_addresses(tmp_path: Path) -> None:
    podnet("up", "-q", "-f", write(tmp_path, topology("ptp", "static")))
    try:
        before = read_lab("ptp", "static")
        vips = {k: v["cluster_ip"] for k, v in services().items()}
        podnet("up", "-q", "-f", write(tmp_path, topology("bridge", "vxlan"), "vx.yaml"))
        after = read_lab("bridge", "vxlan")
        assert {n: after.ip_of(n) for n in after.pods} == {n: before.ip_of(n) for n in before.pods}
        assert {k: v["cluster_ip"] for k, v in services().items()} == vips
        report = json.loads(podnet("check", "-C", CLUSTER, "-o", "json").stdout)
        assert report["ok"] and report["routing"] == "vxlan" and report["podMTU"] == 1450
    finally:
        podnet("down", "-q", "-C", CLUSTER)
    assert netns_list() == ""


def test_cluster_ips_are_the_same_after_down_and_up(tmp_path: Path) -> None:
    path = write(tmp_path, topology("ptp", "static"))
    podnet("up", "-q", "-f", path)
    first = {k: v["cluster_ip"] for k, v in services().items()}
    podnet("down", "-q", "-C", CLUSTER)
    podnet("up", "-q", "-f", path)
    try:
        assert {k: v["cluster_ip"] for k, v in services().items()} == first
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def test_check_fails_and_names_a_broken_path(tmp_path: Path) -> None:
    podnet("up", "-q", "-f", write(tmp_path, topology("ptp", "static")))
    try:
        lab = read_lab("ptp", "static")
        node = lab.node_of("client")
        # Cut one node's uplink: everything that leaves that node must now fail, and say so.
        subprocess.run(["ip", "-n", node, "link", "set", "eth0", "down"], check=True)
        result = podnet("check", "-C", CLUSTER, "--timeout", "0.5", check=False)
        assert result.returncode == 1
        assert "FAIL" in result.stdout and "outside" in result.stdout
        report = json.loads(podnet("check", "-C", CLUSTER, "-o", "json", "--timeout", "0.5",
                                   check=False).stdout)
        broken = {p["kind"] for p in report["probes"] if not p["ok"]}
        assert "outside" in broken and "other-node" in broken and "self" not in broken
    finally:
        podnet("down", "-q", "-C", CLUSTER)
