"""`podnet graph -o svg`: podnet draws the lab itself; no Graphviz, no browser library.

Layout, top to bottom: the node network (or this host) as a band, then the nodes side by side,
each holding its interfaces and, below them, its pods in a grid; each pod holds its eth0 and its
containers. Veth pairs are thick lines between the two ends, bridge ports dashed lines to their
bridge, VXLAN tunnels dotted blue curves between nodes. Interfaces are ordered so each one sits
above the namespace its pair leads to.

Every group carries data attributes (data-kind, data-netns, data-pod) so a page, a test or a
script can find what is drawn where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from podnet.render.graph_model import Graph, Group, Vertex

__all__ = ["FILL", "render_svg"]

CHAR_W = 6.6  # 11px monospace
LINE_H = 14
PAD = 10
GAP = 16
ROW_MAX = 720  # a group's interfaces wrap into rows no wider than this
_TUNNEL_DIP = 18  # how far below the boxes VXLAN tunnels are drawn
FILL = {
    "fabric": "#ffd9b3", "host": "#ffd9b3", "node": "#f3d9f7", "pod": "#fff27a",
    "outside": "#c9f5b0", "netns": "#d8f5d0",
}
_VERTEX_FILL = {"process": "#7fd4ff", "bridge": "#9ff5f5", "vxlan": "#b9e0ff"}
_STYLE = """
text { font-family: monospace; font-size: 11px; fill: #222; }
text.title { font-weight: bold; }
rect.group { stroke: #333; stroke-width: 1.5; }
rect.vertex { stroke: #333; stroke-width: 1; }
line.veth { stroke: #333; stroke-width: 3; }
line.port { stroke: #666; stroke-width: 1.5; stroke-dasharray: 5 4; }
path.tunnel { stroke: #0066cc; stroke-width: 2; stroke-dasharray: 2 4; fill: none; }
"""


@dataclass
class _Placed:
    group: Group
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    vertices: list[tuple[Vertex, float, float, float, float]] = field(default_factory=list)
    children: list[_Placed] = field(default_factory=list)


def _text_w(lines: tuple[str, ...] | list[str]) -> float:
    return max((len(s) for s in lines), default=0) * CHAR_W


def _vertex_size(v: Vertex) -> tuple[float, float]:
    lines = (v.name, *v.lines)
    return _text_w(lines) + 16, len(lines) * LINE_H + 8


_Sized = tuple[Vertex, float, float]  # a vertex and its width and height


def _rows(items: list[_Sized], width: float) -> list[list[_Sized]]:
    rows: list[list[_Sized]] = [[]]
    used = 0.0
    for item in items:
        if rows[-1] and used + item[1] > width:
            rows.append([])
            used = 0.0
        rows[-1].append(item)
        used += item[1] + GAP
    return [r for r in rows if r]


class _Layout:
    def __init__(self, graph: Graph, order: dict[str, float]) -> None:
        self.graph = graph
        self.order = order  # vertex id -> x of the thing its edge leads to (from a first pass)
        # Interfaces whose pair leads into a group nested inside their own (a node's pod veths)
        # come after the node's own links (eth0, cni0, flannel.1).
        parent = {g.id: g.parent for g in graph.groups}
        group_of = {v.id: v.group for v in graph.vertices}

        def inside(child: str, ancestor: str) -> bool:
            seen = parent.get(child)
            while seen is not None:
                if seen == ancestor:
                    return True
                seen = parent.get(seen)
            return False

        self.inward = {
            a for e in graph.edges for a, b in ((e.a, e.b), (e.b, e.a))
            if a in group_of and b in group_of and inside(group_of[b], group_of[a])
        }

    def place(self, g: Group) -> _Placed:
        """Size a group and place its content relative to its own top-left corner."""
        p = _Placed(g)
        header = (g.title, *g.lines)
        top = PAD + len(header) * LINE_H + 6
        children = [self.place(c) for c in self.graph.children(g.id)]
        members = self.graph.members(g.id)
        links = sorted((v for v in members if v.kind != "process"),
                       key=lambda v: (v.kind == "veth", v.id in self.inward,
                                      self.order.get(v.id, 0.0)))
        procs = [v for v in members if v.kind == "process"]
        grid_w, grid_h, cells = self.grid(children)
        inner = max(_text_w(header), grid_w, 120.0)
        rows = _rows([(v, *_vertex_size(v)) for v in links], max(inner, ROW_MAX))
        rows += _rows([(v, *_vertex_size(v)) for v in procs], max(inner, ROW_MAX))
        inner = max(inner, *(sum(w for _, w, _ in r) + GAP * (len(r) - 1) for r in rows)) \
            if rows else inner
        y = float(top)
        for row in rows:
            row_h = max(h for _, _, h in row)
            x = float(PAD)
            for v, w, h in row:
                p.vertices.append((v, x, y, w, h))
                x += w + GAP
            y += row_h + 8
        y += 4 if children else 0
        for child, (cx, cy) in zip(children, cells, strict=True):
            child.x, child.y = PAD + cx, y + cy
        p.children = children
        p.w = inner + 2 * PAD
        p.h = y + grid_h + (PAD if children else 2)
        return p

    @staticmethod
    def grid(children: list[_Placed]) -> tuple[float, float, list[tuple[float, float]]]:
        """Nodes side by side; pods in a grid at most three wide."""
        if not children:
            return 0.0, 0.0, []
        nested = any(c.children for c in children)
        square = max(1, math.ceil(math.sqrt(len(children))))
        cols = len(children) if nested else min(len(children), square, 3)
        cells = []
        col_w = [0.0] * cols
        row_h: list[float] = []
        for i, c in enumerate(children):
            col_w[i % cols] = max(col_w[i % cols], c.w)
            if i % cols == 0:
                row_h.append(0.0)
            row_h[-1] = max(row_h[-1], c.h)
        for i, _c in enumerate(children):
            cells.append((sum(col_w[: i % cols]) + GAP * (i % cols),
                          sum(row_h[: i // cols]) + GAP * (i // cols)))
        return sum(col_w) + GAP * (cols - 1), sum(row_h) + GAP * (len(row_h) - 1), cells


def _absolute(p: _Placed, dx: float, dy: float, out: list[_Placed]) -> None:
    p.x += dx
    p.y += dy
    p.vertices = [(v, x + p.x, y + p.y, w, h) for v, x, y, w, h in p.vertices]
    out.append(p)
    for c in p.children:
        _absolute(c, p.x, p.y, out)


def _arrange(graph: Graph, order: dict[str, float]) -> tuple[list[_Placed], float, float]:
    layout = _Layout(graph, order)
    tops = [layout.place(g) for g in graph.children(None)]
    bands = [t for t in tops if t.group.kind in ("fabric", "host") and not t.children]
    rest = [t for t in tops if t not in bands]
    rest_w = sum(t.w for t in rest) + GAP * max(0, len(rest) - 1)
    placed: list[_Placed] = []
    x = float(PAD)
    below: list[_Placed] = []
    top_y = PAD + sum(b.h + GAP * 3 for b in bands)
    for t in rest:
        _absolute(t, x, top_y, below)
        x += t.w + GAP
    targets = dict(order)
    for e in graph.edges:  # where the band's links land in the row just placed
        for a, b in ((e.a, e.b), (e.b, e.a)):
            for p in below:
                for v, vx, _vy, vw, _vh in p.vertices:
                    if v.id == b:
                        targets[a] = vx + vw / 2
    y = float(PAD)
    for band in bands:  # a band spans the row below it, its interfaces above their peers
        band.w = max(band.w, rest_w)
        band.x = PAD
        _spread(band, targets)
        band.x = 0.0
        _absolute(band, PAD, y, placed)
        y += band.h + GAP * 3
    placed += below
    width = max([p.x + p.w for p in placed] or [200.0]) + PAD
    height = max([p.y + p.h for p in placed] or [100.0]) + PAD + 24
    return placed, width, height


def _spread(band: _Placed, order: dict[str, float]) -> None:
    """Put each of a band's interfaces above what it leads to, without overlaps."""
    if not band.vertices:
        return
    rows: dict[float, list[tuple[Vertex, float, float, float, float]]] = {}
    for item in band.vertices:
        rows.setdefault(item[2], []).append(item)
    out = []
    for row in rows.values():
        wanted = sorted(row, key=lambda it: order.get(it[0].id, 0.0))
        x = float(PAD)
        for v, _x, y, w, h in wanted:
            target = order.get(v.id, 0.0) - band.x - w / 2 if v.id in order else x
            x = max(x, target)
            out.append((v, x, y, w, h))
            x += w + GAP
        overflow = x - GAP - (band.w - PAD)
        if overflow > 0:
            band.w += overflow
    band.vertices = out


def _gutters(placed: list[_Placed]) -> dict[str, float]:
    """Each vertex's way down: the left margin of the box it sits in."""
    return {v.id: p.x + PAD / 2 for p in placed for v, *_ in p.vertices}


def _centers(placed: list[_Placed]) -> dict[str, tuple[float, float, float, float]]:
    return {v.id: (x, y, w, h) for p in placed for v, x, y, w, h in p.vertices}


def _svg_groups(placed: list[_Placed]) -> list[str]:
    out = []
    for p in placed:
        g = p.group
        attrs = f' data-kind="{g.kind}" data-netns={quoteattr(g.netns)}'
        if g.pod:
            attrs += f" data-pod={quoteattr(g.pod)}"
        if g.node:
            attrs += f" data-node={quoteattr(g.node)}"
        out.append(f'<g class="group {g.kind}" id="{g.id}"{attrs}>')
        out.append(f'<rect class="group" x="{p.x:.1f}" y="{p.y:.1f}" width="{p.w:.1f}" '
                   f'height="{p.h:.1f}" rx="8" fill="{FILL.get(g.kind, "#eeeeee")}"/>')
        for i, line in enumerate((g.title, *g.lines)):
            cls = ' class="title"' if i == 0 else ""
            out.append(f'<text{cls} x="{p.x + PAD:.1f}" y="{p.y + PAD + 10 + i * LINE_H:.1f}">'
                       f"{escape(line)}</text>")
        out.append("</g>")
    return out


def _svg_edges(graph: Graph, boxes: dict[str, tuple[float, float, float, float]],
               gutters: dict[str, float], bottom: float) -> list[str]:
    """Pairs and ports as straight lines; a tunnel leaves each end by the left margin of its
    namespace's box and runs under every box, where the node network carries it."""
    out = ['<g class="edges">']
    for e in graph.edges:
        if e.a not in boxes or e.b not in boxes:
            continue
        ax, ay, aw, ah = boxes[e.a]
        bx, by, bw, bh = boxes[e.b]
        x1, y1, x2, y2 = ax + aw / 2, ay + ah / 2, bx + bw / 2, by + bh / 2
        title = f"<title>{escape(e.label)}</title>"
        ends = f'data-a="{e.a}" data-b="{e.b}"'
        if e.kind == "tunnel":
            ga, gb = gutters.get(e.a, ax), gutters.get(e.b, bx)
            out.append(f'<path class="tunnel" d="M{ax:.1f},{y1:.1f} H{ga:.1f} V{bottom:.1f} '
                       f'H{gb:.1f} V{y2:.1f} H{bx:.1f}" {ends}>{title}</path>')
        else:
            out.append(f'<line class="{e.kind}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" '
                       f'y2="{y2:.1f}" {ends}>{title}</line>')
    out.append("</g>")
    return out


def _svg_vertices(placed: list[_Placed]) -> list[str]:
    out = []
    for p in placed:
        for v, x, y, w, h in p.vertices:
            rx = h / 2 if v.kind in ("process", "veth", "device") else 3
            fill = _VERTEX_FILL.get(v.kind, "#00ffff")
            out.append(f'<g class="vertex {v.kind}" id="{v.id}" data-ifname={quoteattr(v.name)}>'
                       f"<title>{escape(v.detail)}</title>")
            out.append(f'<rect class="vertex" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
                       f'height="{h:.1f}" rx="{rx:.1f}" fill="{fill}"/>')
            for i, line in enumerate((v.name, *v.lines)):
                out.append(f'<text x="{x + 8:.1f}" y="{y + 4 + 10 + i * LINE_H:.1f}">'
                           f"{escape(line)}</text>")
            out.append("</g>")
    return out


def _svg_legend(height: float) -> str:
    y = height - 14
    return (f'<g class="legend"><line class="veth" x1="{PAD}" y1="{y - 4}" x2="{PAD + 30}" '
            f'y2="{y - 4}"/><text x="{PAD + 36}" y="{y}">veth pair</text>'
            f'<line class="port" x1="{PAD + 120}" y1="{y - 4}" x2="{PAD + 150}" y2="{y - 4}"/>'
            f'<text x="{PAD + 156}" y="{y}">bridge port</text>'
            f'<path class="tunnel" d="M{PAD + 250},{y - 4} L{PAD + 280},{y - 4}"/>'
            f'<text x="{PAD + 286}" y="{y}">VXLAN tunnel</text></g>')


def render_svg(graph: Graph) -> str:
    # Pass 1 finds where things land; pass 2 orders each group's interfaces by where their
    # peers are, so pair lines run down instead of across.
    first, _, _ = _arrange(graph, {})
    boxes = _centers(first)
    order: dict[str, float] = {}
    for e in graph.edges:
        for a, b in ((e.a, e.b), (e.b, e.a)):
            if b in boxes:
                order.setdefault(a, boxes[b][0])
    placed, width, height = _arrange(graph, order)
    bottom = max([p.y + p.h for p in placed] or [0.0]) + _TUNNEL_DIP
    if any(e.kind == "tunnel" for e in graph.edges):
        height += _TUNNEL_DIP
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" class="podnet-graph" '
        f'data-title={quoteattr(graph.title)}>',
        f"<title>{escape(graph.title)}</title>",
        f"<style>{_STYLE}</style>",
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
        *_svg_groups(placed),
        *_svg_edges(graph, _centers(placed), _gutters(placed), bottom),
        *_svg_vertices(placed),
        _svg_legend(height),
        "</svg>",
    ]
    return "\n".join(out)
