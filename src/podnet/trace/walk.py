"""The path of one packet, hop by hop, from the kernel's own answers. Pure: the kernel comes in
through `Reads`, the topology through inspect's `Host`.

In each namespace the packet enters, the walk does what the kernel does:

1. netfilter's prerouting hook (nftables DNAT of a Service address, a drop rule);
2. the route lookup, as `ip route get DST from SRC iif DEV` answers it (forwarding and
   reverse-path checks included), or as a socket's first packet gets it in the source;
3. the forward (or output) and postrouting hooks (a masquerade to the node's address);
4. the way out: across a veth pair to its peer's namespace; through a bridge, by the neighbour
   entry of the next hop and the bridge's forwarding database; or into a VXLAN tunnel, by the
   tunnel's neighbour and FDB entries, after which the walk follows the outer UDP packet to the
   remote node and decapsulates it there;
5. or local delivery: the input hook, then the socket listening on the port.

A hop that cannot be passed (no route, an interface down, a rule drop, no neighbour, nothing
listening) ends the walk and is named as the broken hop. When the packet left a namespace by
its default route for an address that belongs to a namespace podnet can see, and then found no
route, the blame goes to that default route: that is where a route is missing.

This module routes and delivers (1-3, 5); the walk's state and hooks are in `walker`, the
way out of a namespace (4) in `links`, commands and words for people in `words`.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import replace

from podnet.inspect.model import Host, Interface, Namespace
from podnet.kernel.lookup import RouteAnswer
from podnet.trace.links import LinkWalker
from podnet.trace.model import Path, Reads
from podnet.trace.nft import Nat, Packet
from podnet.trace.walker import HostIndex, State
from podnet.trace.words import (
    addresses,
    bridge_cmd,
    endpoint,
    ip_cmd,
    link_problem,
    matched_route,
    nat_text,
    ns_exec,
    owner_of,
    route_words,
    too_big_words,
    version_of,
)

__all__ = ["MAX_HOPS", "HostIndex", "bridge_cmd", "ip_cmd", "ns_exec", "owner_of", "walk"]

MAX_HOPS = 64
# A socket bound to any address: an IPv6 one (not V6ONLY) takes IPv4 too, never the reverse.
_WILDCARDS = {4: (str(ipaddress.IPv4Address(0)), str(ipaddress.IPv6Address(0))),
              6: (str(ipaddress.IPv6Address(0)),)}


class _Walker(LinkWalker):
    """The walk: each namespace's hooks and route lookup, then a link out or local delivery."""

    # --- the walk ------------------------------------------------------------------------------

    def run(self, start: Namespace, pkt: Packet) -> Path:
        state: State = (start, None, pkt)
        seen: set[tuple[int, int, Packet]] = set()
        for _ in range(MAX_HOPS):
            ns, iif, pkt = state
            key = (ns.inode, iif.ifindex if iif else 0, pkt)
            if key in seen:
                self.add(ns, "loop", f"the packet came back to {ns.label} unchanged: a loop",
                         status="broken", reason="routing loop")
                return self.end("loop", pkt, ns)
            seen.add(key)
            out = self.step(ns, iif, pkt)
            if isinstance(out, Path):
                return out
            state = out
        self.add(state[0], "loop", f"more than {MAX_HOPS} hops", status="broken",
                 reason="too many hops")
        return self.end("loop", state[2], state[0])

    def step(self, ns: Namespace, iif: Interface | None, pkt: Packet) -> State | Path:
        """One namespace: prerouting, the route lookup, then delivery or the way out."""
        if iif is not None:
            pkt = self.undo_nat(ns, pkt)
            pkt, dropped, _ = self.hook(ns, "prerouting", pkt, iif=iif.ifname)
            if dropped:
                return dropped
        answer = self.reads.route(ns, pkt.dst, src=pkt.src if iif else None,
                                  iif=iif.ifindex if iif else None)
        if not answer.ok:
            return self.no_route(ns, iif, pkt, answer)
        if answer.type == "local":
            return self.local(ns, iif, pkt)
        if answer.type != "unicast":
            return self.fail(ns, "route", f"{pkt.dst}: a {answer.type} route",
                             f"{answer.type} route", (ip_cmd(ns, f"route get {pkt.dst}"),),
                             pkt=pkt)
        return self.route_out(ns, iif, pkt, answer)

    def route_out(self, ns: Namespace, iif: Interface | None, pkt: Packet,
                  answer: RouteAnswer) -> State | Path:
        """A packet routed out of `ns`: output or forward, postrouting, then the interface."""
        oif = next((i for i in ns.interfaces if i.ifindex == answer.oif), None)
        if oif is None:
            return self.fail(ns, "route", f"{pkt.dst}: leaves by ifindex {answer.oif}, which "
                             "inspect did not see", "unknown interface", pkt=pkt)
        if iif is None:
            after, dropped, _ = self.hook(ns, "output", pkt, oif=oif.ifname)
            if dropped:
                return dropped
            if after.dst != pkt.dst:  # DNAT in output: the kernel routes the packet again
                pkt, answer = after, self.reads.route(ns, after.dst)
                if not answer.ok:
                    return self.no_route(ns, None, pkt, answer)
                oif = next((i for i in ns.interfaces if i.ifindex == answer.oif), oif)
        self.route_hop(ns, iif, pkt, answer, oif)
        if iif is not None:
            self.fits(oif, too_big_words(pkt.src))
        elif self.tunnels:
            self.fits(oif, "the tunnel's overhead makes the encapsulated packet too big for the "
                      "underlay: it is dropped (or its outer packet fragmented)")
        else:
            self.fits(oif, "the source cannot send it as one packet")
        hooks = [("postrouting", None)] if iif is None else [("forward", iif), ("postrouting",
                                                                               None)]
        for hook, inbound in hooks:
            pkt, dropped, masq = self.hook(ns, hook, pkt, iif=inbound.ifname if inbound else None,
                                           oif=oif.ifname)
            if dropped:
                return dropped
            mine = addresses(oif, version_of(pkt.dst), link_local=False)
            pkt = self.masquerade(ns, pkt, masq, answer.src or next(iter(mine), None))
        return self.egress(ns, oif, answer.gateway or pkt.dst, pkt, answer)

    def masquerade(self, ns: Namespace, pkt: Packet, masq: list[Nat], src: str | None) -> Packet:
        """Apply a masquerade: the source becomes the outgoing interface's address."""
        for nat in masq:
            before = pkt
            pkt = replace(pkt, src=src or pkt.src)
            done = replace(nat, addr=pkt.src)
            self.nat_log.append((ns.label, done, before))
            self.add(ns, "nat", nat_text("postrouting", done, before, pkt),
                     (ns_exec(ns, nat.rule.command()),))
        return pkt

    def route_hop(self, ns: Namespace, iif: Interface | None, pkt: Packet, answer: RouteAnswer,
                  oif: Interface) -> None:
        words = [pkt.dst]
        if answer.gateway:
            words.append(f"via {answer.gateway}")
        words.append(f"dev {oif.ifname}")
        if iif is None and answer.src:
            words.append(f"src {answer.src}")
        if iif is not None:
            words.append(f"(in by {iif.ifname})")
        matched = matched_route(ns, pkt.dst)
        notes = (f"matched route: {route_words(matched)}",) if matched else ()
        frm = f" from {pkt.src} iif {iif.ifname}" if iif is not None else ""
        commands = (ip_cmd(ns, f"route get {pkt.dst}{frm}"),)
        owner = self.owners.get(pkt.dst)
        index = self.add(ns, "route", " ".join(words), commands, notes=notes, dev=oif)
        # A pod's default route is its only way out; a router (a node) that sends an address of
        # a namespace podnet sees by its default route is suspect if the packet is lost later.
        if (iif is not None and matched is not None and matched.dst == "default" and owner
                and owner[0] is not ns and self.warned is None):
            self.warned = index
            self.warn_notes = (f"{pkt.dst} belongs to {owner_of(owner[0])}, but {ns.label} has "
                               "no route for it other than the default",
                               *self.down_links(ns, pkt.dst))

    def down_links(self, ns: Namespace, dst: str) -> tuple[str, ...]:
        """Interfaces of `ns` that are down, naming the one that leads to `dst`'s owner."""
        owner = self.owners.get(dst)
        notes: list[str] = []
        for iface in ns.interfaces:
            problem = link_problem(iface)
            if iface.kind == "loopback" or problem is None:
                continue
            far = self.peer(ns, iface)
            if owner and far and far[0] is owner[0]:
                notes.insert(0, f"{problem}, and it leads to {owner_of(owner[0])}, which owns "
                             f"{dst}: its routes went down with it")
            else:
                notes.append(problem)
        return tuple(notes)

    def no_route(self, ns: Namespace, iif: Interface | None, pkt: Packet,
                 answer: RouteAnswer) -> Path:
        frm = f" from {pkt.src} iif {iif.ifname}" if iif is not None else ""
        commands = [ip_cmd(ns, f"route get {pkt.dst}{frm}")]
        code = answer.error
        down = self.down_links(ns, pkt.dst)
        if down and "leads to" in down[0]:
            return self.fail(ns, "route", f"no route to {pkt.dst}", "interface down",
                             (*commands, ip_cmd(ns, "link show")), down, pkt)
        if code == errno.ENETUNREACH:
            text, reason = f"no route to {pkt.dst} in {owner_of(ns)}", "no route"
        elif code == errno.EHOSTUNREACH:
            key = (f"net.ipv{version_of(pkt.dst)}.conf.{iif.ifname}.forwarding"
                   if iif is not None else "")
            forwarding = self.reads.sysctl(ns, key) if key else None
            if forwarding == "0":
                assert iif is not None
                text = (f"{ns.label} does not forward packets arriving on {iif.ifname} "
                        "(forwarding is off)")
                reason = "forwarding off"
                commands.append(ns_exec(ns, f"sysctl {key}"))
            else:
                text, reason = f"{pkt.dst} is unreachable from {owner_of(ns)}", "host unreachable"
        elif code == errno.EXDEV:
            assert iif is not None
            text = (f"reverse-path filter: {ns.label} drops packets from {pkt.src} arriving on "
                    f"{iif.ifname} (its route back to {pkt.src} leaves by another interface)")
            reason = "rp_filter"
        elif code in (errno.EACCES, errno.EPERM):
            text, reason = f"a prohibit route for {pkt.dst} in {ns.label}", "prohibited"
        else:
            text = f"the kernel refused the route lookup for {pkt.dst}: errno {code}"
            reason = "no route"
        return self.fail(ns, "route", text, reason, tuple(commands), down, pkt)

    # --- arriving ------------------------------------------------------------------------------

    def local(self, ns: Namespace, iif: Interface | None, pkt: Packet) -> State | Path:
        """Addressed to this namespace: input hook, then a tunnel's end, a reply's way back
        through conntrack, or the socket listening there."""
        _after, dropped, _ = self.hook(ns, "input", pkt, iif=iif.ifname if iif else "lo")
        if dropped:
            return dropped
        if self.tunnels and pkt.proto == "udp":
            return self.decapsulate(ns, pkt)
        if self.reply_to is not None:
            back = self.undo_nat(ns, pkt)
            if back.dst != pkt.dst:
                return ns, iif, back
            self.add(ns, "deliver", f"the reply reaches {pkt.dst} in {owner_of(ns)}",
                     (ip_cmd(ns, f"route get {pkt.dst}"),), dev=iif)
            return self.end("delivered", pkt, ns)
        return self.deliver(ns, pkt, iif)

    def deliver(self, ns: Namespace, pkt: Packet, iif: Interface | None = None) -> Path:
        commands = [ip_cmd(ns, f"route get {pkt.dst}")]
        where = f"{pkt.dst} is local to {owner_of(ns)}"
        if pkt.proto in ("icmp", "icmpv6") or pkt.dport is None:
            self.add(ns, "deliver", f"{where}: its kernel answers the echo request",
                     tuple(commands), dev=iif)
            return self.end("delivered", pkt, ns)
        commands.append(ns_exec(ns, f"ss -{'t' if pkt.proto == 'tcp' else 'u'}lnp "
                                    f"sport = :{pkt.dport}"))
        found = [
            lst for lst in self.reads.listeners(ns)
            if lst.proto == pkt.proto and lst.port == pkt.dport
            and lst.address in (*_WILDCARDS[version_of(pkt.dst)], pkt.dst)
        ]
        if not found:
            return self.fail(ns, "deliver", f"{where}, but nothing listens on "
                             f"{pkt.proto}/{pkt.dport} there", "no listener", tuple(commands),
                             pkt=pkt)
        who = ", ".join(f"PID {pid} ({comm})" for pid, comm in found[0].pids) or "a socket"
        bound = endpoint(found[0].address, pkt.dport)
        self.add(ns, "deliver", f"{where}: {who} listens on {bound}", tuple(commands), dev=iif)
        return self.end("delivered", pkt, ns)

    def undo_nat(self, ns: Namespace, pkt: Packet) -> Packet:
        """On a reply: conntrack reverses the NAT this namespace applied to the request."""
        if self.reply_to is None:
            return pkt
        for label, nat, before in self.reply_to.nat:
            if label != ns.label:
                continue
            if nat.kind in ("masquerade", "snat") and pkt.dst == nat.addr:
                out = replace(pkt, dst=before.src, dport=before.sport)
                self.add(ns, "nat", f"conntrack reverses the {nat.kind}: destination "
                         f"{pkt.dst} -> {before.src}", (ns_exec(ns, "conntrack -L"),))
                return out
            if nat.kind == "dnat" and pkt.src == nat.addr:
                out = replace(pkt, src=before.dst, sport=before.dport)
                self.add(ns, "nat", f"conntrack reverses the dnat: source {pkt.src} -> "
                         f"{before.dst}", (ns_exec(ns, "conntrack -L"),))
                return out
        return pkt


def walk(host: Host, reads: Reads, start: Namespace, packet: Packet, *, pick: int = 0,
         prefer: str | None = None, reply_to: Path | None = None,
         index: HostIndex | None = None, size: int | None = None) -> Path:
    """The hops of `packet` sent from namespace `start` (a reply to `reply_to` if given).

    Where a Service spreads connections, the walk follows the backend `prefer` if given (the
    one a real connection got), else branch `pick`. `index` saves rebuilding the host's
    lookups when one host is walked several times. With `size` (bytes; 0: as large as the
    first link allows), each link's MTU is checked against a packet that large, and the hop
    where it cannot pass is `Path.too_big`."""
    walker = _Walker(host, reads, pick=pick, prefer=prefer, reply_to=reply_to, index=index,
                     size=size)
    return walker.run(start, packet)
