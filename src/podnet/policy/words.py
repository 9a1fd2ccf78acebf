"""Verdicts in words, for `trace`, `check` and `describe`:

    dropped: dev/demo-x is isolated for ingress by NetworkPolicy dev/default-deny-ingress, and
    no policy allows other/intruder on 80/tcp

`trace_sentence` joins the engine's verdict (why, from the policies as written) with the comment
of the rule the trace's nftables evaluator stopped at (what the kernel's rules did), and says so
when the two disagree: rules older than the policies, until the next `podnet up`.
"""

from __future__ import annotations

from collections.abc import Sequence

from podnet.policy.comments import fit, parse_comment
from podnet.policy.verdict import Side, Verdict

__all__ = ["side_sentence", "trace_sentence", "verdict_sentence"]

STALE = "the node's rules differ from the policies as written: `podnet up` applies them"


def _names(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _policies(keys: Sequence[str]) -> str:
    return f"NetworkPolic{'ies' if len(keys) > 1 else 'y'} {_names(keys)}"


def _peer_phrase(v: Verdict, side: Side) -> str:
    """`other/intruder on 80/tcp` (ingress), or `it to reach 198.51.100.100 on 80/tcp`."""
    if side.direction == "Ingress":
        return f"{v.src.label} on {v.what()}"
    return f"it to reach {v.dst.label} on {v.what()}"


def side_sentence(v: Verdict, side: Side) -> str:
    """What one end's policies say about the connection, as a sentence without a verdict word."""
    word = side.direction.lower()
    if side.reason == "no-pod":
        end = "source" if side.direction == "Egress" else "destination"
        return f"the {end} is no pod: no {word} policy applies"
    if side.reason == "self":
        return f"{side.pod} may always reach itself"
    if side.reason == "node":
        return f"traffic between {side.pod} and its own node is always allowed"
    if side.reason == "not-isolated":
        return f"{side.pod} is not isolated for {word}: no NetworkPolicy selects it for {word}"
    if side.reason == "allowed":
        more = len(side.allowed_by) - 1
        also = f" (and {more} more rule{'s' if more > 1 else ''})" if more else ""
        return f"NetworkPolicy {side.allowed_by[0].text()} allows it{also}"
    return (f"{side.pod} is isolated for {word} by {_policies(side.isolated_by)}, and no policy "
            f"allows {_peer_phrase(v, side)}")


def verdict_sentence(v: Verdict) -> str:
    """`allowed: ...` or `dropped: ...`, from the side that decided."""
    denied = v.denied_by
    if denied is not None:
        return f"dropped: {side_sentence(v, denied)}"
    # The more telling side: a rule that allowed it, else the destination's.
    side = next((s for s in (v.ingress, v.egress) if s.reason == "allowed"), v.ingress)
    return f"allowed: {side_sentence(v, side)}"


def trace_sentence(
    v: Verdict, dropped_at: str | None, accepted_at: Sequence[str | None] = ()
) -> str | None:
    """The words for a traced packet: `dropped_at` is the comment of the rule the evaluator
    stopped at when it dropped the packet (None if it passed), `accepted_at` those of the rules
    whose accept ended each base chain. None when no comment is a policy rule's (the caller
    then describes the rules themselves)."""
    found = parse_comment(dropped_at)
    if found is not None and found.kind == "isolated":
        side = v.ingress if found.direction == "Ingress" else v.egress
        if side.pod is not None and fit(side.pod) == found.subject and not side.allowed:
            return f"dropped: {side_sentence(v, side)}"
        word = found.direction.lower()
        by = _policies(found.policies) if found.policies else "its policies"
        return f"dropped: {found.subject} is isolated for {word} by {by} ({STALE})"
    if dropped_at is not None:
        return None
    rules: list[str] = []
    itself = ""
    stale = False
    for comment in accepted_at:
        found = parse_comment(comment)
        if found is None:
            continue
        side = v.ingress if found.direction == "Ingress" else v.egress
        if found.kind == "self":
            itself = f"{found.subject} may always reach itself"
            stale = stale or side.reason != "self"
            continue
        rule = f"{found.subject} {found.direction.lower()}[{found.index}]"
        rules.append(f"NetworkPolicy {rule}")
        stale = stale or not any(fit(a.policy) == found.subject and a.index == found.index
                                 and a.direction == found.direction for a in side.allowed_by)
    if not rules and not itself:
        return None
    text = f"allowed by {', then by '.join(rules)}" if rules else f"allowed: {itself}"
    return f"{text} ({STALE})" if stale else text
