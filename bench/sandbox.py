"""Benchmarks build real namespaces: each one re-executes itself inside a fresh sandbox first.

The sandbox is a new network, mount and PID namespace with a private tmpfs on /run, so nothing a
benchmark makes (or the Mininet-style tools it compares against) can touch this machine's network.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

__all__ = ["ensure_sandbox", "median_time", "run", "timed"]

_SETUP = (
    "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/netns /run/podnet && "
    'ip link set lo up && export PODNET_SANDBOX=1 && "$@"'
)


def ensure_sandbox() -> None:
    """Re-exec this script inside a sandbox unless it already runs in one."""
    if os.environ.get("PODNET_SANDBOX") == "1":
        return
    argv = [
        "unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
        "--propagation", "private", "--", "bash", "-c", _SETUP, "sandbox",
        sys.executable, *sys.argv,
    ]
    sys.exit(subprocess.call(argv))


def run(argv: Sequence[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return result


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    return statistics.median(timed(fn) for _ in range(repeat))
