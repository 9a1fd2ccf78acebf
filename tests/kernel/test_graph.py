"""`podnet graph` on a real lab (sandbox only): Mermaid and DOT parsed back and checked against
the lab; the page opened in headless Chromium (Playwright) at 1366 px, default and bridge +
VXLAN labs: every pod in the DOM and drawn in the full-page screenshot, no edge through a
label, no boxes overlapping, labels at 12 px; `--serve` on 127.0.0.1 only, redrawing when pods
come and go; the dashboard: a click on a pod shows exactly what `podnet describe` prints, and
two pods chosen are traced, every hop listed as `podnet trace` gives it and drawn in order.
Screenshots land in $PODNET_SCREENSHOTS when set.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import browser_page, screenshot_dir
from tests.unit.test_graph_pictures import measured
from tests.unit.test_graph_render import Parsed, check_geometry, parse_dot, parse_mermaid

pytestmark = pytest.mark.kernel

PODNET = [sys.executable, "-m", "podnet"]
DEFAULT = Path(__file__).parents[2] / "src/podnet/model/default.yaml"
POD_FILL = (0xFF, 0xF2, 0x7A)  # render.graph_svg.FILL["pod"]


def podnet(*args: str) -> str:
    result = subprocess.run([*PODNET, *args], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, f"podnet {' '.join(args)}: {result.stderr}"
    return result.stdout


def pods() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(podnet("get", "pods", "-o", "json"))["items"]
    return items


@pytest.fixture(scope="module")
def lab() -> Iterator[list[dict[str, Any]]]:
    podnet("up", "-q")
    yield pods()
    podnet("down", "-q")


def check_against_lab(parsed: Parsed, items: list[dict[str, Any]]) -> None:
    links = json.loads(podnet("get", "links", "-o", "json"))["items"]
    for pod in items:
        meta, status = pod["metadata"], pod["status"]
        node_group = parsed.group_titled(f"node {pod['spec']['nodeName']}")
        pod_group = parsed.group_titled(f"pod {meta['namespace']}/{meta['name']}")
        assert parsed.groups[pod_group][1] == node_group  # the pod is drawn inside its node
        eth0 = parsed.vertex_named(pod_group, "eth0")
        assert f"{status['podIP']}/" in parsed.vertices[eth0][0]
        veth = parsed.vertex_named(node_group, pod["podnet"]["veth"])
        assert {(veth, eth0), (eth0, veth)} & {(a, b) for a, b, label in parsed.edges
                                               if label == "veth pair"}
        containers = [v for v, (label, g) in parsed.vertices.items()
                      if g == pod_group and label.startswith("container ")]
        assert len(containers) == len(pod["spec"]["containers"])
    fabric = parsed.group_titled("node network ", prefix=True)
    pairs = {frozenset((a, b)) for a, b, label in parsed.edges if label == "veth pair"}
    for link in links:  # every veth of every node, with its peer at the other end of a line
        node_group = parsed.group_titled(f"node {link['node']}")
        here = parsed.vertex_named(node_group, link["metadata"]["name"])
        if link["peer"]["pod"]:
            far = parsed.vertex_named(parsed.group_titled(f"pod {link['peer']['pod']}"), "eth0")
        else:
            far = next(v for v, (_, g) in parsed.vertices.items() if g == fabric
                       and frozenset((here, v)) in pairs)
        assert frozenset((here, far)) in pairs, link


def test_mermaid_parsed_back_matches_the_lab(lab: list[dict[str, Any]]) -> None:
    check_against_lab(parse_mermaid(podnet("graph", "-o", "mermaid")), lab)


def test_dot_parsed_back_matches_the_lab(lab: list[dict[str, Any]]) -> None:
    check_against_lab(parse_dot(podnet("graph", "-o", "dot")), lab)


def test_a_host_seen_through_inspect_json_draws_every_pod(lab: list[dict[str, Any]],
                                                          tmp_path: Path) -> None:
    doc = tmp_path / "host.json"
    doc.write_text(podnet("inspect", "-o", "json"))
    parsed = parse_mermaid(podnet("graph", "--from", str(doc), "-o", "mermaid"))
    for pod in lab:
        group = parsed.group_titled(f"pod {pod['metadata']['namespace']}/"
                                    f"{pod['metadata']['name']}")
        assert pod["status"]["podIP"] in parsed.vertices[parsed.vertex_named(group, "eth0")][0]


# --- the page in a browser -------------------------------------------------------------------


def read_png(path: Path) -> tuple[int, int, list[bytes], int]:
    """Width, height and RGB(A) rows of an 8-bit PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6) and body[12] == 0  # no interlace
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, channels


def pixel(rows: list[bytes], channels: int, x: int, y: int) -> tuple[int, int, int]:
    r = rows[y]
    return r[x * channels], r[x * channels + 1], r[x * channels + 2]


def check_page(url: str, names: set[str], tmp: Path, shot_name: str = "page") -> Any:
    """The page in headless Chromium at 1366 px: every pod drawn where the page says, in
    the pod colour on a full-page screenshot, no edge through a label, no boxes overlapping,
    no label under 12 px. Returns what was measured."""
    with browser_page(1366, 900) as page:
        page.goto(url)
        boxes = {el.get_attribute("data-pod"): tuple(int(v) for v in
                                                    (el.get_attribute("data-rect") or "")
                                                    .split(","))
                 for el in page.query_selector_all("#graph [data-pod]")}
        assert set(boxes) == names
        texts = page.eval_on_selector_all("#graph svg text", "els => els.map(e => e.textContent)")
        for name in names:
            assert f"pod {name}" in texts  # the drawing names it, not only the list beside it
        geo = measured(page, "#graph svg")
        check_geometry(geo)
        shot = screenshot_dir(tmp) / f"{shot_name}.png"
        page.screenshot(path=str(shot), full_page=True)
    width, height, rows, channels = read_png(shot)
    colors = {pixel(rows, channels, x, y) for y in range(0, height, 7) for x in range(0, width, 7)}
    assert len(colors) > 20  # not blank
    for name, (x, y, w, h) in boxes.items():
        assert x + w <= width and y + h <= height, f"{name} drawn off the page"
        inside = [(x + 3, y + h - 4), (x + w - 4, y + h - 4), (x + w // 2, y + h - 4)]
        seen = [pixel(rows, channels, px, py) for px, py in inside]
        assert any(max(abs(a - b) for a, b in zip(c, POD_FILL, strict=True)) <= 12
                   for c in seen), f"pod {name}: {seen} at {inside}"
    return geo


def test_the_page_in_headless_chromium_shows_every_pod(lab: list[dict[str, Any]],
                                                       tmp_path: Path) -> None:
    page = tmp_path / "lab.html"
    page.write_text(podnet("graph", "-o", "html"))
    names = {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in lab}
    check_page(f"file://{page}", names, tmp_path, "lab-default")


# --- --serve -----------------------------------------------------------------------------------


def listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc prints them) listening on `port`, IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.read().splitlines()[1:]:
                fields = line.split()
                addr, hexport = fields[1].split(":")
                if fields[3] == "0A" and int(hexport, 16) == port:
                    found.append(addr)
    return found


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # our own loopback URL
        return str(response.read().decode())


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen([*PODNET, "graph", "--serve", "--port", "0", "--timeout", "120",
                             "--interval", "0.3"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        yield proc, url.group(0)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()


def test_serve_answers_on_loopback_only(lab: list[dict[str, Any]],
                                        server: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = server
    port = int(url.rsplit(":", 1)[1].strip("/"))
    assert listening(port) == ["0100007F"]  # 127.0.0.1, and no IPv6 or wildcard socket
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=5).close()
    page = fetch(url)
    for pod in lab:
        assert f'data-pod="{pod["metadata"]["namespace"]}/{pod["metadata"]["name"]}"' in page
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert listening(port) == []


def test_serve_redraws_when_pods_come_and_go(lab: list[dict[str, Any]], tmp_path: Path,
                                            server: tuple[subprocess.Popen[str], str]) -> None:
    _proc, url = server
    first = fetch(url + "version").strip()
    more = tmp_path / "more.yaml"
    more.write_text(DEFAULT.read_text().replace("replicas: 3", "replicas: 4"))
    podnet("up", "-q", "-f", str(more))
    try:
        now = pods()
        assert len(now) == len(lab) + 1
        names = {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in now}
        # A redraw may fall in the middle of `up` (a new version, the pod not built yet): the
        # page must show every pod by the next one.
        deadline = time.monotonic() + 20
        while True:
            svg = fetch(url + "graph.svg")
            missing = [n for n in names if f'data-pod="{n}"' not in svg]
            if not missing:
                break
            assert time.monotonic() < deadline, f"the page was not redrawn: {missing} missing"
            time.sleep(0.2)
        assert fetch(url + "version").strip() != first
        check_page(url, names, tmp_path)
    finally:
        podnet("up", "-q")  # back to the default lab: the extra pod goes
    deadline = time.monotonic() + 20
    while len(re.findall(r'data-pod="', fetch(url + "graph.svg"))) != len(lab):
        assert time.monotonic() < deadline, "the removed pod is still drawn"
        time.sleep(0.2)


def test_serve_stops_by_itself_after_its_timeout(lab: list[dict[str, Any]]) -> None:
    started = time.monotonic()
    result = subprocess.run([*PODNET, "graph", "--serve", "--port", "0", "--timeout", "1"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0 and "serving http://127.0.0.1:" in result.stderr
    assert time.monotonic() - started < 15


# --- the dashboard -------------------------------------------------------------------------------


def test_clicking_a_pod_shows_what_describe_says(lab: list[dict[str, Any]],
                                                 server: tuple[subprocess.Popen[str], str],
                                                 tmp_path: Path) -> None:
    _proc, url = server
    expected = podnet("describe", "pod", "jumpbox").rstrip("\n")
    with browser_page(1366, 900) as page:
        page.goto(url)
        page.click('#graph g.group[data-pod="default/jumpbox"] text.title')
        page.wait_for_selector("#side:not([hidden])")
        assert page.text_content("#describe") == expected
        assert page.get_attribute('#graph g.group[data-pod="default/jumpbox"]',
                                  "class") == "group pod chosen-pod"


def test_two_pods_are_traced_hop_by_hop_on_the_picture(
        lab: list[dict[str, Any]], server: tuple[subprocess.Popen[str], str],
        tmp_path: Path) -> None:
    _proc, url = server
    jump = next(p for p in lab if p["metadata"]["name"] == "jumpbox")
    far = next(p for p in lab if p["spec"]["nodeName"] != jump["spec"]["nodeName"])
    target = f"{far['metadata']['namespace']}/{far['metadata']['name']}"
    report = json.loads(subprocess.run([*PODNET, "trace", "default/jumpbox", target, "-o",
                                        "json"], capture_output=True, text=True, timeout=60,
                                       check=False).stdout)
    with browser_page(1366, 900) as page:
        page.goto(url)
        page.click('#graph g.group[data-pod="default/jumpbox"] text.title')
        page.click("#trace-from")
        page.click(f'#graph g.group[data-pod="{target}"] text.title')
        page.click("#trace-to")
        page.wait_for_selector("#trace-panel[data-verdict]", timeout=30000)
        assert page.get_attribute("#trace-panel", "data-verdict") == "works"
        shown = page.eval_on_selector_all("#hops li", """els => els.map(li => [
            li.getAttribute("data-netns"), li.querySelector(".hop-head").textContent,
            li.querySelector(".answer").textContent,
            [...li.querySelectorAll("code")].map(c => c.textContent)])""")
        markers = page.eval_on_selector_all(
            "#graph svg #trace-overlay .trace-hop",
            "els => els.map(g => [g.getAttribute('data-hop'),"
            " g.querySelector('text').textContent])")
        page.screenshot(path=str(screenshot_dir(tmp_path) / "dashboard-trace.png"))
    hops = report["forward"]["hops"]
    assert len(shown) == len(hops) >= 5
    for (netns, head, answer, commands), hop in zip(shown, hops, strict=True):
        assert netns == hop["netns"] and head == f"{hop['owner']} · {hop['step']}"
        assert answer.startswith(hop["text"].split(" (")[0][:20])
        assert commands == [f"$ {c}" for c in hop["commands"]]
    # every hop drawn on the picture, numbered in order
    assert [int(n) for n, _ in markers] == list(range(1, len(hops) + 1))
    assert all(n == text for n, text in markers)


def test_the_bridge_vxlan_lab_is_drawn_without_crossings(lab: list[dict[str, Any]],
                                                        tmp_path: Path) -> None:
    shape = tmp_path / "bridge-vxlan.yaml"
    text = DEFAULT.read_text()
    text = re.sub(r"attachment: \w+", "attachment: bridge", text)
    text = re.sub(r"routing: \w+", "routing: vxlan", text)
    shape.write_text(re.sub(r"mtu: \d+", "mtu: 1450", text))
    podnet("down", "-q")
    podnet("up", "-q", "-f", str(shape))
    try:
        page = tmp_path / "bridge.html"
        page.write_text(podnet("graph", "-o", "html"))
        names = {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods()}
        geo = check_page(f"file://{page}", names, tmp_path, "lab-bridge-vxlan")
        assert [s for s in geo.segments if s[4] == "tunnel"]
        assert [s for s in geo.segments if s[4] == "port"]
        svg = podnet("graph", "-o", "svg")
        for node in ("kind-worker", "kind-worker2"):  # eth0 is never a port of cni0
            group = re.search(rf'<g class="group node" id="(g\d+)"[^>]*data-node="{node}"', svg)
            assert group
            ports = re.findall(rf'<polyline class="port" [^>]*data-a="({group.group(1)}_if\d+)"',
                               svg)
            eth0 = re.search(rf'<g class="vertex veth" id="({group.group(1)}_if\d+)" '
                             r'data-ifname="eth0"', svg)
            assert ports and eth0 and eth0.group(1) not in ports
    finally:
        podnet("down", "-q")
        podnet("up", "-q")
