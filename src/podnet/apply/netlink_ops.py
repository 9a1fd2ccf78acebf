"""The netlink operations of a plan (`Op.netlink`), each as one message of a pending datagram.

The applier queues consecutive netlink operations of one namespace in a `Pending` and sends them
in one datagram; each encoder here adds exactly one message to it, naming links by the indexes
the applier chose (`Applier.claim`, `Applier.index`). Links whose index only the kernel can give
(in a shared namespace, or a bridge that may exist already) are listed in `Pending.learn`, and the
applier asks for them once the datagram is sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from podnet.kernel.batch import Batch
from podnet.plan import ops as o

if TYPE_CHECKING:
    from podnet.apply.applier import Applier

__all__ = ["ENCODERS", "Pending"]


class Pending:
    """Netlink operations waiting to go out together: one namespace, one datagram."""

    def __init__(self, ns: str | None) -> None:
        self.ns = ns
        self.batch = Batch("")
        self.ops: list[o.Op] = []
        self.fds: list[int] = []  # peer namespaces the datagram names (veths born there)
        # Links the kernel numbers (created in a shared namespace, or only when missing): asked
        # for once the datagram is sent. (the op, its namespace, name, peer namespace, peer)
        self.learn: list[tuple[o.Op, str | None, str, str | None, str | None]] = []

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []



def _add_veth(app: Applier, op: o.AddVeth, p: Pending) -> None:
    fd = os.open(app.path(op.peer_ns) or "/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    p.fds.append(fd)
    index = app.claim(op.ns, op.name)
    peer_index = app.claim(op.peer_ns, op.peer)
    if not (index and peer_index):
        p.learn.append((op, op.ns, op.name, op.peer_ns, op.peer))
    p.batch.veth_add(op.name, index, op.peer, peer_index, fd, op.mtu, op.mac)


def _add_bridge(app: Applier, op: o.AddBridge, p: Pending) -> None:
    if op.exist_ok:  # one may be there already, at an index of its own: ask once it is
        app.unclaim(op.ns, op.name)
        p.learn.append((op, op.ns, op.name, None, None))
        p.batch.bridge_add(op.name, 0, op.mtu, exist_ok=True)
        return
    p.batch.bridge_add(op.name, app.claim(op.ns, op.name), op.mtu)


def _add_vxlan(app: Applier, op: o.AddVxlan, p: Pending) -> None:
    underlay = app.index(op.ns, op.dev)
    p.batch.vxlan_add(op.name, app.claim(op.ns, op.name), vni=op.vni, local=op.local,
                      port=op.port, underlay=underlay, mtu=op.mtu, mac=op.mac)


def _set_link(app: Applier, op: o.SetLink, p: Pending) -> None:
    master = app.index(op.ns, op.master) if op.master else None
    p.batch.link_set(app.index(op.ns, op.dev), up=op.up,
                     alias=o.OWNER_ALIAS if op.owned else None, master=master)


def _set_bridge_port(app: Applier, op: o.SetBridgePort, p: Pending) -> None:
    p.batch.bridge_port(app.index(op.ns, op.dev), hairpin=op.hairpin)


def _add_address(app: Applier, op: o.AddAddress, p: Pending) -> None:
    p.batch.addr_add(app.index(op.ns, op.dev), op.cidr, noprefixroute=op.noprefixroute,
                     nodad=op.nodad, replace=op.replace)


def _add_route(app: Applier, op: o.AddRoute, p: Pending) -> None:
    oif = app.index(op.ns, op.dev) if op.dev else None
    p.batch.route_add(op.dst, oif=oif, family=op.family, gateway=op.via,
                      scope=op.scope or "universe", src=op.src, onlink=op.onlink,
                      replace=op.replace)


def _delete_route(app: Applier, op: o.DeleteRoute, p: Pending) -> None:
    oif = app.index(op.ns, op.dev) if op.dev else None
    p.batch.route_delete(op.dst, family=op.family, oif=oif)


def _set_neighbour(app: Applier, op: o.SetNeighbour, p: Pending) -> None:
    p.batch.neigh_replace(app.index(op.ns, op.dev), op.ip, op.mac)


def _delete_neighbour(app: Applier, op: o.DeleteNeighbour, p: Pending) -> None:
    p.batch.neigh_delete(app.index(op.ns, op.dev), op.ip)


def _set_fdb(app: Applier, op: o.SetFdb, p: Pending) -> None:
    p.batch.fdb_replace(app.index(op.ns, op.dev), op.mac, op.dst)


def _delete_fdb(app: Applier, op: o.DeleteFdb, p: Pending) -> None:
    p.batch.fdb_delete(app.index(op.ns, op.dev), op.mac, op.dst)


def _add_rule(app: Applier, op: o.AddRule, p: Pending) -> None:
    p.batch.rule_add(priority=op.priority, table=op.table, family=op.family, src=op.src,
                     dst=op.dst)


def _delete_rule(app: Applier, op: o.DeleteRule, p: Pending) -> None:
    p.batch.rule_delete(priority=op.priority, table=op.table, family=op.family, src=op.src,
                        dst=op.dst)


ENCODERS: dict[type[Any], Callable[[Applier, Any, Pending], None]] = {
    o.AddVeth: _add_veth,
    o.AddBridge: _add_bridge,
    o.AddVxlan: _add_vxlan,
    o.SetLink: _set_link,
    o.SetBridgePort: _set_bridge_port,
    o.AddAddress: _add_address,
    o.AddRoute: _add_route,
    o.DeleteRoute: _delete_route,
    o.SetNeighbour: _set_neighbour,
    o.DeleteNeighbour: _delete_neighbour,
    o.SetFdb: _set_fdb,
    o.DeleteFdb: _delete_fdb,
    o.AddRule: _add_rule,
    o.DeleteRule: _delete_rule,
}
