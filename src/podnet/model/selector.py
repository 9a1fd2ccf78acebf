"""Kubernetes label selectors: kubectl's `-l` text, parsed as kubectl parses it, and matched.

    app=web, tier!=db            equality (`=`, `==`) and inequality
    env in (prod, staging)       set-based: in, notin
    app, !canary                 the key exists, the key does not exist
    replicas>2, replicas<5       integer comparisons (as kubectl accepts them)

Requirements are ANDed. As in Kubernetes, `!=` and `notin` also match objects without the key.
A NetworkPolicy's `matchLabels` and `matchExpressions` are the same requirements (`Requirement`
with the operators In, NotIn, Exists, DoesNotExist). Pure; no imports beyond model.naming.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from podnet.model.naming import bad_label_key, bad_label_value

__all__ = ["Requirement", "Selector", "SelectorError", "parse_selector"]

OPERATORS = ("=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt")


class SelectorError(ValueError):
    """The selector text is not one Kubernetes accepts."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!" (does not exist), "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key, "")
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(self.values[0])
        return has and (number > bound if self.op == "gt" else number < bound)

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        symbol = {"gt": ">", "lt": "<"}.get(self.op, self.op)
        return f"{self.key}{symbol}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# key, then an operator, then a value or a (set); commas inside parentheses belong to the set.
_TOKEN = re.compile(r"\s*(\(|\)|,|==|!=|=|!|<|>|[^\s(),=!<>]+)")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip():
                raise SelectorError(f"cannot read {text[pos:]!r}")
            break
        out.append(m.group(1))
        pos = m.end()
    return out


def _check_key(key: str, text: str) -> str:
    problem = bad_label_key(key)
    if problem:
        raise SelectorError(f"{text!r}: {problem}")
    return key


def _check_value(value: str, text: str) -> str:
    problem = bad_label_value(value)
    if problem:
        raise SelectorError(f"{text!r}: {problem}")
    return value


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ""

    def take(self) -> str:
        token = self.peek()
        self.pos += 1
        return token

    def requirement(self) -> Requirement:
        word = self.take()
        if word == "!":
            return Requirement(_check_key(self.take(), self.text), "!")
        key = _check_key(word, self.text)
        op = self.peek()
        if op in ("", ","):
            return Requirement(key, "exists")
        self.take()
        if op in ("=", "==", "!="):
            value = self.peek() if self.peek() not in (",", ")", "(") else ""
            if value:
                self.take()
            return Requirement(key, "!=" if op == "!=" else "=", (_check_value(value, self.text),))
        if op in ("<", ">"):
            value = self.take()
            if not re.fullmatch(r"-?\d+", value):
                raise SelectorError(f"{self.text!r}: {key}{op} needs an integer, not {value!r}")
            return Requirement(key, "gt" if op == ">" else "lt", (value,))
        if op in ("in", "notin"):
            return Requirement(key, op, self.value_set(key, op))
        raise SelectorError(f"{self.text!r}: {op!r} after {key!r} is not an operator "
                            "(use =, ==, !=, in, notin, <, > or nothing)")

    def value_set(self, key: str, op: str) -> tuple[str, ...]:
        if self.take() != "(":
            raise SelectorError(f"{self.text!r}: `{key} {op}` needs a set in parentheses")
        values: list[str] = []
        while True:
            word = self.take()
            if word == ")":
                break
            if not word:
                raise SelectorError(f"{self.text!r}: the set after `{key} {op}` is not closed")
            if word != ",":
                values.append(_check_value(word, self.text))
        if not values:
            raise SelectorError(f"{self.text!r}: `{key} {op}` needs at least one value")
        return tuple(sorted(set(values)))


def parse_selector(text: str) -> Selector:
    """Parse kubectl's `-l` text; an empty text selects everything."""
    reader = _Reader(text)
    requirements = []
    while reader.peek():
        requirements.append(reader.requirement())
        after = reader.take()
        if after not in ("", ","):
            raise SelectorError(f"{text!r}: expected ',' before {after!r}")
        if after == "," and not reader.peek():
            raise SelectorError(f"{text!r}: a requirement is missing after the last ','")
    return Selector(tuple(requirements))
