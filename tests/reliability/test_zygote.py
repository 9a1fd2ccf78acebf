"""The zygote when its caller goes away (issue 10, item 3): end of input, EPIPE on its answers,
the caller's death, SIGTERM. Each time it must fork nothing more and stop every container it
started since the last `keep`, and it must not mistake the end of the caller's thread for the
end of the caller.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import podnet
from podnet.kernel import netns
from podnet.runtime.procs import ProcessRef, identify, is_alive, stop
from podnet.runtime.spawner import Spawner, SpawnRequest

pytestmark = pytest.mark.kernel

SRC = os.path.dirname(os.path.dirname(os.path.abspath(podnet.__file__)))
QUEUED = 60  # more than the zygote sets up at once (16): most are still queued


def _request(path: str, logs: Path, n: int) -> SpawnRequest:
    return SpawnRequest(
        netns_path=path, uts_path=None, hosts_file=None, argv=["sleep", "1000"], ports=[],
        log_path=str(logs / f"c{n}.log"), pod_name=f"p{n}", pod_namespace="dev",
        node_name="node", pod_ip="10.244.1.2", container_name="c",
    )


def _in(path: str) -> list[int]:
    """Live processes in the namespace at `path`."""
    want = os.stat(path).st_ino
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == want and identify(int(entry)):
                found.append(int(entry))
        except OSError:
            continue
    return found


def _gone(path: str, timeout: float = 10.0) -> tuple[set[int], float]:
    """Wait until no process is left in the namespace; (every PID seen there, seconds)."""
    seen: set[int] = set()
    begun = time.monotonic()
    while live := _in(path):
        seen.update(live)
        assert time.monotonic() - begun < timeout, f"still in the pod: {live}"
        time.sleep(0.002)
    return seen, time.monotonic() - begun


@pytest.fixture
def pod(netns_factory: Callable[[str], str]) -> Iterator[str]:
    """A pod namespace; whatever a test leaves in it is stopped afterwards."""
    path = netns.path_of(netns_factory("zyg"))
    yield path
    stop([ref for pid in _in(path) if (ref := identify(pid))])


def _zygote() -> subprocess.Popen[bytes]:
    """A zygote whose caller is this test process, talked to by hand."""
    return subprocess.Popen(
        [sys.executable, "-S", "-m", "podnet.runtime.zygote", str(os.getpid()), " " * 100],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    )


def _send(zygote: subprocess.Popen[bytes], requests: list[SpawnRequest]) -> None:
    assert zygote.stdin is not None
    for n, request in enumerate(requests):
        zygote.stdin.write(json.dumps({"id": n, "request": request.to_wire()}).encode() + b"\n")
    zygote.stdin.flush()


def test_epipe_on_its_answers_stops_everything_it_started(pod: str, tmp_path: Path) -> None:
    """The caller stops reading (its end of the answer pipe closed) with work queued: the
    zygote forks no more, stops what it started, and exits 0 without a traceback."""
    zygote = _zygote()
    assert zygote.stdin is not None and zygote.stdout is not None and zygote.stderr is not None
    try:
        _send(zygote, [_request(pod, tmp_path, n) for n in range(QUEUED)])
        deadline = time.monotonic() + 10
        while len(before := _in(pod)) < 5:  # some are up and answered, unkept
            assert time.monotonic() < deadline
            time.sleep(0.001)
        zygote.stdout.close()
        seen, lag = _gone(pod)
        seen |= set(before)
        assert zygote.wait(timeout=10) == 0
        assert b"Traceback" not in zygote.stderr.read()
    finally:
        for stream in (zygote.stdin, zygote.stdout, zygote.stderr):
            stream.close()
        zygote.kill()
        zygote.wait()
    assert len(seen) < QUEUED, "it went on forking its queue with nobody reading its answers"
    print(f"\nEPIPE: {len(seen)} of {QUEUED} started, all stopped within {lag * 1000:.0f} ms")


def test_the_callers_death_stops_everything_it_started(pod: str, tmp_path: Path) -> None:
    """A caller that dies with requests queued (SIGKILL: no Python cleanup runs)."""
    script = textwrap.dedent(f"""
        import json, os, signal, sys
        from podnet.runtime.spawner import Spawner, SpawnRequest
        spawner = Spawner()
        for n in range({QUEUED}):
            spawner.submit(SpawnRequest.from_wire(json.loads(sys.argv[1 + n])))
        spawner._pump(5.0)  # the requests reach the zygote, then answers start to come
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    wires = [json.dumps(_request(pod, tmp_path, n).to_wire()) for n in range(QUEUED)]
    caller = subprocess.run([sys.executable, "-c", script, *wires], env={
        **os.environ, "PYTHONPATH": SRC}, capture_output=True, timeout=60, check=False)
    assert caller.returncode == -signal.SIGKILL, caller.stderr
    seen, lag = _gone(pod)
    assert len(seen) < QUEUED, "it went on forking its queue after its caller died"
    print(f"\ncaller killed: {len(seen)} of {QUEUED} started, all stopped within "
          f"{lag * 1000:.0f} ms")


def test_sigterm_stops_what_was_never_kept(pod: str, tmp_path: Path) -> None:
    spawner = Spawner()
    try:
        refs = spawner.spawn_many([_request(pod, tmp_path, n) for n in range(3)])
        assert all(is_alive(r) for r in refs)
        assert spawner._proc is not None
        spawner._proc.terminate()
        assert spawner._proc.wait(timeout=10) == 0
        assert not any(is_alive(r) for r in refs)
    finally:
        spawner.close()


def test_kept_containers_outlive_the_zygote(pod: str, tmp_path: Path) -> None:
    spawner = Spawner()
    refs: list[ProcessRef] = []
    try:
        refs = spawner.spawn_many([_request(pod, tmp_path, n) for n in range(3)])
        spawner.keep()
        assert spawner._proc is not None
        spawner._proc.terminate()  # even when killed on purpose, it leaves recorded ones
        spawner._proc.wait(timeout=10)
        assert all(is_alive(r) for r in refs)
    finally:
        spawner.close()
        stop(refs)


def test_the_end_of_the_thread_that_started_it_is_not_the_callers_death(
    pod: str, tmp_path: Path
) -> None:
    """The parent-death signal follows the thread that forked the zygote: when that thread
    ends, the caller lives on and so must the zygote and its containers."""
    spawner = Spawner()

    def start_and_wait_until_armed() -> None:
        spawner.start()
        assert spawner._proc is not None
        # It names itself once the parent-death signal is armed: end the thread after that.
        title = f"/proc/{spawner._proc.pid}/cmdline"
        deadline = time.monotonic() + 10
        while not Path(title).read_bytes().startswith(b"podnet-zygote"):
            assert time.monotonic() < deadline
            time.sleep(0.005)

    thread = threading.Thread(target=start_and_wait_until_armed)
    thread.start()
    thread.join()
    try:
        ref = spawner.spawn(_request(pod, tmp_path, 0))
        assert spawner._proc is not None and spawner._proc.poll() is None
        assert is_alive(ref)
        stop([ref])
    finally:
        spawner.close()
