"""`podnet graph -o dot`: the same drawing for Graphviz (`dot -Tsvg`), clusters nested as
namespaces are: pods inside their node."""

from __future__ import annotations

from podnet.render.graph_model import Graph, Group, Vertex

__all__ = ["render_dot"]

_FILL = {"fabric": "#ffcc99", "node": "#ffccff", "pod": "#ffff66", "outside": "#99ff66",
         "host": "#ffcc99", "netns": "#ccffcc"}
_SHAPE = {"bridge": "box3d", "vxlan": "hexagon", "process": "ellipse"}
_EDGE = {
    "veth": 'penwidth=3, color="#333333"',
    "port": 'style=dashed, color="#666666"',
    "tunnel": 'style=dotted, penwidth=2, color="#0066cc"',
}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _vertex(v: Vertex, pad: str) -> str:
    label = "\n".join((v.name, *v.lines))
    shape = _SHAPE.get(v.kind, "box")
    fill = "#00aaff" if v.kind == "process" else "#ffcccc" if v.impaired else "#00ffff"
    style = "filled,rounded,dashed" if v.impaired else "filled,rounded"
    return (f"{pad}{v.id} [label={_quote(label)}, shape={shape}, style=\"{style}\", "
            f"fillcolor=\"{fill}\", tooltip={_quote(v.detail)}];")


def _cluster(graph: Graph, g: Group, depth: int, out: list[str]) -> None:
    pad = "  " * (depth + 1)
    out.append(f"{pad}subgraph cluster_{g.id} {{")
    out.append(f"{pad}  label={_quote(chr(10).join((g.title, *g.lines)))};")
    out.append(f'{pad}  style="filled,rounded"; fillcolor="{_FILL.get(g.kind, "#eeeeee")}";')
    out.append(f"{pad}  // kind={g.kind} netns={g.netns}")
    for v in graph.members(g.id):
        out.append(_vertex(v, pad + "  "))
    for child in graph.children(g.id):
        _cluster(graph, child, depth + 1, out)
    out.append(f"{pad}}}")


def render_dot(graph: Graph) -> str:
    out = [
        "graph podnet {",
        f"  label={_quote(graph.title)};",
        "  compound=true; rankdir=TB; newrank=true;",
        '  node [fontname="monospace", fontsize=10];',
        '  edge [fontname="monospace", fontsize=9];',
    ]
    for g in graph.children(None):
        _cluster(graph, g, 0, out)
    for e in graph.edges:
        out.append(f"  {e.a} -- {e.b} [label={_quote(e.label)}, {_EDGE.get(e.kind, '')}];")
    out.append("}")
    return "\n".join(out)
