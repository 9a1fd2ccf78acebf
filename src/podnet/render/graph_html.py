"""`podnet graph -o html`: one self-contained page (the SVG inline, no CDN, no network).

Served by `podnet graph --serve`, the page asks the server every second for the graph's
version and swaps in the new drawing when pods come and go. On load, the page writes each
pod's on-screen box into a data-rect attribute, so a headless browser's DOM dump tells where
every pod was drawn.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from podnet.render.graph_model import Graph
from podnet.render.graph_svg import FILL, render_svg

__all__ = ["render_html"]

_SCRIPT = """
(function () {
  "use strict";
  function annotate() {
    var n = 0;
    document.querySelectorAll("[data-pod]").forEach(function (el) {
      var r = el.querySelector("rect").getBoundingClientRect();
      el.setAttribute("data-rect", [r.left + window.scrollX, r.top + window.scrollY,
                                    r.width, r.height].map(Math.round).join(","));
      n += 1;
    });
    document.body.setAttribute("data-pods-drawn", String(n));
  }
  annotate();
  var live = document.body.getAttribute("data-live") === "1";
  if (!live) { return; }
  var version = document.body.getAttribute("data-version");
  var status = document.getElementById("status");
  function poll() {
    fetch("version", {cache: "no-store"}).then(function (r) { return r.text(); })
      .then(function (v) {
        v = v.trim();
        if (v === version) { status.textContent = "live: up to date"; return null; }
        return fetch("graph.svg", {cache: "no-store"}).then(function (r) { return r.text(); })
          .then(function (svg) {
            document.getElementById("graph").innerHTML = svg;
            return fetch("pods.html", {cache: "no-store"});
          }).then(function (r) { return r.text(); })
          .then(function (list) {
            document.getElementById("pods").innerHTML = list;
            version = v;
            document.body.setAttribute("data-version", v);
            status.textContent = "live: redrawn at " + new Date().toLocaleTimeString();
            annotate();
          });
      })
      .catch(function () { status.textContent = "live: server gone"; })
      .then(function () { setTimeout(poll, 1000); });
  }
  setTimeout(poll, 1000);
})();
"""

_CSS = """
body { margin: 0; font-family: sans-serif; color: #222; background: #fafafa; }
header { padding: 8px 16px; background: #333; color: #fff; display: flex; gap: 24px;
         align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
#status { font-size: 13px; color: #cfc; }
main { padding: 8px; overflow: auto; }
main svg { max-width: 100%; height: auto; }
aside { padding: 0 16px 16px; font-size: 13px; }
aside li { font-family: monospace; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #333;
          vertical-align: middle; margin: 0 4px 0 12px; }
"""


def pods_list(graph: Graph) -> str:
    """The list of pods beside the drawing (also served alone to the live page)."""
    items = []
    for g in graph.pods():
        facts = ", ".join(g.lines)
        items.append(f"<li data-pod-item=\"{escape(g.pod or g.title)}\">{escape(g.title)}"
                     f"{' (' + escape(facts) + ')' if facts else ''}</li>")
    return "\n".join(items) or "<li>no pods</li>"


def render_html(graph: Graph, *, live: bool = False) -> str:
    legend = "".join(
        f'<span class="swatch" style="background:{FILL[k]}"></span>{name}'
        for k, name in (("fabric", "node network / host"), ("node", "node"), ("pod", "pod"),
                        ("outside", "outside"))
    )
    status = "live: waiting for changes" if live else "a snapshot: `podnet graph --serve` redraws"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(graph.title)}</title>
<style>{_CSS}</style>
</head>
<body data-live="{1 if live else 0}" data-version="{graph.version()}">
<header><h1>{escape(graph.title)}</h1><span id="status">{status}</span></header>
<main id="graph">
{render_svg(graph)}
</main>
<aside>
<p>{legend}</p>
<p>Thick lines are veth pairs, dashed lines bridge ports, dotted blue lines VXLAN tunnels.
Hover over an interface for its MAC, MTU and state.</p>
<h2>Pods</h2>
<ul id="pods">
{pods_list(graph)}
</ul>
</aside>
<script>{_SCRIPT}</script>
</body>
</html>
"""
