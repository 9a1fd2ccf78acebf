"""What a lab leaves in the machine-wide neighbour (ARP, NDP) tables: `up`'s warning, and which
namespaces a large lab's `podnet check` tidies as it goes. Pure.

The kernel keeps one neighbour table per family for the whole machine, whatever the namespace:
`net.ipv4.neigh.default.gc_thresh3` (and its IPv6 twin) caps it, 1,024 entries by default,
settable only in the machine's own namespace; past it new entries fail ("neighbour table
overflow") for everyone on the machine, its own networking included. Measured from the
machine's `/proc/net/stat/{arp,ndisc}_cache`:

- `up` of an IPv4 lab adds none (IPv6 is off in its namespaces); an IPv6 pod about 2 as its links
  come up (multicast listener reports: entries the kernel reclaims first when the table fills);
- a pod that talks leaves about 3 per family (its gateway and `lo` in its namespace, itself on
  its node; in IPv6 the gateway's link-local address too), whoever it talks to.

So a check of 300 pods took the machine's ARP table to 918 of 1,024. A lab whose check could
leave more than BUDGET entries removes, whenever the pods its waves of probes reached may hold
that many, the entries they learned (`kernel.netlink.Netlink.forget_learned_neighbours`) in the
namespaces `Window` names. Traffic people send is theirs: `up` warns when a lab is large enough
for it to fill the tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from podnet.plan.check import Result
from podnet.plan.layout import Layout

__all__ = [
    "BUDGET",
    "DEFAULT_LIMIT",
    "PER_POD",
    "Window",
    "estimate",
    "table_entries",
    "tidy_needed",
    "warning",
]

BUDGET = 256  # learned entries a check may hold at once: a quarter of the machine's tables
PER_POD = 3  # entries a probed pod costs, per family: its gateway and `lo` in it, it on its node
DEFAULT_LIMIT = 1024  # gc_thresh3's default
AT_UP = {4: 0, 6: 2}  # entries per pod as its links come up
_NEAR = 0.75  # of the limit: warn before the table is full, not after
_KEY = {4: "net.ipv4.neigh.default.gc_thresh3", 6: "net.ipv6.neigh.default.gc_thresh3"}
_TABLE = {4: "ARP", 6: "NDP"}


def table_entries(pods: int, family: int) -> int:
    """Entries a lab of `pods` pods may hold in the table of `family` once they all talk."""
    return pods * (AT_UP[family] + PER_POD)


def warning(cluster: str, pods: int, families: Sequence[int],
            limits: dict[int, int]) -> str | None:
    """`up`'s warning when the lab could bring a family's table near its limit (None: it fits)."""
    for family in families:
        limit = limits.get(family, DEFAULT_LIMIT)
        need = table_entries(pods, family)
        if need >= _NEAR * limit:
            return (f"lab {cluster}: {pods} pods may need about {need:,} {_TABLE[family]} "
                    f"entries once they all talk to each other (curl, iperf3 between every pod); "
                    f"the machine's table holds {limit:,} for every namespace ({_KEY[family]}) "
                    "and past that new connections fail machine-wide: send traffic between a "
                    "few pods only, or raise the limit on a machine of your own")
    return None


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
