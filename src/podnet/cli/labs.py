"""`podnet labs`: the labs that are up and which one is current, as `kubectl config
get-contexts` and `use-context` do for clusters."""

from __future__ import annotations

import json
from typing import Any

import click

from podnet import state as lab_state
from podnet.cli.context import (
    check_lab_name,
    complete_labs,
    current_lab,
    pick_cluster,
    remember_current,
)
from podnet.errors import StateError

__all__ = ["labs_group"]


def _summary(name: str, current: str | None) -> dict[str, Any]:
    record = lab_state.load(name)
    if record is None:
        return {"name": name, "current": name == current, "state": "gone"}
    lay = record.layout
    return {
        "name": name,
        "current": name == current,
        "state": "up" if record.complete else "incomplete",
        "nodes": len(lay.nodes),
        "pods": len(lay.pods),
        "services": len(lay.services),
        "attachment": lay.attachment,
        "routing": lay.routing,
        "topology": record.topology or "(embedded default)",
    }


def _current_or_none() -> str | None:
    try:
        return pick_cluster(None) if lab_state.list_labs() else None
    except StateError:
        return None  # several labs up and none chosen


@click.group("labs", invoke_without_command=True)
@click.option("-o", "--output", type=click.Choice(["table", "json", "name"]), default="table",
              show_default=True)
@click.pass_context
def labs_group(ctx: click.Context, output: str) -> None:
    """List the labs that are up; `*` marks the current one, which commands act on when
    neither --cluster nor PODNET_CLUSTER names one. `podnet up` makes the lab it builds
    current; `podnet labs use NAME` chooses another.
    """
    if ctx.invoked_subcommand is not None:
        return
    from podnet.render.columns import columns

    current = _current_or_none()
    rows = [_summary(name, current) for name in lab_state.list_labs()]
    if output == "json":
        click.echo(json.dumps({"current": current, "labs": rows}, indent=2))
        return
    if output == "name":
        for r in rows:
            click.echo(r["name"])
        return
    if not rows:
        click.echo("No labs are up: `podnet up` builds one.", err=True)
        return
    click.echo(columns(
        ["CURRENT", "NAME", "STATE", "NODES", "PODS", "SERVICES", "ATTACHMENT", "ROUTING",
         "TOPOLOGY"],
        [["*" if r["current"] else "", r["name"], r["state"], r.get("nodes", "-"),
          r.get("pods", "-"), r.get("services", "-"), r.get("attachment", "-"),
          r.get("routing", "-"), r.get("topology", "-")] for r in rows],
    ))


@labs_group.command("use")
@click.argument("name", shell_complete=complete_labs)
def use_command(name: str) -> None:
    """Make NAME the current lab."""
    check_lab_name(name)
    labs = lab_state.list_labs()
    if name not in labs:
        raise StateError(f"no lab named {name} is up",
                         hint=f"labs that are up: {', '.join(labs)}" if labs
                         else "bring it up with `podnet up`")
    remember_current(name)
    click.echo(f'Switched to lab "{name}".')


@labs_group.command("current")
def current_command() -> None:
    """Print the current lab (the one commands act on by default)."""
    name = _current_or_none()
    if name is None:
        remembered = current_lab()
        raise StateError("no lab is current" + (f" ({remembered} is not up)" if remembered
                                                 else ""),
                         hint="`podnet labs` lists the labs; `podnet labs use NAME` picks one")
    click.echo(name)
