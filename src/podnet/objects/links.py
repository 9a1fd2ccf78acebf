"""Links: every veth of every node with its peer as the kernel pairs them, read from the kernel
(not from the record). A pod's veth leads to `eth0` in the pod; the node's own `eth0` leads to a
veth in the node network's namespace, a port of its bridge. `-o wide` adds each link's qdiscs
in one phrase (`tc.summaries`: a shaped pod veth says "tbf rate 10mbit; ingress via pnifb...:
rate 5mbit")."""

from __future__ import annotations

from typing import Any

from podnet.objects.common import addresses, namespace
from podnet.objects.kinds import Column, Kind, Obj, register
from podnet.objects.reads import KernelReads
from podnet.state import LabState

__all__ = ["LINKS"]

NODE_NETWORK = "(node network)"


def _collect(record: LabState, reads: KernelReads) -> list[Obj]:
    lay = record.layout
    pods_by_netns = {p.netns: p for p in lay.pods if not p.host_network}
    wanted = [lay.fabric_netns, *(n.netns for n in lay.nodes), *pods_by_netns]
    host = reads.host(wanted)
    labels = {ns.label: ns.name for ns in host.namespaces}
    out: list[Obj] = []
    for node in lay.nodes:
        ns = namespace(host, node.netns)
        if ns is None:
            continue
        qdiscs = reads.qdiscs(node.netns)
        for link in ns.interfaces:
            if link.kind != "veth":
                continue
            peer: dict[str, Any] = {"ifname": None, "ifindex": None, "netns": None, "pod": None,
                                    "side": None}
            if link.peer is not None:
                peer_netns = labels.get(link.peer.netns or "", link.peer.netns)
                pod = pods_by_netns.get(peer_netns or "")
                peer = {
                    "ifname": link.peer.ifname,
                    "ifindex": link.peer.ifindex,
                    "netns": peer_netns,
                    "pod": pod.key if pod else None,
                    "side": ("pod" if pod else "node network"
                             if peer_netns == lay.fabric_netns else "other"),
                    "status": link.peer.status,
                }
            out.append({
                "apiVersion": "podnet/v1",
                "kind": "Link",
                "metadata": {"name": link.ifname, "labels": {}},
                "node": node.name,
                "ifindex": link.ifindex,
                "mac": link.mac,
                "mtu": link.mtu,
                "state": link.state,
                "master": link.master,
                "addresses": list(link.addresses),
                "qdisc": qdiscs.get(link.ifname, "noqueue"),
                "peer": peer,
            })
    return out


def _peer_in(o: Obj) -> str:
    peer = o["peer"]
    if peer["pod"]:
        return str(peer["pod"])
    if peer["side"] == "node network":
        return NODE_NETWORK
    return str(peer["netns"] or "?")


LINKS = register(Kind(
    name="links", singular="link", kind="Link", aliases=(), namespaced=False,
    columns=(
        Column("NODE", lambda o: o["node"]),
        Column("NAME", lambda o: f"{o['metadata']['name']}@if{o['peer']['ifindex'] or '?'}"),
        Column("STATE", lambda o: o["state"]),
        Column("ADDRESSES", lambda o: ",".join(addresses(o["addresses"], link_local=False))
               or "-"),
        Column("PEER", lambda o: o["peer"]["ifname"] or "?"),
        Column("PEER-IN", _peer_in),
        Column("MASTER", lambda o: o["master"] or "-", wide=True),
        Column("MAC", lambda o: o["mac"], wide=True),
        Column("MTU", lambda o: o["mtu"], wide=True),
        Column("PEER-NETNS", lambda o: o["peer"]["netns"] or "?", wide=True),
        # what tc does to packets leaving by it (and, through an ifb, arriving on it)
        Column("QDISC", lambda o: o["qdisc"], wide=True),
    ),
    collect=_collect,
    help="every veth of every node, with its peer as the kernel pairs them",
))
