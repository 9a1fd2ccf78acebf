"""`kill -9` of `podnet up` mid-build, while the zygote has containers in flight (issue 10,
item 3), then `down` or `up` straight after: nothing may be left, and the lab must come up whole.

Before the fix the zygote went on forking its queue after its caller died, then died itself of
EPIPE before stopping what it had started: `down` left 35-76 live containers holding namespaces
`ip netns` no longer listed, and an `up` straight after failed with "Address already in use".
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.helpers import (
    PODNET,
    assert_nothing_left,
    deployment_lab,
    foreign_namespaces,
    podnet,
    podnet_processes,
    wait_for,
)

pytestmark = pytest.mark.kernel

CLUSTER = "crash"
REPLICAS = 100
# Where to kill: how many of the 100 containers run by then (the first one, a quarter, half,
# most). Every point is before the last container: the zygote still has work queued.
POINTS = (1, 25, 50, 80)


def _kill_mid_up(topo: Path, point: int, attempts: int = 3) -> tuple[int, set[int]]:
    """Start `up` and SIGKILL it once `point` containers run: (containers then, podnet's
    processes once it is dead: the zygote, containers and children of the zygote setting up).
    Counting containers takes a pass over /proc, and a fast `up` can start the last ones, and
    even record the lab complete, within one pass: a kill that lands after the last container
    or after the record is cleaned up and tried again."""
    for attempt in range(attempts):
        proc = subprocess.Popen([*PODNET, "up", "-q", "-f", str(topo)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while (running := _running()) < point:
                assert proc.poll() is None, "up ended before the kill point"
                assert time.monotonic() < deadline, "up never reached the kill point"
                time.sleep(0.002)
        finally:
            proc.kill()
            proc.wait()
        late = running >= REPLICAS or _recorded_complete()
        if not late or attempt == attempts - 1:
            break
        podnet("down", "-q", "-C", CLUSTER)
        assert_nothing_left(CLUSTER)
    assert not late, "the kill came after the last container or the record: nothing was in flight"
    return running, set(podnet_processes())


def _recorded_complete() -> bool:
    """Whether `up` recorded the lab whole (and so kept its containers) before the kill."""
    try:
        with open(f"/run/podnet/{CLUSTER}/state.json") as fh:
            return bool(json.load(fh)["complete"])
    except (OSError, ValueError, KeyError):
        return False


def _running() -> int:
    return sum(_title(pid).startswith(b"podnet-http dev/") for pid in podnet_processes())


def _forked_after(known: set[int], timeout: float = 10.0) -> tuple[set[int], float]:
    """Watch until no process of podnet's is left; (those not in `known`, seconds it took)."""
    seen: set[int] = set()
    begun = time.monotonic()
    while live := set(podnet_processes()):
        seen |= live
        assert time.monotonic() - begun < timeout, f"still running: {sorted(live)}"
        time.sleep(0.002)
    return seen - known, time.monotonic() - begun


def _pods() -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(
        podnet("get", "pods", "-C", CLUSTER, "-o", "json").stdout)["items"]
    return items


def _assert_whole() -> None:
    """All 100 pods Running, and no process of podnet's beyond what the record names."""
    pods = _pods()
    # the Deployment's replicas, and the cluster DNS's two coredns pods every lab has
    assert len([p for p in pods if p["metadata"]["namespace"] != "kube-system"]) == REPLICAS  # type: ignore[index]
    assert len(pods) == REPLICAS + 2
    assert all(p["status"]["phase"] == "Running" for p in pods)  # type: ignore[index]
    recorded = {c["pid"] for p in pods for c in p["status"]["containerStatuses"]}  # type: ignore[index]
    # Not containers: the internet's web server, and each node's podhost (the parent of its
    # pods' responder containers, holding their sockets; it ends with its last pod).
    strays = {pid for pid in podnet_processes() if pid not in recorded
              and not _title(pid).startswith((b"podnet-http internet/", b"podnet-http node "))}
    assert strays == set(), f"processes no record names: {strays}"


def _title(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


@pytest.mark.parametrize("point", POINTS)
def test_kill_then_down_leaves_nothing_and_up_builds_it_whole(
    tmp_path: Path, labs: list[str], point: int
) -> None:
    topo = deployment_lab(tmp_path, CLUSTER, REPLICAS)
    labs.append(CLUSTER)
    running, left = _kill_mid_up(topo, point)
    assert os.path.exists(f"/run/podnet/{CLUSTER}/state.json"), "the intent is recorded first"
    # Nothing was kept (recorded): the zygote stops every container it started, and forks at
    # most the one it was forking when its caller died.
    late, lag = _forked_after(left)
    assert len(late) <= 1, f"the zygote forked {len(late)} containers after its caller died"
    podnet("down", "-q", "-C", CLUSTER)
    assert_nothing_left(CLUSTER)
    podnet("up", "-q", "-f", str(topo))
    _assert_whole()
    podnet("down", "-q", "-C", CLUSTER)
    assert_nothing_left(CLUSTER)
    print(f"\nkilled at {running} containers ({len(left)} processes of podnet's then): all gone "
          f"{lag * 1000:.0f} ms later, {len(late)} forked after; down clean; up whole")


@pytest.mark.parametrize("point", POINTS)
def test_kill_then_up_straight_after_builds_it_whole(
    tmp_path: Path, labs: list[str], point: int
) -> None:
    topo = deployment_lab(tmp_path, CLUSTER, REPLICAS)
    labs.append(CLUSTER)
    _kill_mid_up(topo, point)
    podnet("up", "-q", "-f", str(topo))
    # The killed run's zygote may still be stopping what it started when `up` returns.
    wait_for(lambda: len(foreign_namespaces()) == REPLICAS + 1 + 2,
             "not one container per pod (+ the internet's, + the two coredns pods'): "
             f"{len(foreign_namespaces())}")
    _assert_whole()
    podnet("down", "-q", "-C", CLUSTER)
    assert_nothing_left(CLUSTER)
