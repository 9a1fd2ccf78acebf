"""The host's uplink: the interface of its IPv4 default route, as `ip route show default` names it.

Read from /proc/thread-self/net/route (the main table of the calling thread's namespace, as
text), not from a netlink dump: a node with a /32 route per pod would otherwise have every pod's
route decoded on each question (pyroute2 decodes about 3,000 routes a second).
"""

from __future__ import annotations

__all__ = ["default_route_interface"]

_RTF_UP = 0x1


def default_route_interface(table: str = "/proc/thread-self/net/route") -> str | None:
    """The interface of the default route with the lowest metric; None without one."""
    try:
        with open(table) as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dst, flags, metric, mask = fields[0], fields[1], fields[3], fields[6], fields[7]
        if dst != "00000000" or mask != "00000000" or not int(flags, 16) & _RTF_UP:
            continue
        if best is None or int(metric) < best[0]:
            best = (int(metric), iface)
    return best[1] if best else None
