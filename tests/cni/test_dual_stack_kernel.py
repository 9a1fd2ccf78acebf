"""podnet-cni with IPv6 and dual-stack (issue 9), beside Debian's reference bridge/ptp +
host-local in the same configuration: results compared field by field (the reference result is
the reference), the pods' addresses and routes compared object by object, real TCP over both
families between pods and to a host outside (masqueraded per family), no DAD on the pod end,
CHECK/DEL/GC for both families. Real namespaces and packets; inside the sandbox."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from podnet.kernel.nft import names_for
from tests.cni.conftest import ip_json
from tests.cni.driver import Plugin
from tests.cni.nets import tcp_reach, tcp_server

pytestmark = pytest.mark.kernel

Flavor = Callable[..., Plugin]
NetnsFactory = Callable[[str], str]
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
PAIRS = [("podnet-bridge-hostlocal", "ref-bridge"), ("podnet-ptp-hostlocal", "ref-ptp")]


def _path(ns: str) -> str:
    return f"/run/netns/{ns}"


def _subnets(plugin: Plugin) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(rs[0]["subnet"]) for rs in plugin.conf["ipam"]["ranges"]]


def _role(text: str, subnets: list[Any]) -> str:
    """An address (with or without a prefix) as its place in the network's subnets: two
    networks with different subnets compare equal when they hand out the same places."""
    iface = ipaddress.ip_interface(text)
    for net in subnets:
        if iface.version == net.version and iface.ip in net:
            offset = int(iface.ip) - int(net.network_address)
            return f"v{net.version}+{offset}/{iface.network.prefixlen}" if "/" in text \
                else f"v{net.version}+{offset}"
    return text


def _normal(result: dict[str, Any], plugin: Plugin, ns: str) -> dict[str, Any]:
    """The result with what differs by nature between two networks made neutral: MACs (checked
    against the kernel first), the host veth's random or derived name, the bridge's name, and
    addresses (their place in the subnet)."""
    subnets = _subnets(plugin)
    host = {link["ifname"]: link["address"] for link in ip_json("link")}
    pod = {link["ifname"]: link["address"] for link in ip_json("-n", ns, "link")}
    interfaces = []
    for iface in result["interfaces"]:
        assert MAC.match(iface["mac"])
        links = pod if iface.get("sandbox") else host
        assert links[iface["name"]] == iface["mac"], iface
        name = iface["name"]
        if name == plugin.conf.get("bridge"):
            name = "BRIDGE"
        elif re.fullmatch(r"veth[0-9a-f]{8}", name):
            name = "VETH"
        sandbox = iface.get("sandbox")
        interfaces.append({**iface, "name": name, "mac": "MAC",
                           **({"sandbox": sandbox == _path(ns)} if sandbox else {})})
    ips = [{k: _role(v, subnets) if k in ("address", "gateway") else v for k, v in ip.items()}
           for ip in result["ips"]]
    return {**result, "interfaces": interfaces, "ips": ips}


def _pod_routes(ns: str, plugin: Plugin) -> list[tuple[str, str, str | None, str | None]]:
    """The pod's main-table routes of both families, addresses as places in the subnets (the
    kernel's own link-local and multicast routes left out)."""
    subnets = _subnets(plugin)
    out = []
    for family in ("-4", "-6"):
        for r in ip_json("-n", ns, family, "route", "show", "table", "main"):
            if r["dst"].startswith("fe80:") or r["dst"].startswith("ff00:"):
                continue
            dst = r["dst"] if r["dst"] == "default" else _role(
                r["dst"] if "/" in r["dst"] else f"{r['dst']}/{32 if family == '-4' else 128}",
                subnets)
            gw = _role(r["gateway"], subnets) if r.get("gateway") else None
            src = _role(r["prefsrc"], subnets) if r.get("prefsrc") else None
            out.append((family, dst, gw, src))
    return sorted(out)


def _pod_addresses(ns: str, plugin: Plugin) -> list[str]:
    subnets = _subnets(plugin)
    return sorted(_role(f"{a['local']}/{a['prefixlen']}", subnets)
                  for link in ip_json("-n", ns, "addr") if link["ifname"] == "eth0"
                  for a in link["addr_info"] if a.get("scope") == "global")


# --- the reference result is the reference ------------------------------------------------------

@pytest.mark.parametrize("family", ["dual", "ipv6"])
@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
@pytest.mark.parametrize(("ours", "reference"), PAIRS)
def test_result_and_pod_agree_with_the_reference(flavor: Flavor, netns_factory: NetnsFactory,
                                                 ours: str, reference: str, family: str,
                                                 version: str) -> None:
    made = {}
    try:
        for kind in (reference, ours):
            plugin = flavor(kind, family=family, version=version)
            ns = netns_factory("ds")
            result = plugin.add("c1", _path(ns)).ok().doc
            made[kind] = (plugin, ns, result)
            plugin.check("c1", _path(ns)).ok()
        (ref_plugin, ref_ns, ref), (our_plugin, our_ns, got) = made[reference], made[ours]
        assert _normal(got, our_plugin, our_ns) == _normal(ref, ref_plugin, ref_ns)
        # The pods themselves: the same addresses and routes, object by object.
        assert _pod_addresses(our_ns, our_plugin) == _pod_addresses(ref_ns, ref_plugin)
        assert _pod_routes(our_ns, our_plugin) == _pod_routes(ref_ns, ref_plugin)
    finally:
        for plugin, ns, _ in made.values():
            plugin.delete("c1", _path(ns)).ok()


# --- real packets over both families -------------------------------------------------------------

@dataclass(frozen=True)
class Outside:
    ns: str
    ips: dict[int, str]  # the outside host, per family
    router: dict[int, str]  # the node's address towards it, per family


@contextlib.contextmanager
def _outside(netns_factory: NetnsFactory) -> Iterator[Outside]:
    """A host outside the pod subnets, behind a veth from the test's host (the node)."""
    ns, link = netns_factory("out"), f"vo{uuid.uuid4().hex[:6]}"
    router = {4: "192.0.2.1", 6: "2001:db8:9::1"}
    far = {4: "192.0.2.2", 6: "2001:db8:9::2"}
    subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns",
                    ns], check=True)
    try:
        for f, prefix in ((4, 24), (6, 64)):
            nodad = ["nodad"] if f == 6 else []
            subprocess.run(["ip", "addr", "add", f"{router[f]}/{prefix}", "dev", link, *nodad],
                           check=True)
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{far[f]}/{prefix}", "dev", "eth0",
                            *nodad], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "route", "add", "default", "via", router[4]], check=True)
        subprocess.run(["ip", "-n", ns, "-6", "route", "add", "default", "via", router[6]],
                       check=True)
        yield Outside(ns, far, router)
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)


def _ip(result: dict[str, Any], family: int) -> str:
    return next(ip["address"].split("/")[0] for ip in result["ips"]
                if (":" in ip["address"]) == (family == 6))


@pytest.mark.parametrize("kind", ["podnet-ptp", "podnet-bridge"])
def test_pods_talk_over_both_families_and_egress_is_masqueraded(
        flavor: Flavor, netns_factory: NetnsFactory, kind: str) -> None:
    plugin = flavor(kind, family="dual", ipMasq=True)
    a, b = netns_factory("pa"), netns_factory("pb")
    ra = plugin.add("ca", _path(a)).ok().doc
    rb = plugin.add("cb", _path(b)).ok().doc
    try:
        for family in (4, 6):
            # At once: no DAD stalls the pod's address, so the first packet goes through.
            with tcp_server(b, 8080, family):
                assert tcp_reach(a, _ip(rb, family), 8080) == _ip(ra, family)
        with _outside(netns_factory) as out:
            for family in (4, 6):
                with tcp_server(out.ns, 9090, family):
                    seen = tcp_reach(a, out.ips[family], 9090)
                assert seen == out.router[family], f"IPv{family}: {seen}"
    finally:
        for c, ns in (("ca", a), ("cb", b)):
            plugin.delete(c, _path(ns)).ok()
    listing = subprocess.run(["nft", "list", "table", "inet", "podnet-cni"],
                             capture_output=True, text=True, check=True).stdout
    assert _ip(ra, 6) not in listing and _ip(ra, 4) not in listing


def test_no_dad_on_either_end_and_no_router_advertisements_on_the_host_end(
        flavor: Flavor, netns_factory: NetnsFactory) -> None:
    """Every IPv6 address of both ends is usable the moment ADD answers: a tentative link-local
    on the host end sends no neighbour solicitation, so the host could not resolve the pod it
    forwards to for about 2 s (the reference ptp waits that long instead)."""
    plugin, ns = flavor("podnet-ptp", family="dual"), netns_factory("dad")
    result = plugin.add("c1", _path(ns)).ok().doc
    try:
        host_end = result["interfaces"][0]["name"]
        pod = [a for link in ip_json("-n", ns, "-6", "addr", "show", "dev", "eth0")
               for a in link["addr_info"]]
        host = [a for link in ip_json("-6", "addr", "show", "dev", host_end)
                for a in link["addr_info"]]
        assert [a["local"] for a in pod if a.get("scope") == "global"] == [_ip(result, 6)]
        assert {a.get("scope") for a in pod} == {a.get("scope") for a in host} == {"global",
                                                                                     "link"}
        assert not [a for a in pod + host if a.get("tentative") or a.get("dadfailed")]
        assert Path(f"/proc/sys/net/ipv6/conf/{host_end}/accept_ra").read_text().strip() == "0"
        assert Path("/proc/sys/net/ipv6/conf/all/forwarding").read_text().strip() == "1"
    finally:
        plugin.delete("c1", _path(ns)).ok()


# --- CHECK, DEL and GC for both families ---------------------------------------------------------

@pytest.mark.parametrize(("kind", "break_it", "needle"), [
    ("podnet-ptp", ["ip", "-n", "{ns}", "addr", "del", "{ip6}/64", "dev", "eth0"],
     "eth0 in the pod lacks address {ip6}/64"),
    ("podnet-ptp", ["ip", "-6", "route", "del", "{ip6}/128"],
     "the route to {ip6}/128 is missing in the host"),
    ("podnet-ptp", ["ip", "-n", "{ns}", "-6", "route", "del", "default"],
     "the route to default via {gw6} is missing in the pod"),
    ("podnet-bridge", ["ip", "-6", "addr", "del", "{gw6}/64", "dev", "{bridge}"],
     "{bridge} in the host lacks address {gw6}/64"),
    ("podnet-bridge", ["bridge", "link", "set", "dev", "{veth}", "hairpin", "off"],
     "{veth}'s hairpin mode is not on"),
])
def test_check_notices_what_changed_in_ipv6(flavor: Flavor, netns_factory: NetnsFactory,
                                            kind: str, break_it: list[str], needle: str) -> None:
    plugin = flavor(kind, family="dual", ipMasq=True, hairpinMode=kind == "podnet-bridge")
    ns = netns_factory("chk")
    result = plugin.add("c1", _path(ns)).ok().doc
    try:
        plugin.check("c1", _path(ns)).ok()
        gw6 = next(ip["gateway"] for ip in result["ips"] if ":" in ip["address"])
        veth = next(i["name"] for i in result["interfaces"] if i["name"].startswith("veth"))
        words = {"ns": ns, "ip6": _ip(result, 6), "gw6": gw6, "veth": veth,
                 "bridge": plugin.conf.get("bridge", "")}
        subprocess.run([w.format(**words) for w in break_it], check=True)
        answer = plugin.check("c1", _path(ns))
        assert answer.code != 0 and needle.format(**words) in answer.doc["msg"], answer.doc
    finally:
        plugin.delete("c1", _path(ns)).ok()


def test_check_notices_an_ipv6_masquerade_entry_gone(flavor: Flavor,
                                                      netns_factory: NetnsFactory) -> None:
    plugin, ns = flavor("podnet-ptp", family="dual", ipMasq=True), netns_factory("chk")
    result = plugin.add("c1", _path(ns)).ok().doc
    try:
        name, _ = names_for(plugin.name, 6)
        subprocess.run(["nft", "delete", "element", "inet", "podnet-cni", name,
                        f"{{ {_ip(result, 6)} }}"], check=True)
        answer = plugin.check("c1", _path(ns))
        assert answer.code != 0 and _ip(result, 6) in answer.doc["msg"]
    finally:
        plugin.delete("c1", _path(ns)).ok()


@pytest.mark.parametrize("kind", ["podnet-ptp", "podnet-bridge"])
def test_del_twice_and_gc_leave_nothing_of_either_family(flavor: Flavor,
                                                         netns_factory: NetnsFactory,
                                                         kind: str) -> None:
    plugin = flavor(kind, family="dual", ipMasq=True, version="1.1.0")
    pods = {f"g{i}": _path(netns_factory("g")) for i in range(3)}
    results = {c: plugin.add(c, path).ok().doc for c, path in pods.items()}
    ends = {c: next(i["name"] for i in r["interfaces"] if i["name"].startswith("veth"))
            for c, r in results.items()}
    plugin.delete("g0", pods["g0"]).ok()
    plugin.delete("g0", pods["g0"]).ok()
    plugin.gc([("g1", "eth0")]).ok()
    links = {link["ifname"] for link in ip_json("link")}
    assert ends["g1"] in links and not {ends["g0"], ends["g2"]} & links
    routes = {r["dst"] for r in ip_json("-6", "route")}
    assert _ip(results["g2"], 6) not in routes and _ip(results["g0"], 6) not in routes
    listing = subprocess.run(["nft", "list", "table", "inet", "podnet-cni"],
                             capture_output=True, text=True, check=True).stdout
    assert _ip(results["g1"], 6) in listing and _ip(results["g2"], 6) not in listing
    plugin.check("g1", pods["g1"]).ok()
    plugin.delete("g1", pods["g1"]).ok()
    reservations = Path(plugin.conf["ipam"]["dataDir"]) / plugin.name
    assert not [p for p in reservations.iterdir() if ":" in p.name or p.name[0].isdigit()]
