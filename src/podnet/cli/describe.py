"""`podnet describe`: one object of the lab in full, as kubectl describe shows it: a pod's
addresses, its veth pair end to end, its routes and containers; a node's uplink and routes; a
Service's endpoints. The views live in `podnet.objects` (the graph dashboard shows the same)."""

from __future__ import annotations

from typing import Any

import click

from podnet.cli.context import cluster_option, complete_namespaces, require_lab
from podnet.cli.query import Query, complete_names, find_objects, parse_kinds, selector_option
from podnet.errors import StateError

__all__ = ["describe_command"]


def _complete(ctx: click.Context, param: click.Parameter,
              incomplete: str) -> list[click.shell_completion.CompletionItem]:
    ctx.params["kinds"] = ctx.params.get("kind")
    return complete_names(ctx, param, incomplete)


def _complete_kind(ctx: click.Context, param: click.Parameter,
                   incomplete: str) -> list[click.shell_completion.CompletionItem]:
    from click.shell_completion import CompletionItem

    from podnet.objects.kinds import all_kinds

    return [CompletionItem(k.singular) for k in all_kinds()
            if k.describe is not None and k.singular.startswith(incomplete)]


@click.command("describe")
@click.argument("kind", metavar="KIND", shell_complete=_complete_kind)
@click.argument("names", nargs=-1, metavar="[NAME...]", shell_complete=_complete)
@click.option("-n", "--namespace", default=None, shell_complete=complete_namespaces,
              help="Kubernetes namespace of the objects named.")
@click.option("-l", "--selector", callback=selector_option, metavar="SELECTOR",
              help="Describe every object these labels select.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: the same sections, for scripts.")
@cluster_option
def describe_command(kind: str, names: tuple[str, ...], namespace: str | None,
                     selector: Any, output: str, cluster: str | None) -> None:
    """Show one pod, node or service of the lab in full (KIND NAME, or KIND/NAME).

    \b
      podnet describe pod jumpbox
      podnet describe pod -n dev demo-697f9549fc-mj562
      podnet describe node kind-worker
      podnet describe svc -n dev demo
    """
    import json

    from podnet.objects.reads import LiveReads
    from podnet.render.describe_text import render_describe

    kinds, name_list = parse_kinds(kind, names)
    described = kinds[0]
    if len(kinds) != 1 or described.describe is None:
        able = ", ".join(k.singular for k in _describable())
        raise click.BadParameter(f"describe takes one of: {able}", param_hint="KIND")
    record = require_lab(cluster)
    reads = LiveReads()
    found = find_objects(record, Query([described], name_list, namespace, selector, None, False),
                         reads)
    objects = found[0][1]
    if not objects:
        raise StateError(f"no {described.name} match",
                         hint=f"list them with `podnet get {described.name}`")
    docs = [described.describe(record, o, reads) for o in objects]
    if output == "json":
        click.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
        return
    click.echo("\n\n".join(render_describe(d) for d in docs))


def _describable() -> list[Any]:
    from podnet.objects.kinds import all_kinds

    return [k for k in all_kinds() if k.describe is not None]
