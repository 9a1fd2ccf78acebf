"""What the kernel says about the lab, as the object views ask for it.

`KernelReads` is the small interface the views use. Namespaces come as inspect's model
(`podnet.inspect.model`: interfaces with every address, routes, veth pairs joined end to end),
so a view reads the same facts `podnet inspect` prints. `LiveReads` answers from this machine,
reading only the namespaces asked for; `HostReads` answers from a `Host` already read (the graph
dashboard's); tests answer from hand-built hosts.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Protocol

from podnet.inspect.model import Host, Namespace

__all__ = ["HostReads", "KernelReads", "LiveReads"]


class KernelReads(Protocol):
    def exists(self, netns: str) -> bool:
        """The named network namespace is there."""
        ...

    def host(self, names: Collection[str]) -> Host:
        """The named namespaces (those that exist) and the veth pairs that touch them."""
        ...

    def running(self, pid: int, starttime: int) -> bool:
        """The very process (PID and start time) still runs."""
        ...

    def started(self, starttime: int) -> float | None:
        """A process start time (clock ticks after boot) as seconds since the epoch."""
        ...

    def qdiscs(self, netns: str) -> dict[str, str]:
        """{ifname: what its qdiscs do, in one phrase} in the named namespace (`tc.summaries`;
        an interface it leaves out has its default qdisc)."""
        ...


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as fh:
            return float(next(line.split()[1] for line in fh if line.startswith("btime ")))
    except (OSError, StopIteration, ValueError):
        return None


class LiveReads:
    """`KernelReads` from this machine."""

    def __init__(self) -> None:
        self._boot: float | None = None

    def exists(self, netns: str) -> bool:
        from podnet.kernel import netns as ns

        return ns.exists(netns)

    def host(self, names: Collection[str]) -> Host:
        from podnet.inspect.build import inspect_host

        return inspect_host(names=set(names))

    def running(self, pid: int, starttime: int) -> bool:
        from podnet.runtime.procs import ProcessRef, is_alive

        return is_alive(ProcessRef(pid, starttime))

    def qdiscs(self, netns: str) -> dict[str, str]:
        from podnet.errors import KernelError
        from podnet.kernel import tc
        from podnet.kernel.netns import path_of

        try:
            return tc.summaries(path_of(netns))
        except (KernelError, OSError):  # gone meanwhile, or no tc: no column, no failure
            return {}

    def started(self, starttime: int) -> float | None:
        if self._boot is None:
            self._boot = _boot_time()
        if self._boot is None:
            return None
        return self._boot + starttime / os.sysconf("SC_CLK_TCK")


class HostReads(LiveReads):
    """Namespaces from a `Host` read already (nothing more is asked of the kernel for them)."""

    def __init__(self, whole: Host) -> None:
        super().__init__()
        self.whole = whole

    def exists(self, netns: str) -> bool:
        return any(ns.name == netns for ns in self.whole.namespaces)

    def host(self, names: Collection[str]) -> Host:
        keep: list[Namespace] = [ns for ns in self.whole.namespaces if ns.name in names]
        inodes = {ns.inode for ns in keep}
        return Host(tuple(keep), tuple(p for p in self.whole.veth_pairs
                                       if any(e.inode in inodes for e in p.ends)))
