"""kubectl's JSONPath templates (`-o jsonpath=...`, `--sort-by`, `custom-columns`), evaluated as
kubectl evaluates them. Pure; stdlib only.

A template is text with actions in braces: `{.metadata.name}`, `{.items[*].status.podIP}`,
`{.items[0]}`, slices `[1:3]` and `[-1:]`, `[*]` or `.*` over lists and maps, recursive `..name`,
unions `[0,2]`, bracketed keys `['app.kubernetes.io/name']` or `.a\\.b`, filters
`[?(@.status.phase=="Running")]` and `[?(@.spec.nodeName)]`, quoted text `{"\\n"}`, and
`{range .items[*]}...{end}`, which repeats its body for each value with `@` bound to it.

As kubectl does (`--allow-missing-template-keys` is on there by default), a missing key gives
nothing rather than an error; an index past the end of a list is an error. Several values of one
action print separated by a space; strings print as they are, other values as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JsonPathError", "Template", "jsonpath", "jsonpath_values"]


class JsonPathError(ValueError):
    """The template cannot be parsed, or cannot be applied to this document."""


# --- the parsed form -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str


@dataclass(frozen=True)
class _All:  # `*`, `[*]` on a map
    pass


@dataclass(frozen=True)
class _Descend:  # `..`
    pass


@dataclass(frozen=True)
class _Slice:
    start: int | None
    end: int | None
    step: int | None
    single: bool  # `[3]`: one index, the end derived from it


@dataclass(frozen=True)
class _Union:
    branches: tuple[tuple[_Op, ...], ...]


@dataclass(frozen=True)
class _Literal:
    value: Any  # a quoted string, a number or a boolean


@dataclass(frozen=True)
class _Filter:
    left: tuple[_Op, ...]
    op: str  # ==, !=, <, >, <=, >=, or "exists"
    right: tuple[_Op, ...] = ()


_Op = _Field | _All | _Descend | _Slice | _Union | _Literal | _Filter


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    ops: tuple[_Op, ...]


@dataclass
class _Range:
    ops: tuple[_Op, ...]
    body: list[_Node] = field(default_factory=list)


_Node = _Text | _Action | _Range

# --- parsing -------------------------------------------------------------------------------------

_TERMINATORS = set(" \t\r\n.,[]$@{}")
_SLICE = re.compile(r"^(-?\d*)(?::(-?\d*))?(?::(-?\d*))?$")
_COMPARE = re.compile(r"^([^!<>=]+)([!<>=]+)(.+?)$")
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> JsonPathError:
        return JsonPathError(f"{message} in {self.text!r} at character {self.pos + 1}")

    def template(self) -> list[_Node]:
        root: list[_Node] = []
        stack: list[list[_Node]] = [root]
        while self.pos < len(self.text):
            brace = self.text.find("{", self.pos)
            if brace < 0:
                stack[-1].append(_Text(self.text[self.pos:]))
                break
            if brace > self.pos:
                stack[-1].append(_Text(self.text[self.pos:brace]))
            self.pos = brace + 1
            ops, word = self.action()
            if word == "range":
                node = _Range(ops)
                stack[-1].append(node)
                stack.append(node.body)
            elif word == "end":
                if len(stack) == 1:
                    raise self.error("{end} without {range}")
                stack.pop()
            elif ops:
                stack[-1].append(_Action(ops))
        if len(stack) > 1:
            raise JsonPathError(f"{{range}} without {{end}} in {self.text!r}")
        return root

    def action(self) -> tuple[tuple[_Op, ...], str]:
        """The ops of one `{...}` (the cursor is past the brace), and `range`/`end` if named."""
        ops: list[_Op] = []
        word = ""
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] in "\r\n":
                raise self.error("unclosed action")
            c = self.text[self.pos]
            if c == "}":
                self.pos += 1
                return tuple(ops), word
            if c in "+-" or c.isalnum() or c == "_":
                named = self.scalar(ops)
                if named:
                    if word:
                        raise self.error(f"{word} and {named} in one action")
                    word = named
            else:
                self.path_step(c, ops)

    def path_step(self, c: str, ops: list[_Op]) -> None:
        if self.text.startswith("[?(", self.pos):
            ops.append(self.filter())
        elif self.text.startswith("..", self.pos):
            if ops and isinstance(ops[-1], _Descend):
                raise self.error("two recursive descents in a row")
            self.pos += 2
            ops.append(_Descend())
            if self.pos < len(self.text) and self.text[self.pos].isalnum():
                ops.append(self.field())
        elif c in " \t@$":
            self.pos += 1
        elif c == "[":
            ops.append(self.bracket())
        elif c in "\"'":
            ops.append(_Literal(self.quoted(c)))
        elif c == ".":
            self.pos += 1
            ops.append(self.field())
        else:
            raise self.error(f"unexpected character {c!r}")

    def scalar(self, ops: list[_Op]) -> str:
        """A number or true/false (appended to `ops`), or the word range or end (returned)."""
        c = self.text[self.pos]
        if c in "+-" or c.isdigit():
            m = _NUMBER.match(self.text, self.pos)
            if m is None:
                raise self.error(f"cannot read a number at {c!r}")
            self.pos = m.end()
            number = m.group(0)
            ops.append(_Literal(float(number) if "." in number else int(number)))
            return ""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _TERMINATORS:
            self.pos += 1
        name = self.text[start:self.pos]
        if name in ("true", "false"):
            ops.append(_Literal(name == "true"))
            return ""
        if name in ("range", "end"):
            return name
        raise self.error(f"unknown word {name!r} (only range and end are known)")

    def field(self) -> _Op:
        start = self.pos
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\":
                self.pos += 2
                continue
            if c in _TERMINATORS:
                break
            self.pos += 1
        name = self.text[start:self.pos].replace("\\", "")
        return _All() if name == "*" else _Field(name)

    def quoted(self, quote: str) -> str:
        start = self.pos
        self.pos += 1
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise self.error("unterminated quoted text")
            if self.text[self.pos] == quote and self.text[self.pos - 1] != "\\":
                break
            self.pos += 1
        self.pos += 1
        body = self.text[start + 1:self.pos - 1]

        def unescape(m: re.Match[str]) -> str:
            if m.group(1) not in _ESCAPES:
                raise self.error(f"unknown escape \\{m.group(1)} in {body!r}")
            return _ESCAPES[m.group(1)]

        return re.sub(r"\\(.)", unescape, body)

    def bracket(self) -> _Op:
        end = self.text.find("]", self.pos)
        if end < 0 or "\n" in self.text[self.pos:end]:
            raise self.error("unterminated [")
        inner = self.text[self.pos + 1:end]
        self.pos = end + 1
        return _bracket(inner, self.error)

    def filter(self) -> _Filter:
        self.pos += 3
        start = self.pos
        quote = ""
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise self.error("unterminated filter")
            c = self.text[self.pos]
            if quote:
                if c == quote and self.text[self.pos - 1] != "\\":
                    quote = ""
            elif c in "\"'":
                quote = c
            elif c == ")":
                break
            self.pos += 1
        body = self.text[start:self.pos]
        self.pos += 1
        if self.text[self.pos:self.pos + 1] != "]":
            raise self.error("a filter ends with )]")
        self.pos += 1
        m = _COMPARE.match(body)
        if m is None:
            return _Filter(_expression(body), "exists")
        left, op, right = m.groups()
        if op not in ("==", "!=", "<", ">", "<=", ">="):
            raise self.error(f"unknown comparison {op!r}")
        return _Filter(_expression(left), op, _expression(right))


def _expression(text: str) -> tuple[_Op, ...]:
    ops, _word = _Parser(text.strip() + "}").action()
    return ops


def _bracket(inner: str, error: Callable[[str], JsonPathError]) -> _Op:
    text = ":" if inner == "*" else inner
    if "," in text:
        return _Union(tuple((_bracket(part.strip(), error),) for part in text.split(",")))
    key = re.fullmatch(r"'([^']*)'", text)
    if key:
        return _Field(key.group(1))
    m = _SLICE.match(text)
    if m is None:
        raise error(f"bad index [{inner}]")
    start, end, step = m.groups()
    if text == ":":
        return _Slice(None, None, None, single=False)
    if ":" not in text:
        return _Slice(int(start), None, None, single=True)
    return _Slice(int(start) if start else None, int(end) if end else None,
                  int(step) if step else None, single=False)


# --- evaluation ----------------------------------------------------------------------------------


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]  # Go ranges over map keys in no order: sort
    if isinstance(value, list):
        return list(value)
    return []


def _descend(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        kids = _children(v)
        if kids:
            out.append(v)
            out += _descend(kids)
    return out


def _slice(values: list[Any], s: _Slice) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v is None:
            continue
        if not isinstance(v, list):
            raise JsonPathError(f"{json.dumps(v)[:60]} is not a list: it cannot be indexed")
        n = len(v)
        start = 0 if s.start is None else s.start + (n if s.start < 0 else 0)
        end = n if s.end is None else s.end + (n if s.end < 0 else 0)
        if s.single:
            end = start + 1
        if start != end and (start >= n or end > n or start < 0):
            raise JsonPathError(f"array index out of bounds: index {s.start}, length {n}")
        out += v[start:end:s.step]
    return out


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (left, right))
    if not numbers and not (isinstance(left, str) and isinstance(right, str)):
        raise JsonPathError(f"cannot compare {left!r} {op} {right!r}")
    return bool({"<": left < right, ">": left > right, "<=": left <= right,
                 ">=": left >= right}[op])


def _apply(ops: tuple[_Op, ...], values: list[Any]) -> list[Any]:
    for op in ops:
        if isinstance(op, _Field):
            values = [v[op.name] for v in values if isinstance(v, dict) and op.name in v]
        elif isinstance(op, _All):
            values = [c for v in values for c in _children(v)]
        elif isinstance(op, _Descend):
            values = _descend(values)
        elif isinstance(op, _Slice):
            values = _slice(values, op)
        elif isinstance(op, _Union):
            values = [r for branch in op.branches for r in _apply(branch, values)]
        elif isinstance(op, _Literal):
            values = [op.value for _ in values]
        else:
            values = _filter(op, values)
    return values


def _filter(f: _Filter, values: list[Any]) -> list[Any]:
    out = []
    for v in values:
        if not isinstance(v, list):
            raise JsonPathError(f"{json.dumps(v)[:60]} is not a list: it cannot be filtered")
        for item in v:
            if f.op == "exists":
                try:
                    found = _apply(f.left, [item])
                except JsonPathError:  # `[?(@.a[3])]` on a shorter list: it does not exist
                    found = []
                if found:
                    out.append(item)
                continue
            lefts = _apply(f.left, [item])
            rights = _apply(f.right, [item])
            if len(lefts) != 1 or len(rights) != 1:
                continue  # a missing key: nothing to compare, the item does not match
            if _compare(lefts[0], f.op, rights[0]):
                out.append(item)
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))  # compact, as Go's encoder writes it


class Template:
    """A parsed template; `render` and `values` apply it to a document."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = _Parser(text).template()

    def _run(self, nodes: list[_Node], doc: Any) -> Iterator[str | list[Any]]:
        for node in nodes:
            if isinstance(node, _Text):
                yield node.text
            elif isinstance(node, _Action):
                yield _apply(node.ops, [doc])
            else:
                for item in _apply(node.ops, [doc]):
                    yield from self._run(node.body, item)

    def render(self, doc: Any) -> str:
        return "".join(part if isinstance(part, str) else " ".join(_text(v) for v in part)
                       for part in self._run(self.nodes, doc))

    def values(self, doc: Any) -> list[Any]:
        """Every value the actions find (text between them left out): `jsonpath-as-json`,
        `--sort-by` and custom columns use these."""
        return [v for part in self._run(self.nodes, doc) if not isinstance(part, str)
                for v in part]


def jsonpath(template: str, document: Any) -> str:
    """`template` filled from `document`, as `kubectl get -o jsonpath=TEMPLATE` prints it."""
    return Template(template).render(document)


def jsonpath_values(expression: str, document: Any) -> list[Any]:
    """The values one expression finds; braces are optional (`.a.b` or `{.a.b}`)."""
    text = expression if "{" in expression else "{" + expression + "}"
    return Template(text).values(document)
