"""libnftables in this process, through Debian's `python3-nftables`, when it is installed.

An `nft` process costs 4 to 15 ms per transaction (start, then its netlink socket's release waits
for an RCU grace period); libnftables in-process answers in about 0.1 ms once its context exists
(about 1.3 ms to create, and 16 ms to free, so one context is kept for the process's life).

A context's netlink socket belongs to the network namespace the creating thread was in, so the
one context here serves only the namespace the process started in (the CNI plugin's: the host's).
`kernel.nftables` calls this for that namespace and starts `nft` processes for any other.

python3-nftables lives in Debian's dist-packages, which a virtualenv does not see: when the
interpreter cannot import `nftables` by itself, that one package is loaded from Debian's
directory, nothing else from there.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["available", "run"]

_DEBIAN = "/usr/lib/python3/dist-packages/nftables/__init__.py"
def _load() -> ModuleType | None:
    try:
        import nftables  # type: ignore[import-not-found]  # Debian's python3-nftables

        return nftables  # type: ignore[no-any-return]
    except ImportError:
        pass
    if not os.path.exists(_DEBIAN):
        return None
    spec = importlib.util.spec_from_file_location(
        "nftables", _DEBIAN, submodule_search_locations=[os.path.dirname(_DEBIAN)])
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nftables"] = module
    try:
        spec.loader.exec_module(module)
    except Exception:  # an unusable copy: fall back to nft processes, which always work
        del sys.modules["nftables"]
        return None
    return module


def _net_ns() -> tuple[int, int]:
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


class _Shared:
    """The process's one context, made on first use, guarded by a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ctx: Any = None
        self.tried = False
        self.home: tuple[int, int] | None = None

    def context(self) -> Any:
        if not self.tried:
            self.tried = True
            module = _load()
            try:
                self.ctx = module.Nftables() if module is not None else None
            except OSError:  # libnftables.so.1 missing
                self.ctx = None
            self.home = _net_ns()
        return self.ctx


_shared = _Shared()


def run(script: str, *, json_output: bool = False) -> tuple[int, str, str] | None:
    """Run an nft script in this process's own network namespace: (exit code, output, error),
    or None when libnftables is not available here or this thread is in another namespace."""
    with _shared.lock:
        ctx = _shared.context()
        if ctx is None or _net_ns() != _shared.home:
            return None
        ctx.set_json_output(json_output)
        try:
            code, out, err = ctx.cmd(script)
        finally:
            ctx.set_json_output(False)
    return int(code), str(out), str(err).strip()


def available() -> bool:
    """Make the context now (the agent does at start, in its own namespace); whether it exists."""
    with _shared.lock:
        return _shared.context() is not None
