"""The tracer's questions answered by the live kernel, namespace by namespace.

A namespace from inspect's model is opened by its bind mount (/run/netns/NAME), else through a
process that holds it (/proc/PID/ns/net); the one podnet runs in is asked directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from podnet.inspect.model import Host, Namespace
from podnet.kernel.lookup import (
    FdbEntry,
    Listener,
    Lookup,
    Neighbour,
    NftRead,
    RouteAnswer,
    Vxlan,
)
from podnet.kernel.tc_read import LinkQdiscs
from podnet.trace.nft import Packet

__all__ = ["KernelReads", "impaired_links", "namespace_path"]


def namespace_path(ns: Namespace) -> str | None:
    """A path that opens `ns` (None: the namespace podnet runs in)."""
    if ns.current:
        return None
    if ns.paths:
        return ns.paths[0]
    if ns.holders:
        return f"/proc/{ns.holders[0].pid}/ns/net"
    raise LookupError(f"namespace {ns.label} has no path podnet can open")


class KernelReads:
    """`podnet.trace.model.Reads`, from the kernel (read-only, cached per trace)."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self._fdb: dict[int, list[FdbEntry]] = {}
        self._listeners: dict[int, list[Listener]] = {}
        self._qdiscs: dict[int, dict[str, LinkQdiscs]] = {}

    def route(self, ns: Namespace, dst: str, *, src: str | None = None,
              iif: int | None = None) -> RouteAnswer:
        return self.lookup.route(namespace_path(ns), dst, src=src, iif=iif)

    def neighbour(self, ns: Namespace, ifindex: int, ip: str) -> Neighbour | None:
        return self.lookup.neighbour(namespace_path(ns), ifindex, ip)

    def fdb(self, ns: Namespace) -> list[FdbEntry]:
        if ns.inode not in self._fdb:
            self._fdb[ns.inode] = self.lookup.fdb(namespace_path(ns))
        return self._fdb[ns.inode]

    def vxlan(self, ns: Namespace, ifindex: int) -> Vxlan | None:
        return self.lookup.vxlan(namespace_path(ns), ifindex)

    def ruleset(self, ns: Namespace) -> NftRead:
        """nftables' rules; where iptables-nft wrote some (xt expressions), its own listing
        too, for their options."""
        path = namespace_path(ns)
        read = self.lookup.ruleset(path)
        families = sorted({str(o["rule"].get("family")) for o in read.objects
                           if "rule" in o and any("xt" in e for e in o["rule"].get("expr") or []
                                                  if isinstance(e, dict))})
        if not families:
            return read
        from podnet.kernel.xtables import save

        saves = tuple((f, text) for f in families if (text := save(path, f)) is not None)
        return replace(read, iptables=saves)

    def listeners(self, ns: Namespace) -> list[Listener]:
        if ns.inode not in self._listeners:
            pids = tuple(h.pid for h in ns.holders)
            self._listeners[ns.inode] = self.lookup.listeners(namespace_path(ns), pids)
        return self._listeners[ns.inode]

    def sysctl(self, ns: Namespace, key: str) -> str | None:
        return self.lookup.sysctl(namespace_path(ns), key)

    def qdiscs(self, ns: Namespace) -> dict[str, LinkQdiscs]:
        if ns.inode not in self._qdiscs:
            from podnet.errors import KernelError
            from podnet.kernel import tc_read

            try:
                self._qdiscs[ns.inode] = tc_read.read(namespace_path(ns))
            except (KernelError, OSError):  # no tc, or the namespace went away: no notes
                self._qdiscs[ns.inode] = {}
        return self._qdiscs[ns.inode]

    def conntrack_backend(self, ns: Namespace, request: Packet) -> str | None:
        if request.sport is None or request.dport is None:
            return None
        found = self.lookup.conntrack_reply(namespace_path(ns), request.src, request.sport,
                                            request.dst, request.dport)
        return found[0] if found else None


def _only_default_qdiscs(ns: Namespace) -> bool:
    """Whether the link dump already says every interface has only the default qdisc
    (`noqueue`), so that nothing delays, drops or rate-limits there: an ingress qdisc does not
    show in the dump, but its shaping does, on the ifb it redirects to in the same namespace.
    A link that is down lists `noop` whatever it has configured: read as any other."""
    return bool(ns.interfaces) and all(i.qdisc == "noqueue" for i in ns.interfaces)


def impaired_links(host: Host, labels: Iterable[str] | None = None) -> dict[tuple[str, str], str]:
    """{(namespace label, ifname): "delay 50ms, loss 1%, rate 10mbit"} for every interface a
    qdisc delays, drops or rate-limits (either way), in the namespaces `labels` (default: all;
    one `tc` process each where the link dump shows more than the default qdisc). What `graph`
    labels impaired links with."""
    from podnet.errors import KernelError
    from podnet.kernel import tc_read

    wanted = set(labels) if labels is not None else None
    out: dict[tuple[str, str], str] = {}
    for ns in host.namespaces:
        if wanted is not None and ns.label not in wanted:
            continue
        if _only_default_qdiscs(ns):
            continue  # nothing to read: a tc process costs 4 ms, 2,000 pods 8 s
        try:
            links = tc_read.read(namespace_path(ns))
        except (KernelError, OSError, LookupError):
            continue
        ifbs = {link.redirect for link in links.values() if link.redirect}
        for name, link in links.items():
            if link.impaired and name not in ifbs:  # an ifb's shaping is its link's ingress
                parts = [w for w in (link.egress.words() if not link.egress.empty else "",
                                     f"arriving: {link.ingress.words()}"
                                     if not link.ingress.empty else "") if w]
                out[(ns.label, name)] = "; ".join(parts)
    return out
