"""The lab end to end through the real CLI: real namespaces, real packets (sandbox only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

PODNET = [sys.executable, "-m", "podnet"]


def podnet(*args: str, check: bool = True, stdin: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODNET, *args], capture_output=True, text=True, input=stdin,
                            env={**os.environ, **(env or {})}, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podnet {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


def host_snapshot() -> str:
    """This namespace's links, addresses and routes: `up` must leave them exactly as they were."""
    return "\n".join(
        subprocess.run(["ip", "-j", *what], capture_output=True, text=True, check=True).stdout
        for what in (["link"], ["addr"], ["route", "show", "table", "all"])
    )


def pods() -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(podnet("get", "pods", "-o", "json").stdout)["items"]
    return items


@pytest.fixture(scope="module")
def lab() -> Iterator[str]:
    before = host_snapshot()
    podnet("up", "-q")
    yield before
    podnet("down", "-q")


def pod_named(prefix: str) -> dict[str, object]:
    return next(p for p in pods() if str(p["metadata"]["name"]).startswith(prefix))  # type: ignore[index]


def test_up_leaves_the_host_namespace_untouched(lab: str) -> None:
    assert host_snapshot() == lab


def test_default_lab_has_the_lessons_shape(lab: str) -> None:
    items = pods()
    names = sorted(str(p["metadata"]["name"]) for p in items)  # type: ignore[index]
    assert "jumpbox" in names and sum(n.startswith("demo-") for n in names) == 3
    assert all(p["status"]["phase"] == "Running" for p in items)  # type: ignore[index]
    netns = netns_list()
    for p in items:
        assert str(p["podnet"]["netns"]).startswith("cni-")  # type: ignore[index]
        assert p["podnet"]["netns"] in netns  # type: ignore[index]
    for node in ("kind-control-plane", "kind-worker", "kind-worker2"):
        assert node in netns


def test_get_services_lists_the_demo_service(lab: str) -> None:
    import ipaddress

    items = json.loads(podnet("get", "svc", "-o", "json").stdout)["items"]
    demo = next(s for s in items if s["metadata"]["name"] == "demo")
    assert ipaddress.ip_address(demo["spec"]["clusterIP"]) in ipaddress.ip_network("10.96.0.0/16")
    assert len(demo["endpoints"]) == 3 and all(e.startswith("dev/demo-") for e in demo["endpoints"])


def test_loopback_inside_a_pod(lab: str) -> None:
    out = podnet("exec", "jumpbox", "--", "curl", "-s", "http://localhost:80").stdout
    assert "jumpbox" in out


def test_hosts_file_and_hostname(lab: str) -> None:
    demo = pod_named("demo-")
    name = str(demo["metadata"]["name"])  # type: ignore[index]
    ip = str(demo["status"]["podIP"])  # type: ignore[index]
    hosts = podnet("exec", "-n", "dev", name, "--", "cat", "/etc/hosts").stdout
    assert hosts.startswith("# Kubernetes-managed hosts file.")
    assert f"{ip}\t{name}" in hosts
    assert podnet("exec", "-n", "dev", name, "--", "hostname").stdout.strip() == name


def test_pod_to_pod_across_nodes(lab: str) -> None:
    jump = pod_named("jumpbox")
    others = [p for p in pods() if p["spec"]["nodeName"] != jump["spec"]["nodeName"]  # type: ignore[index]
              and p["metadata"]["namespace"] == "dev"]  # type: ignore[index]
    assert others, "the default lab spreads pods over both workers"
    src = others[0]
    out = podnet("exec", "-n", "dev", str(src["metadata"]["name"]), "--",  # type: ignore[index]
                 "curl", "-s", "-m", "5", f"http://{jump['status']['podIP']}:80").stdout  # type: ignore[index]
    assert "jumpbox" in out


def test_exec_passes_stdin_stdout_and_exit_code(lab: str) -> None:
    demo = str(pod_named("demo-")["metadata"]["name"])  # type: ignore[index]
    piped = subprocess.run(
        f"{' '.join(PODNET)} exec jumpbox -- echo from-jumpbox | "
        f"{' '.join(PODNET)} exec -n dev {demo} -- cat", shell=True, capture_output=True,
        text=True, check=True)
    assert piped.stdout.strip() == "from-jumpbox"
    assert podnet("exec", "jumpbox", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    missing = podnet("exec", "jumpbox", "--", "no-such-command", check=False)
    assert missing.returncode == 127 and "no-such-command: command not found" in missing.stderr


def test_node_exec_shows_the_nodes_veths(lab: str) -> None:
    out = podnet("node-exec", "kind-worker", "--", "ip", "address").stdout
    assert "10.244.1.1/32" in out and "link-netns cni-" in out
    assert "172.18.0.3/16" in out
    listed = podnet("node-exec", "kind-worker", "--", "ip", "netns", "list").stdout
    workers = [p for p in pods() if p["spec"]["nodeName"] == "kind-worker"]  # type: ignore[index]
    assert len(listed.strip().splitlines()) == len(workers)


def test_second_up_changes_nothing(lab: str) -> None:
    before = {str(p["metadata"]["name"]): p["status"] for p in pods()}  # type: ignore[index]
    out = podnet("up", "-q").stdout
    assert "nothing to do" in out
    after = {str(p["metadata"]["name"]): p["status"] for p in pods()}  # type: ignore[index]
    assert before == after


# --- helpers -----------------------------------------------------------------------------------


def write_topology(tmp_path: Path, replicas: int) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: small
nodes:
- role: control-plane
- role: worker
- role: worker
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: dev}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        ports: [{{containerPort: 8080}}]
""")
    return path


def pods_of(cluster: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(
        podnet("get", "pods", "-C", cluster, "-o", "json").stdout)["items"]
    return items


def netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True).stdout
