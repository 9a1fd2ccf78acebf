"""`up`'s warning when a lab's pods could fill the machine-wide neighbour (ARP, NDP) tables. Pure.

The kernel keeps one neighbour table per family for the whole machine, whatever the namespace:
`net.ipv4.neigh.default.gc_thresh3` (and its IPv6 twin) caps it, 1,024 entries by default, and
past it new entries fail ("neighbour table overflow") for everyone on the machine. A pod that
talks leaves about 3 entries per family (its gateway in its namespace, itself on its node, and in
IPv6 the gateway's link-local address), whoever it talks to; an IPv6 pod was measured adding
about 7 NDP entries as its links came up (duplicate address detection, multicast listener
reports), an upper bound now that pods' namespaces turn both off. An IPv4 lab's `up` adds none
(IPv6 is off in its namespaces). `podnet check` removes what its own probes learned as it goes
(`plan.neighbours`, on main): this is about traffic people send.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DEFAULT_LIMIT", "estimate", "warning"]

DEFAULT_LIMIT = 1024  # gc_thresh3's default
_AT_UP = {4: 0.0, 6: 7.0}  # entries per pod as its links come up
_TALKING = 3.0  # entries per pod and family once pods talk to each other
_NEAR = 0.75  # of the limit: warn before the table is full, not after
_KEY = {4: "net.ipv4.neigh.default.gc_thresh3", 6: "net.ipv6.neigh.default.gc_thresh3"}
_TABLE = {4: "ARP", 6: "NDP"}


def estimate(pods: int, family: int) -> int:
    """Entries a lab of `pods` pods may hold in the table of `family` once its pods talk."""
    return round(pods * (_AT_UP[family] + _TALKING))


def warning(cluster: str, pods: int, families: Sequence[int],
            limits: dict[int, int]) -> str | None:
    """A warning when the lab's estimate comes near a family's limit (None: it fits)."""
    for family in families:
        limit = limits.get(family, DEFAULT_LIMIT)
        need = estimate(pods, family)
        if need >= _NEAR * limit:
            return (f"lab {cluster}: {pods} pods may need about {need:,} {_TABLE[family]} "
                    f"entries once they all talk to each other (curl, iperf3 between every pod); "
                    f"the machine's table holds {limit:,} for every namespace ({_KEY[family]}) "
                    "and past that new connections fail machine-wide: send traffic between a "
                    "few pods only, or raise the limit on a machine of your own")
    return None
