"""`podnet graph -o svg`: podnet draws the lab itself; no Graphviz, no browser library.

`graph_layout` decides where everything goes; this writes it as SVG. Veth pairs are thick
lines, bridge ports dashed lines to their bridge's bus, VXLAN tunnels dotted blue lanes between
nodes, Services dashed purple lines to their endpoint pods (in a layer a page can hide), and a
node with many pods a count that a page opens.

Every group carries data attributes (data-kind, data-netns, data-pod, data-node) and every
vertex data-ifname, so a page, a test or a script can find what is drawn where; every label is
a <text> at 12 px.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from podnet.render.drawing import FONT, PAD, Box, Drawing, GroupBox, Label, Route
from podnet.render.graph_layout import layout
from podnet.render.graph_model import Graph

__all__ = ["FILL", "render_drawing", "render_svg"]

FILL = {
    "fabric": "#ffd9b3", "host": "#ffd9b3", "node": "#f3d9f7", "pod": "#fff27a",
    "outside": "#c9f5b0", "netns": "#d8f5d0",
}
_VERTEX_FILL = {"process": "#7fd4ff", "bridge": "#9ff5f5", "vxlan": "#b9e0ff"}
_STYLE = f"""
text {{ font-family: "DejaVu Sans Mono", monospace; font-size: {FONT}px; fill: #222; }}
text.title, text.vname, text.count {{ font-weight: bold; }}
text.isolated {{ fill: #b00020; font-weight: bold; }}
rect.group {{ stroke: #333; stroke-width: 1.5; }}
g.isolated > rect.group {{ stroke: #b00020; stroke-width: 3; stroke-dasharray: 8 4; }}
rect.vertex {{ stroke: #333; stroke-width: 1; }}
g.impaired > rect.vertex {{ fill: #fcc; stroke: #b00020; stroke-width: 2; stroke-dasharray: 6 3; }}
text.impaired {{ fill: #b00020; font-weight: bold; }}
rect.count {{ fill: #fffbd0; stroke: #333; stroke-width: 1.5; stroke-dasharray: 4 3; }}
g.count {{ cursor: pointer; }}
polyline {{ fill: none; }}
polyline.veth {{ stroke: #333; stroke-width: 3; }}
polyline.port {{ stroke: #0a7d7d; stroke-width: 2; stroke-dasharray: 6 3; }}
polyline.tunnel {{ stroke: #0066cc; stroke-width: 2; stroke-dasharray: 2 4; }}
polyline.service {{ stroke: #7b3fb3; stroke-width: 1.5; stroke-dasharray: 7 3; }}
rect.service {{ fill: #eadcf7; stroke: #7b3fb3; stroke-width: 1.5; }}
"""


def _text(label: Label) -> str:
    cls = f' class="{label.cls}"' if label.cls else ""
    return f'<text{cls} x="{label.x:.1f}" y="{label.y:.1f}">{escape(label.text)}</text>'


def _rect(box: Box, cls: str, extra: str = "") -> str:
    return (f'<rect class="{cls}" x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" '
            f'height="{box.h:.1f}"{extra}/>')


def _group(gb: GroupBox) -> list[str]:
    g = gb.group
    attrs = f' data-kind="{g.kind}" data-netns={quoteattr(g.netns)}'
    if g.pod:
        attrs += f" data-pod={quoteattr(g.pod)}"
    if g.node:
        attrs += f" data-node={quoteattr(g.node)}"
    if gb.hidden_pods:
        attrs += f' data-hidden-pods="{gb.hidden_pods}"'
    cls = f"group {g.kind}" + (" isolated" if g.isolation else "")
    out = [f'<g class="{cls}" id="{g.id}"{attrs}>',
           _rect(gb.box, "group", f' rx="8" fill="{FILL.get(g.kind, "#eeeeee")}"'),
           *(_text(lb) for lb in gb.labels)]
    if gb.count is not None:
        out += [f'<g class="count" data-open="{g.id}" role="button" tabindex="0">'
                f"<title>show the {gb.hidden_pods} pods of {escape(g.title)}</title>",
                _rect(gb.count, "count", ' rx="6"'),
                *(_text(lb) for lb in gb.count_labels), "</g>"]
    out.append("</g>")
    return out


def _route(r: Route) -> str:
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in r.points)
    return (f'<polyline class="{r.kind}" points="{points}" data-a="{r.a}" data-b="{r.b}">'
            f"<title>{escape(r.label)}</title></polyline>")


def _legend(y: float) -> str:
    items = (("veth", "veth pair"), ("port", "bridge port"), ("tunnel", "VXLAN tunnel"),
             ("service", "Service to endpoint"))
    out = ['<g class="legend">']
    x = float(PAD)
    for cls, text in items:
        out.append(f'<polyline class="{cls}" points="{x:.0f},{y - 4:.0f} {x + 30:.0f},'
                   f'{y - 4:.0f}"/><text x="{x + 36:.0f}" y="{y:.0f}">{text}</text>')
        x += 36 + len(text) * 7.25 + 24
    out.append("</g>")
    return "".join(out)


def render_drawing(d: Drawing, title: str) -> str:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{d.width:.0f}" height="{d.height:.0f}" '
        f'viewBox="0 0 {d.width:.0f} {d.height:.0f}" class="podnet-graph" '
        f"data-title={quoteattr(title)}>",
        f"<title>{escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        f'<rect x="0" y="0" width="{d.width:.0f}" height="{d.height:.0f}" fill="#ffffff"/>',
    ]
    for gb in d.groups:
        out += _group(gb)
    out.append('<g class="edges">')
    out += [_route(r) for r in d.routes if r.kind != "service"]
    out.append("</g>")
    for vb in d.vertices:
        v = vb.vertex
        rx = min(vb.box.h / 2, 13) if v.kind in ("process", "veth", "device") else 3
        cls = f"vertex {v.kind}" + (" impaired" if v.impaired else "")
        shaped = f" data-impaired={quoteattr(v.impaired)}" if v.impaired else ""
        out.append(f'<g class="{cls}" id="{v.id}" data-ifname={quoteattr(v.name)} '
                   f'data-group="{v.group}"{shaped}><title>{escape(v.detail)}</title>')
        out.append(_rect(vb.box, "vertex",
                         f' rx="{rx:.1f}" fill="{_VERTEX_FILL.get(v.kind, "#00ffff")}"'))
        out += [_text(lb) for lb in vb.labels]
        out.append("</g>")
    if d.services:
        out.append('<g class="services">')
        out += [_route(r) for r in d.routes if r.kind == "service"]
        for sb in d.services:
            out.append(f'<g class="service" id="{sb.service.id}" '
                       f"data-service={quoteattr(sb.service.key)}>")
            out.append(_rect(sb.box, "service", ' rx="6"'))
            out += [_text(lb) for lb in sb.labels]
            out.append("</g>")
        out.append("</g>")
    out.append(_legend(d.legend_y))
    out.append('<g id="trace-overlay"></g>')
    out.append("</svg>")
    return "\n".join(out)


def render_svg(graph: Graph, *, focus: str | None = None) -> str:
    """The whole picture (nodes with many pods as counts); `focus`: that group alone, opened."""
    return render_drawing(layout(graph, focus=focus), graph.title)
