"""Frozen model dataclasses to JSON and back, by their type annotations. Pure.

The lab's record keeps what `up` applied (NetworkPolicies, namespaces' labels...) so that later
commands judge the running lab by it. Those objects nest deeply; writing a hand-made encoder and
decoder for each would be a second description of each type that drifts from it. Instead the
annotations drive both directions:

    tuple[X, ...] <-> list      X | None <-> value or null      Literal / str / int <-> itself
    IPv4Network | IPv6Network, IPv4Address | IPv6Address, ... <-> their text
    a dataclass <-> an object of its fields (fields left at their defaults are still written)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from functools import cache
from typing import Any, TypeVar, cast

__all__ = ["from_json", "to_json"]

T = TypeVar("T")
_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
             ipaddress.IPv6Network, ipaddress.IPv4Interface, ipaddress.IPv6Interface)


def to_json(value: object) -> Any:
    """A JSON-ready form of `value` (a dataclass, tuple, address or plain value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, _IP_TYPES):
        return str(value)
    return value


def from_json(cls: type[T], data: Any) -> T:
    """Rebuild a `cls` that `to_json` wrote; ValueError/TypeError/KeyError when it does not fit."""
    return cast(T, _decode(cls, data))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(kind: Any, data: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        return _tuple(typing.get_args(kind), data)
    if origin in (typing.Union, types.UnionType):
        return _union(typing.get_args(kind), data)
    if origin is typing.Literal:
        if data not in typing.get_args(kind):
            raise ValueError(f"{data!r} is not one of {typing.get_args(kind)}")
        return data
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _dataclass(kind, data)
    if kind in _IP_TYPES:
        return kind(data)
    return _plain(kind, data)


def _tuple(args: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_decode(args[0], item) for item in _list(data))
    return tuple(_decode(a, item) for a, item in zip(args, _list(data), strict=True))


def _dataclass(kind: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"{kind.__name__} needs an object, not {type(data).__name__}")
    hints = _hints(kind)
    return kind(**{f.name: _decode(hints[f.name], data[f.name])
                   for f in dataclasses.fields(kind) if f.name in data})


def _plain(kind: Any, data: Any) -> Any:
    if kind is type(None):
        if data is not None:
            raise TypeError(f"{data!r} is not null")
        return None
    if kind not in (str, int, bool, float):
        raise TypeError(f"the record cannot hold a {kind!r}")
    if not isinstance(data, kind) or (kind is int and isinstance(data, bool)):
        raise TypeError(f"{data!r} is not a {kind.__name__}")
    return data


def _union(options: tuple[Any, ...], data: Any) -> Any:
    if data is None and type(None) in options:
        return None
    ips = [o for o in options if o in _IP_TYPES]
    if ips and isinstance(data, str):
        for option in ips:
            try:
                return option(data)
            except ValueError:
                continue
    for option in options:
        if option is type(None) or option in ips:
            continue
        try:
            return _decode(option, data)
        except (TypeError, ValueError, KeyError):
            continue
    raise ValueError(f"{data!r} fits none of {options}")


def _list(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise TypeError(f"a list was expected, not {type(data).__name__}")
    return data
