"""What a `podnet graph` picture is made of: boxes, text labels and routed edges, in pixels.

Text is monospace at FONT px, so a label's box is its length times CHAR_W. Where each piece goes
is `podnet.render.graph_layout`'s business; `podnet.render.graph_svg` draws them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from podnet.render.graph_model import Group, Service, Vertex

__all__ = [
    "ASCENT",
    "CHAR_W",
    "FONT",
    "LINE_H",
    "PAD",
    "Box",
    "Drawing",
    "GroupBox",
    "Label",
    "Route",
    "ServiceBox",
    "VertexBox",
]

FONT = 12  # px: the page stays readable at 1366 px wide without zooming out
CHAR_W = 7.25  # advance of one character of a 12 px monospace font
LINE_H = 16
ASCENT = 12  # a baseline sits this far below the top of its line
PAD = 12  # inside a box, around its content


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    def moved(self, dx: float, dy: float) -> Box:
        return Box(self.x + dx, self.y + dy, self.w, self.h)


@dataclass(frozen=True)
class Label:
    x: float
    y: float  # baseline
    text: str
    cls: str = ""

    @property
    def box(self) -> Box:
        return Box(self.x, self.y - ASCENT, len(self.text) * CHAR_W, LINE_H)

    def moved(self, dx: float, dy: float) -> Label:
        return Label(self.x + dx, self.y + dy, self.text, self.cls)


@dataclass
class VertexBox:
    vertex: Vertex
    box: Box
    labels: list[Label]


@dataclass
class GroupBox:
    group: Group
    box: Box
    labels: list[Label]
    hidden_pods: int = 0  # drawn as a count that opens on click
    count: Box | None = None  # where the count is drawn
    count_labels: list[Label] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    kind: str  # veth, port, tunnel, service
    a: str
    b: str
    label: str
    points: tuple[tuple[float, float], ...]


@dataclass
class ServiceBox:
    service: Service
    box: Box
    labels: list[Label]


@dataclass
class Drawing:
    width: float
    height: float
    groups: list[GroupBox]
    vertices: list[VertexBox]
    routes: list[Route]
    services: list[ServiceBox]
    legend_y: float

    def labels(self) -> Iterable[Label]:
        for g in self.groups:
            yield from g.labels
            yield from g.count_labels
        for v in self.vertices:
            yield from v.labels
        for s in self.services:
            yield from s.labels
