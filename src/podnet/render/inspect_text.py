"""`podnet inspect` output for people and scripts: JSON, tables and the one-line interface answer.

The JSON shape is a public interface (documented in the README): add keys, never rename or remove.
Tables use rich, imported only when a table is asked for (it costs about 60 ms).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from podnet.inspect.model import Holder, Host, Interface, Namespace, PairEnd, Route, VethPair

__all__ = [
    "describe_interface",
    "render_json",
    "render_table",
    "route_text",
    "to_json",
]

SCHEMA_VERSION = 1


def _end(end: PairEnd) -> dict[str, Any]:
    return {
        "netns": end.netns,
        "inode": end.inode,
        "ifname": end.ifname,
        "ifindex": end.ifindex,
        "mac": end.mac,
        "mtu": end.mtu,
        "state": end.state,
        "addresses": None if end.addresses is None else list(end.addresses),
        "master": end.master,
    }


def _interface(i: Interface) -> dict[str, Any]:
    return {
        "ifname": i.ifname,
        "ifindex": i.ifindex,
        "kind": i.kind,
        "mac": i.mac,
        "mtu": i.mtu,
        "state": i.state,
        "up": i.up,
        "addresses": list(i.addresses),
        "master": i.master,
        "peer": None if i.peer is None else {
            "netns": i.peer.netns,
            "ifname": i.peer.ifname,
            "ifindex": i.peer.ifindex,
            "status": i.peer.status,
        },
    }


def _route(r: Route) -> dict[str, Any]:
    return {
        "dst": r.dst,
        "family": r.family,
        "gateway": r.gateway,
        "dev": r.dev,
        "src": r.src,
        "scope": r.scope,
        "protocol": r.protocol,
        "type": r.type,
        "metric": r.metric,
        "nexthops": [{"gateway": gw, "dev": dev} for gw, dev in r.nexthops],
    }


def _namespace(ns: Namespace) -> dict[str, Any]:
    return {
        "name": ns.name,
        "label": ns.label,
        "inode": ns.inode,
        "current": ns.current,
        "paths": list(ns.paths),
        "pids": [h.pid for h in ns.holders],
        "holders": [
            {"pid": h.pid, "comm": h.comm, "container_id": h.container_id} for h in ns.holders
        ],
        "pod": ns.pod,
        "node": ns.node,
        "error": ns.error,
        "interfaces": [_interface(i) for i in ns.interfaces],
        "routes": [_route(r) for r in ns.routes],
    }


def _pair(p: VethPair) -> dict[str, Any]:
    return {"ends": [_end(e) for e in p.ends], "status": p.status, "netnsid": p.netnsid}


def to_json(host: Host) -> dict[str, Any]:
    """The documented `podnet inspect -o json` object."""
    return {
        "schema": SCHEMA_VERSION,
        "namespaces": [_namespace(ns) for ns in host.namespaces],
        "veth_pairs": [_pair(p) for p in host.veth_pairs],
    }


def render_json(host: Host, *, indent: int | None = 2) -> str:
    return json.dumps(to_json(host), indent=indent)


# --- people -------------------------------------------------------------------------------------


def _holders(holders: Sequence[Holder], limit: int = 3) -> str:
    if not holders:
        return "-"
    shown = ", ".join(f"{h.pid} ({h.comm})" for h in holders[:limit])
    more = len(holders) - limit
    return f"{shown}, +{more} more" if more > 0 else shown


def _first(items: Sequence[str], limit: int) -> str:
    """At most `limit` items, then how many more: a node with 1,000 veths stays one line."""
    if not items:
        return "-"
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f", +{more} more" if more > 0 else "")


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _addresses(addresses: Iterable[str] | None, *, link_local: bool) -> str:
    if addresses is None:
        return "?"
    shown = [a for a in addresses if link_local or not a.lower().startswith("fe80:")]
    return ", ".join(shown) or "-"


def _owner(ns: Namespace) -> str:
    if ns.pod:
        return f"pod {ns.pod}"
    if ns.node:
        return f"node {ns.node}"
    ids = {h.container_id for h in ns.holders if h.container_id}
    if len(ids) == 1:
        return f"container {next(iter(ids))[:12]}"
    return "-"


def _peer_text(end: PairEnd, pair: VethPair) -> str:
    if pair.status == "peer-gone":
        return f"gone (it was ifindex {end.ifindex} in a namespace that no longer exists)"
    if pair.status == "peer-hidden":
        return (f"{end.ifname} in a namespace podnet cannot see "
                f"(nsid {pair.netnsid} from {pair.ends[0].netns})")
    return f"{end.ifname} in {end.netns}"


def route_text(r: Route) -> str:
    """A route as `ip route` prints it."""
    parts = [r.dst]
    if r.gateway:
        parts += ["via", r.gateway]
    if r.dev:
        parts += ["dev", r.dev]
    for gw, dev in r.nexthops:
        parts += ["nexthop", *(["via", gw] if gw else []), *(["dev", dev] if dev else [])]
    if r.scope not in ("universe",):
        parts += ["scope", r.scope]
    if r.src:
        parts += ["src", r.src]
    return " ".join(parts)


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Any:
    """A rich table that may wrap a cell between words but never inside one: each column is
    at least as wide as its longest word (a name, an address), so a narrow terminal gets
    wrapped lists, never `veth126e4b1` over `2`. Cells are plain text, never markup."""
    from rich.table import Table  # 60 ms: only when a table is asked for
    from rich.text import Text

    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for i, header in enumerate(headers):
        longest = max((len(word) for row in rows for word in row[i].split()),
                      default=0)
        table.add_column(header, overflow="fold", min_width=max(longest, len(header)))
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _needed(table: Any) -> int:
    """The narrowest width at which no column is below its minimum."""
    return sum(c.min_width or 0 for c in table.columns) + 2 * (len(table.columns) - 1)


def _namespaces_table(host: Host, wide: bool) -> Any:
    rows = []
    for ns in host.namespaces:
        ifaces = _first([i.ifname for i in ns.interfaces], 8)
        if ns.error:
            ifaces = f"[not read: {ns.error}]"
        label = ns.label + (" (podnet)" if ns.current and ns.label != "host" else "")
        row = [label, _owner(ns), _holders(ns.holders, 6 if wide else 3), ifaces]
        rows.append([*row, *((str(ns.inode),) if wide else ())])
    return _table("network namespaces",
                  ("NETNS", "OWNER", "HOLDERS", "INTERFACES", *(("INODE",) if wide else ())),
                  rows)


def _pairs_table(host: Host, wide: bool) -> Any:
    rows = []
    for pair in host.veth_pairs:
        a, b = pair.ends
        owner = host.by_inode.get(b.inode) if b.inode else None
        far = b.netns or ("(gone)" if pair.status == "peer-gone" else "(not visible)")
        rows.append([
            a.netns or "?", a.ifname or "?", a.master or "-",
            _addresses(a.addresses, link_local=wide), "===" if pair.status == "ok" else "=/=",
            far, b.ifname or "?", _addresses(b.addresses, link_local=wide),
            _owner(owner) if owner else "-",
        ])
    return _table("\nveth pairs", ("NETNS", "VETH", "MASTER", "ADDRESSES", "", "PEER NETNS",
                                      "PEER", "ADDRESSES", "OWNER"), rows)


def _interfaces_table(host: Host) -> Any:
    rows = []
    for ns in host.namespaces:
        for i in ns.interfaces:
            peer = "-"
            if i.peer is not None and i.peer.status == "ok":
                peer = f"{i.peer.ifname}@{i.peer.netns}"
            elif i.peer is not None:
                peer = f"{i.peer.ifname or '?'} ({i.peer.status})"
            rows.append([ns.label, i.ifname, i.kind, i.state, str(i.mtu or "-"), i.mac or "-",
                         i.master or "-", _addresses(i.addresses, link_local=True), peer])
    return _table("\ninterfaces", ("NETNS", "IFACE", "KIND", "STATE", "MTU", "MAC", "MASTER",
                                      "ADDRESSES", "PEER"), rows)


def _routes_table(host: Host) -> Any:
    rows = [[ns.label, route_text(r), r.protocol] for ns in host.namespaces for r in ns.routes]
    return _table("\nroutes (main table)", ("NETNS", "ROUTE", "PROTO"), rows)


def render_table(host: Host, *, wide: bool = False, width: int | None = None,
                 color: bool = False) -> str:
    """Namespaces and veth pairs as tables; `wide` adds every interface and route."""
    from rich.console import Console  # 60 ms: only when a table is asked for

    out = io.StringIO()
    tables = [_namespaces_table(host, wide), _pairs_table(host, wide)]
    if wide:
        tables += [_interfaces_table(host), _routes_table(host)]
    for table in tables:
        # Narrower than the words it holds, a table overflows (as kubectl's do) rather than
        # splitting a name or an address; wider terminals get it laid out to fit.
        console = Console(file=out, width=max(width or 160, _needed(table)),
                          force_terminal=color, no_color=not color, highlight=False,
                          soft_wrap=False)
        console.print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()).strip("\n")


def describe_interface(host: Host, ifname: str) -> list[str]:
    """One line per interface named `ifname`: where it is, its peer, and who is behind it.

    "veth09e8e743 in host: peer is eth0 in cni-c5b8..., held by PIDs 157 (nginx) and
    6042 (curl), pod dev/demo-58465f467c-24bcq"
    """
    lines = []
    pairs = {(e.inode, e.ifindex): p for p in host.veth_pairs for e in p.ends if e.inode}
    for ns in host.namespaces:
        iface = ns.interface(ifname)
        if iface is None:
            continue
        head = f"{iface.ifname} in {ns.label}"
        if ns.pod or ns.node:
            head += f" ({_owner(ns)})"
        pair = pairs.get((ns.inode, iface.ifindex))
        if pair is None:
            addresses = _addresses(iface.addresses, link_local=False)
            detail = f"{iface.kind}, {iface.state}, {addresses}"
            if iface.master:
                detail += f", port of {iface.master}"
            ports = [i.ifname for i in ns.interfaces if i.master == iface.ifname]
            if ports:
                detail += f", ports {', '.join(ports)}"
            lines.append(f"{head}: {detail}")
            continue
        other = pair.ends[1] if pair.ends[0].inode == ns.inode else pair.ends[0]
        if pair.ends[0].inode == pair.ends[1].inode:
            other = pair.ends[1] if pair.ends[0].ifindex == iface.ifindex else pair.ends[0]
        text = f"{head}: peer is {_peer_text(other, pair)}"
        far = host.by_inode.get(other.inode) if other.inode else None
        if far is not None and not far.current:
            if far.holders:
                pids = _and([f"{h.pid} ({h.comm})" for h in far.holders[:6]])
                more = len(far.holders) - 6
                text += f", held by PID{'s' if len(far.holders) > 1 else ''} {pids}"
                text += f" and {more} more" if more > 0 else ""
            if far.pod:
                text += f", pod {far.pod}"
            elif far.node:
                text += f", node {far.node}"
        lines.append(text)
    return lines
