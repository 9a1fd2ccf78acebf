"""The comments of the rules that enforce policies, written and read in one place.

    np dev/allow-web ingress[0]                          a rule of a policy allowed it
    np dev/demo-x ingress: isolated by dev/deny, ...     a pod's isolation dropped it
    np dev/demo-x egress: a pod may always reach itself

`nft list ruleset` shows them beside the rules; `trace` reads the one of the rule its evaluator
stopped at and, with the engine's verdict, says in words which policy decided.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from podnet.model.policies import Direction

__all__ = [
    "COMMENT_MAX",
    "RuleComment",
    "allow_comment",
    "fit",
    "isolated_comment",
    "parse_comment",
    "self_comment",
]

COMMENT_MAX = 128  # nft refuses longer comments
_KEY_ROOM = 72  # a namespace/name longer than this is cut, and a hash of it added
_WORDS: dict[str, Direction] = {"ingress": "Ingress", "egress": "Egress"}
_ALLOW = re.compile(r"np (\S+/\S+) (ingress|egress)\[(\d+)\]")
_ISOLATED = re.compile(r"np (\S+/\S+) (ingress|egress): isolated by (.*)")
_SELF = re.compile(r"np (\S+/\S+) (ingress|egress): a pod may always reach itself")


@dataclass(frozen=True)
class RuleComment:
    kind: Literal["allow", "isolated", "self"]
    subject: str  # the policy (allow) or the pod (isolated, self), as `fit` wrote it
    direction: Direction
    index: int | None = None  # the rule's index in the policy's list (allow)
    policies: tuple[str, ...] = ()  # the isolating policies the comment had room to name


def fit(key: str) -> str:
    """`namespace/name` as comments hold it: whole when short enough, else cut with a hash of
    the whole added (`dev/a-very-long-na~3f2a9c01de`), so that every comment fits nft's limit."""
    if len(key) <= _KEY_ROOM:
        return key
    return f"{key[: _KEY_ROOM - 11]}~{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def allow_comment(policy: str, direction: Direction, index: int) -> str:
    return f"np {fit(policy)} {direction.lower()}[{index}]"


def self_comment(pod: str, direction: Direction) -> str:
    return f"np {fit(pod)} {direction.lower()}: a pod may always reach itself"


def isolated_comment(pod: str, direction: Direction, policies: Sequence[str]) -> str:
    """Names as many of the isolating policies as fit in a comment, then how many more."""
    head = f"np {fit(pod)} {direction.lower()}: isolated by "
    names = [fit(p) for p in policies]
    for count in range(len(names), 0, -1):
        more = len(names) - count
        text = head + ", ".join(names[:count]) + (f", +{more} more" if more else "")
        if len(text.encode()) < COMMENT_MAX:
            return text
    return (head + f"{len(names)} policies")[: COMMENT_MAX - 1]


def parse_comment(comment: str | None) -> RuleComment | None:
    """The meaning of a policy rule's comment; None for any other comment."""
    if not comment:
        return None
    if found := _ALLOW.fullmatch(comment):
        return RuleComment("allow", found[1], _WORDS[found[2]], int(found[3]))
    if found := _SELF.fullmatch(comment):
        return RuleComment("self", found[1], _WORDS[found[2]])
    if found := _ISOLATED.fullmatch(comment):
        listed = tuple(n for n in found[3].split(", ") if "/" in n)
        return RuleComment("isolated", found[1], _WORDS[found[2]], None, listed)
    return None
