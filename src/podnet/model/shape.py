"""How one direction of a link treats packets (delay, jitter, loss, a rate), as data, and the
units tc writes them in. Pure: the topology's shaping (`podnet.model.impairment`) is made of it,
and `podnet.kernel.tc` turns it into qdiscs."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Shape",
    "format_rate",
    "format_time",
    "parse_percent",
    "parse_rate",
    "parse_time",
    "rate_from_quantity",
]


@dataclass(frozen=True)
class Shape:
    """What one direction of a link does to packets."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform, +/- around the delay
    loss_pct: float = 0.0  # random loss, 0 to 100
    rate_bps: int | None = None  # bits per second

    def problems(self) -> list[str]:
        out = []
        if self.delay_ms < 0 or self.jitter_ms < 0:
            out.append("delay and jitter cannot be negative")
        if self.jitter_ms and not self.delay_ms:
            out.append("jitter varies a delay: give --delay too")
        if self.delay_ms > 3_600_000:
            out.append("a delay longer than an hour is not a network, it is a hold")
        if not 0 <= self.loss_pct <= 100:
            out.append(f"loss {self.loss_pct:g}% is not between 0% and 100%")
        if self.rate_bps is not None and self.rate_bps < 8_000:
            out.append(f"rate {self.rate_bps} bit/s is below tbf's useful range (8kbit)")
        return out

    @property
    def netem(self) -> bool:
        return bool(self.delay_ms or self.jitter_ms or self.loss_pct)

    @property
    def empty(self) -> bool:
        return not self.netem and self.rate_bps is None

    def words(self) -> str:
        """For people: "delay 50ms +/- 5ms, loss 1%, rate 10mbit"."""
        parts = []
        if self.delay_ms:
            jitter = f" +/- {format_time(self.jitter_ms)}" if self.jitter_ms else ""
            parts.append(f"delay {format_time(self.delay_ms)}{jitter}")
        if self.loss_pct:
            parts.append(f"loss {self.loss_pct:g}%")
        if self.rate_bps is not None:
            parts.append(f"rate {format_rate(self.rate_bps)}")
        return ", ".join(parts) or "none"


# --- units, as tc writes them ----------------------------------------------------------------

_TIME = re.compile(r"(\d+(?:\.\d+)?)\s*(us|usec|ms|msec|s|sec)", re.IGNORECASE)
_TIME_MS = {"us": 0.001, "usec": 0.001, "ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0}
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps)", re.IGNORECASE)
_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?")
_QUANTITY_SCALE = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
                   "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}


def parse_time(text: str) -> float:
    """"50ms", "500us", "1.5s" -> milliseconds. A unit is required (tc's bare numbers are
    microseconds, which nobody means)."""
    found = _TIME.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a time: write it as tc does, e.g. 50ms, 500us, 1s")
    return float(found.group(1)) * _TIME_MS[found.group(2).lower()]


def parse_rate(text: str) -> int:
    """"10mbit", "512kbit", "1gbit" -> bits per second; "bps" units are bytes, as in tc."""
    found = _RATE.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a rate: write it as tc does, e.g. 10mbit, 512kbit, "
                         "1gbit (or bytes: 1mbps)")
    value = float(found.group(1)) * _SI[found.group(2).lower()]
    return round(value * (8 if found.group(3).lower() == "bps" else 1))


def parse_percent(text: str) -> float:
    """"1%", "0.5%" -> 1.0, 0.5."""
    body = text.strip()
    if not body.endswith("%"):
        raise ValueError(f"{text!r} is not a percentage: write it with %, e.g. 1% or 0.5%")
    try:
        return float(body[:-1])
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage: e.g. 1% or 0.5%") from None


def rate_from_quantity(text: str) -> int:
    """A Kubernetes quantity as the bandwidth annotations hold it ("10M", "1Gi") -> bits/s."""
    found = _QUANTITY.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 10M, 1G, 512k)")
    return round(float(found.group(1)) * _QUANTITY_SCALE[found.group(2)])


def format_time(ms: float) -> str:
    if ms == int(ms):
        return f"{int(ms)}ms"
    return f"{round(ms * 1000)}us"


def format_rate(bps: int) -> str:
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps >= scale and bps % scale == 0:
            return f"{bps // scale}{unit}"
    return f"{bps}bit"
