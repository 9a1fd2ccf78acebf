"""What a link's qdiscs are, read with `tc -j` inside its namespace: any qdisc, podnet's or
not, described as the Shape it gives the link (for `trace`, `get links`, `graph`, `netem`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import KernelError, ObjectMissingError
from podnet.kernel.tc_shape import HANDLE, INGRESS, Shape, ifb_name

__all__ = ["LinkQdiscs", "Qdisc", "check_ifname", "read", "read_link", "summaries"]


def check_ifname(ifname: str) -> str:
    if not 0 < len(ifname.encode()) <= 15 or any(c in ifname for c in " /\t\n:"):
        raise ValueError(f"{ifname!r} is not an interface name (1 to 15 bytes, no spaces, / or :)")
    return ifname


# --- reading what a link has ---------------------------------------------------------------


@dataclass(frozen=True)
class Qdisc:
    kind: str
    handle: str
    parent: str | None  # None: the root qdisc
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def shape(self) -> Shape:
        """What this qdisc does, as far as delay, loss and rate go."""
        opts = self.options
        if self.kind == "netem":
            delay = opts.get("delay") or {}
            loss = opts.get("loss-random") or {}
            rate = (opts.get("rate") or {}).get("rate")
            return Shape(round(float(delay.get("delay", 0)) * 1000, 3),
                         round(float(delay.get("jitter", 0)) * 1000, 3),
                         round(float(loss.get("loss", 0)) * 100, 4),
                         int(rate) * 8 if isinstance(rate, int | float) and rate else None)
        if self.kind == "tbf" and isinstance(opts.get("rate"), int | float):
            return Shape(rate_bps=int(opts["rate"]) * 8)
        return Shape()

    def words(self) -> str:
        shape = self.shape()
        return self.kind if shape.empty else f"{self.kind} {shape.words()}"


@dataclass(frozen=True)
class LinkQdiscs:
    """The qdiscs of one interface, and where its ingress is redirected to (an ifb)."""

    ifname: str
    qdiscs: tuple[Qdisc, ...] = ()
    redirect: str | None = None  # the ifb device its ingress qdisc sends packets to
    ingress: Shape = field(default_factory=Shape)  # what that ifb's qdiscs do

    @property
    def root(self) -> Qdisc | None:
        return next((q for q in self.qdiscs if q.parent is None), None)

    @property
    def ingress_qdisc(self) -> Qdisc | None:
        return next((q for q in self.qdiscs if q.kind in ("ingress", "clsact")), None)

    @property
    def egress(self) -> Shape:
        """Delay, jitter and loss of its netem, and the rate of its tbf (or netem's own rate)."""
        merged = Shape()
        for q in self.qdiscs:
            s = q.shape()
            merged = Shape(merged.delay_ms or s.delay_ms, merged.jitter_ms or s.jitter_ms,
                           merged.loss_pct or s.loss_pct,
                           min(r for r in (merged.rate_bps, s.rate_bps) if r is not None)
                           if merged.rate_bps is not None or s.rate_bps is not None else None)
        return merged

    @property
    def ours(self) -> bool:
        root_ours = self.root is not None and self.root.handle == HANDLE
        return root_ours or self.redirect == ifb_name(self.ifname)

    @property
    def impaired(self) -> bool:
        return not (self.egress.empty and self.ingress.empty)

    def summary(self) -> str:
        """One short phrase: "netem delay 50ms, loss 1% + tbf rate 10mbit; ingress via pnifb..:
        tbf rate 5mbit", or the default qdisc's kind ("noqueue")."""
        shown = [q.words() for q in self.qdiscs if q.kind not in ("ingress", "clsact")]
        text = " + ".join(shown) or "noqueue"
        if self.redirect:
            text += f"; ingress via {self.redirect}: {self.ingress.words()}"
        return text


def _qdiscs(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Qdisc]]:
    out: dict[str, list[Qdisc]] = {}
    for row in rows:
        dev = row.get("dev")
        if not isinstance(dev, str):
            continue
        parent = None if row.get("root") else str(row.get("parent", ""))
        options = row.get("options")
        out.setdefault(dev, []).append(Qdisc(str(row.get("kind", "?")), str(row.get("handle", "")),
                                             parent, options if isinstance(options, dict) else {}))
    return out


def _redirect(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """The device a u32 ingress filter's mirred action redirects to."""
    for row in rows:
        for action in (row.get("options") or {}).get("actions") or []:
            if action.get("kind") == "mirred" and action.get("mirred_action") == "redirect":
                to = action.get("to_dev")
                if isinstance(to, str):
                    return to
    return None


def _tc_json(args: Sequence[str], path: str | None) -> list[dict[str, Any]]:
    from podnet.kernel.nsexec import find_tool, run_in

    done = run_in([find_tool("tc", "iproute2"), "-j", *args], path, timeout=10)
    if done.code != 0:
        if "Cannot find device" in done.stderr:
            raise ObjectMissingError(f"no interface {args[-1]} here",
                                     hint="`podnet inspect --netns NAME` lists its interfaces")
        raise KernelError(f"tc {' '.join(args)}: {done.stderr or 'failed'}")
    try:
        rows = json.loads(done.stdout or "[]")
    except ValueError as exc:
        raise KernelError(f"tc printed JSON podnet cannot read: {exc}") from None
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def read(path: str | None) -> dict[str, LinkQdiscs]:
    """Every interface's qdiscs in the namespace at `path` (None: this one), by name."""
    by_dev = _qdiscs(_tc_json(["qdisc", "show"], path))
    out: dict[str, LinkQdiscs] = {}
    for dev, qdiscs in by_dev.items():
        out[dev] = _with_ingress(dev, qdiscs, by_dev, path)
    return out


def summaries(path: str | None) -> dict[str, str]:
    """{ifname: "netem delay 50ms + tbf rate 10mbit"} for every interface tc lists in the
    namespace (one `tc` process): what `get links -o wide` shows in its QDISC column. An
    interface tc does not list has only its default qdisc ("noqueue" for a veth)."""
    return {name: link.summary() for name, link in read(path).items()}


def read_link(path: str | None, ifname: str) -> LinkQdiscs:
    """One interface's qdiscs (ObjectMissingError when it does not exist). A link that is down,
    or has only its default qdisc, may list none."""
    rows = _tc_json(["qdisc", "show", "dev", check_ifname(ifname)], path)
    by_dev = _qdiscs({**r, "dev": ifname} for r in rows)
    link = _with_ingress(ifname, by_dev.get(ifname, []), {}, path)
    if link.redirect:
        ifb = _qdiscs({**r, "dev": link.redirect}
                      for r in _tc_json(["qdisc", "show", "dev", link.redirect], path))
        link = _link(ifname, link.qdiscs, link.redirect, ifb.get(link.redirect, []))
    return link


def _with_ingress(dev: str, qdiscs: list[Qdisc], by_dev: Mapping[str, list[Qdisc]],
                  path: str | None) -> LinkQdiscs:
    redirect_to = None
    if any(q.kind in ("ingress", "clsact") for q in qdiscs):
        redirect_to = _redirect(_tc_json(["filter", "show", "dev", dev, "parent", INGRESS],
                                         path))
    return _link(dev, qdiscs, redirect_to, by_dev.get(redirect_to or "", []))


def _link(dev: str, qdiscs: Sequence[Qdisc], redirect_to: str | None,
          ifb: Sequence[Qdisc]) -> LinkQdiscs:
    ingress = LinkQdiscs(redirect_to or "", tuple(ifb)).egress if redirect_to else Shape()
    return LinkQdiscs(dev, tuple(qdiscs), redirect_to, ingress)


