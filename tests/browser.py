"""Debian's Chromium driven by Playwright (PyPI) over the DevTools protocol, for the picture
tests: the page is opened, clicked and measured as people see it. Skips when either is
missing; nothing is downloaded (Playwright uses /usr/bin/chromium)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["FLAGS", "MEASURE", "browser_page", "mermaid_bundle", "screenshot_dir"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The machine's notes: what Debian's Chromium needs to run headless here.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--force-device-scale-factor=1"]

# Run in the page: every label's rendered box and size, every edge's points, every box, in
# page pixels, as the browser laid them out.
MEASURE = """(selector) => {
  const svg = document.querySelector(selector);
  const m = svg.getScreenCTM();
  const box = (el) => { const r = el.getBoundingClientRect();
                        return [r.left, r.top, r.width, r.height]; };
  const skip = (el) => el.closest(".legend") || el.closest("#trace-overlay")
                       || getComputedStyle(el.closest("g") || el).display === "none";
  const texts = [...svg.querySelectorAll("text")].filter(t => !skip(t) && t.textContent)
    .map(t => [t.textContent, box(t), parseFloat(getComputedStyle(t).fontSize) * m.a]);
  const boxes = [...svg.querySelectorAll("rect.group, rect.vertex, rect.count, rect.service")]
    .filter(r => !skip(r)).map(r => [r.getAttribute("class"), box(r)]);
  const segments = [];
  svg.querySelectorAll("polyline").forEach(p => {
    if (skip(p)) { return; }
    const pts = [...p.points].map(q => [q.x * m.a + m.e, q.y * m.d + m.f]);
    for (let i = 1; i < pts.length; i++) {
      segments.push([pts[i-1][0], pts[i-1][1], pts[i][0], pts[i][1], p.getAttribute("class")]);
    }
  });
  return {texts, boxes, segments, width: svg.getBoundingClientRect().width,
          viewBox: svg.viewBox.baseVal.width};
}"""


@contextmanager
def browser_page(width: int = 1366, height: int = 900) -> Iterator[Any]:
    """A fresh headless Chromium (its own profile) and one page of this size."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with tempfile.TemporaryDirectory() as profile, sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": width, "height": height}, env={**os.environ, "HOME": profile})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def screenshot_dir(tmp: Path) -> Path:
    """Where screenshots go: $PODNET_SCREENSHOTS when set (to look at them), else `tmp`."""
    out = Path(os.environ.get("PODNET_SCREENSHOTS") or tmp)
    out.mkdir(parents=True, exist_ok=True)
    return out


def mermaid_bundle() -> str:
    """mermaid.min.js from npm's `mermaid` package, unpacked where $PODNET_MERMAID_JS says
    (`npm pack mermaid@11` then `tar xzf mermaid-*.tgz package/dist/mermaid.min.js`)."""
    path = os.environ.get("PODNET_MERMAID_JS", "")
    if not path or not os.path.isfile(path):
        pytest.skip("set PODNET_MERMAID_JS to mermaid.min.js (npm's mermaid package)")
    return Path(path).read_text()
