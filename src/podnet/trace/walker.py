"""The tracer's walk state: what one walk over a host has seen so far (its hops, the NATs it
applied, the tunnels it is inside), the host's lookups, and the netfilter hooks it runs. The walk
itself builds on this: `links` (leaving a namespace), then `walk` (routing, delivery)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from podnet.inspect.model import Host, Interface, Namespace
from podnet.kernel.lookup import Vxlan
from podnet.trace.model import Hop, HopStatus, Outcome, Path, Reads
from podnet.trace.nft import HookContext, Nat, Packet, Ruleset, apply_nat, evaluate
from podnet.trace.nft_xt import bind
from podnet.trace.words import address_of, is_link_local, nat_text, ns_exec, owner_of, shaping_words

if TYPE_CHECKING:
    from podnet.trace.policy import PolicyWords

__all__ = ["HostIndex", "State", "Tunnel", "WalkerBase"]

_BLAMABLE = ("no route", "host unreachable", "forwarding off")
State = tuple[Namespace, "Interface | None", Packet]  # where a packet is, and how it got in


class HostIndex:
    """What every walk over one host looks up: namespaces by label, and who owns an address, of
    either family. Built once per trace (a lab of 200 pods has thousands of addresses)."""

    def __init__(self, host: Host, policy: PolicyWords | None = None) -> None:
        # With a lab's NetworkPolicies: the words for what a policy's rule did to a packet.
        self.policy = policy
        self.by_label = {ns.label: ns for ns in host.namespaces}
        self.owners: dict[str, tuple[Namespace, Interface]] = {}
        self.local: dict[int, frozenset[str]] = {}
        for ns in host.namespaces:
            mine = set()
            for iface in ns.interfaces:
                for cidr in iface.addresses:
                    ip = address_of(cidr)
                    mine.add(ip)
                    # A /32 (/128) gateway on many veths (kindnet) does not say who owns the
                    # address; nor does a link-local one, which every IPv6 interface has.
                    if (iface.kind != "loopback" and not cidr.endswith(("/32", "/128"))
                            and not is_link_local(ip)):
                        self.owners.setdefault(ip, (ns, iface))
            self.local[ns.inode] = frozenset(mine)


@dataclass
class Tunnel:
    inner: Packet
    vxlan: Vxlan
    ifname: str
    size: int | None = None  # the inner packet's size, given back when it is decapsulated


@dataclass
class WalkerBase:
    """One walk's state, its hops, and the netfilter hooks; `trace.walk` drives it."""

    host: Host
    reads: Reads
    pick: int = 0
    prefer: str | None = None
    reply_to: Path | None = None
    index: HostIndex | None = None
    hops: list[Hop] = field(default_factory=list)
    nat_log: list[tuple[str, Nat, Packet]] = field(default_factory=list)
    tunnels: list[Tunnel] = field(default_factory=list)
    warned: int | None = None  # a hop that left by the default route for a lab address
    warn_notes: tuple[str, ...] = ()
    mark: int = 0  # the packet mark: set and read by nftables rules within one namespace
    mark_ns: int = 0  # the namespace (inode) the mark belongs to: crossing a veth clears it
    size: int | None = None  # bytes of the full-size packet walked (0: the first link's MTU)
    too_big: int | None = None  # the hop where a packet of `size` could not pass
    full_size: int | None = None  # `size` as the walk started with it (outside any tunnel)

    def __post_init__(self) -> None:
        self.index = self.index or HostIndex(self.host)
        self.by_label = self.index.by_label
        self.owners = self.index.owners
        self.rulesets: dict[int, Ruleset | None] = {}
        self.shaped: set[tuple[int, str, bool]] = set()

    # --- hops ---------------------------------------------------------------------------------

    def add(self, ns: Namespace, step: str, text: str, commands: tuple[str, ...] = (),
            status: HopStatus = "ok", reason: str = "", notes: tuple[str, ...] = (), *,
            dev: Interface | None = None) -> int:
        if dev is not None and step != "deliver":
            shaped = self.shaping(ns, dev)
            notes = (*notes, shaped) if shaped else notes
        self.hops.append(Hop(step, ns.label, owner_of(ns), text, commands, status, reason,
                             notes, dev.ifname if dev else None, dev.mtu if dev else None))
        return len(self.hops) - 1

    def shaping(self, ns: Namespace, iface: Interface, *, arriving: bool = False) -> str | None:
        """What a qdisc on `iface` does to the packet (netem's delay or loss, a rate limit),
        once per interface and direction in a walk."""
        key = (ns.inode, iface.ifname, arriving)
        if key in self.shaped:
            return None
        self.shaped.add(key)
        link = self.reads.qdiscs(ns).get(iface.ifname)
        return shaping_words(link, arriving=arriving) if link is not None else None

    # --- the full-size packet -----------------------------------------------------------------

    def fits(self, iface: Interface, why: str) -> None:
        """Whether the full-size packet fits `iface`; if not, the last hop is where it fails
        (marked `warn`: small packets pass; `trace` makes it the broken hop when the full-size
        probe failed)."""
        if self.size == 0 and iface.mtu:
            self.size = iface.mtu  # the source's first link sets the size of a full packet
        if self.full_size is None and self.size:
            self.full_size = self.size
        if not self.size or not iface.mtu or self.size <= iface.mtu or self.too_big is not None:
            return
        hop = self.hops[-1]
        note = (f"a {self.size}-byte packet does not fit {iface.ifname} (mtu {iface.mtu}): "
                + why)
        self.hops[-1] = replace(hop, status="warn" if hop.status == "ok" else hop.status,
                                reason=hop.reason or "too big", notes=(*hop.notes, note))
        self.too_big = len(self.hops) - 1

    def end(self, outcome: Outcome, pkt: Packet, ns: Namespace | None = None) -> Path:
        broken = next((i for i, h in enumerate(self.hops) if h.status == "broken"), None)
        if (broken is not None and self.warned is not None and self.warned < broken
                and self.hops[broken].reason in _BLAMABLE):
            hop = self.hops[self.warned]
            self.hops[self.warned] = replace(hop, status="broken", reason="no route",
                                             notes=(*hop.notes, *self.warn_notes))
            broken = self.warned
        return Path(tuple(self.hops), outcome, pkt, ns.label if ns else None, broken,
                    tuple(self.nat_log), self.full_size, self.too_big)

    def fail(self, ns: Namespace, step: str, text: str, reason: str,
             commands: tuple[str, ...] = (), notes: tuple[str, ...] = (),
             pkt: Packet | None = None, dev: Interface | None = None) -> Path:
        self.add(ns, step, text, commands, "broken", reason, notes, dev=dev)
        return self.end("broken", pkt or Packet("", ""), ns)

    # --- topology -----------------------------------------------------------------------------

    def peer(self, ns: Namespace, iface: Interface) -> tuple[Namespace, Interface] | None:
        ref = iface.peer
        if ref is None or ref.status != "ok" or ref.netns is None:
            return None
        other = self.by_label.get(ref.netns)
        if other is None:
            return None
        found = next((i for i in other.interfaces if i.ifindex == ref.ifindex), None)
        return (other, found) if found else None

    def local_addresses(self, ns: Namespace) -> frozenset[str]:
        assert self.index is not None
        return self.index.local.get(ns.inode, frozenset())

    def ruleset(self, ns: Namespace) -> Ruleset | None:
        """The namespace's nftables rules, read and indexed once per walk."""
        if ns.inode not in self.rulesets:
            read = self.reads.ruleset(ns)
            rules = Ruleset(read.objects) if read.objects else None
            if rules is not None and read.iptables:
                bind(rules, read.iptables)  # iptables-nft's xt rules, with their options
            self.rulesets[ns.inode] = rules
        return self.rulesets[ns.inode]

    # --- netfilter ----------------------------------------------------------------------------

    def hook(self, ns: Namespace, hook: str, pkt: Packet, *, iif: str | None = None,
             oif: str | None = None) -> tuple[Packet, Path | None, list[Nat]]:
        """Run one netfilter hook; (packet after NAT, the broken path if dropped, NATs)."""
        rules = self.ruleset(ns)
        if rules is None:
            return pkt, None, []
        if self.mark_ns != ns.inode:
            self.mark, self.mark_ns = 0, ns.inode
        ctx = HookContext(hook, iif, oif, self.local_addresses(ns),
                          "established" if self.reply_to else "new", self.mark)
        result = evaluate(rules, ctx, pkt, pick=self.pick, prefer=self.prefer)
        self.mark = result.mark
        notes = tuple(result.notes)
        said = self.index.policy(pkt, result) if self.index and self.index.policy else None
        if result.verdict in ("drop", "reject") and result.rule is not None:
            rule = result.rule
            what = "policy drop" if rule.handle is None else f"rule handle {rule.handle}"
            text = (f"nftables {hook}: {result.verdict} by {rule.where()} {what}: "
                    f"`{rule.text}`")
            if said:
                text = f"nftables {hook}: {said} ({rule.where()} {what})"
            # The interface it would have left by (arrived on, if it was not routed yet): a
            # capture there shows the rule's effect.
            dev = ns.interface(oif or iif or "")
            return pkt, self.fail(ns, "filter", text, "rule drop",
                                  (ns_exec(ns, rule.command()),), notes, pkt, dev), []
        if said:
            self.add(ns, "filter", f"nftables {hook}: {said}", (ns_exec(ns, "nft list ruleset"),))
        out = pkt
        for nat in result.nat:
            before = out
            if nat.kind == "masquerade":
                continue  # needs the outgoing interface's address: applied by the caller
            out = apply_nat(out, nat)
            self.nat_log.append((ns.label, nat, before))
            self.add(ns, "nat", nat_text(hook, nat, before, out),
                     (ns_exec(ns, nat.rule.command()),), notes=notes)
            notes = ()
        if notes:
            self.add(ns, "filter", f"nftables {hook}: rules podnet could not evaluate",
                     (ns_exec(ns, "nft list ruleset"),), "warn", "rules not evaluated", notes)
        return out, None, [n for n in result.nat if n.kind == "masquerade"]
