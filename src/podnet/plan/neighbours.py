"""What `podnet check`'s probes leave in the machine-wide neighbour tables. Pure.

The kernel's ARP and NDP tables are shared by every namespace of the machine and hold 1,024
entries that traffic keeps fresh (`gc_thresh3`, settable only in the machine's own namespace).
A probe leaves an entry in each namespace its packets are resolved in: the source pod's for its
gateway (and in IPv6 the gateway's link-local address), the node's for the pod, the same at the
target. About 3 per pod and family, so a check of a few hundred pods would fill the tables for
everyone, the machine's own networking included. A large lab's check therefore removes, after
each wave of probes, the entries that wave learned (`kernel.netlink.Netlink.
forget_learned_neighbours`) in the namespaces its waves touched, which this module names.
"""

from __future__ import annotations

from collections.abc import Iterable

from podnet.plan.check import Result
from podnet.plan.layout import Layout

__all__ = ["BUDGET", "PER_POD", "Window", "estimate", "tidy_needed"]

BUDGET = 256  # learned entries a check may hold at once: a quarter of the machine's tables
PER_POD = 3  # entries a probed pod costs, per family: its gateway and `lo` in it, it on its node


def estimate(lay: Layout) -> int:
    """Entries a check of every pod would leave in the neighbour tables, all families."""
    return PER_POD * len(lay.pods) * len(lay.families)


def tidy_needed(lay: Layout) -> bool:
    """Whether a check must remove what its probes learned as it goes."""
    return estimate(lay) > BUDGET


class Window:
    """The pods whose entries the waves of probes so far have left, and when they must go: once
    they may hold BUDGET entries, the caller removes the entries of `add`'s answer (those pods'
    namespaces, every node's, the node network's and the outside world's)."""

    def __init__(self, lay: Layout) -> None:
        self._lay = lay
        self._pods: set[str] = set()  # their namespaces
        self._hosts = {n.netns for n in lay.nodes} | {lay.fabric_netns}
        if lay.internet is not None:
            self._hosts.add(lay.internet.netns)

    def add(self, results: Iterable[Result]) -> set[str]:
        """Note a wave's results: the namespaces to tidy now (empty: not yet)."""
        for r in results:
            # The source, and the pod that answered or was aimed at (a Service's backend).
            for key in (r.probe.source, r.probe.target, r.answered_by):
                pod = self._lay.pod(key) if key else None
                if pod is not None and not pod.host_network:
                    self._pods.add(pod.netns)
        if PER_POD * len(self._pods) * len(self._lay.families) < BUDGET:
            return set()
        return self.rest()

    def rest(self) -> set[str]:
        """Every namespace with entries still to tidy, and a fresh window."""
        out, self._pods = self._pods | self._hosts, set()
        return out
