"""`podnet inspect -o mermaid`: the host drawn the way the lesson draws it.

Namespaces are subgraphs, interfaces round nodes inside them, processes holding a pod's
namespace sit beside its interfaces, and each veth pair is a thick link `a ===|veth pair| b`.
Bridge ports point at their bridge. Loopbacks are left out: every namespace has one.
"""

from __future__ import annotations

from podnet.inspect.model import Host, Interface, Namespace, PairEnd

__all__ = ["render_mermaid"]

_HOLDERS_SHOWN = 3
_CLASSES = (
    "classDef netns fill:#9f6,stroke:#333,stroke-width:2px;",
    "classDef hostns fill:#f96,stroke:#333,stroke-width:2px;",
    "classDef iface fill:#0ff,stroke:#333,stroke-width:2px;",
    "classDef proc fill:#0af,stroke:#333,stroke-width:2px;",
    "classDef unseen fill:#ddd,stroke:#333,stroke-dasharray: 5 5;",
)


def _text(value: str) -> str:
    """Mermaid labels go inside double quotes; a quote itself is written #quot;."""
    return value.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _iface_label(i: Interface) -> str:
    lines = [_text(i.ifname)]
    lines += [_text(a) for a in i.addresses if not a.lower().startswith("fe80:")]
    return "<br>".join(lines)


def render_mermaid(host: Host) -> str:
    out = ["graph LR"]
    ns_ids = {ns.inode: f"ns{n}" for n, ns in enumerate(host.namespaces)}
    iface_ids: dict[tuple[int, int], str] = {}
    classes: dict[str, list[str]] = {"netns": [], "hostns": [], "iface": [], "proc": [],
                                     "unseen": []}
    links: list[str] = []

    for ns in host.namespaces:
        sid = ns_ids[ns.inode]
        title = [_text(ns.label)]
        if ns.pod:
            title.append(f"pod {_text(ns.pod)}")
        elif ns.node:
            title.append(f"node {_text(ns.node)}")
        if ns.error:
            title.append("not readable")
        out.append(f'subgraph {sid}["{"<br>".join(title)}"]')
        shown = [i for i in ns.interfaces if i.kind != "loopback"]
        for i in shown:
            node = f"{sid}_if{i.ifindex}"
            iface_ids[(ns.inode, i.ifindex)] = node
            shape = ('[["', '"]]') if i.kind == "bridge" else ('(("', '"))')
            out.append(f"  {node}{shape[0]}{_iface_label(i)}{shape[1]}")
            classes["iface"].append(node)
        if not ns.current and 1 not in (h.pid for h in ns.holders):
            for h in ns.holders[:_HOLDERS_SHOWN]:
                node = f"{sid}_p{h.pid}"
                out.append(f'  {node}(("PID {h.pid}<br>{_text(h.comm)}"))')
                classes["proc"].append(node)
                target = next((i for i in shown if i.peer is not None), None)
                if target is not None:
                    links.append(f"{node} --> {sid}_if{target.ifindex}")
        if not shown and not ns.holders:
            out.append(f'  {sid}_empty["no interfaces but lo"]')
        out.append("end")
        classes["hostns" if ns.current else "netns"].append(sid)
        links += _bridge_ports(ns, sid)

    for n, pair in enumerate(host.veth_pairs):
        a, b = pair.ends
        left = iface_ids.get((a.inode or 0, a.ifindex or 0))
        if left is None:
            continue
        right = iface_ids.get((b.inode or 0, b.ifindex or 0))
        if right is None:
            right = f"unseen{n}"
            out.append(f'{right}(("{_unseen_label(b, pair.status)}"))')
            classes["unseen"].append(right)
            links.append(f"{left} -.-|veth pair, {pair.status}| {right}")
            continue
        links.append(f"{left} ===|veth pair| {right}")

    out += links
    out += _CLASSES
    out += [f"class {','.join(ids)} {name};" for name, ids in classes.items() if ids]
    return "\n".join(out)


def _bridge_ports(ns: Namespace, sid: str) -> list[str]:
    bridges = {i.ifname: i.ifindex for i in ns.interfaces if i.kind == "bridge"}
    return [
        f"{sid}_if{i.ifindex} -.->|port of| {sid}_if{bridges[i.master]}"
        for i in ns.interfaces
        if i.master in bridges
    ]


def _unseen_label(end: PairEnd, status: str) -> str:
    if status == "peer-gone":
        return f"peer ifindex {end.ifindex}<br>gone"
    return f"{_text(end.ifname or '?')}<br>namespace not visible"
