"""`podnet graph`: the drawing model and its four renderings, parsed back.

`parse_mermaid` and `parse_dot` read the text podnet writes back into groups (with their parent
group), labelled vertices and edges; tests/kernel/test_graph.py uses them on a live lab.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import pytest

from podnet.inspect.model import Holder, Host, Interface, Namespace, PairEnd, PeerRef, VethPair
from podnet.render.graph_dot import render_dot
from podnet.render.graph_html import render_html
from podnet.render.graph_layout import COLLAPSE_AT, collapsed_groups
from podnet.render.graph_mermaid import CAPTION, CELL_PREFIX, render_mermaid
from podnet.render.graph_model import build_graph, host_from_inspect_json
from podnet.render.graph_svg import render_svg
from podnet.render.inspect_text import to_json
from podnet.trace.target import LabView

SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class Parsed:
    groups: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id: (label, parent)
    vertices: dict[str, tuple[str, str]] = field(default_factory=dict)  # id: (label, group)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (a, b, label)

    def group_titled(self, title: str, *, prefix: bool = False) -> str:
        """The one group whose title (first label line) is `title` (or starts with it)."""
        found = [gid for gid, (label, _) in self.groups.items()
                 if (label.split("\n")[0].startswith(title) if prefix
                     else label.split("\n")[0] == title)]
        assert len(found) == 1, (title, self.groups)
        return found[0]

    def vertex_named(self, group: str, name: str) -> str:
        found = [vid for vid, (label, g) in self.vertices.items()
                 if g == group and label.split("\n")[0] == name]
        assert len(found) == 1, (group, name)
        return found[0]


_MERMAID_NODE = re.compile(r'^(\w+)(?:\(\(|\[\[|\{\{|\(\[|\[|\()"(.*)"'
                           r"(?:\)\)|\]\]|\}\}|\]\)|\]|\))$")
_MERMAID_EDGE = re.compile(r"^(\w+) (===|-\.-|---|-->)(?:\|(.*)\|)? (\w+)$")
_EDGE_NAMES = {"===": "veth pair", "-.-": "port of"}


def parse_mermaid(text: str) -> Parsed:
    """Groups, vertices and edges of podnet's Mermaid; cells (a pod with its veth's node end,
    kept together for the layout) are see-through: what they hold belongs to their group."""
    out = Parsed()
    stack: list[str] = []
    lines = [line for line in text.splitlines() if not line.startswith("%%")]
    assert lines[0].startswith("graph ")
    for raw in lines[1:]:
        line = raw.strip()
        if m := re.match(r'^subgraph (\w+)\["(.*)"\]$', line):
            real = [g for g in stack if not g.startswith(CELL_PREFIX)]
            if not m.group(1).startswith(CELL_PREFIX):
                out.groups[m.group(1)] = (m.group(2).replace("<br>", "\n"),
                                          real[-1] if real else None)
            stack.append(m.group(1))
        elif line == "end":
            stack.pop()
        elif line.startswith("direction "):
            continue
        elif m := re.match(r"^(\w+) ~~~ (\w+)$", line):
            continue  # an invisible link: layout only
        elif m := _MERMAID_EDGE.match(line):
            label = m.group(3) or _EDGE_NAMES.get(m.group(2), "")
            out.edges.append((m.group(1), m.group(4), label))
        elif m := _MERMAID_NODE.match(line):
            real = [g for g in stack if not g.startswith(CELL_PREFIX)]
            label = m.group(2).replace("<br>", "\n")
            if not real:  # a tunnel's hub, when there is no node network to hold it
                assert m.group(1).startswith("tunnel"), f"vertex outside any subgraph: {line}"
                continue
            if m.group(1) == f"{real[-1]}{CAPTION}":  # the group's title, drawn as a box
                out.groups[real[-1]] = (label, out.groups[real[-1]][1])
            else:
                out.vertices[m.group(1)] = (label, real[-1])
        elif line.startswith(("classDef ", "class ")):
            continue
        else:
            raise AssertionError(f"unparsed Mermaid line: {line!r}")
    assert not stack, "unclosed subgraph"
    return out


def _dot_string(value: str) -> str:
    return value.encode().decode("unicode_escape") if "\\" in value else value


def parse_dot(text: str) -> Parsed:
    out = Parsed()
    stack: list[str] = []
    lines = text.splitlines()
    assert lines[0] == "graph podnet {" and lines[-1] == "}"
    for raw in lines[1:-1]:
        line = raw.strip()
        if m := re.match(r"^subgraph cluster_(\w+) \{$", line):
            out.groups[m.group(1)] = ("", stack[-1] if stack else None)
            stack.append(m.group(1))
        elif line == "}":
            stack.pop()
        elif m := re.match(r'^label="((?:[^"\\]|\\.)*)";$', line):
            if stack:
                out.groups[stack[-1]] = (_dot_string(m.group(1)), out.groups[stack[-1]][1])
        elif m := re.match(r'^(\w+) -- (\w+) \[label="((?:[^"\\]|\\.)*)"', line):
            out.edges.append((m.group(1), m.group(2), _dot_string(m.group(3))))
        elif m := re.match(r'^(\w+) \[label="((?:[^"\\]|\\.)*)"', line):
            out.vertices[m.group(1)] = (_dot_string(m.group(2)), stack[-1])
        elif line.startswith(("style=", "//", "compound=", "node [", "edge [")):
            continue
        else:
            raise AssertionError(f"unparsed DOT line: {line!r}")
    assert not stack
    return out


# --- a small lab, by hand ------------------------------------------------------------------------


def _if(name: str, index: int, kind: str = "veth", addrs: tuple[str, ...] = (),
        peer: tuple[str, str, int] | None = None, master: str | None = None) -> Interface:
    return Interface(name, index, kind, f"02:00:00:00:00:{index:02x}", 1500, "UP", True, addrs,
                     master, PeerRef(*peer) if peer else None)


def _ns(name: str, inode: int, *ifaces: Interface, pod: str | None = None,
        node: str | None = None, holders: tuple[Holder, ...] = ()) -> Namespace:
    return Namespace(inode, name, name, paths=(f"/run/netns/{name}",), holders=holders, pod=pod,
                     node=node, interfaces=(_if("lo", 1, "loopback", ("127.0.0.1/8",)), *ifaces))


def _end(ns: str, inode: int, name: str, index: int) -> PairEnd:
    return PairEnd(ns, inode, name, index)


def lab_host() -> tuple[Host, LabView]:
    host = Host(
        (
            _ns("podnet-kind", 1, _if("br-kind", 2, "bridge", ("172.18.0.1/16",)),
                _if("vethu1", 3, peer=("kind-worker", "eth0", 2), master="br-kind")),
            _ns("kind-worker", 2, _if("eth0", 2, addrs=("172.18.0.3/16",),
                                      peer=("podnet-kind", "vethu1", 3)),
                _if("veth1234abcd", 3, addrs=("10.244.1.1/32",), peer=("cni-a", "eth0", 2)),
                _if("flannel.1", 4, "vxlan", ("10.244.1.0/32",)), node="kind-worker"),
            _ns("cni-a", 3, _if("eth0", 2, addrs=("10.244.1.2/24", "fe80::1/64"),
                                peer=("kind-worker", "veth1234abcd", 3)), pod="default/jumpbox",
                holders=(Holder(7, "podnet-http"),)),
            _ns("elsewhere", 4, _if("eth0", 2, addrs=("192.0.2.1/24",))),
        ),
        (
            VethPair((_end("podnet-kind", 1, "vethu1", 3), _end("kind-worker", 2, "eth0", 2))),
            VethPair((_end("kind-worker", 2, "veth1234abcd", 3), _end("cni-a", 3, "eth0", 2))),
        ),
    )
    lab = LabView(
        cluster="kind",
        nodes=[{"name": "kind-worker", "netns": "kind-worker", "ip": "172.18.0.3/16",
                "pod_cidr": "10.244.1.0/24"}],
        pods=[{"namespace": "default", "name": "jumpbox", "node": "kind-worker",
               "netns": "cni-a", "ip": "10.244.1.2/24", "veth": "veth1234abcd",
               "spec": [{"name": "nginx", "ports": [80]}],
               "containers": [{"name": "nginx", "pid": 7, "starttime": 1}]}],
        raw={"fabric": {"netns": "podnet-kind", "bridge": "br-kind", "gateway": "172.18.0.1/16"}},
    )
    return host, lab


def test_the_model_nests_pods_in_nodes_and_keeps_only_the_labs_namespaces() -> None:
    host, lab = lab_host()
    graph = build_graph(host, lab, vxlan={("kind-worker", "flannel.1"): (1, 8472)})
    kinds = {g.title: (g.kind, g.parent) for g in graph.groups}
    node_id = next(g.id for g in graph.groups if g.kind == "node")
    assert kinds["pod default/jumpbox"] == ("pod", node_id)
    assert kinds["node kind-worker"] == ("node", None)
    assert kinds["node network 172.18.0.0/16"] == ("fabric", None)
    assert "elsewhere" not in {g.netns for g in graph.groups}
    assert sorted(e.kind for e in graph.edges) == ["port", "veth", "veth"]
    pod = graph.pods()[0]
    names = {v.name for v in graph.members(pod.id)}
    assert names == {"eth0", "container nginx"}
    eth0 = next(v for v in graph.members(pod.id) if v.name == "eth0")
    assert eth0.lines == ("10.244.1.2/24",)  # link-local addresses are left out
    everything = build_graph(host, lab, everything=True)
    assert "elsewhere" in {g.netns for g in everything.groups}


def test_the_version_changes_when_a_pod_goes() -> None:
    host, lab = lab_host()
    before = build_graph(host, lab)
    fewer = Host(tuple(n for n in host.namespaces if n.label != "cni-a"), host.veth_pairs[:1])
    assert build_graph(fewer, lab).version() != before.version()
    assert build_graph(host, lab).version() == before.version()


def test_mermaid_parses_back_to_the_model() -> None:
    host, lab = lab_host()
    graph = build_graph(host, lab)
    parsed = parse_mermaid(render_mermaid(graph))
    node = parsed.group_titled("node kind-worker")
    pod = parsed.group_titled("pod default/jumpbox")
    assert parsed.groups[pod][1] == node
    veth = parsed.vertex_named(node, "veth1234abcd")
    eth0 = parsed.vertex_named(pod, "eth0")
    assert (veth, eth0, "veth pair") in parsed.edges
    assert "10.244.1.2/24" in parsed.vertices[eth0][0]


def test_dot_parses_back_to_the_model() -> None:
    host, lab = lab_host()
    parsed = parse_dot(render_dot(build_graph(host, lab)))
    node = parsed.group_titled("node kind-worker")
    pod = parsed.group_titled("pod default/jumpbox")
    assert parsed.groups[pod][1] == node
    assert (parsed.vertex_named(node, "veth1234abcd"), parsed.vertex_named(pod, "eth0"),
            "veth pair") in parsed.edges


def test_labels_with_quotes_survive_both_formats() -> None:
    host = Host((_ns('we"ird<ns>', 9, _if("eth0", 2, addrs=("192.0.2.9/24",))),))
    graph = build_graph(host, LabView(), everything=True)
    mermaid = parse_mermaid(render_mermaid(graph))
    assert len(mermaid.groups) == 1
    dot = parse_dot(render_dot(graph))
    assert dot.group_titled('we"ird<ns>', prefix=True)


def test_svg_is_well_formed_and_marks_every_pod_and_interface() -> None:
    host, lab = lab_host()
    graph = build_graph(host, lab)
    root = ET.fromstring(render_svg(graph))
    assert root.tag == f"{SVG}svg"
    pods = [g for g in root.iter(f"{SVG}g") if g.get("data-pod")]
    assert [g.get("data-pod") for g in pods] == ["default/jumpbox"]
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for name in ("pod default/jumpbox", "veth1234abcd", "br-kind", "container nginx"):
        assert name in texts
    lines = [e for e in root.iter(f"{SVG}polyline") if e.get("class") == "veth" and e.get("data-a")]
    assert len(lines) == 2
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    for rect in root.iter(f"{SVG}rect"):  # everything is drawn inside the picture
        assert float(rect.get("x", 0)) + float(rect.get("width", 0)) <= width + 0.5
        assert float(rect.get("y", 0)) + float(rect.get("height", 0)) <= height + 0.5


def test_the_page_is_self_contained() -> None:
    host, lab = lab_host()
    page = render_html(build_graph(host, lab), live=True)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and 'data-live="1"' in page
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "@import" not in page and "fetch(\"http" not in page


def test_an_inspect_document_from_another_host_draws_the_same() -> None:
    host, _lab = lab_host()
    again = host_from_inspect_json(to_json(host))
    assert build_graph(again, LabView(), everything=True).version() == \
        build_graph(host, LabView(), everything=True).version()
    generic = build_graph(again, LabView(), everything=True)
    parents = {g.title: g.parent for g in generic.groups}
    worker = next(g.id for g in generic.groups if g.title == "node kind-worker")
    assert parents["pod default/jumpbox"] == worker  # a one-veth namespace sits in its peer's


# --- the picture's geometry, read back from the SVG -------------------------------------------

Rect = tuple[float, float, float, float]  # x, y, w, h
Segment = tuple[float, float, float, float, str]  # x1, y1, x2, y2, the edge's class


@dataclass
class Geometry:
    texts: list[tuple[str, Rect]] = field(default_factory=list)
    boxes: list[tuple[str, Rect]] = field(default_factory=list)  # groups, vertices, counts
    segments: list[Segment] = field(default_factory=list)


def svg_geometry(svg: str, char_w: float = 7.25) -> Geometry:
    """Every label's box (monospace: length times the advance), every box and every edge
    segment of a picture podnet drew (the legend left out)."""
    root = ET.fromstring(svg)
    out = Geometry()
    legend = {id(e) for g in root.iter(f"{SVG}g") if g.get("class") == "legend" for e in g.iter()}
    for el in root.iter():
        if id(el) in legend:
            continue
        if el.tag == f"{SVG}text" and el.text:
            x, y = float(el.get("x", 0)), float(el.get("y", 0))
            out.texts.append((el.text, (x, y - 12, len(el.text) * char_w, 16)))
        elif el.tag == f"{SVG}rect" and el.get("class") in ("group", "vertex", "count",
                                                            "service"):
            out.boxes.append((el.get("class", ""), tuple(float(el.get(k, 0)) for k in  # type: ignore[misc]
                                                         ("x", "y", "width", "height"))))
        elif el.tag == f"{SVG}polyline":
            pts = [tuple(map(float, p.split(","))) for p in el.get("points", "").split()]
            out.segments += [(a[0], a[1], b[0], b[1], el.get("class", ""))
                             for a, b in itertools.pairwise(pts)]
    return out


def crosses(seg: Segment, rect: Rect, margin: float = 0.5) -> bool:
    """Does the segment pass through the rectangle's inside (its border shrunk by `margin`)?"""
    x1, y1, x2, y2, _ = seg
    rx, ry, rw, rh = rect[0] + margin, rect[1] + margin, rect[2] - 2 * margin, rect[3] - 2 * margin
    if rw <= 0 or rh <= 0:
        return False
    # Liang-Barsky clipping: is any part of the segment strictly inside?
    t0, t1 = 0.0, 1.0
    dx, dy = x2 - x1, y2 - y1
    for p, q in ((-dx, x1 - rx), (dx, rx + rw - x1), (-dy, y1 - ry), (dy, ry + rh - y1)):
        if p == 0:
            if q <= 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 >= t1:
            return False
    return True


def overlap(a: Rect, b: Rect) -> bool:
    """Overlapping, and neither holds the other."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = min(ax + aw, bx + bw) - max(ax, bx) > 0.5 and min(ay + ah, by + bh) - max(ay, by) > 0.5
    def inside(p: Rect, q: Rect) -> bool:
        return (p[0] >= q[0] - 0.5 and p[1] >= q[1] - 0.5 and p[0] + p[2] <= q[0] + q[2] + 0.5
                and p[1] + p[3] <= q[1] + q[3] + 0.5)

    a_in_b, b_in_a = inside(a, b), inside(b, a)
    return inter and not a_in_b and not b_in_a


def check_geometry(geo: Geometry) -> None:
    for seg in geo.segments:
        for text, box in geo.texts:
            assert not crosses(seg, box), f"a {seg[4]} line {seg[:4]} crosses the label {text!r}"
    for i, (kind_a, a) in enumerate(geo.boxes):
        for kind_b, b in geo.boxes[i + 1:]:
            assert not overlap(a, b), f"{kind_a} {a} overlaps {kind_b} {b}"
    for text, box in geo.texts:  # every label inside the picture's boxes, none on another
        assert box[2] > 0, text


def shapes() -> dict[str, tuple[Host, LabView]]:
    from tests.unit.lab_drawings import synthetic_lab, topology

    return {
        "default": synthetic_lab(),
        "bridge+vxlan": synthetic_lab(topology(attachment="bridge", routing="vxlan", mtu=1450)),
        "host-gw, 10 pods": synthetic_lab(topology(replicas=9, routing="host-gw")),
        "dual-stack bridge + vxlan": synthetic_lab(topology(attachment="bridge", routing="vxlan",
                                                            mtu=1450, family="dual")),
        "150 pods": synthetic_lab(topology(replicas=149)),
        "150 pods on a bridge": synthetic_lab(topology(replicas=149, attachment="bridge")),
    }


@pytest.mark.parametrize("shape", list(shapes()))
def test_no_edge_crosses_a_label_and_no_boxes_overlap(shape: str) -> None:
    host, lab = shapes()[shape]
    graph = build_graph(host, lab, vxlan={(ns.label, "flannel.1"): (1, 8472)
                                          for ns in host.namespaces})
    svg = render_svg(graph)
    geo = svg_geometry(svg)
    assert geo.segments and geo.texts
    check_geometry(geo)
    for gid in collapsed_groups(graph):  # each big node, opened
        check_geometry(svg_geometry(render_svg(graph, focus=gid)))


def test_bridge_ports_hang_from_the_bridge_and_eth0_is_not_one() -> None:
    from tests.unit.lab_drawings import synthetic_lab, topology

    host, lab = synthetic_lab(topology(attachment="bridge", routing="vxlan", mtu=1450))
    graph = build_graph(host, lab)
    root = ET.fromstring(render_svg(graph))
    worker = next(g for g in graph.groups if g.title == "node kind-worker")
    names = {v.id: v.name for v in graph.vertices}
    cni0 = next(v.id for v in graph.members(worker.id) if v.name == "cni0")
    ports = [e for e in root.iter(f"{SVG}polyline") if e.get("class") == "port"
             and cni0 in (e.get("data-a"), e.get("data-b"))]
    assert {names[p.get("data-a", "")] for p in ports} == {
        p["veth"] for p in lab.pods if p["node"] == "kind-worker"}
    assert all(names[p.get("data-a", "")] != "eth0" for p in ports)
    boxes = {e.get("id"): e.find(f"{SVG}rect") for e in root.iter(f"{SVG}g")
             if e.get("class", "").startswith("vertex")}

    def top(vid: str) -> float:
        rect = boxes[vid]
        assert rect is not None
        return float(rect.get("y", 0))

    eth0 = next(v.id for v in graph.members(worker.id) if v.name == "eth0")
    assert top(eth0) < top(cni0)  # the uplink sits above the title, the bridge below it
    for p in ports:  # every port lies below the bridge, hanging from its bus
        assert top(p.get("data-a", "")) > top(cni0)


def test_services_reach_their_endpoints_and_isolated_pods_are_marked() -> None:
    from tests.unit.lab_drawings import synthetic_lab

    host, lab = synthetic_lab()
    demo = [f"{p['namespace']}/{p['name']}" for p in lab.pods if p["name"].startswith("demo-")]
    graph = build_graph(host, lab, isolation={demo[0]: ["ingress: dev/deny-all"]})
    svg = render_svg(graph)
    root = ET.fromstring(svg)
    svc = next(s for s in graph.services if s.key == "dev/demo")
    ends = {e.get("data-b") for e in root.iter(f"{SVG}polyline")
            if e.get("class") == "service" and e.get("data-a")}
    # every Service's lines, the cluster DNS's (kube-system/kube-dns) too
    assert ends == {e for s in graph.services for e in s.endpoints}
    assert set(svc.endpoints) <= ends and len(svc.endpoints) == 3
    marked = [g for g in root.iter(f"{SVG}g") if "isolated" in g.get("class", "").split()]
    assert [g.get("data-pod") for g in marked] == [demo[0]]
    assert "isolated: ingress: dev/deny-all" in svg
    check_geometry(svg_geometry(svg))


def test_a_big_node_is_a_count_that_opens() -> None:
    from tests.unit.lab_drawings import synthetic_lab, topology

    host, lab = synthetic_lab(topology(replicas=149))
    graph = build_graph(host, lab)
    root = ET.fromstring(render_svg(graph))
    counts = {g.get("data-node"): g.get("data-hidden-pods") for g in root.iter(f"{SVG}g")
              if g.get("data-hidden-pods")}
    per_node: dict[str, int] = {}
    for p in lab.pods:
        per_node[p["node"]] = per_node.get(p["node"], 0) + 1
    assert counts == {n: str(c) for n, c in per_node.items() if c > COLLAPSE_AT}
    drawn = [g.get("data-pod") for g in root.iter(f"{SVG}g") if g.get("data-pod")]
    assert all(p.startswith("kube-system/") for p in drawn)  # only the control plane's two
    worker = next(g.id for g in graph.groups if g.title == "node kind-worker")
    opened = ET.fromstring(render_svg(graph, focus=worker))
    pods = [g.get("data-pod") for g in opened.iter(f"{SVG}g") if g.get("data-pod")]
    assert len(pods) == per_node["kind-worker"]
    page = render_html(graph)
    assert f'id="open-{worker}"' in page and page.count("<template") == len(counts)


def test_impaired_links_are_marked_in_every_rendering() -> None:
    host, lab = lab_host()
    shaped = {("kind-worker", "veth1234abcd"): "rate 10mbit; arriving: rate 5mbit"}
    graph = build_graph(host, lab, impaired=shaped)
    node = next(g for g in graph.groups if g.kind == "node")
    veth = next(v for v in graph.members(node.id) if v.name == "veth1234abcd")
    assert veth.impaired == "rate 10mbit; arriving: rate 5mbit"
    assert "impaired: rate 10mbit; arriving: rate 5mbit" in veth.lines
    pair = next(e for e in graph.edges if veth.id in (e.a, e.b))
    assert pair.label == "veth pair; impaired: veth1234abcd: rate 10mbit; arriving: rate 5mbit"
    others = [v for v in graph.vertices if v.id != veth.id]
    assert not any(v.impaired for v in others)
    assert build_graph(host, lab).version() != graph.version()  # the live page redraws
    svg = render_svg(graph)
    root = ET.fromstring(svg)
    marked = [g for g in root.iter(f"{SVG}g") if "impaired" in g.get("class", "").split()]
    assert [g.get("data-ifname") for g in marked] == ["veth1234abcd"]
    assert marked[0].get("data-impaired") == "rate 10mbit; arriving: rate 5mbit"
    check_geometry(svg_geometry(svg))
    mermaid = render_mermaid(graph)
    assert f"class {veth.id} impaired;" in mermaid
    parsed = parse_mermaid(mermaid)
    assert "impaired: rate 10mbit" in parsed.vertices[veth.id][0]
    dot = render_dot(graph)
    assert "impaired: veth1234abcd: rate 10mbit" in dot and 'fillcolor="#ffcccc"' in dot


def test_a_host_network_pod_leaves_its_node_a_node() -> None:
    host, lab = lab_host()
    lab.pods.append({"namespace": "default", "name": "agent", "node": "kind-worker",
                     "netns": "kind-worker", "hostNetwork": True, "spec": [{"name": "a"}]})
    graph = build_graph(host, lab)
    titles = {g.title: g.kind for g in graph.groups}
    assert titles["node kind-worker"] == "node" and "pod default/agent" not in titles
