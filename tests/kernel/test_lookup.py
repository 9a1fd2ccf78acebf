"""`kernel.lookup`: trace's read-only questions, answered by the kernel and checked against what
iproute2 (`ip route get`, `ip neigh`, `bridge fdb`, `ip -d link`) says about the same objects."""

from __future__ import annotations

import errno
import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from podnet.kernel.lookup import FdbEntry, Lookup, Neighbour, RouteAnswer

pytestmark = pytest.mark.kernel


def ip(ns: str, *args: str, tool: str = "ip") -> str:
    return subprocess.run([tool, "-n", ns, *args], capture_output=True, text=True,
                          check=True).stdout


def index(ns: str, dev: str) -> int:
    return int(json.loads(ip(ns, "-j", "link", "show", dev))[0]["ifindex"])


@dataclass
class World:
    a: str  # namespace names
    b: str
    path: str  # /run/netns/<a>

    def idx(self, dev: str) -> int:
        return index(self.a, dev)


@pytest.fixture
def world(netns_factory: Callable[[str], str]) -> Iterator[World]:
    """A and B joined by a veth (IPv4 and IPv6); in A, a bridge with a veth port, a VXLAN
    device with a flood entry, and permanent neighbour entries of both families."""
    a, b = netns_factory("lk"), netns_factory("lk")
    for cmd in (
        ["link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", b],
        ["addr", "add", "10.9.0.1/24", "dev", "a0"],
        ["addr", "add", "fd00:9::1/64", "dev", "a0", "nodad"],
        ["link", "set", "a0", "up"],
        ["link", "add", "br0", "type", "bridge"],
        ["link", "add", "d0", "type", "veth", "peer", "name", "d1"],  # no dummy module here
        ["link", "set", "d0", "master", "br0"],
        ["link", "set", "br0", "up"],
        ["link", "set", "d0", "up"],
        ["link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "local",
         "10.9.0.1", "dev", "a0", "nolearning"],
        ["link", "set", "vx0", "up"],
        ["neigh", "add", "10.9.0.7", "lladdr", "02:00:00:00:00:07", "dev", "a0", "nud",
         "permanent"],
        ["neigh", "add", "fd00:9::7", "lladdr", "02:00:00:00:00:77", "dev", "a0", "nud",
         "permanent"],
        ["-4", "route", "add", "198.51.100.0/24", "via", "10.9.0.2"],
    ):
        ip(a, *cmd)
    ip(a, "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", "10.9.0.2", tool="bridge")
    ip(a, "fdb", "add", "02:00:00:00:00:aa", "dev", "d0", "master", "static", tool="bridge")
    for cmd in (["addr", "add", "10.9.0.2/24", "dev", "b0"],
                ["addr", "add", "fd00:9::2/64", "dev", "b0", "nodad"],
                ["link", "set", "b0", "up"]):
        ip(b, *cmd)
    yield World(a, b, f"/run/netns/{a}")


def test_route_answers_match_ip_route_get(world: World) -> None:
    with Lookup() as lookup:
        forward = lookup.route(world.path, "10.9.0.2")
        assert forward == RouteAnswer("10.9.0.2", "unicast", world.idx("a0"), None, "10.9.0.1",
                                      254)
        via = lookup.route(world.path, "198.51.100.9")
        assert (via.type, via.oif, via.gateway) == ("unicast", world.idx("a0"), "10.9.0.2")
        local = lookup.route(world.path, "10.9.0.1")
        assert (local.type, local.oif) == ("local", 1)  # delivered through lo
        six = lookup.route(world.path, "fd00:9::2")
        assert (six.type, six.oif) == ("unicast", world.idx("a0"))
        # No route at all: the kernel's own error, as `ip route get` reports it.
        missing = lookup.route(world.path, "192.0.2.1")
        assert (missing.ok, missing.error) == (False, errno.ENETUNREACH)
        # A packet that arrived on a0 from B's address, for A's own address: delivered locally.
        arrived = lookup.route(world.path, "10.9.0.1", src="10.9.0.2", iif=world.idx("a0"))
        assert (arrived.type, arrived.ok) == ("local", True)
    expected = json.loads(ip(world.a, "-j", "route", "get", "198.51.100.9"))[0]
    assert (via.gateway, via.src) == (expected["gateway"], expected["prefsrc"])
    refused = subprocess.run(["ip", "-n", world.a, "route", "get", "192.0.2.1"],
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "unreachable" in refused.stderr.lower()


def _unicast(entries: set[tuple[str, str | None]]) -> set[tuple[str, str | None]]:
    return {(dst, mac) for dst, mac in entries if not ipaddress.ip_address(dst).is_multicast}


def test_neighbours_match_ip_neigh(world: World) -> None:
    a0 = world.idx("a0")
    with Lookup() as lookup:
        four = lookup.neighbours(world.path, a0, 4)
        six = lookup.neighbours(world.path, a0, 6)
        assert lookup.neighbour(world.path, a0, "10.9.0.7") == Neighbour(
            "10.9.0.7", "02:00:00:00:00:07", "PERMANENT", a0)
        assert lookup.neighbour(world.path, a0, "10.9.0.99") is None
        br0 = world.idx("br0")
        assert all(n.ifindex == br0 for n in lookup.neighbours(world.path, br0, 4))
    # The kernel adds an entry for a multicast group (ff02::16, for an MLD report) at a time of
    # its own, between one dump and the next: those are left out of both sides.
    listed = {(e["dst"], e.get("lladdr")) for e in json.loads(
        ip(world.a, "-j", "neigh", "show", "nud", "all", "dev", "a0"))}
    assert _unicast({(n.ip, n.mac) for n in four + six}) == _unicast(listed)
    assert Neighbour("fd00:9::7", "02:00:00:00:00:77", "PERMANENT", a0) in six


def test_forwarding_entries_match_bridge_fdb(world: World) -> None:
    with Lookup() as lookup:
        entries = lookup.fdb(world.path)
    flood = FdbEntry("00:00:00:00:00:00", world.idx("vx0"), None, "10.9.0.2", "NOARP")
    assert flood in entries, [e for e in entries if e.ifindex == world.idx("vx0")]
    static = next(e for e in entries if e.mac == "02:00:00:00:00:aa")
    assert (static.ifindex, static.master) == (world.idx("d0"), world.idx("br0"))
    shown = json.loads(ip(world.a, "-j", "fdb", "show", tool="bridge"))
    names = {link["ifname"]: link["ifindex"]
             for link in json.loads(ip(world.a, "-j", "link", "show"))}
    assert {(e.mac, e.ifindex, e.dst) for e in entries} == {
        (s["mac"], names[s["ifname"]], s.get("dst")) for s in shown}


def test_vxlan_settings_match_ip_link_details(world: World) -> None:
    with Lookup() as lookup:
        vx = lookup.vxlan(world.path, world.idx("vx0"))
        assert lookup.vxlan(world.path, world.idx("a0")) is None
        assert lookup.vxlan(world.path, 9999) is None
    assert vx is not None
    data = json.loads(ip(world.a, "-j", "-d", "link", "show", "vx0"))[0]["linkinfo"]["info_data"]
    assert (vx.vni, vx.port, vx.local, vx.underlay, vx.learning) == (
        data["id"], data["port"], data["local"], world.idx("a0"), data["learning"])
