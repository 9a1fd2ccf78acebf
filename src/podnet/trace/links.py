"""The walk's way out of a namespace: across a veth pair, through a bridge (its neighbour entry and
forwarding database), into a VXLAN tunnel (its neighbour and FDB entries) and out of it again on
the remote node."""

from __future__ import annotations

from podnet.inspect.model import Interface, Namespace
from podnet.kernel.lookup import RouteAnswer
from podnet.plan.layout import VXLAN_OVERHEAD  # by the underlay's family: 50 bytes, or 70
from podnet.trace.model import Path
from podnet.trace.nft_types import Packet
from podnet.trace.walker import Tunnel, WalkerBase
from podnet.trace.words import (
    addresses,
    bridge_cmd,
    endpoint,
    ip_cmd,
    link_problem,
    neigh_cmd,
    neighbour_protocol,
    owner_of,
    version_of,
)

__all__ = ["LinkWalker"]



class LinkWalker(WalkerBase):
    """Leaving a namespace by a link, and arriving at the other end of it."""

    def egress(self, ns: Namespace, oif: Interface, nexthop: str, pkt: Packet,
               answer: RouteAnswer) -> tuple[Namespace, Interface | None, Packet] | Path:
        problem = link_problem(oif)
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
        """(MAC, words for people, a broken path if the neighbour failed, command). An IPv4
        neighbour answers ARP, an IPv6 one neighbour solicitations (NDP)."""
        command = neigh_cmd(ns, ip, iface.ifname)
        entry = self.reads.neighbour(ns, iface.ifindex, ip)
        asks = neighbour_protocol(ip)
        if entry is not None and entry.state == "FAILED":
            what = "ARP" if asks == "ARP" else "neighbour solicitations (NDP)"
            path = self.fail(ns, "neighbour", f"{ip} does not answer {what} on {iface.ifname} "
                             "(neighbour FAILED)", "no neighbour", (command,))
            return None, "", path, command
        if entry is not None and entry.mac:
            return entry.mac, f"{ip} is {entry.mac} ({entry.state})", None, command
        how = "ARP asks" if asks == "ARP" else "a neighbour solicitation (NDP) asks"
        return guess, (f"{ip} not in the neighbour table yet: {how}, "
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
        problem = link_problem(peer_if)
        text = f"{oif.ifname} -> {peer_if.ifname} in {owner_of(other)}"
        if problem:
            return self.fail(ns, "veth", text, "interface down",
                             (*commands, ip_cmd(other, f"link show {peer_if.ifname}")),
                             (problem,), pkt)
        arriving = self.shaping(other, peer_if, arriving=True)
        notes = tuple(n for n in (words, arriving) if n)
        self.add(ns, "veth", text, tuple(commands), notes=notes, dev=oif)
        self.fits(peer_if, f"{peer_if.ifname} in {owner_of(other)} drops larger frames as they "
                  "arrive, and no ICMP tells the sender: a black hole")
        return self.arrive(other, peer_if, mac, nexthop, pkt)

    def mac_for(self, ns: Namespace, iface: Interface, ip: str) -> str | None:
        """Who answers ARP (NDP) for `ip` behind `iface`: itself, its bridge, or a bridge port's
        peer."""
        if ip in addresses(iface):
            return iface.mac
        if iface.master:
            bridge = ns.interface(iface.master)
            if bridge is not None and ip in addresses(bridge):
                return bridge.mac
            for port in ns.interfaces:
                if port.master == iface.master and port is not iface:
                    far = self.peer(ns, port)
                    if far and ip in addresses(far[1]):
                        return far[1].mac
        return iface.mac

    def arrive(self, ns: Namespace, iif: Interface, mac: str | None, nexthop: str,
               pkt: Packet) -> tuple[Namespace, Interface | None, Packet] | Path:
        """A frame arrives on `iif`: a bridge port forwards it on, else the namespace routes it."""
        bridge = ns.interface(iif.master) if iif.master else None
        if bridge is None or bridge.kind != "bridge":
            return ns, iif, pkt
        mine = mac is not None and bridge.mac is not None and mac.lower() == bridge.mac.lower()
        if mine or (mac is None and nexthop in addresses(bridge)):
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
        problem = link_problem(port)
        text = f"{bridge.ifname} -> port {port.ifname}"
        if problem:
            return self.fail(ns, "bridge", text, "interface down", tuple(commands),
                             (*words, problem), pkt)
        if arrived is not None and self._bridged_to_netfilter(ns):
            # br_netfilter shows a bridged frame to the forward hook (NetworkPolicies, a drop
            # rule), with the bridge as both interfaces.
            pkt, broken, _ = self.hook(ns, "forward", pkt, iif=bridge.ifname, oif=bridge.ifname)
            if broken is not None:
                return broken
        self.add(ns, "bridge", text, tuple(commands), notes=tuple(words), dev=port)
        self.fits(port, f"bridge {bridge.ifname} drops frames larger than its port's MTU, "
                  "and no ICMP tells the sender: a black hole")
        if port.kind == "veth":
            return self.cross(ns, port, nexthop, pkt, neighbour=False, mac=mac)
        self.add(ns, "leave", f"leaves by bridge port {port.ifname} ({port.kind}): beyond what "
                 "podnet can follow", status="warn", reason="left")
        return self.end("left", pkt, ns)

    def _bridged_to_netfilter(self, ns: Namespace) -> bool:
        return self.reads.sysctl(ns, "net.bridge.bridge-nf-call-iptables") == "1"

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
                        or nexthop in addresses(far[1])):
                return port, "not in the fdb yet: flooded, answered from this port"
        return None, ""

    def encapsulate(self, ns: Namespace, oif: Interface, nexthop: str, pkt: Packet,
                    answer: RouteAnswer) -> tuple[Namespace, Interface | None, Packet] | Path:
        vx = self.reads.vxlan(ns, oif.ifindex)
        commands = (ip_cmd(ns, f"-d link show {oif.ifname}"),
                    neigh_cmd(ns, nexthop, oif.ifname),
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
                f"{how}: {entry.mac} -> remote {remote}; encapsulated in UDP to "
                f"{endpoint(remote, port)}")
        overhead = VXLAN_OVERHEAD[6 if ":" in remote else 4]  # the underlay's family
        notes = (f"VXLAN adds {overhead} bytes to each packet (outer IP, UDP and VXLAN headers "
                 f"and the inner Ethernet header): {oif.ifname}'s mtu {oif.mtu} plus "
                 f"{overhead} must fit the underlay",) if oif.mtu else ()
        self.add(ns, "vxlan", text, commands, notes=notes, dev=oif)
        self.tunnels.append(Tunnel(pkt, vx, oif.ifname, self.size))
        if self.size:
            self.size += overhead
        family = version_of(remote)  # the underlay's, which may not be the inner packet's
        local = vx.local or next((a for a in (answer.src, pkt.src)
                                  if a and version_of(a) == family), "")
        outer = Packet(local, remote, "udp", None, port)
        return ns, None, outer

    def decapsulate(self, ns: Namespace, pkt: Packet,
                    ) -> tuple[Namespace, Interface | None, Packet] | Path:
        tunnel = self.tunnels[-1]
        for iface in ns.interfaces:
            if iface.kind != "vxlan":
                continue
            vx = self.reads.vxlan(ns, iface.ifindex)
            if vx is None or (vx.port or 8472) != pkt.dport or vx.vni != tunnel.vxlan.vni:
                continue
            # Each family's device listens on its own socket (dual-stack flannel: flannel.1
            # over IPv4, flannel-v6.1 over IPv6, the same VNI and port): the outer packet's
            # family picks the one that takes it.
            if vx.local and version_of(vx.local) != version_of(pkt.dst):
                continue
            self.tunnels.pop()
            if tunnel.size is not None:
                self.size = tunnel.size
            problem = link_problem(iface)
            text = (f"UDP {pkt.dport} to {pkt.dst}: decapsulated by {iface.ifname} "
                    f"(VNI {vx.vni}); the inner packet to {tunnel.inner.dst} goes on")
            if problem:
                return self.fail(ns, "decap", text, "interface down",
                                 (ip_cmd(ns, f"-d link show {iface.ifname}"),), (problem,),
                                 tunnel.inner)
            self.add(ns, "decap", text, (ip_cmd(ns, f"-d link show {iface.ifname}"),), dev=iface)
            return self.arrive(ns, iface, iface.mac, tunnel.inner.dst, tunnel.inner)
        return self.fail(ns, "decap", f"UDP {pkt.dport} reaches {owner_of(ns)}, but no VXLAN "
                         f"device with VNI {tunnel.vxlan.vni} listens on that port there",
                         "no tunnel end", (ip_cmd(ns, "-d link show type vxlan"),), pkt=pkt)
