"""`podnet get`: the lab's pods, nodes, Services and veth links, as kubectl lists them.

Kinds come from the registry in `podnet.objects.kinds`; formats from `podnet.render.printers`.
Unlike kubectl, a lab shows every namespace unless `-n` narrows it (`-A` is accepted and means
the same): a lab is small and its pods live in several namespaces.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from podnet.cli.context import (
    cluster_option,
    complete_namespaces,
    pick_cluster,
    require_lab,
)
from podnet.cli.query import (
    Query,
    complete_kinds,
    complete_names,
    find_objects,
    parse_kinds,
    selector_option,
)
from podnet.errors import StateError

__all__ = ["WATCH_INTERVAL", "get"]

WATCH_INTERVAL = 1.0  # seconds between rereads of the record and the kernel with --watch

_EPILOG = """\b
Examples:
  podnet get pods -o wide
  podnet get pods -n dev -l 'app in (demo)' --sort-by .status.podIP
  podnet get pod jumpbox -o jsonpath='{.status.podIP}'
  podnet get pods -o jsonpath='{range .items[*]}{.metadata.name}{"\\t"}{.spec.nodeName}{"\\n"}{end}'
  podnet get pods -o custom-columns=NAME:.metadata.name,IP:.status.podIP,NODE:.spec.nodeName
  podnet get nodes,svc -o yaml
  podnet get pods -w
"""


def _output(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from podnet.render.jsonpath import JsonPathError
    from podnet.render.printers import printer_for

    fmt, _, arg = (value or "").partition("=")
    if fmt.endswith("-file") and arg:
        return value  # the file is read when the command runs
    try:
        printer_for(value)
    except (ValueError, JsonPathError) as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _groups(found: list[tuple[Any, list[dict[str, Any]]]], query: Query) -> list[Any]:
    from podnet.render.printers import Group, Table

    groups = []
    for kind, objects in found:
        headers, _ = kind.table([], wide=query.wide)
        spread = kind.namespaced and query.namespace is None

        def rows(objs: Sequence[dict[str, Any]], kind: Any = kind,
                 spread: bool = spread) -> list[list[str]]:
            cells: list[list[str]] = kind.table(objs, wide=query.wide)[1]
            if spread:
                return [[o["metadata"]["namespace"], *r] for o, r in zip(objs, cells,
                                                                         strict=True)]
            return cells

        table = Table((["NAMESPACE"] if spread else []) + headers, rows)
        groups.append(Group(kind.singular, objects, table))
    return groups


@click.command("get", epilog=_EPILOG)
@click.argument("kinds", metavar="KIND[,KIND...]", shell_complete=complete_kinds)
@click.argument("names", nargs=-1, metavar="[NAME...]", shell_complete=complete_names)
@click.option("-n", "--namespace", default=None, shell_complete=complete_namespaces,
              help="Only this Kubernetes namespace (default: every namespace of the lab).")
@click.option("-A", "--all-namespaces", is_flag=True,
              help="Every namespace (the default in a lab; overrides -n, as in kubectl).")
@click.option("-l", "--selector", callback=selector_option, metavar="SELECTOR",
              help="Label selector: app=demo, tier!=db, 'env in (a,b)', app, '!canary'.")
@click.option("-o", "--output", callback=_output, metavar="FORMAT",
              help="wide | json | yaml | name | jsonpath=T | jsonpath-file=F | "
                   "jsonpath-as-json=T | custom-columns=H:PATH,... | custom-columns-file=F")
@click.option("--no-headers", is_flag=True, help="Tables without their header line.")
@click.option("--sort-by", metavar="JSONPATH",
              help="Sort by this field of each object: .status.podIP, {.metadata.name}.")
@click.option("--show-labels", is_flag=True, help="A LABELS column at the end of the table.")
@click.option("-w", "--watch", is_flag=True,
              help="After the list, print each object again when it changes (Ctrl-C ends).")
@click.option("--watch-only", is_flag=True, help="Like --watch, without the first list.")
@click.option("--output-watch-events", is_flag=True,
              help="With --watch: an EVENT column (ADDED, MODIFIED, DELETED).")
@cluster_option
def get(kinds: str, names: tuple[str, ...], namespace: str | None, all_namespaces: bool,
        selector: Any, output: str | None, no_headers: bool, sort_by: str | None,
        show_labels: bool, watch: bool, watch_only: bool, output_watch_events: bool,
        cluster: str | None) -> None:
    """List the lab's pods, nodes, services or veth links, as kubectl get does.

    KIND is pods (po), nodes (no), services (svc) or links, several joined by commas, or
    KIND/NAME.
    """
    from podnet.objects.reads import LiveReads
    from podnet.render.jsonpath import JsonPathError, jsonpath_values
    from podnet.render.printers import printer_for

    if sort_by:
        try:
            jsonpath_values(sort_by, {})
        except JsonPathError as exc:
            raise click.BadParameter(str(exc), param_hint="--sort-by") from None
    kind_list, name_list = parse_kinds(kinds, names)
    query = Query(kind_list, name_list, None if all_namespaces else namespace, selector,
                   sort_by, output == "wide")
    try:
        printer = printer_for(output, no_headers=no_headers, show_labels=show_labels)
    except OSError as exc:
        raise click.BadParameter(f"{exc.filename}: {exc.strerror}", param_hint="-o") from None
    record = require_lab(cluster)
    found = find_objects(record, query, LiveReads())
    groups = _groups(found, query)
    if not watch and not watch_only:
        try:
            text = printer.render(groups, single=query.single)
        except JsonPathError as exc:
            raise StateError(str(exc), hint="check the template against `-o json`") from None
        if text:
            # kubectl ends jsonpath output where the template ends: no newline of its own.
            click.echo(text, nl=not (output or "").startswith(("jsonpath=", "jsonpath-file=")))
        elif not query.names and output in (None, "wide"):
            where = f" in namespace {query.namespace}" if query.namespace else ""
            click.echo(f"No resources found{where}.", err=True)
        return
    _watch(printer, groups, query, pick_cluster(cluster), output_watch_events,
           first=not watch_only, tables=output is None or output == "wide"
           or (output or "").startswith("custom-columns"))


def _watch(printer: Any, groups: list[Any], query: Query, cluster: str, events: bool, *,
           first: bool, tables: bool) -> None:
    """Print the list, then every object that is added, changed or removed, until Ctrl-C."""
    from podnet import state as lab_state
    from podnet.objects.reads import LiveReads

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C ends a watch even when started with SIGINT ignored (a background job, a test).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    widths = {g.singular: printer.widths(g, events) for g in groups} if tables else {}

    def ident(o: dict[str, Any]) -> str:
        return f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"

    def state(gs: list[Any]) -> dict[tuple[str, str], tuple[dict[str, Any], str]]:
        out = {}
        for g in gs:
            for o in g.objects:
                out[(g.singular, ident(o))] = (o, printer.rows(g, [o], None, None))
        return out

    seen = state(groups)
    try:
        if first and tables:
            click.echo("\n".join(printer.header(g, events) for g in groups[:1]))
        if first:
            for g in groups:
                if g.objects:
                    ev = ["ADDED"] * len(g.objects) if events else None
                    click.echo(printer.rows(g, g.objects, ev, widths.get(g.singular)))
        while True:
            time.sleep(WATCH_INTERVAL)
            record = lab_state.load(cluster)
            now_groups = [] if record is None else _groups(
                find_objects(record, Query(query.kinds, [], query.namespace, query.selector, None,
                                     query.wide), LiveReads()), query)
            if query.names:
                for g in now_groups:
                    g.objects[:] = [o for o in g.objects if o["metadata"]["name"] in query.names]
            now = state(now_groups)
            by_kind = {g.singular: g for g in [*groups, *now_groups]}
            for key in [*now, *(k for k in seen if k not in now)]:
                before, after = seen.get(key), now.get(key)
                if after is not None and before is not None and before[1] == after[1]:
                    continue
                event = "ADDED" if before is None else "DELETED" if after is None else "MODIFIED"
                obj = (after or before)[0]  # type: ignore[index]
                group = by_kind[key[0]]
                click.echo(printer.rows(group, [obj], [event] if events else None,
                                        widths.get(key[0])))
            seen = now
    except KeyboardInterrupt:
        return
