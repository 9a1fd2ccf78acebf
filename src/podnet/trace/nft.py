"""What a namespace's nftables rules do to one new packet: pure, from `nft -j list ruleset`.

The tracer asks, at each netfilter hook a packet passes (prerouting, input, forward, output,
postrouting), which base chains of the `ip` and `inet` tables see it, in priority order, and walks
their rules as the kernel would for the first packet of a connection: matches on addresses,
ports, protocol and interface names, named and anonymous sets, verdict maps (kube-proxy's
`ip daddr . meta l4proto . th dport vmap @service-ips`), `numgen random` load spreading, jumps,
gotos and returns, and the NAT statements dnat, snat, masquerade and redirect.

iptables-nft's `xt` expressions (kube-proxy's iptables mode) are evaluated by `nft_xt`, from the
options iptables-nft-save prints for them. An expression podnet cannot evaluate (a rate limit,
an xt match without its options) makes its rule "not evaluated": the walk goes on as if it did
not match and says so in `notes`, so the answer is never silently wrong.

This module walks chains and rules; the data is in `nft_types`, the expression evaluator
in `nft_values`, and rules as `nft list` prints them in `nft_text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from podnet.trace.nft_inet import family_of
from podnet.trace.nft_text import rule_text
from podnet.trace.nft_types import (
    HookContext,
    HookResult,
    Nat,
    Packet,
    RuleRef,
    Ruleset,
    apply_nat,
)
from podnet.trace.nft_values import (
    NOMATCH,
    RuleWalk,
    Unknown,
    elements_of,
    is_in,
    matches,
    value_of,
)
from podnet.trace.nft_xt import binding, evaluate_xt

__all__ = [
    "HookContext",
    "HookResult",
    "Nat",
    "Packet",
    "RuleRef",
    "Ruleset",
    "apply_nat",
    "evaluate",
    "rule_text",
]

_MAX_DEPTH = 32  # nft itself refuses jump chains deeper than 16


@dataclass(frozen=True)
class _Outcome:
    kind: Literal["accept", "drop", "reject", "return", "next"]
    rule: RuleRef | None = None


def evaluate(
    objects: Iterable[Mapping[str, Any]] | Ruleset, ctx: HookContext, packet: Packet, *,
    pick: int = 0, prefer: str | None = None,
) -> HookResult:
    """The fate of `packet` (the first of its connection) at hook `ctx.hook`.

    Where rules spread connections at random (numgen), the branch that DNATs to `prefer` is
    followed if there is one, else branch `pick`."""
    rules = objects if isinstance(objects, Ruleset) else Ruleset(objects)
    walk = RuleWalk(rules, ctx, packet, pick=pick, mark=ctx.mark, prefer=prefer)
    seen: list[str] = []
    accepted: list[RuleRef] = []
    for key in rules.base_chains(ctx.hook, family_of(packet)):
        family, table, chain = key
        if ctx.ct_state != "new" and rules.chains[key].get("type") == "nat":
            continue  # conntrack applies the connection's NAT to later packets by itself
        seen.append(f"{family} {table} {chain}")
        outcome = _run_chain(walk, key, 0)
        if outcome.kind in ("drop", "reject"):
            return HookResult(outcome.kind, walk.packet, outcome.rule, tuple(walk.nat),
                              tuple(seen), tuple(walk.notes), walk.mark, tuple(accepted))
        if outcome.kind == "accept" and outcome.rule is not None:
            accepted.append(outcome.rule)
        if outcome.kind in ("return", "next"):  # fell off the end: the chain's policy decides
            policy = rules.chains[key].get("policy", "accept")
            if policy == "drop":
                ref = RuleRef(family, table, chain, None, "policy drop")
                return HookResult("drop", walk.packet, ref, tuple(walk.nat), tuple(seen),
                                  tuple(walk.notes), walk.mark, tuple(accepted))
    return HookResult("accept", walk.packet, None, tuple(walk.nat), tuple(seen),
                      tuple(walk.notes), walk.mark, tuple(accepted))


def _run_chain(walk: RuleWalk, key: tuple[str, str, str], depth: int) -> _Outcome:
    if depth > _MAX_DEPTH:
        walk.notes.append(f"chain {key[2]}: jumps nest deeper than {_MAX_DEPTH}; stopped there")
        return _NEXT
    for rule in walk.objects.rules.get(key, []):
        outcome = _run_rule(walk, key, rule, depth)
        if outcome.kind != "next":
            return outcome
    return _NEXT


def _ref(rules: Ruleset, key: tuple[str, str, str], rule: Mapping[str, Any]) -> RuleRef:
    """The rule for people: iptables' own words for an iptables-nft rule, else nft's."""
    bound = binding(rules, key, rule)
    if bound is not None:
        return RuleRef(key[0], key[1], key[2], rule.get("handle"), bound[0].line,
                       bound[0].comment)
    return RuleRef(key[0], key[1], key[2], rule.get("handle"), rule_text(rule.get("expr") or []),
                   str(rule.get("comment") or ""))


_NEXT = _Outcome("next")
_VERDICTS = ("accept", "drop", "reject", "return")


def _run_rule(
    walk: RuleWalk, key: tuple[str, str, str], rule: Mapping[str, Any], depth: int
) -> _Outcome:
    """Expressions left to right: a failed match ends the rule, a verdict ends the chain."""
    ref = _ref(walk.objects, key, rule)
    xt_seen = 0
    for expr in rule.get("expr") or []:
        if not isinstance(expr, dict) or len(expr) != 1:
            continue
        (name, body), = expr.items()
        if name == "xt":
            xt_seen += 1
            outcome = _xt(walk, key, rule, xt_seen - 1, body, ref, depth)
            if outcome is not None:
                return outcome
            continue
        if name == "match":
            hit = matches(walk, body, key[:2])
            if isinstance(hit, Unknown):
                walk.notes.append(f"{ref.where()} handle {ref.handle}: `{ref.text}` not "
                                  f"evaluated ({hit.what}); assumed not to match")
            if hit is not True:
                return _NEXT
            continue
        outcome = _statement(walk, key, name, body, ref, depth)
        if outcome is not None:
            return outcome
    return _NEXT


def _statement(walk: RuleWalk, key: tuple[str, str, str], name: str, body: Any, ref: RuleRef,
               depth: int) -> _Outcome | None:
    """One statement's effect: an outcome that ends the rule, or None to go on with it."""
    if name in _VERDICTS or name in ("jump", "goto"):
        return _verdict_of(walk, key, {name: body}, ref, depth)
    if name == "vmap":
        return _vmap(walk, key, body, ref, depth)
    if name in ("dnat", "snat", "masquerade", "redirect"):
        _nat(walk, key, name, body or {}, ref)
        return _Outcome("accept", ref)  # NAT statements end the chain, as an accept
    if name == "mangle":
        _mangle(walk, body, ref)
    # counter, log, limit, ct set, notrack...: no effect on the path.
    return None


def _xt(walk: RuleWalk, key: tuple[str, str, str], rule: Mapping[str, Any], ordinal: int,
        body: Mapping[str, Any], ref: RuleRef, depth: int) -> _Outcome | None:
    """An iptables-nft expression, by `nft_xt`: None goes on with the rule."""
    def trial(w: RuleWalk, verdict: Mapping[str, Any]) -> list[Nat]:
        probe = RuleWalk(w.objects, w.ctx, w.packet, pick=w.pick, mark=w.mark)
        _verdict_of(probe, key, verdict, ref, depth)
        return probe.nat

    effect = evaluate_xt(walk, key, rule, ordinal, ref, trial)
    if effect == "continue":
        return None
    if effect in ("accept", "reject"):
        return _Outcome(effect, ref)
    if effect == "unknown":
        what = f"xt {body.get('type', 'match')} {body.get('name', '?')}"
        walk.notes.append(f"{ref.where()} handle {ref.handle}: `{ref.text}`: an iptables-nft "
                          f"{what} podnet cannot evaluate; assumed not to match")
    return _NEXT


def _branch(
    walk: RuleWalk, key: tuple[str, str, str], how: str, target: str, ref: RuleRef, depth: int
) -> _Outcome:
    child = (key[0], key[1], target)
    if child not in walk.objects.chains:
        walk.notes.append(f"{ref.where()}: {how} to missing chain {target}")
        return _NEXT
    outcome = _run_chain(walk, child, depth + 1)
    if outcome.kind in ("accept", "drop", "reject"):
        return outcome
    # Returning from a jump goes on with the next rule; from a goto, back to our own caller.
    return _Outcome("return" if how == "goto" else "next")


def _verdict_of(walk: RuleWalk, key: tuple[str, str, str], verdict: Any, ref: RuleRef,
                depth: int) -> _Outcome:
    if not isinstance(verdict, dict) or len(verdict) != 1:
        return _NEXT
    (name, body), = verdict.items()
    if name in ("jump", "goto"):
        return _branch(walk, key, name, (body or {}).get("target", ""), ref, depth)
    if name in _VERDICTS:
        return _Outcome(name, ref)
    return _NEXT


def _vmap(
    walk: RuleWalk, key: tuple[str, str, str], body: Mapping[str, Any], ref: RuleRef, depth: int
) -> _Outcome:
    elements = elements_of(walk, body.get("data"), key[:2])
    if isinstance(elements, Unknown):
        walk.notes.append(f"{ref.where()}: verdict map {elements.what} not found")
        return _NEXT
    pairs = [e for e in elements if isinstance(e, list) and len(e) == 2]
    keyexpr = body.get("key")
    if isinstance(keyexpr, dict) and "numgen" in keyexpr:
        return _spread(walk, key, pairs, ref, depth)
    value = value_of(walk, keyexpr)
    if isinstance(value, Unknown):
        walk.notes.append(f"{ref.where()} handle {ref.handle}: `{ref.text}` not evaluated "
                          f"({value.what})")
        return _NEXT
    if value is NOMATCH:
        return _NEXT
    for element, verdict in pairs:
        if is_in(value, element, walk, key[:2]) is True:
            return _verdict_of(walk, key, verdict, ref, depth)
    return _NEXT


def _spread(walk: RuleWalk, key: tuple[str, str, str], pairs: list[list[Any]], ref: RuleRef,
            depth: int) -> _Outcome:
    """`numgen random mod N vmap {...}`: follow one branch; the others' DNAT targets become
    alternatives of the NAT the followed branch applies."""
    if not pairs:
        return _NEXT
    targets: list[list[tuple[str | None, int | None]]] = []
    for pair in pairs:  # where each branch would send the connection
        trial = RuleWalk(walk.objects, walk.ctx, walk.packet, pick=walk.pick, mark=walk.mark)
        _verdict_of(trial, key, pair[1], ref, depth)
        targets.append([(n.addr, n.port) for n in trial.nat if n.kind == "dnat"])
    index = walk.pick % len(pairs)
    if walk.prefer is not None:
        index = next((i for i, t in enumerate(targets) if any(a == walk.prefer for a, _ in t)),
                     index)
    chosen = pairs[index]
    others = [t for i, found in enumerate(targets) if i != index for t in found]
    before = len(walk.nat)
    outcome = _verdict_of(walk, key, chosen[1], ref, depth)
    for i in range(before, len(walk.nat)):
        if walk.nat[i].kind == "dnat":
            walk.nat[i] = replace(walk.nat[i], alternatives=tuple(others))
    return outcome


def _nat(walk: RuleWalk, key: tuple[str, str, str], kind: str, body: Mapping[str, Any],
         ref: RuleRef) -> None:
    addr = body.get("addr")
    alternatives: list[tuple[str | None, int | None]] = []
    if isinstance(addr, dict) and "map" in addr:
        data = elements_of(walk, addr["map"].get("data"), key[:2])
        choices = [e[1] for e in data if isinstance(e, list)] if isinstance(data, list) else []
        if choices:
            addr = choices[walk.pick % len(choices)]
            alternatives = [(str(c), None) for c in choices if c != addr]
        else:
            addr = None
    port = body.get("port")
    address = str(addr) if isinstance(addr, str) else None
    number = port if isinstance(port, int) else None
    if kind == "dnat" and not alternatives:
        alternatives = list(walk.spread)  # a random cascade of iptables rules chose this one
    nat = Nat(kind, address, number, ref, tuple(alternatives))
    walk.nat.append(nat)
    walk.packet = apply_nat(walk.packet, nat)


def _mangle(walk: RuleWalk, body: Mapping[str, Any], ref: RuleRef) -> None:
    """`meta mark set EXPR`: kept, since later rules (kube-proxy's masquerading) test it."""
    target = body.get("key")
    if isinstance(target, dict) and target.get("meta", {}).get("key") == "mark":
        value = value_of(walk, body.get("value"))
        if isinstance(value, int):
            walk.mark = value & 0xFFFFFFFF
        else:
            walk.notes.append(f"{ref.where()} handle {ref.handle}: mark set to a value podnet "
                              "cannot compute")
