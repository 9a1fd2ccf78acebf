"""One drawing model for every `podnet graph` format: groups (namespaces), vertices (interfaces
and processes) and edges (veth pairs, bridge ports, tunnels). Pure.

Built from inspect's `Host` (what the kernel has) and, on a podnet lab, the lab's record (which
namespace is the node network, a node, a pod, the outside world; container names). On a host
podnet did not build, a namespace whose only link is one veth is drawn inside the namespace at
the veth's other end, as a pod inside its node.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from podnet.inspect.model import (
    Holder,
    Host,
    Interface,
    Namespace,
    PairEnd,
    PeerRef,
    Route,
    VethPair,
)
from podnet.trace.target import LabView

__all__ = [
    "Edge",
    "Graph",
    "Group",
    "Service",
    "Vertex",
    "VxlanInfo",
    "build_graph",
    "host_from_inspect_json",
]

_HOLDERS_SHOWN = 3
VxlanInfo = tuple[int | None, int | None]  # (VNI, UDP port)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _record(obj: Any) -> dict[str, Any]:
    """A drawing's record as a dict: what `asdict` gives for these flat records (strings, None,
    tuples of strings), without its deep copy of every value (a third of `graph -o json`)."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in fields(obj))
    return {name: getattr(obj, name) for name in names}


@dataclass(frozen=True)
class Group:
    id: str
    kind: str  # fabric, node, pod, outside, host, netns
    title: str  # "pod dev/demo-58465f467c-24bcq"
    lines: tuple[str, ...]  # more facts: netns name, addresses, pod CIDR
    parent: str | None
    netns: str  # the namespace's label
    pod: str | None = None
    node: str | None = None
    # Why a pod is isolated, when NetworkPolicies select it ("ingress: dev/deny-all"): the
    # drawings mark such pods. Fed by `build_graph(isolation=...)`; empty means not isolated.
    isolation: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    id: str
    title: str  # "svc dev/demo"
    lines: tuple[str, ...]  # "10.96.217.183:80/TCP", "NodePort 30080"
    endpoints: tuple[str, ...]  # ids of the endpoint pods' groups (those drawn)
    key: str = ""  # dev/demo


@dataclass(frozen=True)
class Vertex:
    id: str
    kind: str  # veth, bridge, vxlan, device, process
    name: str  # eth0, veth09e8e743, PID 157 nginx
    lines: tuple[str, ...]  # addresses, or the container's name
    group: str
    detail: str = ""  # MAC, MTU, state: for tooltips
    # What a qdisc does to its packets ("rate 10mbit; arriving: rate 5mbit"), when it delays,
    # drops or rate-limits them: the drawings mark such links. Empty: not impaired.
    impaired: str = ""


@dataclass(frozen=True)
class Edge:
    a: str
    b: str
    kind: str  # veth, port, tunnel
    label: str


@dataclass(frozen=True)
class Graph:
    title: str
    groups: tuple[Group, ...] = ()
    vertices: tuple[Vertex, ...] = ()
    edges: tuple[Edge, ...] = ()
    services: tuple[Service, ...] = ()
    index: dict[str, Group] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.index.update({g.id: g for g in self.groups})

    def children(self, group: str | None) -> list[Group]:
        return [g for g in self.groups if g.parent == group]

    def members(self, group: str) -> list[Vertex]:
        return [v for v in self.vertices if v.group == group]

    def pods(self) -> list[Group]:
        return [g for g in self.groups if g.kind == "pod"]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "groups": [_record(g) for g in self.groups],
            "vertices": [_record(v) for v in self.vertices],
            "edges": [_record(e) for e in self.edges],
            "services": [_record(s) for s in self.services],
        }

    def version(self) -> str:
        """Changes when anything drawn changes: the live page polls it."""
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shown_addresses(iface: Interface) -> tuple[str, ...]:
    out = []
    for cidr in iface.addresses:
        try:
            addr = ipaddress.ip_interface(cidr)
        except ValueError:
            continue
        if addr.version == 6 and addr.is_link_local:
            continue
        out.append(cidr)
    return tuple(out)


def _lab_roles(lab: LabView) -> dict[str, tuple[str, str]]:
    """{netns name: (kind, title)} for the lab's own namespaces."""
    roles: dict[str, tuple[str, str]] = {}
    fabric = lab.raw.get("fabric")
    if isinstance(fabric, dict) and fabric.get("netns"):
        gateways = fabric.get("gateways") or [fabric.get("gateway", "")]  # one per family
        nets = ", ".join(str(ipaddress.ip_interface(gw).network) for gw in gateways if gw)
        roles[str(fabric["netns"])] = ("fabric", f"node network {nets}".strip())
    outside = lab.raw.get("internet")
    if isinstance(outside, dict) and outside.get("netns"):
        roles[str(outside["netns"])] = ("outside", "the internet (a namespace of the lab)")
    for node in lab.nodes:
        if node.get("netns"):
            roles[str(node["netns"])] = ("node", f"node {node.get('name')}")
    for pod in lab.pods:
        if pod.get("netns") and not pod.get("hostNetwork"):  # hostNetwork: the node's own
            roles[str(pod["netns"])] = ("pod", f"pod {pod.get('namespace')}/{pod.get('name')}")
    return roles


def _containers(lab: LabView, pod_key: str) -> list[tuple[str, int | None]]:
    pod = lab.pod(pod_key)
    if pod is None:
        return []
    running = {c.get("name"): c.get("pid") for c in pod.get("containers") or []
               if isinstance(c, dict)}
    specs = [c.get("name") for c in pod.get("spec") or [] if isinstance(c, dict)]
    names = specs or list(running)
    return [(str(n), running.get(n)) for n in names]


def _veth_count(ns: Namespace) -> int:
    return sum(1 for i in ns.interfaces if i.kind == "veth")


def _generic_parents(host: Host, shown: list[Namespace]) -> dict[int, int]:
    """A namespace whose one link is a veth sits inside the namespace at its other end."""
    by_label = {ns.label: ns for ns in shown}
    veths = {ns.inode: _veth_count(ns) for ns in shown}  # counted once: a node has hundreds
    parents = {}
    for ns in shown:
        links = [i for i in ns.interfaces if i.kind != "loopback"]
        if len(links) != 1 or links[0].kind != "veth" or links[0].peer is None:
            continue
        other = by_label.get(links[0].peer.netns or "")
        if other is not None and other is not ns and veths[other.inode] > 1:
            parents[ns.inode] = other.inode
    return parents


def build_graph(
    host: Host,
    lab: LabView | None = None,
    *,
    vxlan: Mapping[tuple[str, str], VxlanInfo] | None = None,
    everything: bool = False,
    isolation: Mapping[str, Sequence[str]] | None = None,
    impaired: Mapping[tuple[str, str], str] | None = None,
) -> Graph:
    """The drawing model of `host`; on a lab (unless `everything`), only the lab's namespaces.
    `isolation`: for pods (by NAMESPACE/NAME) that NetworkPolicies isolate, why. `impaired`:
    for links a qdisc delays, drops or rate-limits, by (namespace label, ifname), what it does
    (`podnet.trace.world.impaired_links`)."""
    lab = lab or LabView()
    vxlan = vxlan or {}
    impaired = impaired or {}
    roles = _lab_roles(lab)
    shown = [
        ns for ns in host.namespaces
        if (ns.name in roles if roles and not everything else
            any(i.kind != "loopback" for i in ns.interfaces))
    ]
    gid = {ns.inode: f"g{n}" for n, ns in enumerate(shown)}
    node_of_pod = {f"{p.get('namespace')}/{p.get('name')}": p.get("node") for p in lab.pods}
    node_group = {ns.node: gid[ns.inode] for ns in shown if ns.node and roles}
    generic = _generic_parents(host, shown)

    groups: list[Group] = []
    vertices: list[Vertex] = []
    vid: dict[tuple[int, int], str] = {}
    for ns in shown:
        kind, title = roles.get(ns.name or "", ("", ""))
        parent: str | None = None
        if kind == "pod" and ns.pod:
            parent = node_group.get(str(node_of_pod.get(ns.pod)))
        elif not kind:
            kind = "host" if ns.current else ("pod" if ns.pod else "netns")
            title = f"pod {ns.pod}" if ns.pod else (f"node {ns.node}" if ns.node else ns.label)
            if ns.inode in generic:
                parent = gid[generic[ns.inode]]
        lines = tuple(x for x in _group_lines(ns, kind, lab) if x != title)
        isolated = tuple((isolation or {}).get(ns.pod, ())) if ns.pod else ()
        groups.append(Group(gid[ns.inode], kind, title, lines, parent, ns.label, ns.pod,
                            ns.node, isolated))
        for iface in ns.interfaces:
            if iface.kind == "loopback":
                continue
            v = f"{gid[ns.inode]}_if{iface.ifindex}"
            vid[(ns.inode, iface.ifindex)] = v
            detail = f"{iface.kind} {iface.ifname}, MAC {iface.mac}, MTU {iface.mtu}, {iface.state}"
            if iface.kind == "vxlan":
                vni, port = vxlan.get((ns.label, iface.ifname), (None, None))
                if vni is not None:
                    detail += f", VNI {vni}, UDP {port}"
            kind_of = iface.kind if iface.kind in ("veth", "bridge", "vxlan") else "device"
            shaped = impaired.get((ns.label, iface.ifname), "")
            lines = _shown_addresses(iface) + ((f"impaired: {shaped}",) if shaped else ())
            vertices.append(Vertex(v, kind_of, iface.ifname, lines, gid[ns.inode],
                                   detail + (f", impaired: {shaped}" if shaped else ""),
                                   shaped))
        vertices += _processes(ns, gid[ns.inode], kind, lab)

    if roles and not everything:  # the lab's own order: node network, nodes, pods, outside
        rank = {"fabric": 0, "node": 1, "pod": 2, "outside": 3}
        order = {str(n.get("netns")): i for i, n in enumerate(lab.nodes)}
        order.update({str(p.get("netns")): i for i, p in enumerate(lab.pods)})
        netns_of = {ns.label: ns.name or "" for ns in shown}
        groups.sort(key=lambda g: (rank.get(g.kind, 4), order.get(netns_of[g.netns], 0)))
    edges = _impaired_edges(_edges(host, shown, vid, vxlan), vertices)
    title = f"podnet lab {lab.cluster}" if roles and not everything else "podnet: this host"
    services = _services(lab, {g.pod: g.id for g in groups if g.pod}) if roles else ()
    return Graph(title, tuple(groups), tuple(vertices), tuple(edges), services)


def _services(lab: LabView, pod_groups: Mapping[str, str]) -> tuple[Service, ...]:
    out = []
    for n, svc in enumerate(lab.services):
        key = f"{svc.get('namespace')}/{svc.get('name')}"
        # a headless Service (clusterIP None) has no address: "headless:5432/TCP"
        ips = [ip for ip in svc.get("cluster_ips") or [svc.get("cluster_ip")]
               if ip not in (None, "None")] or ["headless"]
        lines = []
        for port in svc.get("ports") or []:
            if not isinstance(port, dict):
                continue
            for ip in ips:
                host = f"[{ip}]" if ":" in str(ip) else str(ip)
                lines.append(f"{host}:{port.get('port')}/{port.get('protocol', 'TCP')}")
            if port.get("node_port"):
                lines.append(f"NodePort {port.get('node_port')}/{port.get('protocol', 'TCP')}")
        ends = [str(e) for e in svc.get("endpoints") or []]
        lines.append(f"{len(ends)} endpoint{'s' if len(ends) != 1 else ''}")
        out.append(Service(f"s{n}", f"svc {key}", tuple(lines),
                           tuple(pod_groups[e] for e in ends if e in pod_groups), key))
    return tuple(out)


def _group_lines(ns: Namespace, kind: str, lab: LabView) -> tuple[str, ...]:
    name = ns.name or ns.label
    lines = [name] if kind != "host" and name != ns.node else []
    if kind == "node":
        node = next((n for n in lab.nodes if n.get("netns") == ns.name), None)
        if node is not None:
            # One line per family: "172.18.0.3, pods 10.244.1.0/24", then IPv6's.
            ips = [str(ip).split("/")[0] for ip in node.get("ips") or [node.get("ip", "")]]
            cidrs = [str(c) for c in node.get("pod_cidrs") or [node.get("pod_cidr")] if c]
            for n, ip in enumerate(ips):
                pods = cidrs[n] if n < len(cidrs) else ("on the node network" if not cidrs
                                                        else "")
                lines.append(f"{ip}, pods {pods}" if pods else ip)
    return tuple(lines)


def _processes(ns: Namespace, group: str, kind: str, lab: LabView) -> list[Vertex]:
    out: list[Vertex] = []
    if kind == "pod" and ns.pod and lab.pod(ns.pod) is not None:
        for name, pid in _containers(lab, ns.pod):
            label = f"PID {pid}" if pid else "not running"
            out.append(Vertex(f"{group}_c{len(out)}", "process", f"container {name}", (label,),
                              group, f"container {name} of pod {ns.pod}"))
        return out
    if ns.current or kind in ("fabric", "node", "host"):
        return out
    outside = lab.raw.get("internet") if kind == "outside" else None
    if isinstance(outside, dict) and outside.get("containers"):
        # The lab's web server out there: named as the record names it, as a pod's containers
        # are (its process is a pause process titled for it, whose command is `sleep`).
        for c in outside["containers"]:
            if isinstance(c, dict):
                out.append(Vertex(f"{group}_c{len(out)}", "process", f"container {c.get('name')}",
                                  (f"PID {c.get('pid')}",), group,
                                  f"container {c.get('name')} of the lab's internet"))
        return out
    for holder in ns.holders[:_HOLDERS_SHOWN]:
        out.append(Vertex(f"{group}_p{holder.pid}", "process", f"PID {holder.pid}",
                          (holder.comm,), group, f"PID {holder.pid} {holder.comm}"))
    return out


def _edges(host: Host, shown: list[Namespace], vid: Mapping[tuple[int, int], str],
           vxlan: Mapping[tuple[str, str], VxlanInfo]) -> list[Edge]:
    return [*_veth_edges(host, vid), *_port_edges(shown, vid), *_tunnel_edges(shown, vid, vxlan)]


def _impaired_edges(edges: list[Edge], vertices: list[Vertex]) -> list[Edge]:
    """A veth pair with an impaired end says so on the pair too (what DOT labels edges with)."""
    shaped = {v.id: f"{v.name}: {v.impaired}" for v in vertices if v.impaired}
    out = []
    for e in edges:
        notes = [shaped[end] for end in (e.a, e.b) if end in shaped]
        out.append(replace(e, label=f"{e.label}; impaired: {'; '.join(notes)}")
                   if notes and e.kind == "veth" else e)
    return out


def _veth_edges(host: Host, vid: Mapping[tuple[int, int], str]) -> list[Edge]:
    edges = []
    for pair in host.veth_pairs:
        a, b = pair.ends
        left = vid.get((a.inode or 0, a.ifindex or 0))
        right = vid.get((b.inode or 0, b.ifindex or 0))
        if left and right:
            edges.append(Edge(left, right, "veth", "veth pair"))
    return edges


def _port_edges(shown: list[Namespace], vid: Mapping[tuple[int, int], str]) -> list[Edge]:
    edges = []
    for ns in shown:
        bridges = {i.ifname: i.ifindex for i in ns.interfaces if i.kind == "bridge"}
        for iface in ns.interfaces:
            if iface.master not in bridges:
                continue
            port = vid.get((ns.inode, iface.ifindex))
            bridge = vid.get((ns.inode, bridges[iface.master]))
            if port and bridge:
                edges.append(Edge(port, bridge, "port", "port of"))
    return edges


def _tunnel_edges(shown: list[Namespace], vid: Mapping[tuple[int, int], str],
                  vxlan: Mapping[tuple[str, str], VxlanInfo]) -> list[Edge]:
    """Tunnel ends with the same VNI and port talk to each other (by name when not read)."""
    tunnels: dict[str, list[str]] = {}
    for ns in shown:
        for iface in ns.interfaces:
            if iface.kind != "vxlan" or (ns.inode, iface.ifindex) not in vid:
                continue
            vni, port = vxlan.get((ns.label, iface.ifname), (None, None))
            key = f"VXLAN VNI {vni}" if vni is not None else f"VXLAN {iface.ifname}"
            if port is not None:
                key += f", UDP {port}"
            tunnels.setdefault(key, []).append(vid[(ns.inode, iface.ifindex)])
    return [
        Edge(left, right, "tunnel", key)
        for key, ends in tunnels.items()
        for i, left in enumerate(ends)
        for right in ends[i + 1:]
    ]


# --- `podnet inspect -o json`, read back (a host seen elsewhere, drawn here) --------------------


def _end(d: Mapping[str, Any]) -> PairEnd:
    addresses = d.get("addresses")
    return PairEnd(
        netns=d.get("netns"), inode=d.get("inode"), ifname=d.get("ifname"),
        ifindex=d.get("ifindex"), mac=d.get("mac"), mtu=d.get("mtu"), state=d.get("state"),
        addresses=None if addresses is None else tuple(addresses), master=d.get("master"),
    )


def _iface(d: Mapping[str, Any]) -> Interface:
    peer = d.get("peer")
    return Interface(
        ifname=str(d["ifname"]), ifindex=int(d["ifindex"]), kind=str(d.get("kind", "device")),
        mac=d.get("mac"), mtu=d.get("mtu"), state=str(d.get("state", "UNKNOWN")),
        up=bool(d.get("up", True)), addresses=tuple(d.get("addresses") or ()),
        master=d.get("master"),
        peer=None if not peer else PeerRef(peer.get("netns"), peer.get("ifname"),
                                           peer.get("ifindex"), peer.get("status", "ok")),
    )


def _route(d: Mapping[str, Any]) -> Route:
    return Route(
        dst=str(d.get("dst", "default")), family=int(d.get("family", 4)),
        gateway=d.get("gateway"), dev=d.get("dev"), src=d.get("src"),
        scope=str(d.get("scope", "universe")), protocol=str(d.get("protocol", "boot")),
        type=str(d.get("type", "unicast")), metric=d.get("metric"),
        nexthops=tuple((h.get("gateway"), h.get("dev")) for h in d.get("nexthops") or ()),
    )


def host_from_inspect_json(doc: Mapping[str, Any]) -> Host:
    """The `Host` a `podnet inspect -o json` document describes (schema 1)."""
    if not isinstance(doc, Mapping) or "namespaces" not in doc:
        raise ValueError("not a `podnet inspect -o json` document: no `namespaces` key")
    namespaces = tuple(
        Namespace(
            inode=int(ns["inode"]), label=str(ns.get("label") or ns.get("name") or ns["inode"]),
            name=ns.get("name"), current=bool(ns.get("current")),
            paths=tuple(ns.get("paths") or ()),
            holders=tuple(Holder(int(h["pid"]), str(h.get("comm", "")), h.get("container_id"))
                          for h in ns.get("holders") or ()),
            pod=ns.get("pod"), node=ns.get("node"),
            interfaces=tuple(_iface(i) for i in ns.get("interfaces") or ()),
            routes=tuple(_route(r) for r in ns.get("routes") or ()),
            error=ns.get("error"),
        )
        for ns in doc["namespaces"]
    )
    pairs = tuple(
        VethPair((_end(p["ends"][0]), _end(p["ends"][1])), p.get("status", "ok"),
                 p.get("netnsid"))
        for p in doc.get("veth_pairs") or ()
    )
    return Host(namespaces, pairs)
