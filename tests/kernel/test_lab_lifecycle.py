"""Lab lifecycle through the real CLI: down leaves nothing, converge, rollback, bad input.

Each test starts from an empty sandbox (the shared default lab of test_lab.py is down by then).
Crashes (kill -9 mid-`up`) are tested in tests/reliability/test_crash.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.kernel.test_lab import (
    host_snapshot,
    netns_list,
    podnet,
    pods_of,
    write_topology,
)

pytestmark = pytest.mark.kernel


def test_down_leaves_nothing_and_succeeds_twice(tmp_path: Path) -> None:
    before = host_snapshot()
    podnet("up", "-q", "-f", str(write_topology(tmp_path, replicas=2)))
    pids = [c["pid"] for p in pods_of("small") for c in p["status"]["containerStatuses"]]  # type: ignore[index]
    assert pids
    podnet("down", "-q", "-C", "small")
    assert netns_list() == ""
    assert all(dead(pid) for pid in pids)
    assert not os.path.exists("/run/podnet/small")
    assert host_snapshot() == before
    assert "nothing to remove" in podnet("down", "-C", "small").stdout


def workloads(cluster: str) -> list[dict[str, object]]:
    """The file's pods (every lab has the cluster DNS's coredns pods in kube-system too)."""
    return [p for p in pods_of(cluster)
            if p["metadata"]["namespace"] != "kube-system"]  # type: ignore[index]


def test_up_with_a_changed_file_converges(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, replicas=3)
    podnet("up", "-q", "-f", str(topo))
    first = {p["metadata"]["name"]: p["status"]["podIP"] for p in workloads("small")}  # type: ignore[index]
    podnet("up", "-q", "-f", str(write_topology(tmp_path, replicas=1)))
    second = {p["metadata"]["name"]: p["status"]["podIP"] for p in workloads("small")}  # type: ignore[index]
    assert len(second) == 1 and set(second.items()) <= set(first.items())
    podnet("up", "-q", "-f", str(write_topology(tmp_path, replicas=4)))
    third = workloads("small")
    assert len(third) == 4 and all(p["status"]["phase"] == "Running" for p in third)  # type: ignore[index]
    netns = netns_list()
    assert netns.count("cni-") == 4 + 2  # and the cluster DNS's two coredns pods
    podnet("down", "-q", "-C", "small")


def test_failure_mid_up_rolls_back(tmp_path: Path) -> None:
    before = host_snapshot()
    topo = write_topology(tmp_path, replicas=3)
    victim = "pod.create:dev/" + _replica_names(topo)[2]
    result = podnet("up", "-q", "-f", str(topo), check=False,
                    env={"PODNET_INJECT_FAILURE": victim})
    assert result.returncode == 1
    assert "injected failure" in result.stderr and "rolled back" in result.stderr
    assert netns_list() == ""
    assert not os.path.exists("/run/podnet/small/state.json")
    # the DNS records the failed run wrote (before any pod) went with the rest
    assert not os.path.exists("/run/podnet/small/dns")
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
    assert netns_list() == ""


def _replica_names(topo: Path) -> list[str]:
    from podnet.model.loader import load_file

    return [p.name for p in load_file(str(topo)).pods]


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting for the sandbox's init to reap it: either way it ran its end."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_containers_of_a_pod_share_its_network_over_loopback(tmp_path: Path) -> None:
    topo = tmp_path / "sidecar.yaml"
    topo.write_text("""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: side
nodes: [{role: control-plane}, {role: worker}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers:
  - name: app
    ports: [{containerPort: 8080}]
  - name: sidecar
    command: [python3, -m, http.server, "9090", --bind, 127.0.0.1]
""")
    podnet("up", "-q", "-f", str(topo))
    try:
        pod = pods_of("side")[0]
        statuses = pod["status"]["containerStatuses"]  # type: ignore[index]
        assert [c["name"] for c in statuses] == ["app", "sidecar"]
        inodes = {os.stat(f"/proc/{c['pid']}/ns/net").st_ino for c in statuses}
        utss = {os.stat(f"/proc/{c['pid']}/ns/uts").st_ino for c in statuses}
        assert len(inodes) == 1 and len(utss) == 1, "containers of a pod share net and uts"
        # The sidecar listens on 127.0.0.1 only: reachable from the pod's other processes
        # over lo, never from outside the pod.
        listing = _poll(lambda: podnet("exec", "-C", "side", "-n", "dev", "web", "--", "curl",
                                       "-s", "-m", "2", "http://localhost:9090/", check=False))
        assert "Directory listing" in listing
        page = podnet("exec", "-C", "side", "-n", "dev", "web", "--", "curl", "-s",
                      "http://127.0.0.1:8080/").stdout
        assert "dev/web" in page
    finally:
        podnet("down", "-q", "-C", "side")


def _poll(attempt: Callable[[], subprocess.CompletedProcess[str]], tries: int = 50) -> str:
    """Retry until the sidecar (a fresh Python process) listens: poll, never sleep blindly."""
    for _ in range(tries):
        result = attempt()
        if result.returncode == 0 and result.stdout:
            return str(result.stdout)
        time.sleep(0.1)
    raise AssertionError("the sidecar never answered on localhost:9090")
