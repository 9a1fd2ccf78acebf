"""What a link gets, as data: a Shape for each direction (netem's delay, jitter and loss, a
rate; `podnet.model.shape`, with the units tc writes them in), and podnet's marks on qdiscs.
Pure; `podnet.kernel.tc` turns it into commands."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from podnet.model.shape import (
    Shape,
    format_rate,
    format_time,
    parse_percent,
    parse_rate,
    parse_time,
    rate_from_quantity,
)

__all__ = [
    "HANDLE",
    "INGRESS",
    "LinkShaping",
    "Shape",
    "format_rate",
    "format_time",
    "ifb_name",
    "parse_percent",
    "parse_rate",
    "parse_time",
    "rate_from_quantity",
]

HANDLE = "70d:"  # podnet's root qdisc ("pod"): what marks a qdisc as podnet's
INGRESS = "ffff:"  # the ingress qdisc's handle, always


# --- what a link gets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkShaping:
    """This link gets this shaping: the API the lab's plan and the CNI bandwidth plugin call."""

    ifname: str
    egress: Shape = field(default_factory=Shape)
    ingress: Shape = field(default_factory=Shape)


def ifb_name(ifname: str) -> str:
    """The ifb device that shapes what arrives on `ifname` (13 bytes, stable, per namespace)."""
    return "pnifb" + hashlib.sha256(ifname.encode()).hexdigest()[:8]
