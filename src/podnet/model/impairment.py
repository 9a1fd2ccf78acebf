"""Shaping in the topology file: a pod's annotations and a node's `netem` key -> `Impairment`.

A pod takes kubelet's bandwidth annotations, as the CNI bandwidth plugin honours them, and
podnet's own ones for what the bandwidth plugin cannot do:

    kubernetes.io/ingress-bandwidth: 10M    traffic to the pod, at most 10 Mbit/s (a Kubernetes
    kubernetes.io/egress-bandwidth: 1G      quantity, in bits per second); traffic from it
    podnet.io/delay: 50ms                   what the pod sends: delayed (netem), with jitter,
    podnet.io/jitter: 5ms                   lost at random, rate-limited; the way `podnet netem
    podnet.io/loss: 1%                      POD` shapes it
    podnet.io/rate: 10mbit
    podnet.io/ingress-delay: 20ms           the same for what reaches the pod (`podnet netem
    podnet.io/ingress-jitter, -loss, -rate  POD --ingress`)

A node of the Cluster document takes `netem: {delay: 20ms, jitter: 2ms, loss: 0.1%, rate:
100mbit, ingress: {...}}`: its uplink (eth0), what it sends and (under `ingress`) what reaches it.

Times and rates are written as tc writes them (50ms, 10mbit), loss as a percentage. Whether the
kernel can do it is the kernel's business: one without sch_netem refuses a delay when `up`
shapes the link, with tc's own words; the file is still valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podnet.model.drafts import did_you_mean
from podnet.model.fields import Reader, describe
from podnet.model.shape import (
    Shape,
    parse_percent,
    parse_rate,
    parse_time,
    rate_from_quantity,
)
from podnet.model.types import Impairment

__all__ = [
    "BANDWIDTH",
    "MAX_RATE",
    "NETEM_KEYS",
    "POD_ANNOTATIONS",
    "PREFIX",
    "read_node_netem",
    "read_pod_annotations",
]

PREFIX = "podnet.io/"
NETEM_KEYS = ("delay", "jitter", "loss", "rate")
_INGRESS = "ingress-"
BANDWIDTH = {  # kubelet's annotations, and the direction of the pod's traffic each limits
    "kubernetes.io/ingress-bandwidth": "received",
    "kubernetes.io/egress-bandwidth": "sent",
}
POD_ANNOTATIONS = (
    *BANDWIDTH,
    *(f"{PREFIX}{way}{key}" for way in ("", _INGRESS) for key in NETEM_KEYS),
)
MAX_RATE = 10**12  # 1 Tbit/s: tbf's burst (10 ms of the rate) must fit its 32 bits
_EXAMPLES = {"delay": "50ms", "jitter": "5ms", "loss": "1%", "rate": "10mbit"}
_PARSE: dict[str, Callable[[str], float]] = {
    "delay": parse_time, "jitter": parse_time, "loss": parse_percent, "rate": parse_rate,
}


def read_pod_annotations(r: Reader, annotations: dict[Any, Any], path: str) -> Impairment:
    """The shaping a pod's (or a pod template's) annotations ask for. Other annotations are
    notes, accepted as Kubernetes accepts them; an unknown `podnet.io/` key is refused."""
    found: dict[str, dict[str, str | int]] = {"sent": {}, "received": {}}
    where: dict[tuple[str, str], str] = {}  # (direction, key) -> the annotation that set it
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            continue  # reported by the caller (annotations map strings to strings)
        field = f"{path}.{key}"
        if key in BANDWIDTH:
            way, name = BANDWIDTH[key], "rate"
            parsed: str | int | None = _quantity(r, value, field)
        elif key.startswith(PREFIX):
            name = key.removeprefix(PREFIX)
            way = "received" if name.startswith(_INGRESS) else "sent"
            name = name.removeprefix(_INGRESS)
            if name not in NETEM_KEYS:
                r.add(field, "is not an annotation podnet reads",
                      did_you_mean(key, POD_ANNOTATIONS, "podnet reads "
                                   + ", ".join(POD_ANNOTATIONS)))
                continue
            parsed = value
        else:
            continue
        if (way, name) in where:  # kubelet's annotation and podnet's say the same
            r.add(field, f"limits the same traffic as {where[(way, name)]}",
                  "give one of the two")
            continue
        if parsed is not None:
            found[way][name] = parsed
            where[(way, name)] = key
    sent = _shape(r, found["sent"], lambda k: f"{path}.{_annotation(k, where, 'sent')}")
    received = _shape(r, found["received"],
                      lambda k: f"{path}.{_annotation(k, where, 'received')}")
    return Impairment(sent, received)


def _annotation(key: str, where: dict[tuple[str, str], str], way: str) -> str:
    return where.get((way, key), f"{PREFIX}{_INGRESS if way == 'received' else ''}{key}")


def _quantity(r: Reader, value: str, field: str) -> int | None:
    """A bandwidth annotation's quantity (10M, 1G) in bits per second, as kubelet reads it."""
    try:
        rate = rate_from_quantity(value)
    except ValueError as exc:
        r.add(field, str(exc), "a rate in bits per second, as kubelet reads it: 10M, 1G, 512k")
        return None
    if not 8_000 <= rate <= MAX_RATE:
        r.add(field, f"{value} is outside 8k..1T bits per second",
              "tc's tbf shapes rates from 8 kbit/s to 1 Tbit/s")
        return None
    return rate


def read_node_netem(r: Reader, value: object, path: str) -> Impairment:
    """`nodes[i].netem`: what the node's uplink does to what it sends, and under `ingress` to
    what reaches it."""
    m = r.mapping(value, path)
    r.known(m, path, (*NETEM_KEYS, "ingress"))
    ingress = r.mapping(m.get("ingress"), f"{path}.ingress")
    r.known(ingress, f"{path}.ingress", NETEM_KEYS)
    sent = _shape(r, _texts(r, m, path), lambda k: f"{path}.{k}")
    received = _shape(r, _texts(r, ingress, f"{path}.ingress"),
                      lambda k: f"{path}.ingress.{k}")
    return Impairment(sent, received)


def _texts(r: Reader, m: dict[Any, Any], path: str) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for key in NETEM_KEYS:
        value = m.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            out[key] = value
        else:
            r.add(f"{path}.{key}", f"must be a string with its unit, not {describe(value)}",
                  f"write it as tc does: {key}: {_EXAMPLES[key]}")
    return out


def _shape(r: Reader, texts: dict[str, str | int], field: Callable[[str], str]) -> Shape:
    """One direction's Shape from its texts (a number: bits per second a bandwidth annotation
    gave); each bad value is reported at its own field."""
    values: dict[str, float] = {}
    for key, text in texts.items():
        if isinstance(text, int):
            values[key] = text
            continue
        try:
            values[key] = _PARSE[key](text)
        except ValueError as exc:
            r.add(field(key), str(exc), f"such as {key}: {_EXAMPLES[key]}")
    if "jitter" in values and not values.get("delay"):
        r.add(field("jitter"), "varies a delay, and there is none",
              f"give a delay too: jitter {texts['jitter']} spreads packets around it")
        values.pop("jitter")
    rate = values.get("rate")
    if rate is not None and not 8_000 <= rate <= MAX_RATE:
        r.add(field("rate"), f"{texts['rate']} is outside 8kbit..1tbit",
              "tc's tbf shapes rates from 8 kbit/s to 1 Tbit/s")
        values.pop("rate")
    shape = Shape(values.get("delay", 0.0), values.get("jitter", 0.0), values.get("loss", 0.0),
                  int(rate) if "rate" in values and rate is not None else None)
    for problem in shape.problems():
        key = "loss" if "loss" in problem else "delay"
        r.add(field(key), problem, f"such as {key}: {_EXAMPLES[key]}")
        return Shape()
    return shape
