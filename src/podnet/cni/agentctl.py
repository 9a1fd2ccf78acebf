"""Finding and stopping the agent that serves a socket, from outside it.

The agent writes its PID into `<socket>.lock` (and holds a flock on it while it listens). Only a
process whose command line names podnet and that very socket is ever signalled, so a PID reused
by something else is left alone. Stdlib only: `podnet cni install`, the tests and the benchmark
use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

__all__ = ["agent_pid", "alive", "stop_agent"]


def agent_pid(socket_path: str) -> int | None:
    """The PID of the agent serving `socket_path`, if one is alive."""
    try:
        with open(f"{socket_path}.lock") as fh:
            pid = int(fh.read().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    if not any(b"podnet" in arg for arg in argv) or socket_path.encode() not in argv:
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    """Running and not a zombie. Reaps it when it is this process's child (in a PID namespace
    whose init is this process, the agents that clients started become its children)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_agent(socket_path: str, timeout: float = 0.0) -> int | None:
    """SIGTERM the agent serving `socket_path` (it drains, then exits) and wait up to `timeout`
    seconds for it to be gone; returns its PID, None when none was running."""
    pid = agent_pid(socket_path)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pid
