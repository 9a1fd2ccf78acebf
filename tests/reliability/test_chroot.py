"""`podnet up` inside a chroot (issue 10, item 12): containers keep the caller's root.

Containers enter a mount-namespace template with setns(2), which resets a process's root to the
namespace's real root. From a chroot that meant `up` failed ("cannot open log /run/podnet/...":
the log is inside the chroot, the container no longer was) and pods saw the machine's whole
filesystem. The chroot here is a minimal root: a tmpfs with this machine's /usr, /etc, the venv
and podnet's source bind-mounted read-only, its own /proc, /run and /tmp (all inside the
sandbox's private mount namespace, and unmounted afterwards).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import podnet
from tests.reliability.helpers import PODNET, assert_refused, podnet_processes, wait_for

pytestmark = pytest.mark.kernel

SRC = os.path.dirname(os.path.dirname(os.path.abspath(podnet.__file__)))
VENV = os.path.dirname(os.path.dirname(sys.executable))
CLUSTER = "chr"


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


@pytest.fixture(params=["mount point", "plain directory"])
def chroot(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A minimal root on a tmpfs: the tmpfs itself (a mount point, as schroot makes them), or
    a plain directory on it (as a bare `chroot DIR`)."""
    top = tmp_path / "root"
    top.mkdir()
    _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", str(top))
    root = top if request.param == "mount point" else top / "plain"
    root.mkdir(exist_ok=True)
    try:
        for link in ("bin", "sbin", "lib", "lib64"):
            os.symlink(f"usr/{link}", root / link)
        # Its own /proc, /run and /tmp first: a checkout or venv under /tmp (a CI's clone) is
        # then bound inside the chroot's /tmp rather than hidden by it.
        for path, fstype in (("proc", "proc"), ("run", "tmpfs"), ("tmp", "tmpfs")):
            (root / path).mkdir()
            _mount("-t", fstype, fstype, str(root / path))
        for path in ("run/netns", "run/podnet"):
            (root / path).mkdir()
        binds = ["/usr", "/etc", "/dev", "/sys", VENV, SRC]
        for path in binds:
            (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
            _mount("--bind", path, str(root / path.lstrip("/")))
        for path in ("/usr", "/etc", VENV, SRC):
            _mount("-o", "remount,bind,ro", str(root / path.lstrip("/")))
        yield root
    finally:
        subprocess.run(["umount", "-R", "-l", str(top)], check=False)


def _in_chroot(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *PODNET, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": SRC}, timeout=120, check=False)


def test_up_in_a_chroot_keeps_the_pods_inside_it(chroot: Path, tmp_path: Path) -> None:
    # tmp_path exists outside the chroot only (the chroot has a /tmp of its own).
    test = f"test -d {tmp_path} && echo escaped || echo contained"
    probe = f"{test}; exec sleep 1000"
    (chroot / "tmp/lab.yaml").write_text(f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {CLUSTER}
nodes: [{{role: control-plane}}, {{role: worker}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: web
    ports: [{{containerPort: 80}}]
  - name: probe
    command: [sh, -c, "{probe}"]
""")
    up = _in_chroot(chroot, "up", "-q", "-f", "/tmp/lab.yaml")
    try:
        if chroot.name == "plain":
            # No private mount namespace without a mount point: refused, never run outside.
            assert_refused(up, "not a mount point", "`mount --bind DIR DIR`")
            assert podnet_processes() == []
            return
        assert up.returncode == 0, up.stderr
        # Every container's root is the chroot, not the machine's.
        pids = podnet_processes()
        assert pids
        for pid in pids:
            assert os.readlink(f"/proc/{pid}/root") == str(chroot), pid
        log = chroot / f"run/podnet/{CLUSTER}/logs/default_web_probe.log"
        wait_for(log.exists, "the probe container wrote nothing")
        wait_for(lambda: log.read_text().strip() != "", "the probe container wrote nothing")
        assert log.read_text().strip() == "contained"
        seen = _in_chroot(chroot, "exec", "-C", CLUSTER, "web", "--", "sh", "-c", test)
        assert seen.stdout.strip() == "contained", seen.stderr
        assert not os.path.exists(f"/run/podnet/{CLUSTER}"), "the lab's records live in the chroot"
    finally:
        down = _in_chroot(chroot, "down", "-q", "-C", CLUSTER)
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not podnet_processes(), "containers outlived down")
    assert os.listdir(chroot / "run/netns") == []
