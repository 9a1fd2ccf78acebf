"""Build the `Host` model of a live machine: discover (kernel) -> pair -> attribute -> assemble.

`inspect_host` is the only function here that reaches the kernel, through podnet.kernel.discover;
`assemble` is pure and takes what discovery returned, so tests can hand-build a host.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Iterable, Mapping

from podnet.inspect import pairs as pairing
from podnet.inspect import pods as podsrc
from podnet.inspect.model import (
    Holder,
    Host,
    Interface,
    Namespace,
    PairEnd,
    PairStatus,
    PeerRef,
    Route,
    VethPair,
)
from podnet.kernel import discover_types as k

__all__ = ["Probe", "assemble", "inspect_host", "label_of", "veth_ends"]

Probe = tuple[pairing.End, "k.Link | None"]  # an unpaired end, and what the kernel said of its peer


def inspect_host(
    *, state_dir: str = podsrc.STATE_DIR, cni_cache_dir: str = podsrc.CNI_CACHE_DIR,
    names: Collection[str] | None = None,
) -> Host:
    """Every network namespace on this host, its interfaces and routes, and every veth pair;
    with `names`, only the namespaces of those `ip netns` names and the pairs among them."""
    from podnet.kernel import discover  # pulls in pyroute2's message layouts

    # Named ones only are found by their bind mounts, without a pass over /proc.
    refs = discover.find_namespaces() if names is None else discover.named_namespaces(names)
    by_inode = {ref.inode: ref for ref in refs}

    def paths(inode: int) -> list[str] | None:
        ref = by_inode[inode]
        return None if ref.current else ref.paths

    with discover.Session() as session:
        dumps = {ref.inode: session.dump(paths(ref.inode), ref.inode) for ref in refs}
        # A namespace that went away since it was found is not on this host any more: a normal
        # event on a busy node (pods come and go), not an error to show.
        refs = [ref for ref in refs if not dumps[ref.inode].gone]
        dumps = {ref.inode: dumps[ref.inode] for ref in refs}
        plan = pairing.Pairing(veth_ends(dumps))
        looked: dict[tuple[int, int], k.Link | None] = {}  # (inode, ifindex) -> its peer
        for ask, ends in plan.looks().items():
            try:
                found = session.peer_links(paths(ask), ask, [_peer_of(e) for e in ends])
            except OSError:
                continue  # the namespace went away meanwhile: nsid questions decide
            looked.update({(e.inode, e.index): found[_peer_of(e)] for e in ends})
        seen = {key: link.mac if link else None for key, link in looked.items()}
        answers: dict[tuple[int, int], int | None] = {}
        for ask, about in plan.questions(seen).items():
            others = {other: by_inode[other].paths for other in about}
            try:
                for other, nsid in session.nsids(paths(ask), ask, others).items():
                    answers[(ask, other)] = nsid
            except OSError:
                continue  # the namespace went away meanwhile: its pairs stay unconfirmed
        matched, left = plan.match(answers, seen)
        probes: list[Probe] = []
        # With `names`, ends whose peer lies outside them are left unpaired (not asked about).
        for end in left if names is None else []:
            if end.peer_netnsid is None or end.peer_netnsid < 0 or end.peer_index is None:
                probes.append((end, None))  # same namespace and unmatched, or a dying one
                continue
            key = (end.inode, end.index)
            peer = looked[key] if key in looked else session.peer_link(
                paths(end.inode), end.inode, end.peer_netnsid, end.peer_index)
            probes.append((end, peer))

    sources = [*podsrc.read_lab_state(state_dir), *podsrc.read_cni_cache(cni_cache_dir)]
    claims = list(podsrc.attribute(refs, sources))
    return assemble(refs, dumps, matched, probes, claims)


def _peer_of(end: pairing.End) -> tuple[int, int]:
    """(netnsid, ifindex): where an end's peer is, as its own namespace names it."""
    assert end.peer_netnsid is not None and end.peer_index is not None
    return end.peer_netnsid, end.peer_index


def veth_ends(dumps: Mapping[int, k.NamespaceDump]) -> list[pairing.End]:
    return [
        pairing.End(inode, link.index, link.peer_index, link.peer_netnsid, link.mac)
        for inode, dump in dumps.items()
        for link in dump.links
        if link.kind == "veth"
    ]


def label_of(ref: k.NamespaceRef) -> str:
    """Its `ip netns` name; "host" for PID 1's; else "pid:N", a mount path, or "inode:N"."""
    if ref.name:
        return ref.name
    pids = [h.pid for h in ref.holders]
    if 1 in pids:
        return "host"
    if pids:
        return f"pid:{pids[0]}"
    if ref.mounts:
        return ref.mounts[0]
    return f"inode:{ref.inode}"


def _cidr(addr: k.Address) -> str:
    return f"{addr.address}/{addr.prefixlen}"


def _route(route: k.Route, names: Mapping[int, str]) -> Route:
    family = 6 if route.family == socket.AF_INET6 else 4
    # The kernel keeps destinations canonical (host bits clear), so no parsing is needed.
    dst = "default" if route.dst is None else f"{route.dst}/{route.dst_len}"
    return Route(
        dst=dst,
        family=family,
        gateway=route.gateway,
        dev=names.get(route.oif) if route.oif else None,
        src=route.prefsrc,
        scope=route.scope,
        protocol=route.protocol,
        type=route.type,
        metric=route.metric,
        nexthops=tuple((hop.gateway, names.get(hop.oif)) for hop in route.nexthops),
    )


def assemble(
    refs: Iterable[k.NamespaceRef],
    dumps: Mapping[int, k.NamespaceDump],
    matched: Iterable[tuple[pairing.End, pairing.End]],
    probes: Iterable[Probe] = (),
    claims: Iterable[tuple[int, podsrc.Attribution]] = (),
) -> Host:
    """Pure: discovery records -> the Host model (labels, names for indexes, pairs, pods)."""
    refs = list(refs)
    labels = {ref.inode: label_of(ref) for ref in refs}
    links = {
        (inode, link.index): link for inode, dump in dumps.items() for link in dump.links
    }
    names = {
        inode: {link.index: link.ifname for link in dump.links} for inode, dump in dumps.items()
    }
    addrs: dict[tuple[int, int], list[str]] = {}
    for inode, dump in dumps.items():
        for addr in dump.addresses:
            addrs.setdefault((inode, addr.index), []).append(_cidr(addr))

    def end_of(inode: int, index: int) -> PairEnd:
        link = links[(inode, index)]
        master = names[inode].get(link.master) if link.master else None
        return PairEnd(
            netns=labels.get(inode), inode=inode, ifname=link.ifname, ifindex=index,
            mac=link.mac, mtu=link.mtu, state=link.state,
            addresses=tuple(addrs.get((inode, index), ())), master=master,
        )

    pairs: list[VethPair] = []
    peers: dict[tuple[int, int], PeerRef] = {}
    for a, b in matched:
        pairs.append(VethPair((end_of(a.inode, a.index), end_of(b.inode, b.index)),
                              netnsid=a.peer_netnsid))
        peers[(a.inode, a.index)] = PeerRef(labels.get(b.inode), names[b.inode][b.index], b.index)
        peers[(b.inode, b.index)] = PeerRef(labels.get(a.inode), names[a.inode][a.index], a.index)
    for end, seen in probes:
        if seen is not None:
            other = PairEnd(
                netns=None, inode=None, ifname=seen.ifname, ifindex=seen.index, mac=seen.mac,
                mtu=seen.mtu, state=seen.state, addresses=None, master=None,
            )
            status: PairStatus = "peer-hidden"
        else:
            other = PairEnd(netns=None, inode=None, ifname=None, ifindex=end.peer_index,
                            state=None, addresses=None)
            status = "peer-gone"
        netnsid = end.peer_netnsid if end.peer_netnsid is None or end.peer_netnsid >= 0 else None
        pairs.append(VethPair((end_of(end.inode, end.index), other), status, netnsid))
        peers[(end.inode, end.index)] = PeerRef(None, other.ifname, other.ifindex, status)

    pod_of: dict[int, str] = {}
    node_of: dict[int, str] = {}
    for inode, who in claims:
        if who.pod and inode not in pod_of:
            pod_of[inode] = who.pod
        if who.node and inode not in node_of:
            node_of[inode] = who.node

    order = {label: i for i, label in enumerate(_namespace_order(refs, labels))}
    namespaces = []
    for ref in refs:
        dump = dumps.get(ref.inode, k.NamespaceDump(error="not read"))
        ifnames = names.get(ref.inode, {})
        interfaces = tuple(
            Interface(
                ifname=link.ifname, ifindex=link.index, kind=link.kind, mac=link.mac,
                mtu=link.mtu, state=link.state, up=link.up,
                addresses=tuple(addrs.get((ref.inode, link.index), ())),
                master=ifnames.get(link.master) if link.master else None,
                peer=peers.get((ref.inode, link.index)), qdisc=link.qdisc,
            )
            for link in sorted(dump.links, key=lambda link: link.index)
        )
        namespaces.append(Namespace(
            inode=ref.inode,
            label=labels[ref.inode],
            name=ref.name,
            current=ref.current,
            paths=ref.mounts,
            holders=tuple(Holder(h.pid, h.comm, h.container_id) for h in ref.holders),
            pod=pod_of.get(ref.inode),
            node=node_of.get(ref.inode),
            interfaces=interfaces,
            routes=tuple(_route(r, ifnames) for r in dump.routes),
            error=dump.error,
        ))
    namespaces.sort(key=lambda ns: order[ns.label])
    pairs.sort(key=lambda p: (order.get(p.ends[0].netns or "", len(order)), p.ends[0].ifindex or 0))
    return Host(tuple(namespaces), tuple(pairs))



def _namespace_order(refs: list[k.NamespaceRef], labels: Mapping[int, str]) -> list[str]:
    """The host first, then named namespaces by name, then the rest by label."""
    def key(ref: k.NamespaceRef) -> tuple[int, str]:
        if 1 in (h.pid for h in ref.holders) or ref.current:
            return (0, labels[ref.inode])
        return (1 if ref.name else 2, labels[ref.inode])
    return [labels[ref.inode] for ref in sorted(refs, key=key)]
