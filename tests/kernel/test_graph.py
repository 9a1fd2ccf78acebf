"""`podnet graph` on a real lab (sandbox only): Mermaid and DOT parsed back and checked against
the lab, the page opened in headless Chromium (every pod in the DOM and drawn in the
screenshot), and `--serve` on 127.0.0.1 only, redrawing when pods come and go.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_graph_render import Parsed, parse_dot, parse_mermaid

pytestmark = pytest.mark.kernel

PODNET = [sys.executable, "-m", "podnet"]
DEFAULT = Path(__file__).parents[2] / "src/podnet/model/default.yaml"
POD_FILL = (0xFF, 0xF2, 0x7A)  # render.graph_svg.FILL["pod"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


def chromium(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
             "--force-device-scale-factor=1", *args, url],
            capture_output=True, timeout=90, check=False, env={**os.environ, "HOME": profile},
        )


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


def drawn_pods(dom: str) -> dict[str, tuple[int, int, int, int]]:
    """{pod: on-screen box} from the page's DOM, as its script annotated it."""
    boxes = {}
    for m in re.finditer(r'<g [^>]*data-pod="([^"]+)"[^>]*>', dom):
        rect = re.search(r'data-rect="(\d+),(\d+),(\d+),(\d+)"', m.group(0))
        assert rect, f"pod {m.group(1)} has no on-screen box"
        x, y, w, h = (int(v) for v in rect.groups())
        boxes[m.group(1)] = (x, y, w, h)
    return boxes


def check_page(url: str, names: set[str], tmp: Path) -> None:
    dump = chromium(url, "--dump-dom", "--window-size=1600,1000")
    dom = dump.stdout.decode(errors="replace")
    assert "<svg" in dom, dump.stderr.decode(errors="replace")[-500:]
    boxes = drawn_pods(dom)
    assert set(boxes) == names
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", dom)
    for name in names:
        assert f"pod {name}" in texts  # the drawing names it, not only the list beside it
    shot = tmp / "page.png"
    result = chromium(url, f"--screenshot={shot}", "--window-size=1600,1000")
    assert shot.exists(), result.stderr.decode(errors="replace")[-500:]
    width, height, rows, channels = read_png(shot)
    assert (width, height) == (1600, 1000)
    colors = {pixel(rows, channels, x, y) for y in range(0, height, 7) for x in range(0, width, 7)}
    assert len(colors) > 20  # not blank
    for name, (x, y, w, h) in boxes.items():
        assert x + w <= width and y + h <= height, f"{name} drawn off screen"
        inside = [(x + 3, y + h - 4), (x + w - 4, y + h - 4), (x + w // 2, y + h - 4)]
        seen = [pixel(rows, channels, px, py) for px, py in inside]
        assert any(max(abs(a - b) for a, b in zip(c, POD_FILL, strict=True)) <= 12
                   for c in seen), f"pod {name}: {seen} at {inside}"


def test_the_page_in_headless_chromium_shows_every_pod(lab: list[dict[str, Any]],
                                                       tmp_path: Path) -> None:
    page = tmp_path / "lab.html"
    page.write_text(podnet("graph", "-o", "html"))
    names = {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in lab}
    check_page(f"file://{page}", names, tmp_path)


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
        deadline = time.monotonic() + 20
        while fetch(url + "version").strip() == first:
            assert time.monotonic() < deadline, "the page was not redrawn"
            time.sleep(0.2)
        now = pods()
        assert len(now) == len(lab) + 1
        svg = fetch(url + "graph.svg")
        names = {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in now}
        for name in names:
            assert f'data-pod="{name}"' in svg
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
