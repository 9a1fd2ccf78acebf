"""A tool (tc, ip, iptables-save, tcpdump) run inside a network namespace, as `ip netns exec`
would run it, without a shell and without `ip` in between.

The child is forked from a thread that entered the namespace, so it is born there; the calling
thread comes back at once. Only the network namespace is entered: files the tool reads or writes
are this process's files.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from podnet.errors import KernelError
from podnet.kernel import netns

__all__ = ["Finished", "find_tool", "run_in", "start_in"]

_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str


def find_tool(name: str, package: str) -> str:
    """The path of `name`; /usr/sbin too, which a runtime's minimal PATH often lacks."""
    found = shutil.which(name) or shutil.which(name, path=":".join(_SBIN))
    if found is None:
        raise KernelError(f"{name} is not installed", hint=f"install it: apt-get install {package}")
    return found


def start_in(argv: Sequence[str], path: str | None, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `argv` in the namespace at `path` (None: this thread's own)."""
    if path is None:
        return subprocess.Popen(list(argv), **popen)
    with netns.entered(path):
        return subprocess.Popen(list(argv), **popen)


def run_in(argv: Sequence[str], path: str | None, *, stdin: str | None = None,
           timeout: float = 30.0) -> Finished:
    """Run `argv` to its end in the namespace at `path`; its exit code and output."""
    proc = start_in(argv, path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(stdin.encode() if stdin is not None else None,
                                    timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Finished(-1, "", f"{argv[0]} gave no answer within {timeout:g} s")
    return Finished(proc.returncode, out.decode(errors="replace"),
                    err.decode(errors="replace").strip())
