"""The lab end to end, through the real CLI, with real namespaces and real packets (sandbox only)."""

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
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for p in items:
        assert str(p["podnet"]["netns"]).startswith("cni-")  # type: ignore[index]
        assert p["podnet"]["netns"] in netns  # type: ignore[index]
    for node in ("kind-control-plane", "kind-worker", "kind-worker2"):
        assert node in netns


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
    others = [p for p in pods() if p["spec"]["nodeName"] != jump["spec"]["nodeName"]]  # type: ignore[index]
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


def test_down_leaves_nothing_and_succeeds_twice(tmp_path: Path) -> None:
    before = host_snapshot()
    podnet("up", "-q", "-f", str(write_topology(tmp_path, replicas=2)))
    pids = [c["pid"] for p in pods_of("small") for c in p["status"]["containerStatuses"]]  # type: ignore[index]
    assert pids
    podnet("down", "-q", "-C", "small")
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == ""
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)
    assert not os.path.exists("/run/podnet/small")
    assert host_snapshot() == before
    assert "nothing to remove" in podnet("down", "-C", "small").stdout


def test_up_with_a_changed_file_converges(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, replicas=3)
    podnet("up", "-q", "-f", str(topo))
    first = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods_of("small")}  # type: ignore[index]
    podnet("up", "-q", "-f", str(write_topology(tmp_path, replicas=1)))
    second = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods_of("small")}  # type: ignore[index]
    assert len(second) == 1 and set(second.items()) <= set(first.items())
    podnet("up", "-q", "-f", str(write_topology(tmp_path, replicas=4)))
    third = pods_of("small")
    assert len(third) == 4 and all(p["status"]["phase"] == "Running" for p in third)  # type: ignore[index]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns.count("cni-") == 4
    podnet("down", "-q", "-C", "small")


def test_failure_mid_up_rolls_back(tmp_path: Path) -> None:
    before = host_snapshot()
    topo = write_topology(tmp_path, replicas=3)
    victim = "pod.create:dev/" + _replica_names(topo)[2]
    result = podnet("up", "-q", "-f", str(topo), check=False,
                    env={"PODNET_INJECT_FAILURE": victim})
    assert result.returncode == 1
    assert "injected failure" in result.stderr and "rolled back" in result.stderr
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == ""
    assert not os.path.exists("/run/podnet/small/state.json")
    assert host_snapshot() == before


def test_bad_input_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n"
                   "networking: {podSubnet: 10.0.0.0/16, serviceSubnet: 10.0.0.0/24}\n---\n"
                   "kind: Pod\napiVersion: v1\nmetadata: {name: x}\nspec:\n  nodeName: nowhere\n"
                   "  containers: [{name: c}]\n---\nkind: Gadget\n")
    result = podnet("up", "-f", str(bad), check=False)
    assert result.returncode == 1
    for fragment in ("overlap", "nowhere", "Gadget"):
        assert fragment in result.stderr
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == ""


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


def _replica_names(topo: Path) -> list[str]:
    from podnet.model.loader import load_file

    return [p.name for p in load_file(str(topo)).pods]
