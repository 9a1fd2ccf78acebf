"""NetworkPolicy in a trace: when the evaluator stops at (or passes through) a rule that a
policy made, say in words which policy allowed the packet, or which isolation dropped it.

The rules carry comments naming their policy (`np dev/allow-web ingress[0]`); the sentence comes
from the policy engine's own verdict on the packet as the forward hook saw it (after a Service's
DNAT), so the words and the rules cannot disagree silently: where they do, the sentence says the
node's rules no longer match the policies as written.
"""

from __future__ import annotations

from collections.abc import Callable

from podnet.policy.comments import parse_comment
from podnet.policy.verdict import verdict
from podnet.policy.words import trace_sentence
from podnet.policy.world import World
from podnet.trace.nft_types import HookResult, Packet

__all__ = ["PolicyWords", "policy_words"]

PolicyWords = Callable[[Packet, HookResult], str | None]


def policy_words(world: World) -> PolicyWords:
    """What to say of a hook's result in a lab with these policies (None: nothing to say)."""

    def words(packet: Packet, result: HookResult) -> str | None:
        dropped = (result.rule.comment or None
                   if result.verdict in ("drop", "reject") and result.rule is not None else None)
        accepted = [rule.comment or None for rule in result.accepted_by]
        if not any(parse_comment(c) is not None for c in (dropped, *accepted)):
            return None
        v = verdict(world, packet.src, packet.dst, packet.dport, packet.proto.upper())
        return trace_sentence(v, dropped, accepted)

    return words
