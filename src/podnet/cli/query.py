"""What `get` and `describe` look for: kinds, names, a namespace, a label selector, an order;
and the lab's objects that match. Shared by both commands (and their shell completion)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from podnet.errors import StateError

__all__ = [
    "Query",
    "complete_kinds",
    "complete_names",
    "find_objects",
    "parse_kinds",
    "selector_option",
]


def complete_kinds(ctx: click.Context, param: click.Parameter,
                    incomplete: str) -> list[click.shell_completion.CompletionItem]:
    from click.shell_completion import CompletionItem

    from podnet.objects.kinds import all_kinds

    head, _, last = incomplete.rpartition(",")
    prefix = head + "," if head else ""
    return [CompletionItem(prefix + k.name) for k in all_kinds() if k.name.startswith(last)]


def complete_names(ctx: click.Context, param: click.Parameter,
                   incomplete: str) -> list[click.shell_completion.CompletionItem]:
    """Names of the lab's objects of the kind on the line (in the -n namespace when given)."""
    from click.shell_completion import CompletionItem

    from podnet.cli.context import record_for
    from podnet.objects.kinds import kind_named

    kind = kind_named(str(ctx.params.get("kinds") or "").split(",")[0].split("/")[0])
    record = record_for(ctx)
    if kind is None or record is None:
        return []
    namespace = ctx.params.get("namespace")
    lay = record.layout
    names = {"pods": [p.name for p in lay.pods if namespace in (None, p.namespace)],
             "nodes": [n.name for n in lay.nodes],
             "services": [s.name for s in lay.services if namespace in (None, s.namespace)],
             }.get(kind.name, [])
    return [CompletionItem(n) for n in sorted(set(names)) if n.startswith(incomplete)]


def selector_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from podnet.model.selector import SelectorError, parse_selector

    try:
        return parse_selector(value)
    except SelectorError as exc:
        raise click.BadParameter(str(exc)) from None


@dataclass(frozen=True)
class Query:
    kinds: list[Any]  # podnet.objects.kinds.Kind
    names: list[str]
    namespace: str | None
    selector: Any  # podnet.model.selector.Selector | None
    sort_by: str | None
    wide: bool

    @property
    def single(self) -> bool:
        return len(self.kinds) == 1 and len(self.names) == 1


def parse_kinds(text: str, names: Sequence[str]) -> tuple[list[Any], list[str]]:
    """`pods`, `pods,svc`, `pod/jumpbox` (kubectl's TYPE/NAME), with any NAMEs after it."""
    from podnet.objects.kinds import all_kinds, kind_named

    names = list(names)
    if "/" in text:
        text, _, first = text.partition("/")
        names.insert(0, first)
    kinds = []
    for word in text.split(","):
        kind = kind_named(word)
        if kind is None:
            known = ", ".join(f"{k.name} ({'/'.join(k.names[1:])})" for k in all_kinds())
            raise click.BadParameter(f"the lab has no resource type {word!r}; it has {known}",
                                     param_hint="KIND")
        kinds.append(kind)
    if names and len(kinds) > 1:
        raise click.BadParameter("name objects of one kind at a time (as kubectl does)",
                                 param_hint="NAME")
    return kinds, names


def _sort_key(path: str) -> Any:
    from podnet.render.jsonpath import jsonpath_values

    def key(obj: dict[str, Any]) -> tuple[int, Any]:
        values = jsonpath_values(path, obj)
        if not values:
            return (2, "")
        v = values[0]
        if isinstance(v, int | float) and not isinstance(v, bool):
            return (0, v)
        text = v if isinstance(v, str) else str(v)
        return (1, _natural(text))

    return key


def _natural(text: str) -> Any:
    """Addresses and numbered names sort as people count: 10.244.1.10 after 10.244.1.9."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(text.split("/", maxsplit=1)[0])
        return (0, ip.version, int(ip), text)
    except ValueError:
        return (1, 0, 0, text)


def find_objects(record: Any, query: Query, reads: Any) -> list[tuple[Any, list[dict[str, Any]]]]:
    found = []
    for kind in query.kinds:
        objects = kind.collect(record, reads)
        if kind.namespaced and query.namespace is not None:
            objects = [o for o in objects if o["metadata"]["namespace"] == query.namespace]
        if query.selector is not None:
            objects = [o for o in objects
                       if query.selector.matches(o["metadata"].get("labels") or {})]
        if query.names:
            by_name: dict[str, list[dict[str, Any]]] = {}
            for o in objects:
                by_name.setdefault(o["metadata"]["name"], []).append(o)
            missing = [n for n in query.names if n not in by_name]
            if missing:
                where = f" in namespace {query.namespace}" if query.namespace else ""
                raise StateError(
                    f"{kind.singular} {', '.join(repr(n) for n in missing)} not found{where}",
                    hint=f"list them with `podnet get {kind.name}`"
                    + ("" if query.namespace or not kind.namespaced else " -A"))
            objects = [o for n in query.names for o in by_name[n]]
        if query.sort_by:
            objects.sort(key=_sort_key(query.sort_by))
        found.append((kind, objects))
    return found
