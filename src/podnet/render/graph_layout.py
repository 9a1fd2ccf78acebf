"""Where everything of a `podnet graph` picture goes: boxes, text and routed edges. Pure.

The rules that keep edges off every label:

- a namespace's interfaces that lead out of it upwards (a node's eth0 and flannel.1, a pod's
  eth0) sit in a strip at the very top of its box, above its title, so their lines leave the
  box through its top border and nothing else;
- the node end of a pod's veth pair sits in the node, directly above the pod (a cell), so the
  pair is one short vertical line;
- the node network (or this host) is a band on top; its interfaces that lead down to the
  nodes sit at its bottom edge, each above the interface it pairs with;
- a bridge is drawn as a bus: its ports hang from a lane below it (in a node, from a lane
  above each row of pods, joined by a trunk in the node's left margin), so only its ports
  touch it: a node's eth0 is never drawn near cni0;
- VXLAN tunnels run in the gap between the band and the nodes; Services sit in a band below
  everything and reach their endpoint pods through the gutters between pods;
- a node with more than COLLAPSE_AT pods is drawn with a count instead of its pods;
  `layout(graph, focus=NODE)` draws that node alone, opened.

What a picture is made of (boxes, labels, routes) is `podnet.render.drawing`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from podnet.render.drawing import (
    ASCENT,
    CHAR_W,
    LINE_H,
    PAD,
    Box,
    Drawing,
    GroupBox,
    Label,
    Route,
    ServiceBox,
    VertexBox,
)
from podnet.render.graph_model import Edge, Graph, Group, Vertex

__all__ = ["COLLAPSE_AT", "collapsed_groups", "layout"]

GAP = 16  # between neighbours
VPAD = 8  # inside a vertex, left and right
STUB = 22  # between a pod's veth (in the node) and the pod
ROW_GAP = 30  # between rows of pods: bus lanes and Service lines run there
LANE_ROOM = 22  # above a row of bridge ports, for the bus lane
BAND_GAP = 64  # between the band and the groups below: pair lines, then tunnel lanes
SERVICE_GAP = 48  # between the lowest group and the Services
COLLAPSE_AT = 12  # a node with more pods is drawn as a count that opens on click
MAX_COLUMNS = 4
ROW_MAX = 760  # a group's own interfaces wrap into rows no wider than this


def _text_w(lines: Iterable[str]) -> float:
    return max((len(s) for s in lines), default=0) * CHAR_W


def _vertex_size(v: Vertex) -> tuple[float, float]:
    lines = (v.name, *v.lines)
    return _text_w(lines) + 2 * VPAD, len(lines) * LINE_H + 6


def _vertex_labels(v: Vertex, x: float, y: float) -> list[Label]:
    def cls(i: int, line: str) -> str:
        return "vname" if i == 0 else "impaired" if line.startswith("impaired: ") else ""

    return [Label(x + VPAD, y + 3 + ASCENT + i * LINE_H, line, cls(i, line))
            for i, line in enumerate((v.name, *v.lines))]


def collapsed_groups(graph: Graph, focus: str | None = None) -> set[str]:
    """Groups drawn as a count of their pods (the focused one is drawn opened)."""
    return {g.id for g in graph.groups if g.id != focus
            and sum(1 for c in graph.children(g.id) if c.kind == "pod") > COLLAPSE_AT}


# --- roles: which vertex goes where ------------------------------------------------------------


@dataclass
class _Roles:
    up: dict[str, list[Vertex]] = field(default_factory=dict)  # group -> its top strip
    down: dict[str, list[Vertex]] = field(default_factory=dict)  # band -> its bottom strip
    cell: dict[str, list[Vertex]] = field(default_factory=dict)  # child group -> its veths
    body: dict[str, list[Vertex]] = field(default_factory=dict)
    procs: dict[str, list[Vertex]] = field(default_factory=dict)
    bridge_of: dict[str, str] = field(default_factory=dict)  # port vertex -> bridge vertex


def _ancestors(graph: Graph, gid: str) -> list[str]:
    out = []
    parent = graph.index[gid].parent if gid in graph.index else None
    while parent is not None:
        out.append(parent)
        parent = graph.index[parent].parent if parent in graph.index else None
    return out


def _is_band(graph: Graph, g: Group) -> bool:
    return g.parent is None and g.kind in ("fabric", "host") and not graph.children(g.id)


def _roles(graph: Graph, shown: set[str]) -> _Roles:
    roles = _Roles()
    group_of = {v.id: v.group for v in graph.vertices}
    links: dict[str, list[Edge]] = {}
    for e in graph.edges:
        links.setdefault(e.a, []).append(e)
        links.setdefault(e.b, []).append(e)
        if e.kind == "port":
            roles.bridge_of[e.a] = e.b
    for v in graph.vertices:
        if v.group not in shown:
            continue
        g = graph.index[v.group]
        place = "procs" if v.kind == "process" else "body"
        for e in links.get(v.id, []):
            if e.kind == "port":
                continue
            other = e.b if e.a == v.id else e.a
            og = group_of.get(other, "")
            if e.kind == "veth" and g.id in _ancestors(graph, og):
                child = og if graph.index[og].parent == g.id else next(
                    a for a in _ancestors(graph, og) if graph.index[a].parent == g.id)
                if child in shown:
                    roles.cell.setdefault(child, []).append(v)
                    place = "cell"
                else:
                    place = "hidden"
                break
            if _is_band(graph, g):
                place = "down"
            elif og not in (g.id,):
                place = "up"
        if place in ("cell", "hidden"):
            continue
        getattr(roles, place).setdefault(g.id, []).append(v)
    return roles


# --- placing one group, relative to its own top-left corner -------------------------------------


@dataclass
class _Placed:
    group: Group
    w: float = 0.0
    h: float = 0.0
    labels: list[Label] = field(default_factory=list)
    vertices: list[VertexBox] = field(default_factory=list)  # relative
    children: list[tuple[_Placed, float, float]] = field(default_factory=list)
    cell_rows: list[tuple[float, list[VertexBox]]] = field(default_factory=list)  # (top, ports)
    columns: list[float] = field(default_factory=list)  # x of each column of cells
    cells_top: float = 0.0
    body_bottom: float = 0.0
    hidden_pods: int = 0
    count: Box | None = None
    count_labels: list[Label] = field(default_factory=list)
    strip_bottom: float = 0.0


def _row(items: list[Vertex], x0: float, y0: float, width: float) -> tuple[list[VertexBox], float]:
    """Vertices left to right, wrapping at `width`; the boxes and the bottom of the last row."""
    out: list[VertexBox] = []
    x, y, row_h = x0, y0, 0.0
    for v in items:
        w, h = _vertex_size(v)
        if x > x0 and x + w > x0 + width:
            x, y, row_h = x0, y + row_h + 8, 0.0
        out.append(VertexBox(v, Box(x, y, w, h), _vertex_labels(v, x, y)))
        x += w + GAP
        row_h = max(row_h, h)
    return out, (y + row_h if items else y0)


class _Layout:
    def __init__(self, graph: Graph, shown: set[str], collapsed: set[str]) -> None:
        self.graph = graph
        self.shown = shown
        self.collapsed = collapsed
        self.roles = _roles(graph, shown)
        self.peer: dict[str, str] = {}
        for e in graph.edges:
            if e.kind == "veth":
                self.peer[e.a], self.peer[e.b] = e.b, e.a

    def place(self, g: Group, *, band: bool = False) -> _Placed:
        p = _Placed(g)
        r = self.roles
        y = float(PAD)
        strip, bottom = _row(r.up.get(g.id, []), PAD, y, ROW_MAX)
        p.vertices += strip
        if strip:
            y = bottom + 8
        p.strip_bottom = y
        for i, line in enumerate((g.title, *g.lines, *self._isolation(g))):
            cls = "title" if i == 0 else ("isolated" if line.startswith("isolated") else "")
            p.labels.append(Label(PAD, y + ASCENT + i * LINE_H, line, cls))
        y += (1 + len(g.lines) + len(self._isolation(g))) * LINE_H + 6
        body, bottom = _row(r.body.get(g.id, []), PAD, y, ROW_MAX)
        procs, bottom2 = _row(r.procs.get(g.id, []), PAD, bottom + 8 if body else y, ROW_MAX)
        p.vertices += body + procs
        if body or procs:
            y = (bottom2 if procs else bottom) + 8
        p.body_bottom = y
        inner = max([_text_w(lb.text for lb in p.labels)]
                    + [vb.box.right - PAD for vb in p.vertices])
        if band:
            y, inner = self._band_strip(g, p, y, inner)
        elif g.id in self.collapsed:
            y, inner = self._count(g, p, y, inner)
        else:
            y, inner = self._cells(g, p, y, inner)
        p.w = max(inner, 120.0) + 2 * PAD
        p.h = y + PAD - 8
        return p

    @staticmethod
    def _isolation(g: Group) -> list[str]:
        return [f"isolated: {why}" for why in g.isolation]

    def _band_strip(self, g: Group, p: _Placed, y: float, inner: float) -> tuple[float, float]:
        """Room for the band's downward ports (placed later, above what they lead to)."""
        down = self.roles.down.get(g.id, [])
        if any(v.id in self.roles.bridge_of for v in down):
            y += LANE_ROOM
        p.cells_top = y
        h = max((_vertex_size(v)[1] for v in down), default=0.0)
        p.vertices += [VertexBox(v, Box(0, y, *_vertex_size(v)), []) for v in down]
        return y + h + 8, inner

    def _count(self, g: Group, p: _Placed, y: float, inner: float) -> tuple[float, float]:
        pods = [c for c in self.graph.children(g.id) if c.kind == "pod"]
        p.hidden_pods = len(pods)
        lines = (f"{len(pods)} pods", "click to open")
        box = Box(PAD, y, _text_w(lines) + 2 * VPAD, len(lines) * LINE_H + 8)
        p.count = box
        p.count_labels = [Label(box.x + VPAD, box.y + 4 + ASCENT + i * LINE_H, line,
                                "count" if i == 0 else "")
                          for i, line in enumerate(lines)]
        return box.bottom + 8, max(inner, box.w)

    def _cells(self, g: Group, p: _Placed, y: float, inner: float) -> tuple[float, float]:
        kids = [c for c in self.graph.children(g.id) if c.id in self.shown]
        if not kids:
            return y, inner
        cells = [self._cell(c) for c in kids]
        ported = any(v.vertex.id in self.roles.bridge_of for c in cells for v in c.veths)
        y += LANE_ROOM if ported else 4
        n = len(cells)
        nested = any(c.child.children for c in cells)
        cols = n if nested else (1 if n <= 3 else min(MAX_COLUMNS, math.ceil(math.sqrt(n))))
        col_w = [0.0] * cols
        row_h: list[float] = []
        for i, c in enumerate(cells):
            col_w[i % cols] = max(col_w[i % cols], c.w)
            if i % cols == 0:
                row_h.append(0.0)
            row_h[-1] = max(row_h[-1], c.h)
        xs = [PAD + sum(col_w[:k]) + GAP * k for k in range(cols)]
        p.columns = xs
        p.cells_top = y
        tops = [y + sum(row_h[:r]) + ROW_GAP * r for r in range(len(row_h))]
        for i, c in enumerate(cells):
            cx, cy = xs[i % cols], tops[i // cols]
            if i % cols == 0:
                p.cell_rows.append((cy, []))
            for v in c.veths:
                moved = VertexBox(v.vertex, v.box.moved(cx, cy),
                                  [lb.moved(cx, cy) for lb in v.labels])
                p.vertices.append(moved)
                if v.vertex.id in self.roles.bridge_of:
                    p.cell_rows[-1][1].append(moved)
            p.children.append((c.child, cx + c.child_x, cy + c.child_y))
        grid_w = sum(col_w) + GAP * (cols - 1)
        return tops[-1] + row_h[-1] + 8, max(inner, grid_w)

    def _cell(self, child: Group) -> _Cell:
        """A child with the veths that lead into it stacked above, each over its peer."""
        placed = self.place(child)
        veths: list[VertexBox] = []
        x = -math.inf
        for v in self.roles.cell.get(child.id, []):
            w, h = _vertex_size(v)
            peer = next((pv.box for pv in placed.vertices
                         if pv.vertex.id == self.peer.get(v.id)), None)
            vx = max(x, (peer.cx - w / 2) if peer else 0.0)
            veths.append(VertexBox(v, Box(vx, 0, w, h), _vertex_labels(v, vx, 0)))
            x = vx + w + GAP
        shift = max(0.0, -min((v.box.x for v in veths), default=0.0))
        veths = [VertexBox(v.vertex, v.box.moved(shift, 0), [lb.moved(shift, 0)
                                                              for lb in v.labels])
                 for v in veths]
        stub = (max(v.box.h for v in veths) + STUB) if veths else 0.0
        width = max([placed.w + shift] + [v.box.right for v in veths])
        return _Cell(placed, veths, shift, stub, width, placed.h + stub)


@dataclass
class _Cell:
    child: _Placed
    veths: list[VertexBox]  # relative to the cell's top-left corner
    child_x: float
    child_y: float
    w: float
    h: float


# --- absolute positions ---------------------------------------------------------------------------


def _absolute(p: _Placed, dx: float, dy: float, groups: list[GroupBox],
              vertices: list[VertexBox], index: dict[str, _Abs]) -> None:
    box = Box(dx, dy, p.w, p.h)
    groups.append(GroupBox(p.group, box, [lb.moved(dx, dy) for lb in p.labels], p.hidden_pods,
                           p.count.moved(dx, dy) if p.count else None,
                           [lb.moved(dx, dy) for lb in p.count_labels]))
    index[p.group.id] = _Abs(p, box)
    for v in p.vertices:
        vertices.append(VertexBox(v.vertex, v.box.moved(dx, dy),
                                  [lb.moved(dx, dy) for lb in v.labels]))
    for child, cx, cy in p.children:
        _absolute(child, dx + cx, dy + cy, groups, vertices, index)


@dataclass
class _Abs:
    placed: _Placed
    box: Box


def _spread(band: _Placed, targets: dict[str, float], x0: float, width: float) -> None:
    """Put each of the band's downward ports above what it leads to, without overlaps."""
    fixed = [v for v in band.vertices if v.box.y < band.cells_top - 0.5]
    ports = [v for v in band.vertices if v not in fixed]
    ports.sort(key=lambda v: targets.get(v.vertex.id, 0.0))
    x = float(PAD)
    placed = []
    for v in ports:
        want = targets[v.vertex.id] - x0 - v.box.w / 2 if v.vertex.id in targets else x
        x = max(x, want)
        placed.append(VertexBox(v.vertex, Box(x, v.box.y, v.box.w, v.box.h),
                                _vertex_labels(v.vertex, x, v.box.y)))
        x += v.box.w + GAP
    band.vertices = fixed + placed
    band.w = max(band.w, width, x - GAP + PAD)


def layout(graph: Graph, *, focus: str | None = None, services: bool = True) -> Drawing:
    """The whole picture; with `focus` (a group id), that group alone, opened."""
    collapsed = collapsed_groups(graph, focus)
    if focus is not None:
        keep = {focus} | {g.id for g in graph.groups if focus in _ancestors(graph, g.id)}
    else:
        keep = {g.id for g in graph.groups}
    shown = {gid for gid in keep
             if not any(a in collapsed for a in _ancestors(graph, gid))}
    engine = _Layout(graph, shown, collapsed)
    tops = [g for g in graph.groups
            if g.id in shown and (g.parent is None or g.id == focus)]
    bands = [g for g in tops if _is_band(graph, g) and focus is None]
    rest = [engine.place(g) for g in tops if g not in bands]
    groups: list[GroupBox] = []
    vertices: list[VertexBox] = []
    index: dict[str, _Abs] = {}
    band_placed = [engine.place(g, band=True) for g in bands]
    tunnels = any(e.kind == "tunnel" for e in graph.edges)
    row_y = PAD + sum(b.h + BAND_GAP for b in band_placed)
    if not band_placed and tunnels:
        row_y += BAND_GAP / 2
    x = float(PAD)
    for p in rest:
        _absolute(p, x, row_y, groups, vertices, index)
        x += p.w + GAP
    rest_w = x - GAP - PAD
    at = {v.vertex.id: v.box for v in vertices}
    y = float(PAD)
    for b in band_placed:
        targets = {v.vertex.id: at[engine.peer[v.vertex.id]].cx for v in b.vertices
                   if engine.peer.get(v.vertex.id) in at}
        _spread(b, targets, PAD, rest_w)
        _absolute(b, PAD, y, groups, vertices, index)
        y += b.h + BAND_GAP
    drawing_bottom = max([g.box.bottom for g in groups] or [PAD + 40.0])
    svc_boxes = _services(graph, drawing_bottom + SERVICE_GAP) if services and not focus else []
    routes = _routes(graph, engine, groups, vertices, index, band_placed, svc_boxes)
    width = max([g.box.right for g in groups] + [s.box.right for s in svc_boxes] + [400.0])
    bottom = max([g.box.bottom for g in groups] + [s.box.bottom for s in svc_boxes]
                 + [drawing_bottom])
    order = {g.id: n for n, g in enumerate(graph.groups)}
    groups.sort(key=lambda gb: (len(_ancestors(graph, gb.group.id)), order[gb.group.id]))
    return Drawing(width + PAD, bottom + PAD + 30, groups, vertices, routes, svc_boxes,
                   bottom + PAD + 16)


def _services(graph: Graph, top: float) -> list[ServiceBox]:
    out = []
    x = float(PAD)
    for s in graph.services:
        lines = (s.title, *s.lines)
        w, h = _text_w(lines) + 2 * VPAD, len(lines) * LINE_H + 8
        box = Box(x, top, w, h)
        out.append(ServiceBox(s, box, [Label(x + VPAD, top + 4 + ASCENT + i * LINE_H, line,
                                             "title" if i == 0 else "")
                                       for i, line in enumerate(lines)]))
        x += w + GAP
    return out


# --- routes ---------------------------------------------------------------------------------------


def _simplify(points: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Rounded, without repeated points or points in the middle of a straight run."""
    out: list[tuple[float, float]] = []
    for x, y in points:
        pt = (round(x, 1), round(y, 1))
        if out and out[-1] == pt:
            continue
        if len(out) >= 2:
            (x0, y0), (x1, y1) = out[-2], out[-1]
            if (x0 == x1 == pt[0]) or (y0 == y1 == pt[1]):
                out[-1] = pt
                continue
        out.append(pt)
    return tuple(out)


def _routes(graph: Graph, engine: _Layout, groups: list[GroupBox], vertices: list[VertexBox],
            index: dict[str, _Abs], bands: list[_Placed],
            services: list[ServiceBox]) -> list[Route]:
    at = {v.vertex.id: v.box for v in vertices}
    group_of = {v.vertex.id: v.vertex.group for v in vertices}
    band_ids = {b.group.id for b in bands}
    out: list[Route] = []
    tunnel_lane = {band.group.id: index[band.group.id].box.bottom + BAND_GAP * 0.72
                   for band in bands}
    lane_default = min([g.box.y for g in groups if g.group.parent is None] or [0.0]) \
        - BAND_GAP * 0.28
    for e in graph.edges:
        if e.a not in at or e.b not in at:
            continue
        a, b = at[e.a], at[e.b]
        ga, gb = group_of[e.a], group_of[e.b]
        pts: list[tuple[float, float]]
        if e.kind == "tunnel":
            lane = next(iter(tunnel_lane.values()), lane_default)
            pts = [(a.cx, a.y), (a.cx, lane), (b.cx, lane), (b.cx, b.y)]
        elif e.kind == "port":
            pts = _port(engine, index, ga, a, b)
        elif ga in band_ids or gb in band_ids:
            top, low = (a, b) if ga in band_ids else (b, a)
            mid = top.bottom + BAND_GAP * 0.3
            pts = [(top.cx, top.bottom), (top.cx, mid), (low.cx, mid), (low.cx, low.y)]
        elif b.y > a.bottom:
            pts = _down(a, b)
        elif a.y > b.bottom:
            pts = _down(b, a)
        else:
            pts = [(a.right, a.y + a.h / 2), (b.x, b.y + b.h / 2)]
        out.append(Route(e.kind, e.a, e.b, e.label, _simplify(pts)))
    if services:
        out += _service_routes(graph, engine, groups, index, services)
    return out


def _down(top: Box, low: Box) -> list[tuple[float, float]]:
    mid = low.y - STUB / 2
    return [(top.cx, top.bottom), (top.cx, mid), (low.cx, mid), (low.cx, low.y)]


def _port(engine: _Layout, index: dict[str, _Abs], gid: str, port: Box,
          bridge: Box) -> list[tuple[float, float]]:
    placed = index[gid].placed
    box = index[gid].box
    if port.y >= box.y + placed.cells_top - 0.5 and placed.cells_top:
        rows = placed.cell_rows
        lane0 = box.y + placed.cells_top - LANE_ROOM / 2
        row = next((n for n, (top, vs) in enumerate(rows)
                    if any(abs(v.box.y + box.y - port.y) < 0.5 and abs(v.box.x + box.x - port.x)
                           < 0.5 for v in vs)), 0)
        if row == 0:
            return [(port.cx, port.y), (port.cx, lane0), (bridge.cx, lane0),
                    (bridge.cx, bridge.bottom)]
        lane = box.y + rows[row][0] - ROW_GAP / 2
        trunk = box.x + PAD / 2
        return [(port.cx, port.y), (port.cx, lane), (trunk, lane), (trunk, lane0),
                (bridge.cx, lane0), (bridge.cx, bridge.bottom)]
    below = max(port.bottom, bridge.bottom) + 5
    return [(port.cx, port.bottom), (port.cx, below), (bridge.cx, below),
            (bridge.cx, bridge.bottom)]


def _service_routes(graph: Graph, engine: _Layout, groups: list[GroupBox],
                    index: dict[str, _Abs], services: list[ServiceBox]) -> list[Route]:
    out = []
    by_id = {g.group.id: g for g in groups}
    lane_base = min(s.box.y for s in services) - 12
    for n, s in enumerate(services):
        lane = lane_base - 5 * (n % 4)
        seen_counts: set[str] = set()
        for pod in s.service.endpoints:
            target = by_id.get(pod)
            if target is None:  # inside a collapsed node: to its count, once
                parent = graph.index[pod].parent if pod in graph.index else None
                holder = by_id.get(parent or "")
                if holder is None or holder.count is None or holder.group.id in seen_counts:
                    continue
                seen_counts.add(holder.group.id)
                c = holder.count
                pts = [(c.cx, c.bottom), (c.cx, lane), (s.box.cx, lane), (s.box.cx, s.box.y)]
                out.append(Route("service", s.service.id, holder.group.id,
                                 s.service.title, _simplify(pts)))
                continue
            pts = _to_gutter(target, index, n)
            pts += [(pts[-1][0], lane), (s.box.cx, lane), (s.box.cx, s.box.y)]
            out.append(Route("service", s.service.id, pod, s.service.title, _simplify(pts)))
    return out


def _to_gutter(target: GroupBox, index: dict[str, _Abs], n: int) -> list[tuple[float, float]]:
    """From a pod's bottom edge into the gap below it, along it to the gutter left of the pod's
    column, and down that gutter out of every enclosing box."""
    box = target.box
    offset = 4 + 3 * (n % 3)
    y = box.bottom + offset
    pts = [(box.cx, box.bottom), (box.cx, y)]
    gid = target.group.parent
    while gid is not None and gid in index:
        parent = index[gid]
        xs = [parent.box.x + c for c in parent.placed.columns] or [parent.box.x + PAD]
        col = max((c for c in xs if c <= box.x + 0.5), default=xs[0])
        first = col <= parent.box.x + PAD + 0.5
        gutter = (parent.box.x + PAD / 2 if first else col - GAP / 2) + 2 + 2 * (n % 2)
        y_out = parent.box.bottom + offset
        pts += [(gutter, y), (gutter, y_out)]
        y = y_out
        box = parent.box
        gid = parent.placed.group.parent
    return pts
