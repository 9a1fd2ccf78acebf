"""CHECK: whether each operation of an attachment is still in effect in the kernel.

The operations are the ones ADD ran (`podnet.cni.podlink`, built again from podnet's record), so
CHECK compares the kernel with what was made, one object at a time, and names the first that
differs by the command that would make it. Every question is about one link (a filtered dump, a
single lookup), never a dump of the host's links or routes: a node's CHECK costs the same with
ten pods or a thousand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from podnet.errors import ObjectMissingError
from podnet.kernel import sysctl
from podnet.kernel.netlink import Netlink
from podnet.plan import ops as o

__all__ = ["Verifier"]

NUD_PERMANENT = 0x80
_TABLES = {"main": 254, "local": 255, "default": 253}


class Verifier:
    """Answers "is this operation in effect?" in the namespaces of one attachment."""

    def __init__(self, sockets: Callable[[str | None], Netlink]) -> None:
        self._nl = sockets  # a namespace (None: the plugin's own, a path: the pod's) -> socket
        self._links: dict[tuple[str | None, str], dict[str, Any]] = {}

    def link(self, ns: str | None, name: str) -> dict[str, Any] | None:
        key = (ns, name)
        if key not in self._links:
            try:
                self._links[key] = self._nl(ns).link(name)
            except ObjectMissingError:
                return None
        return self._links[key]

    def unmet(self, ops: list[o.Op]) -> str | None:
        """Why the first operation not in effect is not, with its command; None if all are."""
        for op in ops:
            problem = _CHECKS[type(op)](self, op)
            if problem:
                return f"{problem} (`{' && '.join(op.render())}`)"
        return None

    def _index(self, ns: str | None, name: str) -> int | None:
        link = self.link(ns, name)
        return None if link is None else int(link["index"])


def _where(ns: str | None) -> str:
    return "the host" if ns is None else "the pod"


def _veth(v: Verifier, op: o.AddVeth) -> str:
    host, pod = v.link(op.ns, op.name), v.link(op.peer_ns, op.peer)
    if host is None:
        return f"{op.name} is missing from {_where(op.ns)}"
    if pod is None:
        return f"{op.peer} is missing from {_where(op.peer_ns)}"
    if not (host["kind"] == pod["kind"] == "veth" and host["link"] == pod["index"]
            and pod["link"] == host["index"]):
        return f"{op.name} and {op.peer} are not the two ends of one veth"
    if host["mtu"] != op.mtu or pod["mtu"] != op.mtu:
        return f"the veth's MTU is {host['mtu']}/{pod['mtu']}, not {op.mtu}"
    if op.mac and str(host["mac"]).lower() != op.mac:
        return f"{op.name} has MAC {host['mac']}, not {op.mac}"
    return ""


def _bridge(v: Verifier, op: o.AddBridge) -> str:
    link = v.link(op.ns, op.name)
    if link is None or link["kind"] != "bridge":
        return f"bridge {op.name} is missing"
    return ""


def _set_link(v: Verifier, op: o.SetLink) -> str:
    link = v.link(op.ns, op.dev)
    if link is None:
        return f"{op.dev} is missing from {_where(op.ns)}"
    if op.up and not link["up"]:
        return f"{op.dev} in {_where(op.ns)} is down"
    if op.master and link["master"] != v._index(op.ns, op.master):
        return f"{op.dev} is not a port of {op.master}"
    if op.owned and link["alias"] != o.OWNER_ALIAS:
        return f"{op.dev} lacks podnet's mark (ifalias {o.OWNER_ALIAS})"
    return ""


def _address(v: Verifier, op: o.AddAddress) -> str:
    index = v._index(op.ns, op.dev)
    want = ipaddress.ip_interface(op.cidr)
    if index is None or all(ipaddress.ip_interface(a["address"]) != want
                            for a in v._nl(op.ns).link_addresses(index)):
        return f"{op.dev} in {_where(op.ns)} lacks address {op.cidr}"
    return ""


def _route(v: Verifier, op: o.AddRoute) -> str:
    index = v._index(op.ns, op.dev) if op.dev else None
    where = v._nl(op.ns)
    routes = where.link_routes(index) if index is not None else where.routes()
    dst = "default" if op.dst == "default" else str(ipaddress.ip_network(op.dst))
    for route in routes:
        family = 4 if route["family"] == 2 else 6
        if family == op.family and route["dst"] == dst and (
                op.via is None or route["gateway"] == op.via):
            return ""
    via = f" via {op.via}" if op.via else ""
    return f"the route to {op.dst}{via} is missing in {_where(op.ns)}"


def _rule(v: Verifier, op: o.AddRule) -> str:
    table = _TABLES.get(op.table) or int(op.table)
    for rule in v._nl(op.ns).rules(op.family):
        if (rule["priority"], rule["table"], rule["src"], rule["dst"]) == (
                op.priority, table, op.src, op.dst):
            return ""
    return f"the rule to {op.dst} (priority {op.priority}) is missing"


def _neighbour(v: Verifier, op: o.SetNeighbour) -> str:
    index = v._index(op.ns, op.dev)
    family = 6 if ":" in op.ip else 4
    entries = v._nl(op.ns).link_neighbours(index, family) if index is not None else []
    if not any(n["dst"] == op.ip and str(n["mac"]).lower() == op.mac.lower()
               and n["state"] & NUD_PERMANENT for n in entries):
        return f"the permanent neighbour {op.ip} -> {op.mac} is missing in {_where(op.ns)}"
    return ""


def _sysctls(v: Verifier, op: o.SetSysctls) -> str:
    for key, value in op.settings:
        try:
            have = sysctl.read(op.ns, key)
        except (ObjectMissingError, FileNotFoundError):
            if op.optional:
                continue
            return f"{key} does not exist"
        if have != value:
            return f"{key} is {have}, not {value}"
    return ""


def _bridge_port(v: Verifier, op: o.SetBridgePort) -> str:
    link = v.link(op.ns, op.dev)
    if link is None or link["hairpin"] != op.hairpin:
        return f"{op.dev}'s hairpin mode is not {'on' if op.hairpin else 'off'}"
    return ""


_CHECKS: dict[type[Any], Callable[[Verifier, Any], str]] = {
    o.AddVeth: _veth,
    o.AddBridge: _bridge,
    o.SetLink: _set_link,
    o.SetBridgePort: _bridge_port,
    o.AddAddress: _address,
    o.AddRoute: _route,
    o.AddRule: _rule,
    o.SetNeighbour: _neighbour,
    o.SetSysctls: _sysctls,
}
