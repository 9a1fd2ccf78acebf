"""containerd and runc (Debian's) run two busybox containers with podnet-cni as their network,
and one fetches a page from the other over HTTP. See containerd_e2e.py for how it stays inside
the sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not all(shutil.which(t) for t in ("containerd", "ctr", "runc")),
                    reason="needs containerd and runc (./podnet.sh test installs them)")
@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static")
def test_containers_talk_over_podnet_cni() -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    # A mount namespace of its own: the overlays it lays on /etc, /opt and /var/lib end with it.
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-m",
         "tests.cni.containerd_e2e"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "client fetched 'podnet-e2e-ok'" in out, out
    assert "reservations after DEL: []" in out, out
