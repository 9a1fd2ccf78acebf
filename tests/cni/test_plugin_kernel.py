"""podnet-cni driven as a runtime drives it, beside Debian's reference bridge/ptp + host-local.

Every promise of issue 4 is a test here: results that agree with the reference where the spec
says they must, DEL's idempotence, ADD's refusals and rollback, error codes, parallel ADDs, GC,
STATUS and CHECK. Real namespaces, real veths, real packets; all inside the sandbox.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cni.conftest import Install, ip_json, snapshot
from tests.cni.driver import Plugin

pytestmark = pytest.mark.kernel

Flavor = Callable[..., Plugin]
NetnsFactory = Callable[[str], str]
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")


def _path(ns: str) -> str:
    return f"/run/netns/{ns}"


def _state_dirs(plugin: Plugin) -> list[str]:
    ipam = plugin.conf["ipam"].get("dataDir")
    return [d for d in (ipam, plugin.conf.get("stateDir")) if d]


def _reservations(plugin: Plugin) -> list[str]:
    """Addresses the IPAM holds: podnet-ipam's allocations file, or host-local's IP files."""
    ipam = plugin.conf["ipam"]
    base = Path(ipam["dataDir"]) / plugin.name  # podnet-ipam keeps host-local's file per address
    return [p.name for p in base.glob("*") if re.fullmatch(r"[0-9.]+|[0-9a-f:]+:[0-9a-f:]*",
                                                           p.name)] if base.exists() else []


def _host_veths() -> set[str]:
    return {link["ifname"] for link in ip_json("link") if link["ifname"].startswith("veth")}


def _host_end(result: dict[str, Any]) -> str:
    """The host end of the pod's veth, as the result names it. (Comparing whole link lists is
    flaky: veths of namespaces deleted by earlier tests vanish asynchronously.)"""
    return next(i["name"] for i in result["interfaces"]
                if not i.get("sandbox") and i["name"].startswith("veth"))


def _tcp_reach(client_ns: str, server_ns: str, server_ip: str) -> str:
    """Open a TCP connection from client_ns to server_ns and return the source address the
    server saw (a real packet each way)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "python3", "-c",
         "import socket,sys;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
         "socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',8080));s.listen();print('up',flush=True);"
         "c,a=s.accept();c.sendall(a[0].encode());c.close()"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        out = subprocess.run(
            ["ip", "netns", "exec", client_ns, "python3", "-c",
             f"import socket;s=socket.create_connection(('{server_ip}',8080),timeout=5);"
             "print(s.recv(100).decode())"],
            capture_output=True, text=True, timeout=20, check=True)
        return out.stdout.strip()
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


# --- results agree with the reference plugins ----------------------------------------------

@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
@pytest.mark.parametrize(("ours", "reference"), [("podnet-bridge-hostlocal", "ref-bridge"),
                                                 ("podnet-ptp-hostlocal", "ref-ptp")])
def test_add_result_agrees_with_reference(flavor: Flavor, netns_factory: NetnsFactory,
                                          ours: str, reference: str, version: str) -> None:
    results = {}
    for kind in (reference, ours):
        plugin = flavor(kind, version=version)
        ns = netns_factory("cmp")
        result = plugin.add("c1", _path(ns)).ok().doc
        results[kind] = (plugin, ns, result)
        _assert_result_describes_netns(result, ns, version)
        plugin.check("c1", _path(ns)).ok()
    (_, _, ref), (_, _, got) = results[reference], results[ours]
    assert got["cniVersion"] == ref["cniVersion"] == version
    assert len(got["interfaces"]) == len(ref["interfaces"])
    assert [bool(i.get("sandbox")) for i in got["interfaces"]] == \
        [bool(i.get("sandbox")) for i in ref["interfaces"]]
    assert len(got["ips"]) == len(ref["ips"]) == 1
    for key in ("interface", "version"):
        assert got["ips"][0].get(key) == ref["ips"][0].get(key)
    # Same IPAM (host-local), same config but the subnet: the same host part and gateway offset.
    for field in ("address", "gateway"):
        g = ipaddress.ip_interface(got["ips"][0]["address"]) if field == "address" else None
        r = ipaddress.ip_interface(ref["ips"][0]["address"]) if field == "address" else None
        if g is not None and r is not None:
            assert g.network.prefixlen == r.network.prefixlen
            assert int(g.ip) - int(g.network.network_address) == \
                int(r.ip) - int(r.network.network_address)
    assert {r["dst"] for r in got["routes"]} == {r["dst"] for r in ref["routes"]}
    assert got.get("dns", {}) == ref.get("dns", {})
    for plugin, ns, _ in results.values():
        plugin.delete("c1", _path(ns)).ok()
        assert _reservations(plugin) == []


def _assert_result_describes_netns(result: dict[str, Any], ns: str, version: str) -> None:
    """What the spec says a result must say, checked against the kernel."""
    index = result["ips"][0]["interface"]
    iface = result["interfaces"][index]
    assert iface["name"] == "eth0" and iface["sandbox"] == _path(ns)
    links = {link["ifname"]: link for link in ip_json("-n", ns, "link")}
    assert MAC.match(iface["mac"]) and links["eth0"]["address"] == iface["mac"]
    addrs = {f"{a['local']}/{a['prefixlen']}" for link in ip_json("-n", ns, "addr")
             for a in link["addr_info"] if a["family"] == "inet" and link["ifname"] == "eth0"}
    assert result["ips"][0]["address"] in addrs
    host = {link["ifname"]: link for link in ip_json("link")}
    for other in result["interfaces"]:
        if not other.get("sandbox"):
            assert host[other["name"]]["address"] == other["mac"]
    assert ("version" in result["ips"][0]) == (version == "0.4.0")


@pytest.mark.parametrize("kind", ["podnet-ptp", "podnet-bridge", "ref-bridge", "ref-ptp"])
def test_two_pods_reach_each_other(flavor: Flavor, netns_factory: NetnsFactory,
                                   kind: str) -> None:
    plugin = flavor(kind)
    a, b = netns_factory("pa"), netns_factory("pb")
    plugin.add("ca", _path(a)).ok()
    ip_b = plugin.add("cb", _path(b)).ok().doc["ips"][0]["address"].split("/")[0]
    ip_a = plugin.results[("ca", "eth0")]["ips"][0]["address"].split("/")[0]
    assert _tcp_reach(a, b, ip_b) == ip_a
    for c, ns in (("ca", a), ("cb", b)):
        plugin.delete(c, _path(ns)).ok()


def test_ip_masq_rewrites_traffic_leaving_the_subnet(flavor: Flavor,
                                                    netns_factory: NetnsFactory) -> None:
    plugin = flavor("podnet-ptp", ipMasq=True)
    pod, outside = netns_factory("pod"), netns_factory("out")
    # A host "outside" the pod subnet: 192.0.2.2 behind a veth from the host (192.0.2.1).
    subprocess.run(["ip", "link", "add", "vout", "type", "veth", "peer", "name", "eth0",
                    "netns", outside], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "192.0.2.1/24", "dev", "vout"], check=True)
        subprocess.run(["ip", "link", "set", "vout", "up"], check=True)
        subprocess.run(["ip", "-n", outside, "addr", "add", "192.0.2.2/24", "dev", "eth0"],
                       check=True)
        subprocess.run(["ip", "-n", outside, "link", "set", "eth0", "up"], check=True)
        result = plugin.add("cm", _path(pod)).ok().doc
        pod_ip = result["ips"][0]["address"].split("/")[0]
        plugin.check("cm", _path(pod)).ok()
        assert _tcp_reach(pod, outside, "192.0.2.2") == "192.0.2.1"  # masqueraded
        plugin.delete("cm", _path(pod)).ok()
        listing = subprocess.run(["nft", "-j", "list", "table", "inet", "podnet-cni"],
                                 capture_output=True, check=True).stdout.decode()
        assert pod_ip not in listing
    finally:
        subprocess.run(["ip", "link", "del", "vout"], capture_output=True, check=False)


# --- DEL is idempotent ---------------------------------------------------------------------

KINDS = ["podnet-ptp", "podnet-bridge-hostlocal", "ref-bridge", "ref-ptp"]


@pytest.mark.parametrize("kind", KINDS)
def test_del_twice(flavor: Flavor, netns_factory: NetnsFactory, kind: str) -> None:
    plugin, ns = flavor(kind), netns_factory("d2")
    host_end = _host_end(plugin.add("c1", _path(ns)).ok().doc)
    plugin.delete("c1", _path(ns)).ok()
    plugin.delete("c1", _path(ns)).ok()
    assert _reservations(plugin) == []
    assert host_end not in _host_veths()
    assert [link["ifname"] for link in ip_json("-n", ns, "link")] == ["lo"]


@pytest.mark.parametrize("kind", KINDS)
def test_del_without_add(flavor: Flavor, netns_factory: NetnsFactory, kind: str) -> None:
    flavor(kind).delete("never-added", _path(netns_factory("dn"))).ok()


@pytest.mark.parametrize("kind", KINDS)
def test_del_with_netns_gone(flavor: Flavor, kind: str) -> None:
    from podnet.kernel import netns

    plugin = flavor(kind)
    name = f"gone-{os.getpid()}-{kind}"
    path = netns.create(name)
    plugin.add("c1", path).ok()
    netns.delete(name)
    plugin.delete("c1", path).ok()
    assert _reservations(plugin) == []


@pytest.mark.parametrize("kind", KINDS)
def test_del_with_empty_netns(flavor: Flavor, netns_factory: NetnsFactory, kind: str) -> None:
    plugin, ns = flavor(kind), netns_factory("de")
    host_end = _host_end(plugin.add("c1", _path(ns)).ok().doc)
    plugin.delete("c1", "").ok()
    assert _reservations(plugin) == []
    if kind.startswith("podnet"):
        # podnet finds its host end by name and mark, so the veth goes too.
        assert host_end not in _host_veths()


# --- ADD's refusals and rollback ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["podnet-ptp", "podnet-bridge-hostlocal", "ref-bridge"])
def test_add_fails_if_ifname_exists(flavor: Flavor, netns_factory: NetnsFactory,
                                    kind: str) -> None:
    plugin, ns = flavor(kind), netns_factory("ex")
    subprocess.run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
                    "other"], check=True)
    before = snapshot(ns, *_state_dirs(plugin))
    answer = plugin.add("c1", _path(ns))
    assert answer.code != 0 and "eth0" in answer.doc["msg"]
    assert _reservations(plugin) == []
    if kind.startswith("podnet"):
        assert _host_veths() <= {name for name, _ in before["host"]}


@pytest.mark.parametrize("family", ["ipv4", "dual"])
@pytest.mark.parametrize("kind", ["podnet-ptp", "podnet-bridge"])
def test_failure_mid_add_leaves_nothing(flavor: Flavor, netns_factory: NetnsFactory,
                                        kind: str, family: str) -> None:
    plugin = flavor(kind, family=family, ipMasq=True)
    first = netns_factory("first")
    plugin.add("first", _path(first)).ok()  # a bridge outlives its pods: made beforehand
    # The route's gateway is not on the pod's link: the kernel refuses it after the veth exists
    # and the addresses are reserved, so ADD must undo all of it.
    ipam = plugin.conf["ipam"]
    plugin.conf["ipam"] = {**ipam, "routes": [*ipam["routes"],
                                              {"dst": "10.96.0.0/12", "gw": "192.0.2.9"}]}
    ns = netns_factory("mid")
    before = snapshot(ns, plugin.conf["stateDir"])
    held, masq = _reservations(plugin), _masq_listing()
    answer = plugin.add("c1", _path(ns))
    assert answer.code != 0 and "10.96.0.0/12" in answer.doc["msg"]
    after = snapshot(ns, plugin.conf["stateDir"])
    assert _host_veths() <= {name for name, _ in before["host"]}
    assert after["host_routes"] == before["host_routes"]
    assert after["host_routes6"] == before["host_routes6"]
    assert after["pod"] == before["pod"]
    assert after["files"] == before["files"]  # no record
    assert _reservations(plugin) == held and _masq_listing() == masq
    plugin.conf["ipam"] = ipam
    plugin.delete("first", _path(first)).ok()


def _masq_listing() -> str:
    return subprocess.run(["nft", "list", "table", "inet", "podnet-cni"], capture_output=True,
                          text=True, check=False).stdout


def _error(answer: Any) -> dict[str, Any]:
    assert answer.code != 0
    doc: dict[str, Any] = answer.doc
    assert set(doc) >= {"cniVersion", "code", "msg"}
    return doc


@pytest.mark.parametrize(("env", "variable"), [
    ({"CNI_COMMAND": ""}, "CNI_COMMAND"),
    ({"CNI_COMMAND": "FROB"}, "CNI_COMMAND"),
    ({"CNI_CONTAINERID": "../../etc/passwd"}, "CNI_CONTAINERID"),
    ({"CNI_CONTAINERID": ""}, "CNI_CONTAINERID"),
    ({"CNI_IFNAME": "eth0/../../x"}, "CNI_IFNAME"),
    ({"CNI_IFNAME": "a-very-long-name"}, "CNI_IFNAME"),  # 16 bytes
    ({"CNI_IFNAME": ".."}, "CNI_IFNAME"),
    ({"CNI_NETNS": ""}, "CNI_NETNS"),
    ({"CNI_ARGS": "IgnoreUnknown"}, "CNI_ARGS"),
])
def test_bad_environment_is_code_4_and_touches_nothing(
        flavor: Flavor, netns_factory: NetnsFactory, env: dict[str, str], variable: str) -> None:
    plugin, ns = flavor("podnet-ptp"), netns_factory("env")
    before = snapshot(ns, plugin.conf["ipam"]["dataDir"], plugin.conf["stateDir"])
    answer = plugin.call("ADD", container_id="c1", netns=_path(ns), env=env)
    doc = _error(answer)
    assert doc["code"] == 4 and variable in doc["msg"]
    assert snapshot(ns, plugin.conf["ipam"]["dataDir"], plugin.conf["stateDir"]) == before


@pytest.mark.parametrize(("change", "code", "needle"), [
    ({"frobnicate": True}, 2, "frobnicate"),
    ({"mode": "macvlan"}, 2, "mode"),
    ({"mtu": "big"}, 7, "mtu"),
    ({"ipam": {"type": "podnet-ipam", "ranges": [[{"subnet": "10.0.0.0/33"}]]}}, 7, "subnet"),
    ({"ipam": {"type": "podnet-ipam", "ranges": [[{"subnet": "10.0.0.0/24"}],
                                                 [{"subnet": "10.0.1.0/24"}]]}}, 2, "ranges"),
    ({"mode": "vpc", "ipam": {"type": "podnet-ipam", "ranges": [[{"subnet": "fd00::/64"}]]}},
     2, "ranges"),
    ({"mode": "vpc", "uplink": "nosuch0"}, 7, "nosuch0"),
    ({"cniVersion": "0.2.0"}, 1, "0.2.0"),
    ({"cniVersion": "9.9.9"}, 1, "9.9.9"),
])
def test_bad_config_codes(flavor: Flavor, netns_factory: NetnsFactory,
                          change: dict[str, Any], code: int, needle: str) -> None:
    plugin, ns = flavor("podnet-ptp"), netns_factory("cfg")
    before = snapshot(ns)
    doc = _error(plugin.call("ADD", container_id="c1", netns=_path(ns),
                             conf=plugin.config(**change)))
    assert doc["code"] == code and needle in doc["msg"]
    assert snapshot(ns) == before


def test_undecodable_config_is_code_6(flavor: Flavor, netns_factory: NetnsFactory) -> None:
    doc = _error(flavor("podnet-ptp").call("ADD", container_id="c1",
                                           netns=_path(netns_factory("dec")), stdin=b"{nope"))
    assert doc["code"] == 6


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_own_namespace_is_refused_before_anything(flavor: Flavor, command: str) -> None:
    plugin = flavor("podnet-ptp")
    before = snapshot(None, plugin.conf["ipam"]["dataDir"], plugin.conf["stateDir"])
    # /proc/1 is the sandbox's init: the very namespace the plugin (and its agent) run in.
    for netns_path in ("/proc/1/ns/net", "/proc/self/ns/net"):
        conf = plugin.config(prevResult={"cniVersion": "1.0.0", "interfaces": [
            {"name": "eth0", "sandbox": netns_path}], "ips": []})
        doc = _error(plugin.call(command, container_id="c1", netns=netns_path, conf=conf))
        assert doc["code"] == 4 and "own network namespace" in doc["msg"]
    assert snapshot(None, plugin.conf["ipam"]["dataDir"], plugin.conf["stateDir"]) == before


@pytest.mark.parametrize(("kind", "family"), [("podnet-ptp", "ipv4"),
                                            ("podnet-bridge", "dual")])
def test_parallel_adds_get_distinct_addresses(flavor: Flavor, netns_factory: NetnsFactory,
                                              kind: str, family: str) -> None:
    # bridge: every ADD ensures the bridge and its gateways at once, one of them creating it.
    plugin = flavor(kind, family=family, ipMasq=True)
    pods = [(f"par{i}", _path(netns_factory("par"))) for i in range(16)]
    with ThreadPoolExecutor(len(pods)) as pool:
        answers = list(pool.map(lambda p: plugin.call("ADD", container_id=p[0], netns=p[1]),
                                pods))
    addresses = [ip["address"] for a in answers for ip in a.ok().doc["ips"]]
    assert len(set(addresses)) == len(pods) * (2 if family == "dual" else 1)
    assert sorted(_reservations(plugin)) == sorted(a.split("/")[0] for a in addresses)
    for (cid, ns), answer in zip(pods, answers, strict=True):
        plugin.results[(cid, "eth0")] = answer.doc
        plugin.check(cid, ns).ok()
    with ThreadPoolExecutor(len(pods)) as pool:
        dels = list(pool.map(lambda p: plugin.call("DEL", container_id=p[0], netns=p[1]), pods))
    assert all(d.code == 0 for d in dels) and _reservations(plugin) == []


def test_parallel_adds_without_agent(flavor: Flavor, netns_factory: NetnsFactory) -> None:
    plugin = flavor("podnet-ptp", lone=True)
    pods = [(f"lone{i}", _path(netns_factory("lone"))) for i in range(4)]
    with ThreadPoolExecutor(len(pods)) as pool:
        answers = list(pool.map(lambda p: plugin.call("ADD", container_id=p[0], netns=p[1]),
                                pods))
    assert len({a.ok().doc["ips"][0]["address"] for a in answers}) == len(pods)
    for c, path in pods:
        plugin.delete(c, path).ok()


# --- CHECK, GC, STATUS, VERSION -------------------------------------------------------------

def test_check_notices_what_changed(flavor: Flavor, netns_factory: NetnsFactory) -> None:
    plugin, ns = flavor("podnet-ptp"), netns_factory("chk")
    result = plugin.add("c1", _path(ns)).ok().doc
    plugin.check("c1", _path(ns)).ok()
    address = result["ips"][0]["address"]
    subprocess.run(["ip", "-n", ns, "addr", "del", address, "dev", "eth0"], check=True)
    answer = plugin.check("c1", _path(ns))
    assert answer.code != 0 and address in answer.doc["msg"]
    plugin.delete("c1", _path(ns)).ok()


def test_check_notices_a_missing_host_route(flavor: Flavor,
                                            netns_factory: NetnsFactory) -> None:
    plugin, ns = flavor("podnet-ptp"), netns_factory("chk")
    ip = plugin.add("c1", _path(ns)).ok().doc["ips"][0]["address"].split("/")[0]
    subprocess.run(["ip", "route", "del", f"{ip}/32"], check=True)
    assert plugin.check("c1", _path(ns)).code != 0
    plugin.delete("c1", _path(ns)).ok()


def test_gc_releases_what_the_runtime_no_longer_lists(flavor: Flavor,
                                                      netns_factory: NetnsFactory) -> None:
    plugin = flavor("podnet-ptp", version="1.1.0")
    pods = {f"gc{i}": _path(netns_factory("gc")) for i in range(3)}
    ends = {c: _host_end(plugin.add(c, path).ok().doc) for c, path in pods.items()}
    keep = plugin.results[("gc0", "eth0")]["ips"][0]["address"].split("/")[0]
    plugin.gc([("gc0", "eth0")]).ok()
    assert _reservations(plugin) == [keep]
    assert set(ends.values()) & _host_veths() == {ends["gc0"]}
    plugin.check("gc0", pods["gc0"]).ok()
    plugin.gc([]).ok()
    assert _reservations(plugin) == [] and not set(ends.values()) & _host_veths()


def test_gc_and_status_need_spec_1_1(flavor: Flavor) -> None:
    plugin = flavor("podnet-ptp", version="1.0.0")
    assert _error(plugin.status())["code"] == 1
    assert _error(plugin.gc([]))["code"] == 1


def test_status_reports_an_exhausted_range(flavor: Flavor, netns_factory: NetnsFactory) -> None:
    plugin = flavor("podnet-ptp", version="1.1.0")
    subnet = plugin.conf["ipam"]["ranges"][0][0]["subnet"]
    one = str(ipaddress.ip_network(subnet).network_address + 7)
    plugin.conf["ipam"]["ranges"] = [[{"subnet": subnet, "rangeStart": one, "rangeEnd": one}]]
    plugin.status().ok()
    ns = netns_factory("st")
    plugin.add("c1", _path(ns)).ok()
    doc = _error(plugin.status())
    assert doc["code"] == 50 and "no free address" in doc["msg"]
    second = plugin.add("c2", _path(netns_factory("st2")))
    assert second.code != 0  # ADD fails as STATUS said it would
    plugin.delete("c1", _path(ns)).ok()
    plugin.status().ok()


def test_status_of_host_local_delegate(flavor: Flavor) -> None:
    # Debian's host-local predates spec 1.1: it has no STATUS, so it has nothing to report.
    flavor("podnet-ptp-hostlocal", version="1.1.0").status().ok()


def test_version(cni_install: Install) -> None:
    for exe in ("podnet-cni", "podnet-ipam"):
        plugin = Plugin(exe, f"{cni_install.bin_dir}/{exe}", {}, cni_install.cni_path)
        doc = plugin.call("VERSION", stdin=b'{"cniVersion": "1.0.0"}').ok().doc
        assert set(doc["supportedVersions"]) >= {"0.4.0", "1.0.0", "1.1.0"}


def test_result_1_1_carries_interface_mtu(flavor: Flavor, netns_factory: NetnsFactory) -> None:
    plugin, ns = flavor("podnet-ptp", version="1.1.0", mtu=1400), netns_factory("mtu")
    result = plugin.add("c1", _path(ns)).ok().doc
    assert result["cniVersion"] == "1.1.0"
    assert result["interfaces"][result["ips"][0]["interface"]]["mtu"] == 1400
    assert ip_json("-n", ns, "link", "show", "eth0")[0]["mtu"] == 1400
    plugin.delete("c1", _path(ns)).ok()


def test_chained_prev_result_is_kept(flavor: Flavor, netns_factory: NetnsFactory) -> None:
    plugin, ns = flavor("podnet-ptp"), netns_factory("chain")
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "net9", "sandbox": "/x"}],
            "ips": [{"address": "192.0.2.5/24", "interface": 0}]}
    result = plugin.call("ADD", container_id="c1", netns=_path(ns),
                         conf=plugin.config(prevResult=prev)).ok().doc
    assert result["interfaces"][0]["name"] == "net9"
    assert result["ips"][0]["address"] == "192.0.2.5/24"
    assert result["interfaces"][result["ips"][1]["interface"]]["name"] == "eth0"
    plugin.delete("c1", _path(ns)).ok()


def test_host_end_is_marked_and_ignores_router_advertisements(
        flavor: Flavor, netns_factory: NetnsFactory) -> None:
    plugin, ns = flavor("podnet-ptp"), netns_factory("ra")
    result = plugin.add("c1", _path(ns)).ok().doc
    host_end = result["interfaces"][0]["name"]
    link = ip_json("-d", "link", "show", host_end)[0]
    assert link.get("ifalias") == "podnet"
    ra = Path(f"/proc/sys/net/ipv6/conf/{host_end}/accept_ra")
    if ra.exists():
        assert ra.read_text().strip() == "0"
    plugin.delete("c1", _path(ns)).ok()


def test_python_client_forwards_to_the_agent(cni_install: Install,
                                             netns_factory: NetnsFactory) -> None:
    from podnet.cni.install import InstallOptions, install

    bin_dir = f"{cni_install.root}/bin-python"
    done = install(InstallOptions(bin_dir=bin_dir, conf_dir=f"{bin_dir}-conf",
                                  socket=cni_install.socket, client="python"))
    assert done.client == "python"
    plugin = Plugin("py", f"{bin_dir}/podnet-cni", {
        "type": "podnet-cni", "stateDir": f"{cni_install.root}/state/py/cni",
        "ipam": {"type": "podnet-ipam", "ranges": [[{"subnet": "10.99.1.0/24"}]],
                 "dataDir": f"{cni_install.root}/state/py/ipam"}}, f"{bin_dir}:/usr/lib/cni",
        name="pynet")
    ns = netns_factory("py")
    plugin.add("c1", _path(ns)).ok()
    plugin.check("c1", _path(ns)).ok()
    plugin.delete("c1", _path(ns)).ok()
