"""`podnet check`: a connectivity matrix of the running lab, every cell tested with real packets.

Thin: the probes come from `podnet.plan.check`, are sent by `podnet.apply.probe`, and are printed
here as a table (or JSON). Exit status 0 only when every path works.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from podnet.cli.context import require_lab
from podnet.cli.progress import Update, with_progress

__all__ = ["check_command"]

_HEADERS = {
    "self": "SELF(LO)",
    "same-node": "SAME-NODE",
    "other-node": "OTHER-NODE",
    "node": "NODES",
    "service": "SERVICES",
    "dns": "DNS",
    "nodeport": "NODEPORTS",
    "outside": "OUTSIDE",
    "full-size": "FULL-SIZE",
}


@click.command("check")
@click.option("--cluster", "-C", envvar="PODNET_CLUSTER", default=None,
              help="Lab to check (default: the one that is up).")
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json"]), default="table",
              help="table: the matrix and any failure; wide: every probe too; json: for scripts.")
@click.option("--timeout", type=float, default=2.0, show_default=True,
              help="Seconds each probe may take.")
@click.option("--targets", type=int, default=3, show_default=True,
              help="Pods probed per source and column (0: every pod; big labs stay linear).")
@click.option("--mtu", is_flag=True,
              help="Probe each working path again with a full-size packet (DF set): finds the "
                   "MTU black holes a handshake passes through.")
@click.option("-4", "--ipv4", "family", flag_value=4, default=None,
              help="Probe over IPv4 only (a dual-stack lab is probed over both families).")
@click.option("-6", "--ipv6", "family", flag_value=6, help="Probe over IPv6 only.")
def check_command(cluster: str | None, output: str, timeout: float, targets: int,
                  mtu: bool, family: int | None) -> None:
    """Test every path of the lab with real packets: pod to itself via lo, to pods on its node
    and on other nodes, to every node, to each Service by name, to the outside world (which must
    see the node's address), and every NodePort from the node network. A dual-stack lab is
    probed over each family (a row per source and family). Exit 0 only when all work.

    The neighbour (ARP/NDP) tables are the whole machine's: in a lab large enough for its
    probes to fill a quarter of them (about 85 pods per family), check removes the entries its
    probes learned as it goes, so the machine's own networking never runs out of room.
    """
    from podnet.apply.probe import run_probes
    from podnet.plan.check import probes, summarize
    from podnet.plan.check_policy import judged

    record = require_lab(cluster)
    lay = record.layout
    if family is not None and family not in lay.families:
        from podnet.errors import StateError

        raise StateError(f"lab {lay.cluster} has no IPv{family} (its ipFamily is "
                         f"{_family_words(lay.families)})",
                         hint=f"check it without -{family}, or give the lab ipFamily: dual")
    started = time.perf_counter()
    wanted = None if family is None else (family,)
    planned, undecided = judged(lay, probes(lay, targets=targets, families=wanted))
    tidy = _tidy(lay)

    def probe_all(update: Update | None) -> list[Any]:
        results = run_probes(planned, timeout=timeout,
                             after_wave=_counted(tidy, update, len(planned)))
        if mtu:
            from podnet.apply.probe_full import run_full_size

            results = run_full_size(results, timeout=timeout,
                                    after_wave=_counted(tidy, update, None))
        return results

    label = f"probing {len(planned):,} paths" + (", then full-size" if mtu else "")
    results = with_progress(False, label, probe_all)
    elapsed = time.perf_counter() - started
    passed = sum(r.passed for r in results)
    ok = bool(results) and passed == len(results)
    if output == "json":
        click.echo(json.dumps(_as_json(lay, results, ok, elapsed), indent=2))
    else:
        _print_table(lay, results, summarize(results), wide=output == "wide")
        click.echo(f"\n{passed} of {len(results)} paths work ({elapsed:.2f} s)")
        if lay.policies:
            click.echo(_policy_summary(results, undecided))
    sys.exit(0 if ok else 1)


def _tidy(lay: Any) -> Callable[[Sequence[Any]], None] | None:
    """For a lab large enough to fill the machine's neighbour tables, what removes the entries
    each wave of probes learned (`plan.neighbours`); None for a small one, whose entries stay
    for `ip neigh` to show."""
    from podnet.plan import neighbours

    if not neighbours.tidy_needed(lay):
        return None
    from podnet.apply.probe import forget_neighbours

    window = neighbours.Window(lay)

    def after_wave(results: Sequence[Any]) -> None:
        forget_neighbours(window.add(results))

    return after_wave


def _counted(tidy: Callable[[Sequence[Any]], None] | None, update: Update | None,
             total: int | None) -> Callable[[Sequence[Any]], None] | None:
    """What runs after each wave of probes: the neighbour tidying, and the progress bar moved
    by the wave's probes (`total` None: a count without an end, as for the full-size probes,
    which go to the paths that worked)."""
    if update is None:
        return tidy
    done = 0

    def after_wave(results: Sequence[Any]) -> None:
        nonlocal done
        if tidy is not None:
            tidy(results)
        done += len(results)
        update(results, done, total)

    return after_wave


def _policy_summary(results: list[Any], undecided: int) -> str:
    """NetworkPolicies' truth table against the packets, mismatches counted both ways."""
    denied = [r for r in results if r.probe.expect.denied]
    leaked = sum(not r.ok for r in denied)
    blocked = sum(not r.ok for r in results if not r.probe.expect.denied)
    text = (f"NetworkPolicies: {len(denied)} path(s) denied, {len(results) - len(denied)} "
            f"allowed; {leaked} got through that policies deny, {blocked} failed that they "
            "allow")
    if undecided:
        text += (f" ({undecided} left out: a Service or NodePort whose backends the policies "
                 "treat differently)")
    return text


def _family_words(families: tuple[int, ...]) -> str:
    """`ipv4`, `ipv6` or `dual`: kind's word for a lab's families."""
    return "dual" if len(families) > 1 else f"ipv{families[0]}"


def _print_table(lay: Any, results: list[Any], matrix: dict[tuple[str, int], Any], *,
                 wide: bool) -> None:
    from podnet.model.addresses import family_name
    from podnet.plan.check import COLUMNS, NODE_NETWORK
    from podnet.render.columns import columns
    from podnet.trace.words import endpoint

    pods = {p.key: p for p in lay.pods}
    families = "" if lay.families == (4,) else (
        ", " + " and ".join(family_name(f) for f in lay.families)
        + (" (dual-stack)" if len(lay.families) > 1 else ""))
    click.echo(
        f"lab {lay.cluster}: {lay.attachment} attachment, {lay.routing} routing, "
        f"{len(lay.pods)} pods on {len(lay.nodes)} nodes, pod MTU {lay.pod_mtu}{families}\n"
    )
    used = [k for k in COLUMNS if any(row[k].total for row in matrix.values())]
    # A family column when the rows are of more than one family (a dual-stack lab).
    by_family = len({family for _source, family in matrix}) > 1
    rows = []
    for (source, family), row in matrix.items():
        where = pods[source].node if source in pods else lay.fabric_netns
        name = f"({NODE_NETWORK})" if source == NODE_NETWORK else source
        fam = [family_name(family)] if by_family else []
        rows.append([name, where, *fam, *(str(row[k]) for k in used)])
    heads = ["SOURCE", "ON", *(["FAMILY"] if by_family else []), *(_HEADERS[k] for k in used)]
    click.echo(columns(heads, rows))
    shown = results if wide else [r for r in results if not r.passed]
    if shown:
        click.echo("\nprobes:" if wide else "\nfailed:")
        click.echo(columns(
            ["", "KIND", "FROM", "TO", "ADDRESS", "RESULT", "MS"],
            [["ok" if r.passed else "FAIL", r.probe.kind, r.probe.source, r.probe.target,
              endpoint(r.probe.address, r.probe.port), _detail(r), f"{r.ms:.1f}"]
             for r in shown],
        ))


def _detail(r: Any) -> str:
    if r.full is None:
        return str(r.detail)
    return f"{r.detail}; full-size {'ok' if r.full else 'FAILED'}: {r.full_detail}"


def _as_json(lay: Any, results: list[Any], ok: bool, elapsed: float) -> dict[str, Any]:
    from podnet.model.addresses import family_name

    return {
        "cluster": lay.cluster,
        "attachment": lay.attachment,
        "routing": lay.routing,
        "ipFamilies": [family_name(f) for f in lay.families],
        "podMTU": lay.pod_mtu,
        "ok": ok,
        "passed": sum(r.passed for r in results),
        "total": len(results),
        "seconds": round(elapsed, 3),
        "probes": [
            {
                "kind": r.probe.kind,
                "family": family_name(r.probe.family),
                "from": r.probe.source,
                "to": r.probe.target,
                "address": r.probe.address,
                "port": r.probe.port,
                "ok": r.passed,
                "detail": r.detail,
                "ms": round(r.ms, 2),
                **({"fullSize": {"ok": r.full, "detail": r.full_detail}}
                   if r.full is not None else {}),
            }
            for r in results
        ],
    }
