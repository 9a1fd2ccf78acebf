"""`podnet get -o ...`: one printer per output format, as kubectl has them. Pure.

`printer_for(text)` takes what follows `-o` and refuses anything kubectl would not print:
wide, json, yaml, name, jsonpath=T, jsonpath-file=F, jsonpath-as-json=T,
custom-columns=SPEC, custom-columns-file=F (and the default table). Each printer turns groups
of objects (one group per kind) into text; `rows` is what `--watch` prints for changed objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from podnet.render.columns import columns
from podnet.render.jsonpath import JsonPathError, Template, jsonpath_values

__all__ = [
    "FORMATS",
    "Group",
    "Printer",
    "Table",
    "parse_custom_columns",
    "printer_for",
]

Obj = dict[str, Any]
FORMATS = ("wide", "json", "yaml", "name", "jsonpath=TEMPLATE", "jsonpath-file=FILE",
           "jsonpath-as-json=TEMPLATE", "custom-columns=SPEC", "custom-columns-file=FILE")


@dataclass(frozen=True)
class Table:
    """What a kind shows in columns: headers, and one row of cells per object."""

    headers: list[str]
    rows: Callable[[Sequence[Obj]], list[list[str]]]


@dataclass(frozen=True)
class Group:
    """The objects of one kind, as `get` found them."""

    singular: str  # pod: `-o name` prints pod/NAME
    objects: list[Obj]
    table: Table


class Printer(Protocol):
    def render(self, groups: Sequence[Group], *, single: bool) -> str:
        """Everything at once; `single`: one object was named, so it is printed unwrapped."""
        ...

    def rows(self, group: Group, objects: Sequence[Obj], events: Sequence[str] | None,
             widths: list[int] | None) -> str:
        """Objects that changed, for `--watch` (with kubectl's EVENT column when asked)."""
        ...


def _document(groups: Sequence[Group], single: bool) -> Any:
    objects = [o for g in groups for o in g.objects]
    if single and len(objects) == 1:
        return objects[0]
    return {"apiVersion": "v1", "kind": "List", "items": objects}


def _event(obj: Obj, event: str | None) -> Any:
    return obj if event is None else {"type": event, "object": obj}


class _Json:
    def render(self, groups: Sequence[Group], *, single: bool) -> str:
        return json.dumps(_document(groups, single), indent=4)

    def rows(self, group: Group, objects: Sequence[Obj], events: Sequence[str] | None,
             widths: list[int] | None) -> str:
        return "\n".join(json.dumps(_event(o, events[i] if events else None), indent=4)
                         for i, o in enumerate(objects))


class _Yaml:
    @staticmethod
    def _dump(doc: Any) -> str:
        import yaml  # 25 ms: only when asked for

        return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)).rstrip("\n")

    def render(self, groups: Sequence[Group], *, single: bool) -> str:
        return self._dump(_document(groups, single))

    def rows(self, group: Group, objects: Sequence[Obj], events: Sequence[str] | None,
             widths: list[int] | None) -> str:
        return "\n".join("---\n" + self._dump(_event(o, events[i] if events else None))
                         for i, o in enumerate(objects))


class _Name:
    def render(self, groups: Sequence[Group], *, single: bool) -> str:
        return "\n".join(f"{g.singular}/{o['metadata']['name']}" for g in groups
                         for o in g.objects)

    def rows(self, group: Group, objects: Sequence[Obj], events: Sequence[str] | None,
             widths: list[int] | None) -> str:
        return "\n".join(f"{group.singular}/{o['metadata']['name']}" for o in objects)


@dataclass
class _JsonPath:
    template: Template
    as_json: bool = False

    def _one(self, doc: Any) -> str:
        try:
            if self.as_json:
                return json.dumps(self.template.values(doc), indent=4)
            return self.template.render(doc)
        except JsonPathError as exc:
            raise JsonPathError(f"error executing jsonpath {self.template.text!r}: {exc}") \
                from None

    def render(self, groups: Sequence[Group], *, single: bool) -> str:
        return self._one(_document(groups, single))

    def rows(self, group: Group, objects: Sequence[Obj], events: Sequence[str] | None,
             widths: list[int] | None) -> str:
        return "".join(self._one(o) for o in objects)


def _pad(rows: list[list[str]], widths: list[int] | None) -> str:
    if widths is None:
        return columns([""] * len(rows[0]), rows).split("\n", 1)[1] if rows else ""
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
                     for r in rows)


@dataclass
class _Columns:
    """The default table, `-o wide`, and custom columns: headers over aligned cells."""

    no_headers: bool = False
    show_labels: bool = False
    custom: list[tuple[str, str]] | None = None  # (header, JSONPath) for custom-columns

    def table(self, group: Group) -> Table:
        if self.custom is None:
            base = group.table
        else:
            spec = self.custom
            base = Table([h for h, _ in spec], lambda objs: [
                [_values_text(jsonpath_values(path, o)) for _, path in spec] for o in objs])
        if not self.show_labels:
            return base
        return Table([*base.headers, "LABELS"], lambda objs: [
            [*row, _labels(o)] for row, o in zip(base.rows(objs), objs, strict=True)])

    def render(self, groups: Sequence[Group], *, single: bool) -> str:
        parts = []
        for g in groups:
            if not g.objects:
                continue
            t = self.table(g)
            text = columns(t.headers, t.rows(g.objects))
            parts.append(text.split("\n", 1)[1] if self.no_headers else text)
        return "\n\n".join(parts)

    def widths(self, group: Group, events: bool) -> list[int]:
        t = self.table(group)
        cells = [t.headers, *t.rows(group.objects)]
        widths = [max(len(r[i]) for r in cells) for i in range(len(t.headers))]
        return [len("MODIFIED"), *widths] if events else widths

    def header(self, group: Group, events: bool) -> str:
        t = self.table(group)
        return _pad([[*(["EVENT"] if events else []), *t.headers]],
                    self.widths(group, events))

    def rows(self, group: Group, objects: Sequence[Obj], events: Sequence[str] | None,
             widths: list[int] | None) -> str:
        rows = self.table(group).rows(objects)
        if events is not None:
            rows = [[e, *r] for e, r in zip(events, rows, strict=True)]
        return _pad(rows, widths)


def _values_text(values: list[Any]) -> str:
    if not values:
        return "<none>"
    return ",".join(v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
                    for v in values)


def _labels(o: Obj) -> str:
    labels = o.get("metadata", {}).get("labels") or {}
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"


def parse_custom_columns(spec: str) -> list[tuple[str, str]]:
    """`NAME:.metadata.name,IP:.status.podIP` -> [(NAME, .metadata.name), (IP, ...)]."""
    out = []
    for part in spec.replace("\n", ",").split(","):
        if not part.strip():
            continue
        header, sep, path = part.strip().partition(":")
        if not sep or not header or not path:
            raise ValueError(f"custom-columns: {part!r} is not HEADER:JSONPATH")
        jsonpath_values(path, {})  # a bad expression fails now, not on the first object
        out.append((header, path))
    if not out:
        raise ValueError("custom-columns needs at least one HEADER:JSONPATH")
    return out


def _file_columns(text: str) -> list[tuple[str, str]]:
    """kubectl's custom-columns file: a line of headers over a line of JSONPaths."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) != 2 or len(lines[0]) != len(lines[1]):
        raise ValueError("a custom-columns file holds a line of headers and a line of paths")
    return parse_custom_columns(",".join(f"{h}:{p}" for h, p in zip(*lines, strict=True)))


def printer_for(output: str | None, *, no_headers: bool = False, show_labels: bool = False,
                read_file: Callable[[str], str] | None = None) -> Printer:
    """The printer `-o OUTPUT` names; ValueError (listing the formats) for anything else."""
    def load(path: str) -> str:
        if read_file is not None:
            return read_file(path)
        with open(path) as fh:
            return fh.read()

    simple: dict[str, Callable[[], Printer]] = {
        "": lambda: _Columns(no_headers, show_labels),
        "wide": lambda: _Columns(no_headers, show_labels),
        "json": _Json,
        "yaml": _Yaml,
        "name": _Name,
    }
    with_value: dict[str, Callable[[str], Printer]] = {
        "jsonpath": lambda arg: _JsonPath(Template(arg)),
        "jsonpath-as-json": lambda arg: _JsonPath(Template(arg), as_json=True),
        "jsonpath-file": lambda arg: _JsonPath(Template(load(arg).rstrip("\n"))),
        "custom-columns": lambda arg: _Columns(no_headers, False, parse_custom_columns(arg)),
        "custom-columns-file": lambda arg: _Columns(no_headers, False,
                                                    _file_columns(load(arg))),
    }
    if (output or "") in simple:
        return simple[output or ""]()
    fmt, sep, arg = (output or "").partition("=")
    if fmt in with_value:
        if not (sep and arg):
            raise ValueError(f"-o {fmt} needs a value: -o {fmt}=...")
        return with_value[fmt](arg)
    raise ValueError(f"unknown output format {output!r}; allowed: {', '.join(FORMATS)}")
