"""iptables-nft's `xt` expressions, evaluated: what kube-proxy's iptables mode writes.

`nft -j list ruleset` names an xt match or target and nothing more; `iptables-nft-save` prints the
same rules with their options. `bind` pairs them (the n-th rule of a chain with the n-th line of
that chain, each rule's xt expressions with its modules of the same name, in order), and
`evaluate_xt` runs one expression as the kernel module would for a connection's first packet:

    matches   comment; statistic --mode random (a choice point: see below); conntrack and state
              (--ctstate); addrtype (--src-type/--dst-type LOCAL); mark; tcp, udp (ports);
              multiport
    targets   DNAT, SNAT, MASQUERADE, REDIRECT (the NAT they apply), MARK (--set-xmark and the
              rest: kube-proxy marks what to masquerade), REJECT; others (LOG, CT...) pass

kube-proxy spreads a Service's connections with a cascade of rules in its KUBE-SVC-* chain, each
`-m statistic --mode random --probability 1/k -j KUBE-SEP-*`, the last without a statistic. The
walk follows one branch of the cascade: the endpoint the probe's connection got (conntrack's
answer), else branch `pick`; the other branches' endpoints become the NAT's alternatives. A match
podnet cannot evaluate stays "not evaluated, assumed not to match", as before.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from podnet.trace.nft_types import Nat, RuleRef, Ruleset, apply_nat
from podnet.trace.nft_values import RuleWalk

__all__ = ["XtModule", "XtRule", "bind", "evaluate_xt", "parse_save"]

Effect = Literal["continue", "next", "accept", "reject", "unknown"]
Trial = Callable[[RuleWalk, Mapping[str, Any]], list[Nat]]  # the DNATs a verdict leads to
_NATIVE = {"-A", "-s", "-d", "-p", "-i", "-o", "-f", "--source", "--destination", "--protocol",
           "--in-interface", "--out-interface", "--fragment"}
_VERDICTS = {"ACCEPT", "DROP", "RETURN", "QUEUE"}


@dataclass(frozen=True)
class XtModule:
    kind: Literal["match", "target"]
    name: str
    options: tuple[tuple[str, tuple[str, ...], bool], ...] = ()  # (--option, values, negated)

    def get(self, option: str) -> tuple[tuple[str, ...], bool] | None:
        return next(((v, neg) for o, v, neg in self.options if o == option), None)


@dataclass(frozen=True)
class XtRule:
    line: str  # as iptables-save prints it, without "-A CHAIN"
    modules: tuple[XtModule, ...]

    @property
    def comment(self) -> str:
        found = next((m.get("--comment") for m in self.modules if m.name == "comment"), None)
        return " ".join(found[0]) if found else ""


def _modules(words: list[str]) -> tuple[XtModule, ...]:
    """`-m NAME --opt V... -j TARGET --opt V...` -> modules; native options are skipped."""
    out: list[tuple[str, str, list[tuple[str, tuple[str, ...], bool]]]] = []
    negate = False
    current: list[tuple[str, tuple[str, ...], bool]] | None = None
    i = 0
    while i < len(words):
        word = words[i]
        if word == "!":
            negate = True
        elif word in ("-m", "--match", "-j", "--jump", "-g", "--goto") and i + 1 < len(words):
            kind = "match" if word in ("-m", "--match") else "target"
            current = []
            out.append((kind, words[i + 1], current))
            i += 1
            negate = False
        elif word in _NATIVE:
            current = None
            i += 1  # its value
            negate = False
        elif word.startswith("-") and current is not None:
            values = []
            while i + 1 < len(words) and not words[i + 1].startswith("-") \
                    and words[i + 1] != "!":
                values.append(words[i + 1])
                i += 1
            current.append((word, tuple(values), negate))
            negate = False
        i += 1
    return tuple(XtModule("match" if k == "match" else "target", n, tuple(o))
                 for k, n, o in out)


def parse_save(text: str) -> dict[tuple[str, str], list[XtRule]]:
    """{(table, chain): rules in order} from iptables-save's output."""
    rules: dict[tuple[str, str], list[XtRule]] = {}
    table = ""
    for raw in text.splitlines():
        if raw.startswith("*"):
            table = raw[1:].strip()
        elif raw.startswith("-A ") and table:
            try:
                words = shlex.split(raw)
            except ValueError:
                continue
            rules.setdefault((table, words[1]), []).append(
                XtRule(" ".join(shlex.quote(w) for w in words[2:]), _modules(words[2:])))
    return rules


def _xt_exprs(rule: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [e["xt"] for e in rule.get("expr") or [] if isinstance(e, dict) and "xt" in e]


def bind(rules: Ruleset, saves: Iterable[tuple[str, str]]) -> None:
    """Pair each nft rule holding xt expressions with its iptables-save line (in place, in
    `rules.xt`): {(family, table, chain, handle): (the line, its modules in xt order)}."""
    for family, text in saves:
        parsed = parse_save(text)
        for (fam, table, chain), nft_rules in rules.rules.items():
            lines = parsed.get((table, chain))
            if fam != family or lines is None or len(lines) != len(nft_rules):
                continue  # not iptables-nft's, or changed between the two reads
            for rule, line in zip(nft_rules, lines, strict=True):
                exprs = _xt_exprs(rule)
                if exprs:
                    rules.xt[(fam, table, chain, rule.get("handle"))] = (
                        line, _pair(exprs, line.modules))


def _pair(exprs: list[Mapping[str, Any]],
          modules: tuple[XtModule, ...]) -> tuple[XtModule | None, ...]:
    left = list(modules)
    out: list[XtModule | None] = []
    for expr in exprs:
        found = next((m for m in left if m.kind == expr.get("type")
                      and m.name.lower() == str(expr.get("name", "")).lower()), None)
        if found is not None:
            left.remove(found)
        out.append(found)
    return tuple(out)


def binding(rules: Ruleset, key: tuple[str, str, str],
            rule: Mapping[str, Any]) -> tuple[XtRule, tuple[XtModule | None, ...]] | None:
    found = rules.xt.get((*key, rule.get("handle")))
    return found if isinstance(found, tuple) else None


# --- evaluating ---------------------------------------------------------------------------------


def evaluate_xt(walk: RuleWalk, key: tuple[str, str, str], rule: Mapping[str, Any],
                ordinal: int, ref: RuleRef, trial: Trial) -> Effect:
    """The effect of the `ordinal`-th xt expression of `rule`: go on with the rule, stop it
    (no match), a verdict, or unknown (the caller notes it)."""
    bound = binding(walk.objects, key, rule)
    module = bound[1][ordinal] if bound and ordinal < len(bound[1]) else None
    if module is None:
        return "unknown"
    if module.kind == "target":
        return _target(walk, module, ref)
    if module.name == "statistic":
        return _statistic(walk, key, rule, module, trial)
    test = _MATCHES.get(module.name)
    hit = test(walk, module) if test is not None else None
    if hit is None:
        return "unknown"
    return "continue" if hit else "next"


def _negated(result: bool, negated: bool) -> bool:
    return result != negated


def _ctstate(walk: RuleWalk, module: XtModule) -> bool | None:
    found = module.get("--ctstate") or module.get("--state")
    if found is None or len(module.options) != 1:
        return None
    states = {s.lower() for v in found[0] for s in v.split(",")}
    return _negated(walk.ctx.ct_state in states, found[1])


def _addrtype(walk: RuleWalk, module: XtModule) -> bool | None:
    result = True
    for option, values, negated in module.options:
        if option not in ("--dst-type", "--src-type") or values != ("LOCAL",):
            return None
        addr = walk.packet.dst if option == "--dst-type" else walk.packet.src
        result = result and _negated(addr in walk.ctx.local_addresses, negated)
    return result


def _mark(walk: RuleWalk, module: XtModule) -> bool | None:
    found = module.get("--mark")
    if found is None or not found[0]:
        return None
    value, _, mask = found[0][0].partition("/")
    want, bits = int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF
    return _negated(walk.mark & bits == want, found[1])


def _in_ports(port: int | None, spec: str) -> bool:
    if port is None:
        return False
    for part in spec.split(","):
        low, _, high = part.partition(":")
        if int(low or 0) <= port <= int(high or low or 65535):
            return True
    return False


def _ports(walk: RuleWalk, module: XtModule) -> bool | None:
    pkt = walk.packet
    if module.name in ("tcp", "udp") and pkt.proto != module.name:
        return False
    result = True
    for option, values, negated in module.options:
        if not values:
            return None
        if option in ("--dport", "--destination-port", "--dports"):
            hit = _in_ports(pkt.dport, values[0])
        elif option in ("--sport", "--source-port", "--sports"):
            hit = _in_ports(pkt.sport, values[0])
        elif option == "--ports":
            hit = _in_ports(pkt.dport, values[0]) or _in_ports(pkt.sport, values[0])
        else:
            return None  # tcp flags, options: not the path's business, but not known either
        result = result and _negated(hit, negated)
    return result


_MATCHES: dict[str, Callable[[RuleWalk, XtModule], bool | None]] = {
    "comment": lambda _w, _m: True,
    "conntrack": _ctstate,
    "state": _ctstate,
    "addrtype": _addrtype,
    "mark": _mark,
    "tcp": _ports,
    "udp": _ports,
    "multiport": _ports,
}


def _statistic(walk: RuleWalk, key: tuple[str, str, str], rule: Mapping[str, Any],
               module: XtModule, trial: Trial) -> Effect:
    """One rule of kube-proxy's random cascade: it matches when its branch is the one the walk
    follows (the probe's endpoint, else branch `pick`)."""
    mode = module.get("--mode")
    if mode is None or mode[0] != ("random",):
        return "unknown"
    cascade = _cascade(walk.objects, key, rule)
    if not cascade:
        return "unknown"
    memo_key = ("statistic", key, cascade[0].get("handle"))
    if memo_key not in walk.memo:
        targets = [trial(walk, _jump_of(r) or {}) for r in cascade]
        addresses = [[n.addr for n in found if n.kind == "dnat"] for found in targets]
        chosen = walk.pick % len(cascade)
        if walk.prefer is not None:
            chosen = next((i for i, a in enumerate(addresses) if walk.prefer in a), chosen)
        walk.memo[memo_key] = chosen
        walk.spread = [(n.addr, n.port) for i, found in enumerate(targets) if i != chosen
                       for n in found if n.kind == "dnat"]
    position = next(i for i, r in enumerate(cascade) if r is rule)
    return "continue" if position == walk.memo[memo_key] else "next"


def _is_random(rules: Ruleset, key: tuple[str, str, str], rule: Mapping[str, Any]) -> bool:
    bound = binding(rules, key, rule)
    return bound is not None and any(m is not None and m.name == "statistic" for m in bound[1])


def _jump_of(rule: Mapping[str, Any]) -> Mapping[str, Any] | None:
    last = (rule.get("expr") or [{}])[-1]
    return last if isinstance(last, dict) and ("jump" in last or "goto" in last) else None


def _cascade(rules: Ruleset, key: tuple[str, str, str],
             rule: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The run of random branches `rule` belongs to, and the rule that takes what they leave."""
    chain = rules.rules.get(key, [])
    at = next((i for i, r in enumerate(chain) if r is rule), None)
    if at is None:
        return []
    start = at
    while start > 0 and _is_random(rules, key, chain[start - 1]) and _jump_of(chain[start - 1]):
        start -= 1
    end = at
    while end + 1 < len(chain) and _is_random(rules, key, chain[end + 1]):
        end += 1
    members: list[Mapping[str, Any]] = [r for r in chain[start : end + 1] if _jump_of(r)]
    if end + 1 < len(chain) and _jump_of(chain[end + 1]):
        members.append(chain[end + 1])  # the last endpoint: no statistic, takes the rest
    return members


# --- targets ------------------------------------------------------------------------------------


def _address_port(text: str) -> tuple[str | None, int | None]:
    """"10.244.1.2:80", "[fd00::2]:80", "10.244.1.2-10.244.1.9", ":80" -> (address, port)."""
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:].split("-")[0]) if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, tail = text.partition(":")
        port = int(tail.split("-")[0]) if tail else None
    host = host.split("-")[0]
    try:
        return (str(ipaddress.ip_address(host)) if host else None), port
    except ValueError:
        return None, port


def _nat(walk: RuleWalk, module: XtModule, ref: RuleRef) -> Effect:
    """DNAT, SNAT, MASQUERADE, REDIRECT: the NAT applied, and the chain ends (an accept)."""
    name = module.name.upper()
    addr, port = None, None
    if name in ("DNAT", "SNAT"):
        found = module.get("--to-destination" if name == "DNAT" else "--to-source")
        if found is None or not found[0]:
            return "unknown"
        addr, port = _address_port(found[0][0])
    elif name == "REDIRECT":
        found = module.get("--to-ports")
        port = int(found[0][0].split("-")[0]) if found and found[0] else None
    nat = Nat(name.lower(), addr, port, ref, tuple(walk.spread) if name == "DNAT" else ())
    walk.nat.append(nat)
    if name != "MASQUERADE":  # a masquerade needs the outgoing address: the walker applies it
        walk.packet = apply_nat(walk.packet, nat)
    return "accept"


def _target(walk: RuleWalk, module: XtModule, ref: RuleRef) -> Effect:
    name = module.name.upper()
    if name in ("DNAT", "SNAT", "MASQUERADE", "REDIRECT"):
        return _nat(walk, module, ref)
    if name == "MARK":
        return _set_mark(walk, module)
    if name == "REJECT":
        return "reject"
    if name in _VERDICTS:
        return "unknown"  # nft writes these natively: an xt one is a surprise
    return "continue"  # LOG, CT, CONNMARK, NOTRACK...: no effect on the path


def _set_mark(walk: RuleWalk, module: XtModule) -> Effect:
    for option, values, _neg in module.options:
        if not values:
            return "unknown"
        value, _, mask = values[0].partition("/")
        v = int(value, 0)
        m = int(mask, 0) if mask else 0xFFFFFFFF
        mark = walk.mark
        if option == "--set-xmark":
            mark = (mark & ~m) ^ v
        elif option == "--set-mark":
            mark = (mark & ~m) | v
        elif option == "--or-mark":
            mark |= v
        elif option == "--and-mark":
            mark &= v
        elif option == "--xor-mark":
            mark ^= v
        else:
            return "unknown"
        walk.mark = mark & 0xFFFFFFFF
    return "continue"
