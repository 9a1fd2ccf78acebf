"""`podnet graph`: the drawing model and its four renderings, parsed back.

`parse_mermaid` and `parse_dot` read the text podnet writes back into groups (with their parent
group), labelled vertices and edges; tests/kernel/test_graph.py uses them on a live lab.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from podnet.inspect.model import Holder, Host, Interface, Namespace, PairEnd, PeerRef, VethPair
from podnet.render.graph_dot import render_dot
from podnet.render.graph_html import render_html
from podnet.render.graph_mermaid import render_mermaid
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


_MERMAID_NODE = re.compile(r'^(\w+)(?:\(\(|\[\[|\{\{|\(\[|\[)"(.*)"(?:\)\)|\]\]|\}\}|\]\)|\])$')
_MERMAID_EDGE = re.compile(r"^(\w+) (===|-\.-|---|-->)\|(.*)\| (\w+)$")


def parse_mermaid(text: str) -> Parsed:
    out = Parsed()
    stack: list[str] = []
    lines = text.splitlines()
    assert lines[0].startswith("graph ")
    for raw in lines[1:]:
        line = raw.strip()
        if m := re.match(r'^subgraph (\w+)\["(.*)"\]$', line):
            out.groups[m.group(1)] = (m.group(2).replace("<br>", "\n"),
                                      stack[-1] if stack else None)
            stack.append(m.group(1))
        elif line == "end":
            stack.pop()
        elif m := _MERMAID_EDGE.match(line):
            out.edges.append((m.group(1), m.group(4), m.group(3)))
        elif m := _MERMAID_NODE.match(line):
            assert stack, f"vertex outside any subgraph: {line}"
            out.vertices[m.group(1)] = (m.group(2).replace("<br>", "\n"), stack[-1])
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
