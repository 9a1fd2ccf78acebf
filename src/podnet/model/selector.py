"""kubectl's `-l` text, parsed as kubectl parses it, into a Kubernetes label selector.

    app=web, tier!=db            equality (`=`, `==`) and inequality
    env in (prod, staging)       set-based: in, notin
    app, !canary                 the key exists, the key does not exist

Requirements are ANDed; `!=` and `notin` also match objects without the key. The result is the
`LabelSelector` of `model.policies`, the one definition of what a selector matches (a
NetworkPolicy's `matchLabels` and `matchExpressions` are the same thing). kubectl's integer
comparisons (`replicas>2`) have no place there and are refused with a hint.
"""

from __future__ import annotations

import re

from podnet.model.naming import bad_label_key, bad_label_value
from podnet.model.policies import LabelSelector, Requirement

__all__ = ["SelectorError", "parse_selector"]


class SelectorError(ValueError):
    """The selector text is not one Kubernetes accepts."""


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

    def requirement(self) -> tuple[str, str] | Requirement:
        """`(key, value)` for an equality, else a set-based requirement."""
        word = self.take()
        if word == "!":
            return Requirement(_check_key(self.take(), self.text), "DoesNotExist")
        key = _check_key(word, self.text)
        op = self.peek()
        if op in ("", ","):
            return Requirement(key, "Exists")
        self.take()
        if op in ("=", "==", "!="):
            value = self.peek() if self.peek() not in (",", ")", "(") else ""
            if value:
                self.take()
            value = _check_value(value, self.text)
            return Requirement(key, "NotIn", (value,)) if op == "!=" else (key, value)
        if op in ("<", ">"):
            raise SelectorError(f"{self.text!r}: {key}{op}... compares numbers, which label "
                                "selectors of Pods and NetworkPolicies cannot")
        if op in ("in", "notin"):
            return Requirement(key, "In" if op == "in" else "NotIn", self.value_set(key, op))
        raise SelectorError(f"{self.text!r}: {op!r} after {key!r} is not an operator "
                            "(use =, ==, !=, in, notin or nothing)")

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


def parse_selector(text: str) -> LabelSelector:
    """Parse kubectl's `-l` text; an empty text selects everything."""
    reader = _Reader(text)
    labels: list[tuple[str, str]] = []
    expressions: list[Requirement] = []
    while reader.peek():
        found = reader.requirement()
        if isinstance(found, Requirement):
            expressions.append(found)
        else:
            labels.append(found)
        after = reader.take()
        if after not in ("", ","):
            raise SelectorError(f"{text!r}: expected ',' before {after!r}")
        if after == "," and not reader.peek():
            raise SelectorError(f"{text!r}: a requirement is missing after the last ','")
    return LabelSelector(tuple(labels), tuple(expressions))
