"""`podnet graph -o mermaid`: the lab drawn as the lesson draws it, for GitHub and docs.

Namespaces are subgraphs (pods inside their node), interfaces rounded boxes, bridges double
boxes, tunnels hexagons, containers stadiums. Mermaid lays the picture out itself (dagre, in
ranks from the top), so the text is written to give it clean ranks: every edge is written from
the outer end to the inner one (the node network's port, then the node's eth0; a node's veth,
then its pod's eth0; a bridge, then its ports), invisible links (`~~~`) put a namespace's own
interfaces below the one it is reached by, and each pod sits in an unlabelled cell with the
node's end of its veth pair, so the pair is drawn straight down beside no other pod. Veth
pairs are thick links, bridge ports dotted ones; a VXLAN tunnel is a hexagon in the node
network (which carries it) with a dotted link to each node's tunnel device. No link has a
label: labels are boxes Mermaid places among the others. Titles are boxes of their own.
"""

from __future__ import annotations

from podnet.render.graph_model import Edge, Graph, Group, Vertex

__all__ = ["CAPTION", "CELL_PREFIX", "render_mermaid"]

CELL_PREFIX = "cell_"  # subgraphs that only hold a pod and its veth's node end together
CAPTION = "_label"  # a group's title, as a text box of its own (suffix of the group's id)
_CLASSES = (
    "classDef fabric fill:#f96,stroke:#333,stroke-width:2px;",
    "classDef node fill:#fcf,stroke:#333,stroke-width:2px;",
    "classDef pod fill:#ff3,stroke:#333,stroke-width:2px;",
    "classDef isolated fill:#ff3,stroke:#b00020,stroke-width:4px,stroke-dasharray:8 4;",
    "classDef outside fill:#9f6,stroke:#333,stroke-width:2px;",
    "classDef netns fill:#9f6,stroke:#333,stroke-width:2px;",
    "classDef cell fill:none,stroke:none;",
    "classDef caption fill:none,stroke:none,font-weight:bold;",
    "classDef iface fill:#0ff,stroke:#333,stroke-width:2px;",
    "classDef proc fill:#0af,stroke:#333,stroke-width:2px;",
    "classDef impaired fill:#fcc,stroke:#b00020,stroke-width:3px,stroke-dasharray:6 3;",
)
_GROUP_CLASS = {"fabric": "fabric", "node": "node", "pod": "pod", "outside": "outside",
                "host": "fabric", "netns": "netns"}


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
    return f'{v.id}("{label}")'


class _Writer:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.group_of = {v.id: v.group for v in graph.vertices}
        self.depth = {g.id: self._depth(g) for g in graph.groups}
        # A node's veth leading into a child pod: drawn in that pod's cell.
        self.cell_of: dict[str, str] = {}
        for e in graph.edges:
            if e.kind != "veth":
                continue
            for a, b in ((e.a, e.b), (e.b, e.a)):
                ga, gb = self.group_of.get(a), self.group_of.get(b)
                if ga and gb and graph.index[gb].parent == ga:
                    self.cell_of[a] = gb

        # VXLAN: one hub per tunnel (VNI and port) in the node network, which carries it, with
        # a line down to each tunnel device. Lines between the devices themselves would rank
        # one node's device below another's and pull them out of their nodes.
        self.tunnels: dict[str, list[str]] = {}
        for e in graph.edges:
            if e.kind == "tunnel":
                ends = self.tunnels.setdefault(e.label, [])
                ends += [x for x in (e.a, e.b) if x not in ends]
        self.hub = {label: f"tunnel{n}" for n, label in enumerate(self.tunnels)}
        band = [g.id for g in graph.groups if g.parent is None and g.kind in ("fabric", "host")]
        self.hub_group = band[0] if band else None

    def _depth(self, g: Group) -> int:
        depth, parent = 0, g.parent
        while parent is not None and parent in self.graph.index:
            depth, parent = depth + 1, self.graph.index[parent].parent
        return depth

    def hubs(self, pad: str) -> list[str]:
        return [f'{pad}{hub}{{{{"{_text(label)}"}}}}' for label, hub in self.hub.items()]

    def group(self, g: Group, depth: int, out: list[str]) -> None:
        pad = "  " * depth
        title = "<br>".join(_text(x) for x in (g.title, *g.lines,
                                               *(f"isolated: {w}" for w in g.isolation)))
        # Mermaid wraps a subgraph's title at 200 px and then lays nodes over it: the title
        # goes in a box of its own, below everything else in the subgraph, instead.
        out.append(f'{pad}subgraph {g.id}[" "]')
        out.append(f"{pad}  direction TB")
        out.append(f'{pad}  {g.id}{CAPTION}["{title}"]')
        if g.id == self.hub_group:
            out += self.hubs(pad + "  ")
        for v in self.graph.members(g.id):
            if v.id not in self.cell_of:
                out.append(f"{pad}  {_vertex(v)}")
        for child in self.graph.children(g.id):
            cell = [v for v in self.graph.members(g.id) if self.cell_of.get(v.id) == child.id]
            if cell:
                out.append(f'{pad}  subgraph {CELL_PREFIX}{child.id}[" "]')
                out.append(f"{pad}    direction TB")
                out += [f"{pad}    {_vertex(v)}" for v in cell]
                self.group(child, depth + 2, out)
                out.append(f"{pad}  end")
            else:
                self.group(child, depth + 1, out)
        out.append(f"{pad}end")

    def edges(self) -> list[str]:
        out = [self.edge(e) for e in self.graph.edges if e.kind != "tunnel"]
        for label, ends in self.tunnels.items():
            out += [f"{self.hub[label]} -.- {end}" for end in ends]
        return out

    def edge(self, e: Edge) -> str:
        """Written from the outer end (shallower namespace, or the bridge) to the inner one."""
        a, b = e.a, e.b
        if e.kind == "port":
            a, b = e.b, e.a  # the bridge first: its ports hang below it
        elif self.depth.get(self.group_of.get(b, ""), 0) < self.depth.get(
                self.group_of.get(a, ""), 0):
            a, b = b, a
        if e.kind == "veth":
            return f"{a} === {b}"
        return f"{a} -.- {b}"

    def _lowest(self, g: Group) -> list[str]:
        """What sits lowest in a namespace: its children's titles, else its containers, else
        its interfaces."""
        kids = self.graph.children(g.id)
        if kids:
            return [f"{c.id}{CAPTION}" for c in kids]
        members = self.graph.members(g.id)
        procs = [v.id for v in members if v.kind == "process"]
        return procs or [v.id for v in members if v.id not in self.cell_of]

    def ranks(self) -> list[str]:
        """Invisible links: a namespace's other interfaces and containers below the interface
        it is reached by (its uplink), so Mermaid ranks them under it."""
        out = []
        reached: dict[str, str] = {}
        for e in self.graph.edges:
            if e.kind != "veth":
                continue
            for a, b in ((e.a, e.b), (e.b, e.a)):
                ga, gb = self.group_of.get(a, ""), self.group_of.get(b, "")
                if self.depth.get(gb, 0) < self.depth.get(ga, 0) or (
                        self.graph.index[gb].parent is None and ga != gb
                        and self.graph.index[gb].kind in ("fabric", "host")):
                    reached.setdefault(ga, a)
        for gid, top in reached.items():
            for v in self.graph.members(gid):
                if v.id != top and (v.id in self.cell_of or v.kind != "veth"):
                    out.append(f"{top} ~~~ {v.id}")
        for g in self.graph.groups:
            if g.parent is None and g.kind in ("fabric", "host"):
                # The node network's title on top: its ports stay its lowest rank, so the
                # nodes they lead to are ranked below it, not beside it.
                out += [f"{g.id}{CAPTION} ~~~ {v.id}" for v in self.graph.members(g.id)
                        if not any(e.kind == "port" and e.a == v.id for e in self.graph.edges)]
            else:  # each other title below everything else of its namespace
                out += [f"{v} ~~~ {g.id}{CAPTION}" for v in self._lowest(g)]
        return out


# Room under subgraph titles (Mermaid places nodes as if titles took one line) and titles
# wrapped late, so a pod's name and namespace never run into its interfaces.
_INIT = ('%%{init: {"flowchart": {"wrappingWidth": 520, "nodeSpacing": 30, "rankSpacing": 40, '
         '"subGraphTitleMargin": {"top": 4, "bottom": 34}}}}%%')


def render_mermaid(graph: Graph) -> str:
    writer = _Writer(graph)
    out = [_INIT, "graph TB"]
    for g in graph.children(None):
        writer.group(g, 0, out)
    if writer.hub_group is None:
        out += writer.hubs("")
    out += writer.edges()
    out += writer.ranks()
    out += _CLASSES
    by_class: dict[str, list[str]] = {}
    for g in graph.groups:
        name = "isolated" if g.isolation else _GROUP_CLASS.get(g.kind, "netns")
        by_class.setdefault(name, []).append(g.id)
    by_class["caption"] = [f"{g.id}{CAPTION}" for g in graph.groups]
    cells = sorted({f"{CELL_PREFIX}{c}" for c in writer.cell_of.values()})
    if cells:
        by_class["cell"] = cells
    for v in graph.vertices:
        name = "proc" if v.kind == "process" else "impaired" if v.impaired else "iface"
        by_class.setdefault(name, []).append(v.id)
    by_class.setdefault("iface", []).extend(writer.hub.values())
    out += [f"class {','.join(ids)} {name};" for name, ids in by_class.items() if ids]
    return "\n".join(out)
