"""The registry of kinds `get` and `describe` know. A kind is one `Kind` in a module of its own;
adding one (NetworkPolicies) is one module plus one line in `_MODULES`."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from podnet.objects.reads import KernelReads
from podnet.state import LabState

__all__ = ["Column", "Kind", "Obj", "all_kinds", "kind_named", "register"]

Obj = dict[str, Any]  # one object in kubectl's JSON shape: kind, metadata, spec, status, ...

# Modules that each register one kind, in the order `podnet get -h` lists them.
_MODULES = (
    "podnet.objects.pods",
    "podnet.objects.nodes",
    "podnet.objects.services",
    "podnet.objects.links",
    "podnet.objects.networkpolicies",
)


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Obj], object]
    wide: bool = False  # only with `-o wide`
    # What the column shows with `-o wide`, when more than by default (every family's
    # addresses where the default, as kubectl's, shows the first).
    wide_value: Callable[[Obj], object] | None = None

    def cell(self, obj: Obj, *, wide: bool) -> object:
        return (self.wide_value if wide and self.wide_value else self.value)(obj)


@dataclass(frozen=True)
class Kind:
    name: str  # plural, as `kubectl get` names it: pods
    singular: str  # pod: `-o name` prints pod/NAME
    kind: str  # Pod: the objects' `kind`
    aliases: tuple[str, ...]  # po
    namespaced: bool
    columns: tuple[Column, ...]
    # The lab's objects of this kind. The views read the kernel only through `reads`.
    collect: Callable[[LabState, KernelReads], list[Obj]]
    # `describe`: a pure function of the record, one object and the kernel's answers, giving
    # an ordered mapping of sections (str, list or nested mapping) that people read.
    describe: Callable[[LabState, Obj, KernelReads], Mapping[str, Any]] | None = None
    help: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, self.singular, *self.aliases)

    def table(self, objects: Sequence[Obj], *, wide: bool) -> tuple[list[str], list[list[str]]]:
        shown = [c for c in self.columns if wide or not c.wide]
        return ([c.header for c in shown],
                [[_cell(c.cell(o, wide=wide)) for c in shown] for o in objects])


def _cell(value: object) -> str:
    if value is None or value == "":
        return "<none>"
    return str(value)


_REGISTRY: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    for name in kind.names:
        if name in _REGISTRY and _REGISTRY[name] is not kind:
            raise ValueError(f"two kinds are called {name!r}")
        _REGISTRY[name] = kind
    return kind


def _load() -> None:
    if not _REGISTRY:
        for module in _MODULES:
            importlib.import_module(module)


def all_kinds() -> list[Kind]:
    _load()
    seen: dict[str, Kind] = {}
    for kind in _REGISTRY.values():
        seen.setdefault(kind.name, kind)
    return list(seen.values())


def kind_named(name: str) -> Kind | None:
    """The kind called `name` (plural, singular or short name, any case), or None."""
    _load()
    return _REGISTRY.get(name.lower())
