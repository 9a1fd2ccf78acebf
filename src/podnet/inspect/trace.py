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
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass, field, replace

from podnet.inspect.model import Host, Interface, Namespace, Route
from podnet.inspect.trace_model import Hop, HopStatus, Outcome, Path, Reads
from podnet.inspect.trace_nft import HookContext, Nat, Packet, Ruleset, apply_nat, evaluate
from podnet.kernel.lookup import RouteAnswer, Vxlan

__all__ = ["MAX_HOPS", "HostIndex", "bridge_cmd", "ip_cmd", "ns_exec", "owner_of", "walk"]

MAX_HOPS = 64
_LINK_DOWN_STATES = ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT")
_BLAMABLE = ("no route", "host unreachable", "forwarding off")
_WILDCARDS = (str(ipaddress.IPv4Address(0)), str(ipaddress.IPv6Address(0)))  # bound to any
_State = tuple[Namespace, "Interface | None", Packet]  # where a packet is, and how it got in


# --- commands a person types, for any namespace -----------------------------------------------


def _nsenter(ns: Namespace) -> str | None:
    pid = ns.holders[0].pid if ns.holders else None
    return f"nsenter -t {pid} -n" if pid else None


def ip_cmd(ns: Namespace, args: str) -> str:
    if ns.current:
        return f"ip {args}"
    if ns.name:
        return f"ip -n {ns.name} {args}"
    prefix = _nsenter(ns)
    return f"{prefix} ip {args}" if prefix else f"ip {args}  # in {ns.label}"


def bridge_cmd(ns: Namespace, args: str) -> str:
    if ns.current:
        return f"bridge {args}"
    if ns.name:
        return f"bridge -n {ns.name} {args}"
    prefix = _nsenter(ns)
    return f"{prefix} bridge {args}" if prefix else f"bridge {args}  # in {ns.label}"


def ns_exec(ns: Namespace, args: str) -> str:
    if ns.current:
        return args
    if ns.name:
        return f"ip netns exec {ns.name} {args}"
    prefix = _nsenter(ns)
    return f"{prefix} {args}" if prefix else f"{args}  # in {ns.label}"


def owner_of(ns: Namespace) -> str:
    if ns.pod:
        return f"pod {ns.pod}"
    if ns.node:
        return f"node {ns.node}"
    return ns.label


def _ipv4(cidr: str) -> str | None:
    """The IPv4 address of a kernel-printed CIDR (canonical: no parsing needed), else None."""
    addr = cidr.split("/", 1)[0]
    return addr if "." in addr and ":" not in addr else None


def _addresses(iface: Interface) -> list[str]:
    return [a for a in (_ipv4(c) for c in iface.addresses) if a]


def _matched_route(ns: Namespace, dst: str) -> Route | None:
    """The main-table route a lookup of `dst` matches (longest prefix), for people."""
    best: tuple[int, Route] | None = None
    target = ipaddress.ip_address(dst)
    for route in ns.routes:
        if route.family != 4 or route.type not in ("unicast", "local"):
            continue
        net = ipaddress.ip_network("0.0.0.0/0" if route.dst == "default" else route.dst)
        if target in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, route)
    return best[1] if best else None


def _route_words(r: Route) -> str:
    words = [r.dst]
    if r.gateway:
        words.append(f"via {r.gateway}")
    if r.dev:
        words.append(f"dev {r.dev}")
    return " ".join(words)


def _link_problem(iface: Interface) -> str | None:
    if not iface.up:
        return f"{iface.ifname} is down"
    if iface.state in _LINK_DOWN_STATES:
        return f"{iface.ifname} has no carrier (state {iface.state}): its other end is down"
    return None


class HostIndex:
    """What every walk over one host looks up: namespaces by label, and who owns an address.
    Built once per trace (a lab of 200 pods has thousands of addresses)."""

    def __init__(self, host: Host) -> None:
        self.by_label = {ns.label: ns for ns in host.namespaces}
        self.owners: dict[str, tuple[Namespace, Interface]] = {}
        self.local: dict[int, frozenset[str]] = {}
        for ns in host.namespaces:
            mine = set()
            for iface in ns.interfaces:
                for cidr in iface.addresses:
                    ip = _ipv4(cidr)
                    if ip is None:
                        continue
                    mine.add(ip)
                    # A /32 gateway on many veths (kindnet) does not say who owns the address.
                    if iface.kind != "loopback" and not cidr.endswith("/32"):
                        self.owners.setdefault(ip, (ns, iface))
            self.local[ns.inode] = frozenset(mine)


@dataclass
class _Tunnel:
    inner: Packet
    vxlan: Vxlan
    ifname: str


@dataclass
class _Walker:
    host: Host
    reads: Reads
    pick: int = 0
    prefer: str | None = None
    reply_to: Path | None = None
    index: HostIndex | None = None
    hops: list[Hop] = field(default_factory=list)
    nat_log: list[tuple[str, Nat, Packet]] = field(default_factory=list)
    tunnels: list[_Tunnel] = field(default_factory=list)
    warned: int | None = None  # a hop that left by the default route for a lab address
    warn_notes: tuple[str, ...] = ()
    mark: int = 0  # the packet mark: set and read by nftables rules within one namespace
    mark_ns: int = 0  # the namespace (inode) the mark belongs to: crossing a veth clears it

    def __post_init__(self) -> None:
        self.index = self.index or HostIndex(self.host)
        self.by_label = self.index.by_label
        self.owners = self.index.owners
        self.rulesets: dict[int, Ruleset | None] = {}

    # --- hops ---------------------------------------------------------------------------------

    def add(self, ns: Namespace, step: str, text: str, commands: tuple[str, ...] = (),
            status: HopStatus = "ok", reason: str = "", notes: tuple[str, ...] = ()) -> int:
        self.hops.append(Hop(step, ns.label, owner_of(ns), text, commands, status, reason,
                             notes))
        return len(self.hops) - 1

    def end(self, outcome: Outcome, pkt: Packet, ns: Namespace | None = None) -> Path:
        broken = next((i for i, h in enumerate(self.hops) if h.status == "broken"), None)
        if (broken is not None and self.warned is not None and self.warned < broken
                and self.hops[broken].reason in _BLAMABLE):
            hop = self.hops[self.warned]
            self.hops[self.warned] = replace(hop, status="broken", reason="no route",
                                             notes=(*hop.notes, *self.warn_notes))
            broken = self.warned
        return Path(tuple(self.hops), outcome, pkt, ns.label if ns else None, broken,
                    tuple(self.nat_log))

    def fail(self, ns: Namespace, step: str, text: str, reason: str,
             commands: tuple[str, ...] = (), notes: tuple[str, ...] = (),
             pkt: Packet | None = None) -> Path:
        self.add(ns, step, text, commands, "broken", reason, notes)
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
            self.rulesets[ns.inode] = Ruleset(read.objects) if read.objects else None
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
        if result.verdict in ("drop", "reject") and result.rule is not None:
            rule = result.rule
            what = "policy drop" if rule.handle is None else f"rule handle {rule.handle}"
            text = (f"nftables {hook}: {result.verdict} by {rule.where()} {what}: "
                    f"`{rule.text}`")
            return pkt, self.fail(ns, "filter", text, "rule drop",
                                  (ns_exec(ns, rule.command()),), notes, pkt), []
        out = pkt
        for nat in result.nat:
            before = out
            if nat.kind == "masquerade":
                continue  # needs the outgoing interface's address: applied by the caller
            out = apply_nat(out, nat)
            self.nat_log.append((ns.label, nat, before))
            self.add(ns, "nat", _nat_text(hook, nat, before, out),
                     (ns_exec(ns, nat.rule.command()),), notes=notes)
            notes = ()
        if notes:
            self.add(ns, "filter", f"nftables {hook}: rules podnet could not evaluate",
                     (ns_exec(ns, "nft list ruleset"),), "warn", "rules not evaluated", notes)
        return out, None, [n for n in result.nat if n.kind == "masquerade"]

    # --- the walk ------------------------------------------------------------------------------

    def run(self, start: Namespace, pkt: Packet) -> Path:
        state: _State = (start, None, pkt)
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

    def step(self, ns: Namespace, iif: Interface | None, pkt: Packet) -> _State | Path:
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
                  answer: RouteAnswer) -> _State | Path:
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
        hooks = [("postrouting", None)] if iif is None else [("forward", iif), ("postrouting",
                                                                               None)]
        for hook, inbound in hooks:
            pkt, dropped, masq = self.hook(ns, hook, pkt, iif=inbound.ifname if inbound else None,
                                           oif=oif.ifname)
            if dropped:
                return dropped
            pkt = self.masquerade(ns, pkt, masq, answer.src or next(iter(_addresses(oif)), None))
        return self.egress(ns, oif, answer.gateway or pkt.dst, pkt, answer)

    def masquerade(self, ns: Namespace, pkt: Packet, masq: list[Nat], src: str | None) -> Packet:
        """Apply a masquerade: the source becomes the outgoing interface's address."""
        for nat in masq:
            before = pkt
            pkt = replace(pkt, src=src or pkt.src)
            done = replace(nat, addr=pkt.src)
            self.nat_log.append((ns.label, done, before))
            self.add(ns, "nat", _nat_text("postrouting", done, before, pkt),
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
        matched = _matched_route(ns, pkt.dst)
        notes = (f"matched route: {_route_words(matched)}",) if matched else ()
        frm = f" from {pkt.src} iif {iif.ifname}" if iif is not None else ""
        commands = (ip_cmd(ns, f"route get {pkt.dst}{frm}"),)
        owner = self.owners.get(pkt.dst)
        index = self.add(ns, "route", " ".join(words), commands, notes=notes)
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
            problem = _link_problem(iface)
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
            forwarding = (self.reads.sysctl(ns, f"net.ipv4.conf.{iif.ifname}.forwarding")
                          if iif is not None else None)
            if forwarding == "0":
                assert iif is not None
                text = (f"{ns.label} does not forward packets arriving on {iif.ifname} "
                        "(forwarding is off)")
                reason = "forwarding off"
                commands.append(ns_exec(ns, f"sysctl net.ipv4.conf.{iif.ifname}.forwarding"))
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

    # --- leaving a namespace --------------------------------------------------------------------

    def egress(self, ns: Namespace, oif: Interface, nexthop: str, pkt: Packet,
               answer: RouteAnswer) -> tuple[Namespace, Interface | None, Packet] | Path:
        problem = _link_problem(oif)
        if problem:
            return self.fail(ns, "link", problem, "interface down",
                             (ip_cmd(ns, f"link show {oif.ifname}"),), pkt=pkt)
        if oif.kind == "veth":
            return self.cross(ns, oif, nexthop, pkt, neighbour=True)
        if oif.kind == "bridge":
            return self.through_bridge(ns, oif, nexthop, pkt, arrived=None)
        if oif.kind == "vxlan":
            return self.encapsulate(ns, oif, nexthop, pkt, answer)
        self.add(ns, "leave", f"leaves {ns.label} by {oif.ifname} ({oif.kind}) towards "
                 f"{nexthop}: beyond what podnet can follow",
                 (ip_cmd(ns, f"link show {oif.ifname}"),), "warn", "left")
        return self.end("left", pkt, ns)

    def neighbour_text(self, ns: Namespace, iface: Interface, ip: str,
                       guess: str | None) -> tuple[str | None, str, Path | None, str]:
        """(MAC, words for people, a broken path if the neighbour failed, command)."""
        command = ip_cmd(ns, f"neigh show {ip} dev {iface.ifname}")
        entry = self.reads.neighbour(ns, iface.ifindex, ip)
        if entry is not None and entry.state == "FAILED":
            path = self.fail(ns, "neighbour", f"{ip} does not answer ARP on {iface.ifname} "
                             "(neighbour FAILED)", "no neighbour", (command,))
            return None, "", path, command
        if entry is not None and entry.mac:
            return entry.mac, f"{ip} is {entry.mac} ({entry.state})", None, command
        return guess, (f"{ip} not in the neighbour table yet: ARP asks, "
                       f"{guess or 'its owner'} answers"), None, command

    def cross(self, ns: Namespace, oif: Interface, nexthop: str, pkt: Packet, *,
              neighbour: bool, mac: str | None = None,
              ) -> tuple[Namespace, Interface | None, Packet] | Path:
        far = self.peer(ns, oif)
        if far is None:
            status = oif.peer.status if oif.peer else "peer-gone"
            return self.fail(ns, "veth", f"{oif.ifname}: its peer is "
                             + ("gone" if status == "peer-gone" else
                                "in a namespace podnet cannot see"),
                             "peer not found", (ip_cmd(ns, f"link show {oif.ifname}"),), pkt=pkt)
        other, peer_if = far
        commands = [ip_cmd(ns, f"link show {oif.ifname}")]
        words = ""
        if neighbour:
            guess = self.mac_for(other, peer_if, nexthop)
            mac, words, failed, command = self.neighbour_text(ns, oif, nexthop, guess)
            if failed:
                return failed
            commands.append(command)
        problem = _link_problem(peer_if)
        text = f"{oif.ifname} -> {peer_if.ifname} in {owner_of(other)}"
        if problem:
            return self.fail(ns, "veth", text, "interface down",
                             (*commands, ip_cmd(other, f"link show {peer_if.ifname}")),
                             (problem,), pkt)
        self.add(ns, "veth", text, tuple(commands), notes=(words,) if words else ())
        return self.arrive(other, peer_if, mac, nexthop, pkt)

    def mac_for(self, ns: Namespace, iface: Interface, ip: str) -> str | None:
        """Who answers ARP for `ip` behind `iface`: itself, its bridge, or a bridge port's peer."""
        if ip in _addresses(iface):
            return iface.mac
        if iface.master:
            bridge = ns.interface(iface.master)
            if bridge is not None and ip in _addresses(bridge):
                return bridge.mac
            for port in ns.interfaces:
                if port.master == iface.master and port is not iface:
                    far = self.peer(ns, port)
                    if far and ip in _addresses(far[1]):
                        return far[1].mac
        return iface.mac

    def arrive(self, ns: Namespace, iif: Interface, mac: str | None, nexthop: str,
               pkt: Packet) -> tuple[Namespace, Interface | None, Packet] | Path:
        """A frame arrives on `iif`: a bridge port forwards it on, else the namespace routes it."""
        bridge = ns.interface(iif.master) if iif.master else None
        if bridge is None or bridge.kind != "bridge":
            return ns, iif, pkt
        mine = mac is not None and bridge.mac is not None and mac.lower() == bridge.mac.lower()
        if mine or (mac is None and nexthop in _addresses(bridge)):
            self.add(ns, "bridge", f"{iif.ifname} is a port of bridge {bridge.ifname}; the frame "
                     f"is for {bridge.ifname} itself ({nexthop}), so {owner_of(ns)} routes it",
                     (bridge_cmd(ns, f"link show dev {iif.ifname}"),))
            return ns, bridge, pkt
        return self.through_bridge(ns, bridge, nexthop, pkt, arrived=iif, mac=mac)

    def through_bridge(self, ns: Namespace, bridge: Interface, nexthop: str, pkt: Packet, *,
                       arrived: Interface | None, mac: str | None = None,
                       ) -> tuple[Namespace, Interface | None, Packet] | Path:
        commands = []
        words = []
        if arrived is None:  # routed out by the bridge: its neighbour entry gives the MAC
            mac, text, failed, command = self.neighbour_text(
                ns, bridge, nexthop, self.owner_mac(nexthop))
            if failed:
                return failed
            words.append(text)
            commands.append(command)
        ports = [i for i in ns.interfaces if i.master == bridge.ifname]
        port, how = self.fdb_port(ns, bridge, ports, mac, nexthop)
        commands.append(bridge_cmd(ns, f"fdb show br {bridge.ifname}"))
        if port is None:
            return self.fail(ns, "bridge", f"bridge {bridge.ifname}: no port leads to {nexthop}"
                             + (f" ({mac})" if mac else ""), "no bridge port",
                             tuple(commands), tuple(words), pkt)
        words.append(f"{mac or nexthop} on port {port.ifname} ({how})")
        if arrived is not None and port.ifindex == arrived.ifindex:
            words.append("the frame leaves by the port it came in: needs hairpin mode")
        problem = _link_problem(port)
        text = f"{bridge.ifname} -> port {port.ifname}"
        if problem:
            return self.fail(ns, "bridge", text, "interface down", tuple(commands),
                             (*words, problem), pkt)
        self.add(ns, "bridge", text, tuple(commands), notes=tuple(words))
        if port.kind == "veth":
            return self.cross(ns, port, nexthop, pkt, neighbour=False, mac=mac)
        self.add(ns, "leave", f"leaves by bridge port {port.ifname} ({port.kind}): beyond what "
                 "podnet can follow", status="warn", reason="left")
        return self.end("left", pkt, ns)

    def owner_mac(self, ip: str) -> str | None:
        owner = self.owners.get(ip)
        return owner[1].mac if owner else None

    def fdb_port(self, ns: Namespace, bridge: Interface, ports: list[Interface],
                 mac: str | None, nexthop: str) -> tuple[Interface | None, str]:
        by_index = {p.ifindex: p for p in ports}
        if mac:
            for entry in self.reads.fdb(ns):
                if entry.mac.lower() == mac.lower() and entry.ifindex in by_index:
                    return by_index[entry.ifindex], f"fdb {entry.state.lower()}"
        for port in ports:  # not learned yet: the bridge floods, and the owner answers
            far = self.peer(ns, port)
            if far and ((mac and far[1].mac and far[1].mac.lower() == mac.lower())
                        or nexthop in _addresses(far[1])):
                return port, "not in the fdb yet: flooded, answered from this port"
        return None, ""

    def encapsulate(self, ns: Namespace, oif: Interface, nexthop: str, pkt: Packet,
                    answer: RouteAnswer) -> tuple[Namespace, Interface | None, Packet] | Path:
        vx = self.reads.vxlan(ns, oif.ifindex)
        commands = (ip_cmd(ns, f"-d link show {oif.ifname}"),
                    ip_cmd(ns, f"neigh show {nexthop} dev {oif.ifname}"),
                    bridge_cmd(ns, f"fdb show dev {oif.ifname}"))
        if vx is None:
            return self.fail(ns, "vxlan", f"{oif.ifname} is not readable as a VXLAN device",
                             "unknown tunnel", commands, pkt=pkt)
        entry = self.reads.neighbour(ns, oif.ifindex, nexthop)
        if entry is None or not entry.mac or entry.state in ("FAILED", "INCOMPLETE"):
            return self.fail(ns, "vxlan", f"{oif.ifname}: no neighbour entry for {nexthop}, "
                             "so the tunnel has no inner destination MAC", "no neighbour",
                             commands, pkt=pkt)
        remote = next((e.dst for e in self.reads.fdb(ns)
                       if e.ifindex == oif.ifindex and e.mac.lower() == entry.mac.lower()
                       and e.dst), None)
        how = "fdb"
        if remote is None:
            remote = next((e.dst for e in self.reads.fdb(ns) if e.ifindex == oif.ifindex
                           and e.mac == "00:00:00:00:00:00" and e.dst), vx.remote)
            how = "default fdb entry" if remote else how
        if remote is None:
            return self.fail(ns, "vxlan", f"{oif.ifname}: no fdb entry for {entry.mac}: the "
                             "tunnel does not know which node has it", "no fdb entry",
                             commands, pkt=pkt)
        port = vx.port or 8472
        text = (f"{oif.ifname} VNI {vx.vni}: {nexthop} is {entry.mac} ({entry.state}), "
                f"{how}: {entry.mac} -> remote {remote}; encapsulated in UDP to {remote}:{port}")
        self.add(ns, "vxlan", text, commands)
        self.tunnels.append(_Tunnel(pkt, vx, oif.ifname))
        outer = Packet(vx.local or answer.src or pkt.src, remote, "udp", None, port)
        return ns, None, outer

    # --- arriving ------------------------------------------------------------------------------

    def local(self, ns: Namespace, iif: Interface | None, pkt: Packet) -> _State | Path:
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
                     (ip_cmd(ns, f"route get {pkt.dst}"),))
            return self.end("delivered", pkt, ns)
        return self.deliver(ns, pkt)

    def deliver(self, ns: Namespace, pkt: Packet) -> Path:
        commands = [ip_cmd(ns, f"route get {pkt.dst}")]
        where = f"{pkt.dst} is local to {owner_of(ns)}"
        if pkt.proto == "icmp" or pkt.dport is None:
            self.add(ns, "deliver", f"{where}: its kernel answers the echo request",
                     tuple(commands))
            return self.end("delivered", pkt, ns)
        commands.append(ns_exec(ns, f"ss -{'t' if pkt.proto == 'tcp' else 'u'}lnp "
                                    f"sport = :{pkt.dport}"))
        found = [
            lst for lst in self.reads.listeners(ns)
            if lst.proto == pkt.proto and lst.port == pkt.dport
            and lst.address in (*_WILDCARDS, pkt.dst)
        ]
        if not found:
            return self.fail(ns, "deliver", f"{where}, but nothing listens on "
                             f"{pkt.proto}/{pkt.dport} there", "no listener", tuple(commands),
                             pkt=pkt)
        who = ", ".join(f"PID {pid} ({comm})" for pid, comm in found[0].pids) or "a socket"
        self.add(ns, "deliver", f"{where}: {who} listens on {found[0].address}:{pkt.dport}",
                 tuple(commands))
        return self.end("delivered", pkt, ns)

    def decapsulate(self, ns: Namespace, pkt: Packet,
                    ) -> tuple[Namespace, Interface | None, Packet] | Path:
        tunnel = self.tunnels[-1]
        for iface in ns.interfaces:
            if iface.kind != "vxlan":
                continue
            vx = self.reads.vxlan(ns, iface.ifindex)
            if vx is None or (vx.port or 8472) != pkt.dport or vx.vni != tunnel.vxlan.vni:
                continue
            self.tunnels.pop()
            problem = _link_problem(iface)
            text = (f"UDP {pkt.dport} to {pkt.dst}: decapsulated by {iface.ifname} "
                    f"(VNI {vx.vni}); the inner packet to {tunnel.inner.dst} goes on")
            if problem:
                return self.fail(ns, "decap", text, "interface down",
                                 (ip_cmd(ns, f"-d link show {iface.ifname}"),), (problem,),
                                 tunnel.inner)
            self.add(ns, "decap", text, (ip_cmd(ns, f"-d link show {iface.ifname}"),))
            return self.arrive(ns, iface, iface.mac, tunnel.inner.dst, tunnel.inner)
        return self.fail(ns, "decap", f"UDP {pkt.dport} reaches {owner_of(ns)}, but no VXLAN "
                         f"device with VNI {tunnel.vxlan.vni} listens on that port there",
                         "no tunnel end", (ip_cmd(ns, "-d link show type vxlan"),), pkt=pkt)

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


def _endpoint(addr: str, port: int | None) -> str:
    return f"{addr}:{port}" if port is not None else addr


def _nat_text(hook: str, nat: Nat, before: Packet, after: Packet) -> str:
    where = f"nftables {hook}, {nat.rule.where()}"
    if nat.kind in ("dnat", "redirect"):
        text = (f"{nat.kind}: destination {_endpoint(before.dst, before.dport)} -> "
                f"{_endpoint(after.dst, after.dport)} ({where})")
        if nat.alternatives:
            others = ", ".join(_endpoint(a or "?", p) for a, p in nat.alternatives)
            text += f"; other connections may go to {others}"
        return text
    return f"{nat.kind}: source {before.src} -> {after.src} ({where})"


def walk(host: Host, reads: Reads, start: Namespace, packet: Packet, *, pick: int = 0,
         prefer: str | None = None, reply_to: Path | None = None,
         index: HostIndex | None = None) -> Path:
    """The hops of `packet` sent from namespace `start` (a reply to `reply_to` if given).

    Where a Service spreads connections, the walk follows the backend `prefer` if given (the
    one a real connection got), else branch `pick`. `index` saves rebuilding the host's
    lookups when one host is walked several times."""
    walker = _Walker(host, reads, pick=pick, prefer=prefer, reply_to=reply_to, index=index)
    return walker.run(start, packet)
