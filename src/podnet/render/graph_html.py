"""`podnet graph -o html` and the live dashboard of `graph --serve`: one self-contained page (the
SVG inline, its script and style inline, no CDN, no network but its own server).

The picture is drawn at its own size (text stays at 12 px; the page scrolls rather than shrink
it). On the page: a toggle for the Services layer; a node drawn as a count of its pods opens
below the picture when clicked; clicking a pod shows what `podnet describe pod` shows; on the
live page, choosing two pods traces a packet between them (`podnet trace`, run by the server)
and draws each hop on the picture with its command and the kernel's answer. Served, the page
asks every second for the graph's version and swaps in the new drawing when pods come and go.

On load, the page writes each pod's on-screen box into a data-rect attribute, so a headless
browser's DOM dump tells where every pod was drawn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from xml.sax.saxutils import escape

from podnet.render.graph_layout import collapsed_groups
from podnet.render.graph_model import Graph
from podnet.render.graph_svg import FILL, render_svg

__all__ = ["details_json", "node_templates", "pods_list", "render_html"]

_SCRIPT = r"""
(function () {
  "use strict";
  var body = document.body;
  var live = body.getAttribute("data-live") === "1";
  var details = {};
  var chosen = {from: null, to: null};
  var current = null;

  function $(id) { return document.getElementById(id); }
  function loadDetails() {
    try { details = JSON.parse($("details-data").textContent || "{}"); }
    catch (e) { details = {}; }
  }
  function annotate() {
    var n = 0;
    document.querySelectorAll("#graph [data-pod], #node-detail [data-pod]").forEach(function (el) {
      var r = el.querySelector("rect").getBoundingClientRect();
      el.setAttribute("data-rect", [r.left + window.scrollX, r.top + window.scrollY,
                                    r.width, r.height].map(Math.round).join(","));
      n += 1;
    });
    body.setAttribute("data-pods-drawn", String(n));
  }
  function services(on) {
    document.querySelectorAll("svg .services").forEach(function (g) {
      g.style.display = on ? "" : "none";
    });
  }
  function showPod(key) {
    current = key;
    $("side").hidden = false;
    $("pod-title").textContent = "pod " + key;
    $("describe").textContent = details[key] || "(no description: the pod is gone?)";
    $("side").setAttribute("data-pod", key);
    document.querySelectorAll(".chosen-pod").forEach(function (el) {
      el.classList.remove("chosen-pod");
    });
    document.querySelectorAll('[data-pod="' + CSS.escape(key) + '"]').forEach(function (el) {
      el.classList.add("chosen-pod");
    });
  }
  function openNode(id) {
    var tpl = $("open-" + id);
    if (!tpl) { return; }
    $("node-detail").innerHTML = tpl.innerHTML;
    $("node-panel").hidden = false;
    $("node-panel-title").textContent = tpl.getAttribute("data-title");
    $("node-panel").setAttribute("data-open", id);
    services($("show-services").checked);
    annotate();
    $("node-panel").scrollIntoView();
  }
  function choose(which) {
    if (!current) { return; }
    chosen[which] = current;
    $("trace-" + which + "-name").textContent = current;
    $("run-trace").disabled = !(chosen.from && chosen.to);
    if (chosen.from && chosen.to) { runTrace(); }
  }
  function groupOf(svg, owner) {
    var found = null;
    svg.querySelectorAll("g.group").forEach(function (g) {
      var title = g.querySelector("text.title");
      if (found) { return; }
      if (g.getAttribute("data-netns") === owner ||
          (title && title.textContent === owner) ||
          "node " + g.getAttribute("data-node") === owner ||
          "pod " + g.getAttribute("data-pod") === owner) { found = g; }
    });
    return found;
  }
  function vertexIn(svg, group, name) {
    var found = null;
    if (!group || !name) { return null; }
    svg.querySelectorAll('g.vertex[data-group="' + group.id + '"]').forEach(function (v) {
      if (!found && v.getAttribute("data-ifname") === name) { found = v; }
    });
    return found;
  }
  function anchor(svg, hop) {
    // Where a hop happens: a crossing ("eth0 -> veth1 in node kind-worker", "br-kind -> port
    // veth2") at the interface it reaches; a route ("... dev eth0") at the way out; else at
    // the first interface it names, else at its namespace.
    var group = svg.querySelector('g.group[data-netns="' + CSS.escape(hop.netns) + '"]');
    var text = hop.text || "";
    var target = null;
    var cross = /->\s*(?:port\s+)?(\S+)(?:\s+in\s+(.+?))?\s*$/.exec(text);
    if (cross) {
      target = vertexIn(svg, cross[2] ? groupOf(svg, cross[2]) : group, cross[1]);
    }
    var out = /\bdev\s+(\S+)/.exec(text);
    if (!target && out) { target = vertexIn(svg, group, out[1]); }
    if (!target && group) {
      text.split(/[\s,():]+/).forEach(function (word) {
        target = target || vertexIn(svg, group, word);
      });
    }
    if (target) {
      var v = target.querySelector("rect").getBBox();
      return [v.x + v.width / 2, v.y + v.height / 2];
    }
    if (!group) { return null; }
    var b = group.querySelector("rect.group").getBBox();
    return [b.x + 18, b.y + 18];
  }
  var NS = "http://www.w3.org/2000/svg";
  function drawHops(hops) {
    document.querySelectorAll("svg #trace-overlay").forEach(function (overlay) {
      var svg = overlay.ownerSVGElement;
      overlay.innerHTML = "";
      var points = [];
      var used = {};
      hops.forEach(function (hop, i) {
        var at = anchor(svg, hop);
        if (!at) { return; }
        var key = Math.round(at[0]) + "," + Math.round(at[1]);
        var nudge = (used[key] || 0) * 22;
        used[key] = (used[key] || 0) + 1;
        points.push([at[0] + nudge, at[1], i + 1, hop.status]);
      });
      if (points.length > 1) {
        var line = document.createElementNS(NS, "polyline");
        line.setAttribute("points",
                          points.map(function (p) { return p[0] + "," + p[1]; }).join(" "));
        line.setAttribute("class", "trace-path");
        overlay.appendChild(line);
      }
      points.forEach(function (p) {
        var g = document.createElementNS(NS, "g");
        g.setAttribute("class", "trace-hop " + p[3]);
        g.setAttribute("data-hop", String(p[2]));
        var c = document.createElementNS(NS, "circle");
        c.setAttribute("cx", p[0]); c.setAttribute("cy", p[1]); c.setAttribute("r", 11);
        var t = document.createElementNS(NS, "text");
        t.setAttribute("x", p[0]); t.setAttribute("y", p[1] + 4);
        t.setAttribute("text-anchor", "middle");
        t.textContent = String(p[2]);
        g.appendChild(c); g.appendChild(t);
        overlay.appendChild(g);
      });
    });
  }
  function listHops(report) {
    var list = $("hops");
    list.innerHTML = "";
    var hops = report.forward.hops;
    hops.forEach(function (hop, i) {
      var li = document.createElement("li");
      li.className = "hop " + hop.status;
      li.setAttribute("data-hop", String(i + 1));
      li.setAttribute("data-netns", hop.netns);
      var head = document.createElement("div");
      head.className = "hop-head";
      head.textContent = hop.owner + " \u00b7 " + hop.step;
      var answer = document.createElement("div");
      answer.className = "answer";
      answer.textContent = hop.text +
        (hop.reason ? " (" + hop.status + ": " + hop.reason + ")" : "");
      li.appendChild(head); li.appendChild(answer);
      (hop.commands || []).forEach(function (cmd) {
        var code = document.createElement("code");
        code.textContent = "$ " + cmd;
        li.appendChild(code);
      });
      list.appendChild(li);
    });
    $("verdict").textContent = report.verdict + ": " + report.summary;
    $("verdict").className = "verdict " + report.verdict;
    $("trace-panel").setAttribute("data-verdict", report.verdict);
    $("trace-panel").setAttribute("data-hops", String(hops.length));
    drawHops(hops);
  }
  function runTrace() {
    if (!live || !chosen.from || !chosen.to) { return; }
    $("verdict").textContent = "tracing " + chosen.from + " \u2192 " + chosen.to + " ...";
    $("trace-panel").removeAttribute("data-verdict");
    var port = parseInt($("trace-port").value, 10);
    fetch("trace", {method: "POST", cache: "no-store",
                    headers: {"Content-Type": "application/json", "X-Podnet": "1"},
                    body: JSON.stringify({from: chosen.from, to: chosen.to,
                                          port: isNaN(port) ? null : port})})
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (res) {
        if (!res[0]) { throw new Error(res[1].error || "trace failed"); }
        listHops(res[1]);
      })
      .catch(function (e) {
        $("verdict").textContent = "trace failed: " + e.message;
        $("trace-panel").setAttribute("data-verdict", "error");
      });
  }
  document.addEventListener("click", function (ev) {
    var count = ev.target.closest && ev.target.closest("g.count");
    if (count) { openNode(count.getAttribute("data-open")); return; }
    var pod = ev.target.closest && ev.target.closest("[data-pod]");
    if (pod && pod.closest("svg")) { showPod(pod.getAttribute("data-pod")); return; }
    var item = ev.target.closest && ev.target.closest("[data-pod-item]");
    if (item) { showPod(item.getAttribute("data-pod-item")); }
  });
  $("show-services").addEventListener("change", function () { services(this.checked); });
  $("close-side").addEventListener("click", function () { $("side").hidden = true; });
  $("close-node").addEventListener("click", function () { $("node-panel").hidden = true; });
  $("trace-from").addEventListener("click", function () { choose("from"); });
  $("trace-to").addEventListener("click", function () { choose("to"); });
  $("run-trace").addEventListener("click", runTrace);
  loadDetails();
  annotate();
  if (!live) { return; }
  var version = body.getAttribute("data-version");
  var status = $("status");
  function poll() {
    fetch("version", {cache: "no-store"}).then(function (r) { return r.text(); })
      .then(function (v) {
        v = v.trim();
        if (v === version) { status.textContent = "live: up to date"; return null; }
        return fetch("parts.json", {cache: "no-store"}).then(function (r) { return r.json(); })
          .then(function (parts) {
            $("graph").innerHTML = parts.svg;
            $("pods").innerHTML = parts.pods;
            $("templates").innerHTML = parts.templates;
            $("details-data").textContent = parts.details;
            loadDetails();
            services($("show-services").checked);
            var open = $("node-panel").getAttribute("data-open");
            if (!$("node-panel").hidden && open) { openNode(open); }
            version = v;
            body.setAttribute("data-version", v);
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
body { margin: 0; font-family: sans-serif; font-size: 14px; color: #222; background: #fafafa; }
header { padding: 8px 16px; background: #333; color: #fff; display: flex; gap: 24px;
         align-items: baseline; flex-wrap: wrap; position: sticky; left: 0; }
header h1 { font-size: 18px; margin: 0; }
header label { font-size: 14px; }
#status { font-size: 13px; color: #cfc; }
main { padding: 8px; overflow: auto; }
main svg, #node-detail svg { display: block; }  /* never scaled: labels stay at 12 px */
#side { position: fixed; top: 48px; right: 8px; width: 480px; max-height: calc(100vh - 64px);
        overflow: auto; background: #fff; border: 1px solid #999; border-radius: 6px;
        box-shadow: 0 2px 12px rgba(0,0,0,.25); padding: 8px 12px; font-size: 13px; }
#side pre { font-size: 12px; white-space: pre-wrap; word-break: keep-all; background: #f4f4f4;
            padding: 6px; overflow-x: auto; }
#side h2 { font-size: 15px; margin: 6px 0; }
#side button, #node-panel button { font-size: 13px; }
#hops { padding-left: 18px; }
#hops li { margin: 4px 0; }
#hops .answer { font-family: monospace; font-size: 12px; }
#hops code { display: block; font-size: 12px; color: #444; }
#hops li.broken .hop-head { color: #b00020; font-weight: bold; }
.verdict.works { color: #0a6b0a; font-weight: bold; }
.verdict.broken { color: #b00020; font-weight: bold; }
#node-panel { margin: 8px; padding: 8px; border: 2px dashed #999; background: #fff; }
#node-detail { overflow: auto; }
aside#list { padding: 0 16px 16px; font-size: 14px; }
aside#list li { font-family: monospace; font-size: 13px; cursor: pointer; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #333;
          vertical-align: middle; margin: 0 4px 0 12px; }
svg [data-pod] { cursor: pointer; }
svg g.chosen-pod > rect.group { stroke: #e66a00; stroke-width: 4; }
svg .trace-path { fill: none; stroke: #e66a00; stroke-width: 4; stroke-opacity: .75; }
svg .trace-hop circle { fill: #e66a00; stroke: #fff; stroke-width: 2; }
svg .trace-hop.broken circle { fill: #b00020; }
svg .trace-hop text { fill: #fff; font-weight: bold; }
"""


def pods_list(graph: Graph) -> str:
    """The list of pods under the drawing (also served alone to the live page)."""
    items = []
    for g in graph.pods():
        facts = ", ".join(g.lines)
        items.append(f"<li data-pod-item=\"{escape(g.pod or g.title)}\">{escape(g.title)}"
                     f"{' (' + escape(facts) + ')' if facts else ''}</li>")
    return "\n".join(items) or "<li>no pods</li>"


def node_templates(graph: Graph) -> str:
    """Each node drawn as a count, drawn opened, for the page to show when it is clicked."""
    return "\n".join(
        f'<template id="open-{gid}" data-title="{escape(graph.index[gid].title)}: '
        f'{sum(1 for c in graph.children(gid) if c.kind == "pod")} pods">'
        f"{render_svg(graph, focus=gid)}</template>"
        for gid in sorted(collapsed_groups(graph)))


def details_json(details: Mapping[str, str] | None) -> str:
    """What `describe` says of each pod, for the page to show on a click (safe inside
    <script>: no `</` can end it early)."""
    return json.dumps(dict(details or {})).replace("</", "<\\/")


def render_html(graph: Graph, *, live: bool = False,
                details: Mapping[str, str] | None = None) -> str:
    legend = "".join(
        f'<span class="swatch" style="background:{FILL[k]}"></span>{name}'
        for k, name in (("fabric", "node network / host"), ("node", "node"), ("pod", "pod"),
                        ("outside", "outside"))
    )
    status = "live: waiting for changes" if live else "a snapshot: `podnet graph --serve` redraws"
    tracing = ("Choose a pod, then another: podnet traces a packet between them and draws each "
               "hop." if live else "Tracing between pods needs the live page: "
               "`podnet graph --serve`.")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(graph.title)}</title>
<style>{_CSS}</style>
</head>
<body data-live="{1 if live else 0}" data-version="{graph.version()}">
<header><h1>{escape(graph.title)}</h1>
<label><input type="checkbox" id="show-services" checked> Services and their endpoints</label>
<span id="status">{status}</span></header>
<main id="graph">
{render_svg(graph)}
</main>
<section id="node-panel" hidden><h2 id="node-panel-title"></h2>
<button id="close-node" type="button">close</button>
<div id="node-detail"></div></section>
<div id="side" hidden>
<button id="close-side" type="button" style="float:right">close</button>
<h2 id="pod-title">pod</h2>
<pre id="describe"></pre>
<section id="trace-panel">
<h2>Trace</h2>
<p>{tracing}</p>
<p><button id="trace-from" type="button"{"" if live else " disabled"}>trace from this pod</button>
<button id="trace-to" type="button"{"" if live else " disabled"}>trace to this pod</button></p>
<p>from <b id="trace-from-name">-</b> to <b id="trace-to-name">-</b>,
TCP port <input id="trace-port" size="5" placeholder="ICMP">
<button id="run-trace" type="button" disabled>trace again</button></p>
<p id="verdict" class="verdict"></p>
<ol id="hops"></ol>
</section>
</div>
<aside id="list">
<p>{legend}</p>
<p>Thick lines are veth pairs, dashed teal lines bridge ports (they hang from the bridge's bus),
dotted blue lines VXLAN tunnels, dashed purple lines Services to their endpoints. Hover over an
interface for its MAC, MTU and state; click a pod for what `podnet describe` says of it.</p>
<h2>Pods</h2>
<ul id="pods">
{pods_list(graph)}
</ul>
</aside>
<div id="templates" hidden>
{node_templates(graph)}
</div>
<script type="application/json" id="details-data">{details_json(details)}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""
