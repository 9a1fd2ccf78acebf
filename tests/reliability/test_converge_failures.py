"""The lab's promises under mistakes and failures, each case from the failure-path issue:

- a killed container is healed by one `up`, and the next `up` has nothing to do; a pod left
  half built (its container alive) is built again by one `up`;
- Deployment template edits converge every time, four in a row (replicas get new names, keep
  addresses: a route the kernel is still freeing must not fail the new pod);
- a failure inside a step (not only before it) undoes that step's own work, on a new lab and on
  a running one, which keeps working;
- a file in the way of podnet's state is a one-line error, and `down` still works;
- `down` never deletes a namespace podnet did not make, even one recorded under its name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.test_lab import netns_list, podnet
from tests.kernel.topologies import web_lab

pytestmark = pytest.mark.kernel

CLUSTER = "rel"


def topology(*, env: str = "one", replicas: int = 4, extra_pod: str = "", workers: int = 2) -> str:
    pod = f"""---
apiVersion: v1
kind: Pod
metadata: {{name: {extra_pod}}}
spec:
  containers: [{{name: c, command: [sleep, infinity]}}]
""" if extra_pod else ""
    return web_lab(CLUSTER, workers=workers, replicas=replicas, env=env, extra=pod)


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "lab.yaml"
    try:
        yield path
    finally:
        podnet("down", "-q", "-C", CLUSTER, check=False)


def record() -> dict[str, object]:
    with open(f"/run/podnet/{CLUSTER}/state.json") as fh:
        data: dict[str, object] = json.load(fh)
    return data


def up(path: Path, text: str, *, check: bool = True,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path.write_text(text)
    return podnet("up", "-q", "-f", str(path), check=check, env=env)


def pods() -> dict[str, dict[str, object]]:
    items = json.loads(podnet("get", "pods", "-C", CLUSTER, "-o", "json").stdout)["items"]
    return {i["metadata"]["namespace"] + "/" + i["metadata"]["name"]: i for i in items}


def check_passes() -> None:
    result = podnet("check", "-C", CLUSTER, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_a_killed_container_is_healed_by_one_up(topo: Path) -> None:
    up(topo, topology())
    web = next(p for p in record()["pods"] if p["namespace"] == "dev")  # type: ignore[attr-defined]
    pid = web["containers"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)  # reaped by its parent's exit, or a zombie the record ignores
    up(topo, topology())
    healed = next(p for p in record()["pods"]  # type: ignore[attr-defined]
                  if p["name"] == web["name"])
    assert len(healed["containers"]) == 1 and healed["containers"][0]["pid"] != pid
    for _ in range(2):  # and it stays healed: no flapping
        assert "nothing to do" in podnet("up", "-f", str(topo)).stdout
    check_passes()


def test_a_half_built_pod_whose_container_lives_is_built_again_by_one_up(topo: Path) -> None:
    """A kill between a pod's namespace and its hosts file (the file its creation writes last)
    leaves a pod the next `up` builds again. Here its container still runs and holds the old
    namespace, so the kernel keeps the old veth on the node under the name the rebuild needs:
    the rebuild takes the veth away first, and stops the old container."""
    up(topo, topology())
    web = next(p for p in record()["pods"] if p["namespace"] == "dev")  # type: ignore[attr-defined]
    old_pid = web["containers"][0]["pid"]
    os.unlink(web["hosts_file"])
    up(topo, topology())
    rebuilt = next(p for p in record()["pods"]  # type: ignore[attr-defined]
                   if p["name"] == web["name"])
    assert os.path.exists(rebuilt["hosts_file"])
    assert rebuilt["containers"][0]["pid"] != old_pid
    deadline = time.monotonic() + 5
    while _alive(old_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(old_pid), "the old container was stopped"
    assert "nothing to do" in podnet("up", "-f", str(topo)).stdout
    check_passes()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_template_edits_converge_four_times_in_a_row(topo: Path) -> None:
    up(topo, topology(env="v0"))
    before = set(pods())
    for version in ("v1", "v2", "v3", "v4"):
        result = up(topo, topology(env=version), check=False)
        assert result.returncode == 0, f"edit {version}: {result.stderr}"
        now = pods()
        webs = [k for k in now if k.startswith("dev/web-")]
        assert len(webs) == 4 and not set(webs) & before, "replicas are replaced"
        assert all(p["status"]["phase"] == "Running" for p in now.values())  # type: ignore[index]
        check_passes()
        before = set(now)


@pytest.mark.parametrize("ops_done", [1, 3, 5])
def test_a_failure_inside_a_step_undoes_its_own_work_on_a_new_lab(topo: Path,
                                                                   ops_done: int) -> None:
    env = {"PODNET_INJECT_FAILURE": f"pod.create:default/client@{ops_done}"}
    result = up(topo, topology(), check=False, env=env)
    assert result.returncode != 0 and "injected failure" in result.stderr
    assert "Traceback" not in result.stderr
    assert netns_list() == "", "rolled back: no namespace of the lab is left"
    assert not os.path.exists(f"/run/podnet/{CLUSTER}/state.json")
    up(topo, topology())  # and the next `up` builds it whole
    check_passes()


def test_a_failure_inside_a_step_leaves_a_running_lab_working(topo: Path) -> None:
    up(topo, topology())
    names = netns_list()
    env = {"PODNET_INJECT_FAILURE": "pod.create:default/late@4"}
    result = up(topo, topology(extra_pod="late"), check=False, env=env)
    assert result.returncode != 0 and "rolled back" in result.stderr
    assert netns_list() == names, "the half-built pod's namespace is gone, the rest untouched"
    check_passes()
    up(topo, topology(extra_pod="late"))
    assert "default/late" in pods()


def test_a_file_in_the_way_is_an_error_and_down_still_works(topo: Path) -> None:
    os.makedirs(f"/run/podnet/{CLUSTER}", exist_ok=True)
    blocker = Path(f"/run/podnet/{CLUSTER}/logs")
    blocker.touch()
    try:
        result = up(topo, topology(), check=False)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr and "logs" in result.stderr
        assert netns_list() == ""
        down = podnet("down", "-C", CLUSTER, check=False)
        assert down.returncode == 0, down.stderr
    finally:
        blocker.unlink()


def _inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def test_down_leaves_a_namespace_it_did_not_make(topo: Path) -> None:
    subprocess.run(["ip", "netns", "add", f"{CLUSTER}-worker3"], check=True)
    try:
        foreign = _inode(f"{CLUSTER}-worker3")
        result = up(topo, topology(workers=3), check=False)
        assert result.returncode != 0 and "already exists" in result.stderr
        podnet("down", "-q", "-C", CLUSTER, check=False)
        assert _inode(f"{CLUSTER}-worker3") == foreign, "refused up, then down: untouched"
        # A recorded namespace replaced by someone else's of the same name: left alone too.
        up(topo, topology(workers=2))
        victim = next(p for p in record()["pods"])["netns"]  # type: ignore[call-overload]
        subprocess.run(["ip", "netns", "del", victim], check=True)
        subprocess.run(["ip", "netns", "add", victim], check=True)
        impostor = _inode(victim)
        down = podnet("down", "-C", CLUSTER)
        assert "left alone" in down.stderr and victim in down.stderr
        assert _inode(victim) == impostor
        subprocess.run(["ip", "netns", "del", victim], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", f"{CLUSTER}-worker3"], check=False)
