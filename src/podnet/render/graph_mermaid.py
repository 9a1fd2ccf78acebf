"""`podnet graph -o mermaid`: the lab drawn as the lesson draws it, for GitHub and docs.

Namespaces are subgraphs (pods inside their node), interfaces are round nodes, bridges are
double-boxed, containers are circles, each veth pair is a thick link `a ===|veth pair| b`,
bridge ports point at their bridge and VXLAN tunnels are dotted links between nodes.
"""

from __future__ import annotations

from podnet.render.graph_model import Graph, Group, Vertex

__all__ = ["render_mermaid"]

_CLASSES = (
    "classDef fabric fill:#f96,stroke:#333,stroke-width:2px;",
    "classDef node fill:#fcf,stroke:#333,stroke-width:2px;",
    "classDef pod fill:#ff3,stroke:#333,stroke-width:2px;",
    "classDef outside fill:#9f6,stroke:#333,stroke-width:2px;",
    "classDef netns fill:#9f6,stroke:#333,stroke-width:2px;",
    "classDef iface fill:#0ff,stroke:#333,stroke-width:2px;",
    "classDef proc fill:#0af,stroke:#333,stroke-width:2px;",
)
_GROUP_CLASS = {"fabric": "fabric", "node": "node", "pod": "pod", "outside": "outside",
                "host": "fabric", "netns": "netns"}
_ARROWS = {"veth": "===", "port": "-.-", "tunnel": "-.-"}


def _text(value: str) -> str:
    """Mermaid labels sit in double quotes; these characters are written as entities."""
    return (value.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")
            .replace(">", "#gt;"))


def _vertex(v: Vertex) -> str:
    label = "<br>".join(_text(x) for x in (v.name, *v.lines))
    if v.kind == "bridge":
        return f'{v.id}[["{label}"]]'
    if v.kind == "vxlan":
        return f'{v.id}{{{{"{label}"}}}}'
    if v.kind == "process":
        return f'{v.id}(["{label}"])'
    return f'{v.id}(("{label}"))'


def _group(graph: Graph, g: Group, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    title = "<br>".join(_text(x) for x in (g.title, *g.lines))
    out.append(f'{pad}subgraph {g.id}["{title}"]')
    for v in graph.members(g.id):
        out.append(f"{pad}  {_vertex(v)}")
    for child in graph.children(g.id):
        _group(graph, child, depth + 1, out)
    out.append(f"{pad}end")


def render_mermaid(graph: Graph) -> str:
    out = ["graph TB"]
    for g in graph.children(None):
        _group(graph, g, 0, out)
    for e in graph.edges:
        out.append(f"{e.a} {_ARROWS.get(e.kind, '---')}|{_text(e.label)}| {e.b}")
    out += _CLASSES
    by_class: dict[str, list[str]] = {}
    for g in graph.groups:
        by_class.setdefault(_GROUP_CLASS.get(g.kind, "netns"), []).append(g.id)
    for v in graph.vertices:
        by_class.setdefault("proc" if v.kind == "process" else "iface", []).append(v.id)
    out += [f"class {','.join(ids)} {name};" for name, ids in by_class.items() if ids]
    return "\n".join(out)
