"""The pictures as a browser shows them (headless Chromium through Playwright), on labs the
planner lays out without a kernel: the default lab, bridge + VXLAN, and 150 pods.

Measured in the browser: every label at 12 px or more at 1366 px wide, no edge through a
label, no two boxes overlapping; a node drawn as a count opens on a click; the Services
toggle hides their lines. Screenshots land in $PODNET_SCREENSHOTS when set. Mermaid, when
$PODNET_MERMAID_JS points at npm's mermaid.min.js, is rendered by Mermaid itself and checked
the same way (no boxes overlap; no veth pair crosses another pod).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from podnet.render.graph_html import render_html
from podnet.render.graph_mermaid import render_mermaid
from podnet.render.graph_model import Graph, build_graph
from tests.browser import MEASURE, browser_page, mermaid_bundle, screenshot_dir
from tests.unit.lab_drawings import synthetic_lab, topology
from tests.unit.test_graph_render import Geometry, check_geometry, crosses, overlap

LABS = {
    "default": None,
    "bridge-vxlan": topology(attachment="bridge", routing="vxlan", mtu=1450),
    "150-pods": topology(replicas=149),
}


def lab_graph(name: str) -> Graph:
    host, lab = synthetic_lab(LABS[name])
    return build_graph(host, lab, vxlan={(ns.label, "flannel.1"): (1, 8472)
                                         for ns in host.namespaces})


def measured(page: Any, selector: str) -> Geometry:
    m = page.evaluate(MEASURE, selector)
    geo = Geometry([(t, tuple(b)) for t, b, _size in m["texts"]],
                   [(k, tuple(b)) for k, b in m["boxes"]],
                   [tuple(s) for s in m["segments"]])
    sizes = [size for _t, _b, size in m["texts"]]
    assert min(sizes) >= 12, f"labels drawn at {min(sizes):.1f} px"
    assert m["width"] == pytest.approx(m["viewBox"], abs=1)  # never scaled down
    return geo


@pytest.mark.parametrize("name", list(LABS))
def test_the_page_at_1366_px(name: str, tmp_path: Path) -> None:
    graph = lab_graph(name)
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(render_html(graph))
    shots = screenshot_dir(tmp_path)
    with browser_page(1366, 900) as page:
        page.goto(f"file://{page_file}")
        geo = measured(page, "#graph svg")
        check_geometry(geo)
        page.screenshot(path=str(shots / f"graph-{name}.png"), full_page=True)
        page.uncheck("#show-services")
        hidden = page.evaluate(MEASURE, "#graph svg")
        assert not [s for s in hidden["segments"] if s[4] == "service"]
        assert [s for s in geo.segments if s[4] == "service"]
        counts = page.locator("#graph g.count")
        if name == "150-pods":
            assert counts.count() == 2
            counts.first.click()
            page.wait_for_selector("#node-detail svg")
            opened = page.evaluate(
                "document.querySelectorAll('#node-detail [data-pod]').length")
            hidden_pods = int(counts.first.evaluate(
                "el => el.closest('g.group').getAttribute('data-hidden-pods')"))
            assert opened == hidden_pods == 75
            check_geometry(measured(page, "#node-detail svg"))
            page.locator("#node-panel").screenshot(path=str(shots / f"graph-{name}-node.png"))
            page.click("#node-detail [data-pod] text.title")
            assert page.text_content("#describe") == "(no description: the pod is gone?)"
        else:
            assert counts.count() == 0


@pytest.mark.parametrize("name", ["default", "bridge-vxlan"])
def test_mermaid_lays_out_without_overlaps(name: str, tmp_path: Path) -> None:
    bundle = mermaid_bundle()
    graph = lab_graph(name)
    text = render_mermaid(graph)
    with browser_page(1600, 1000) as page:
        page.set_content("<html><body><div id=out></div></body></html>")
        page.add_script_tag(content=bundle)
        page.evaluate("""async (t) => { mermaid.initialize({startOnLoad: false});
            const r = await mermaid.render('m', t);
            document.getElementById('out').innerHTML = r.svg; }""", text)
        page.screenshot(path=str(screenshot_dir(tmp_path) / f"mermaid-{name}.png"),
                        full_page=True)
        drawn = page.evaluate("""() => {
          const box = (el) => { const r = el.getBoundingClientRect();
                                return [r.left, r.top, r.width, r.height]; };
          const nodes = [...document.querySelectorAll('#out g.node')].map(n => [n.id, box(n)]);
          const clusters = [...document.querySelectorAll('#out g.cluster')]
            .map(c => [c.id, box(c.querySelector('rect'))]);
          const edges = [...document.querySelectorAll('#out path.flowchart-link')]
            .map(p => { const n = p.getTotalLength(), m = p.getScreenCTM(), pts = [];
                        for (let i = 0; i <= 40; i++) { const q = p.getPointAtLength(n * i / 40);
                          pts.push([q.x * m.a + m.e, q.y * m.d + m.f]); }
                        return [p.id, pts]; });
          return {nodes, clusters, edges};
        }""")
    nodes = drawn["nodes"]
    for i, (a_id, a) in enumerate(nodes):
        for b_id, b in nodes[i + 1:]:
            assert not overlap(tuple(a), tuple(b)), (a_id, b_id)
    clusters = {cid: tuple(box) for cid, box in drawn["clusters"]}
    ids = list(clusters)
    for i, a_id in enumerate(ids):  # clusters nest or stand apart
        for b_id in ids[i + 1:]:
            assert not overlap(clusters[a_id], clusters[b_id]), (a_id, b_id)
    pods = {g.id: g for g in graph.groups if g.kind == "pod"}

    def holds(box: tuple[float, ...], pt: list[float]) -> bool:
        return box[0] <= pt[0] <= box[0] + box[2] and box[1] <= pt[1] <= box[1] + box[3]

    for path_id, pts in drawn["edges"]:  # a line never runs through a pod it does not reach
        for gid, pod in pods.items():
            box = clusters.get(gid)
            if box is None or holds(box, pts[0]) or holds(box, pts[-1]):
                continue
            for (x1, y1), (x2, y2) in itertools.pairwise(pts):
                assert not crosses((x1, y1, x2, y2, ""), box, margin=2), \
                    f"{path_id} runs through {pod.title}"
