"""Container processes by identity: a PID plus its start time, because PIDs get reused.

A `ProcessRef` names one process for its whole life: the kernel hands its PID to another process
once it is gone, but never with the same start time. Every signal here goes through a pidfd opened
*before* the start time is checked, so the process that was checked is the one signalled.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from podnet.errors import ProcessError

__all__ = ["ProcessRef", "identify", "is_alive", "parse_stat", "stop"]

_KILL_WAIT = 2.0  # seconds a SIGKILLed process may take to go (it may be in uninterruptible sleep)
_FD_CHUNK = 256  # pidfds held at once while waiting: stays far below the default 1024-fd limit


@dataclass(frozen=True, order=True)
class ProcessRef:
    """One process: `pid` and `starttime` (clock ticks after boot, field 22 of /proc/PID/stat)."""

    pid: int
    starttime: int


def parse_stat(raw: bytes) -> tuple[str, int]:
    """(state, starttime) from the text of /proc/PID/stat.

    The command name (field 2) sits in parentheses and may hold spaces and ')' itself, so the
    fields are counted from the last ')'.
    """
    rest = raw[raw.rindex(b")") + 1 :].split()
    return rest[0].decode("ascii"), int(rest[19])  # fields 3 (state) and 22 (starttime)


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return parse_stat(fh.read())
    except (FileNotFoundError, ProcessLookupError):
        return None


def identify(pid: int) -> ProcessRef | None:
    """The running process with this PID, or None when there is none (gone, or a zombie)."""
    stat = _stat(pid)
    if stat is None or stat[0] in "ZX":
        return None
    return ProcessRef(pid, stat[1])


def is_alive(ref: ProcessRef) -> bool:
    """True while the very process `ref` names runs: same PID and same start time, not a zombie."""
    stat = _stat(ref.pid)
    return stat is not None and stat[1] == ref.starttime and stat[0] not in "ZX"


def stop(refs: Sequence[ProcessRef], timeout: float = 2.0) -> None:
    """End these processes and their process groups: SIGTERM, wait up to `timeout`, then SIGKILL.

    A ref whose PID now belongs to another process (other start time) is left alone, as is one that
    is already gone. Processes that are our own children are reaped. Raises ProcessError only if
    something survives SIGKILL.
    """
    pending = [ref for ref in refs if _signal(ref, signal.SIGTERM)]
    # Wait for the rest of each group too (a shell's children), so that when we return nothing
    # of the containers holds their pod's namespaces any more.
    pending += _group_members({ref.pid for ref in pending}, exclude=set(pending))
    for ref in refs:
        _reap(ref)
    pending = _wait_gone(pending, time.monotonic() + timeout)
    pending = [ref for ref in pending if _signal(ref, signal.SIGKILL)]
    pending = _wait_gone(pending, time.monotonic() + _KILL_WAIT)
    if pending:
        pids = ", ".join(str(ref.pid) for ref in pending)
        raise ProcessError(
            f"process{'es' if len(pending) > 1 else ''} {pids} survived SIGKILL",
            hint="they are stuck in the kernel (state D in `ps -o pid,stat,wchan`); "
            "they go once the call they wait on returns",
        )


def _group_members(groups: set[int], exclude: set[ProcessRef]) -> list[ProcessRef]:
    """Running processes whose process group is one of `groups` (one pass over /proc)."""
    if not groups:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                raw = fh.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        rest = raw[raw.rindex(b")") + 1 :].split()
        if int(rest[2]) in groups and rest[0] not in (b"Z", b"X"):  # field 5: the group
            ref = ProcessRef(int(entry), int(rest[19]))
            if ref not in exclude:
                found.append(ref)
    return found


def _open_verified(ref: ProcessRef) -> int | None:
    """A pidfd for `ref`'s process, or None if that process is gone (its PID may be reused)."""
    try:
        fd = os.pidfd_open(ref.pid)
    except ProcessLookupError:
        return None
    # Checked after the pidfd exists: from here on, the fd names the process we verified.
    if is_alive(ref):
        return fd
    os.close(fd)
    return None


def _signal(ref: ProcessRef, sig: signal.Signals) -> bool:
    """Signal the verified process and, when it leads one, its process group."""
    fd = _open_verified(ref)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
        # The group outlives a dead leader, and Linux never reuses a PID still naming a group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(ref.pid) == ref.pid:
                os.killpg(ref.pid, sig)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True


def _wait_gone(refs: Iterable[ProcessRef], deadline: float) -> list[ProcessRef]:
    """Wait until each process exits or the deadline passes; return those still running."""
    left: list[ProcessRef] = []
    todo = list(refs)
    for start in range(0, len(todo), _FD_CHUNK):
        fds: dict[int, ProcessRef] = {}
        for ref in todo[start : start + _FD_CHUNK]:
            fd = _open_verified(ref)
            if fd is None:
                _reap(ref)
            else:
                fds[fd] = ref
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)  # a pidfd turns readable when its process exits
        try:
            while fds and (remaining := deadline - time.monotonic()) > 0:
                for fd, _ in poller.poll(remaining * 1000):
                    poller.unregister(fd)
                    os.close(fd)
                    _reap(fds.pop(fd))
        finally:
            left.extend(fds.values())
            for fd in fds:
                os.close(fd)
    return left


def _reap(ref: ProcessRef) -> None:
    """Collect the exit status if `ref` is our zombie child (never another child with its PID)."""
    stat = _stat(ref.pid)
    if stat is None or stat[0] != "Z" or stat[1] != ref.starttime:
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(ref.pid, os.WNOHANG)
