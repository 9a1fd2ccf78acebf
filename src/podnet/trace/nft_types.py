"""The data of the nftables evaluator: a packet, the hook it meets, what a hook did to it (its
verdict, the rule that decided, its NATs), and a namespace's ruleset indexed once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = [
    "HookContext",
    "HookResult",
    "Nat",
    "Packet",
    "RuleRef",
    "Ruleset",
    "Verdict",
    "apply_nat",
]

Verdict = Literal["accept", "drop", "reject"]
# The tables whose base chains see a packet of each IP version: its own family's, and inet's.
_IP_FAMILIES = {4: ("ip", "inet"), 6: ("ip6", "inet")}


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str = "tcp"  # tcp, udp or icmp
    sport: int | None = None
    dport: int | None = None


@dataclass(frozen=True)
class HookContext:
    hook: str  # prerouting, input, forward, output, postrouting
    iif: str | None = None
    oif: str | None = None
    local_addresses: frozenset[str] = frozenset()  # for `fib daddr type local`
    ct_state: str = "new"  # "established" for replies: NAT chains only see a connection's first
    mark: int = 0  # the packet mark (meta mark) as earlier hooks in this namespace left it


@dataclass(frozen=True)
class RuleRef:
    family: str
    table: str
    chain: str
    handle: int | None  # None: the chain's policy decided
    text: str
    comment: str = ""  # the rule's comment (kube-proxy names its Service there)

    def where(self) -> str:
        return f"table {self.family} {self.table} chain {self.chain}"

    def command(self) -> str:
        return f"nft -a list chain {self.family} {self.table} {self.chain}"


@dataclass(frozen=True)
class Nat:
    kind: str  # dnat, snat, masquerade, redirect
    addr: str | None
    port: int | None
    rule: RuleRef
    # Other targets a random or round-robin pick (numgen) may choose for other connections.
    alternatives: tuple[tuple[str | None, int | None], ...] = ()


@dataclass(frozen=True)
class HookResult:
    verdict: Verdict
    packet: Packet  # after any DNAT or SNAT applied here
    rule: RuleRef | None = None  # the rule, or chain policy, that dropped or rejected
    nat: tuple[Nat, ...] = ()
    chains: tuple[str, ...] = ()  # base chains the packet went through
    notes: tuple[str, ...] = ()
    mark: int = 0  # the packet mark after this hook (kube-proxy marks what to masquerade)
    # The rules whose `accept` ended a base chain, in order: one base chain's accept lets the
    # packet on to the next (NetworkPolicy egress, then ingress), so each may have decided.
    accepted_by: tuple[RuleRef, ...] = ()


class Ruleset:
    """A namespace's tables, indexed once: chains, their rules in order, sets and maps."""

    def __init__(self, objects: Iterable[Mapping[str, Any]]) -> None:
        self.chains: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.sets: dict[tuple[str, str, str], list[Any]] = {}
        # iptables-nft rules' xt options, by (family, table, chain, handle): see nft_xt.bind
        self.xt: dict[tuple[str, str, str, Any], Any] = {}
        for obj in objects:
            if "chain" in obj:
                c = obj["chain"]
                key = (c.get("family", ""), c.get("table", ""), c.get("name", ""))
                self.chains[key] = c
                self.rules.setdefault(key, [])
            elif "rule" in obj:
                r = obj["rule"]
                key = (r.get("family", ""), r.get("table", ""), r.get("chain", ""))
                self.rules.setdefault(key, []).append(r)
            elif "set" in obj or "map" in obj:
                s = obj.get("set") or obj.get("map") or {}
                key = (s.get("family", ""), s.get("table", ""), s.get("name", ""))
                self.sets[key] = list(s.get("elem") or [])

    def base_chains(self, hook: str, version: int = 4) -> list[tuple[str, str, str]]:
        """The base chains at `hook` that see an IPv`version` packet, in priority order."""
        families = _IP_FAMILIES[version]
        found = [
            (int(c.get("prio", 0)) if isinstance(c.get("prio", 0), int) else 0, key)
            for key, c in self.chains.items()
            if key[0] in families and c.get("hook") == hook
        ]
        return [key for _prio, key in sorted(found, key=lambda x: x[0])]


def apply_nat(pkt: Packet, nat: Nat) -> Packet:
    """The packet after `nat` (a masquerade needs the outgoing address: the caller knows it)."""
    if nat.kind == "dnat" and nat.addr:
        return replace(pkt, dst=nat.addr, dport=nat.port if nat.port is not None else pkt.dport)
    if nat.kind == "snat" and nat.addr:
        return replace(pkt, src=nat.addr, sport=nat.port if nat.port is not None else pkt.sport)
    if nat.kind == "redirect":
        return replace(pkt, dport=nat.port if nat.port is not None else pkt.dport)
    return pkt
