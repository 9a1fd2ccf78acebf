"""podnet-cni `mode: vpc` (AWS's VPC CNI shape, the lab's `Vpc` attachment) on two hosts.

Two throw-away namespaces play two hosts on one bridge (the node network, 192.0.2.0/24, whose
router 192.0.2.1 lives in a third namespace, as the reference plugins' tests play a host), each
running podnet-cni in its own namespace. Pods take /32 addresses from the node network's subnet
(each host its own range of it), reach 169.254.1.1 through a permanent neighbour entry naming the
host end's MAC; the hosts route each /32 to its veth under a `to POD lookup main priority 512`
rule and answer ARP for their pods on the uplink. Real TCP between pods on both hosts, from the
node network, and out through the router (masqueraded to the host's address); then CHECK, DEL
(twice) and GC leave no route, rule or link behind.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cni.conftest import REFERENCE_DIR, Install, ip_json
from tests.cni.driver import Plugin
from tests.cni.nets import tcp_reach, tcp_server

pytestmark = pytest.mark.kernel

NetnsFactory = Callable[[str], str]
ROUTER, OUTSIDE, OUT_ROUTER = "192.0.2.1", "198.51.100.2", "198.51.100.1"


def _path(ns: str) -> str:
    return f"/run/netns/{ns}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Host:
    ns: str
    address: str  # on the node network
    plugin: Plugin
    pods: dict[str, str] = field(default_factory=dict)  # container -> pod namespace

    def json(self, *args: str) -> Any:
        return ip_json("-n", self.ns, *args)


@dataclass(frozen=True)
class Network:
    lan: str  # the node network's router (and the bridge the hosts hang on)
    outside: str  # a host beyond the router
    hosts: tuple[Host, Host]


def _host(netns_factory: NetnsFactory, lan: str, n: int, install: Install,
          uplink: str | None) -> Host:
    ns, tag = netns_factory(f"h{n}"), uuid.uuid4().hex[:6]
    _ip("link", "add", f"l{n}{tag}", "netns", lan, "type", "veth", "peer", "name", "eth0",
        "netns", ns)
    _ip("-n", lan, "link", "set", f"l{n}{tag}", "master", "lan0", "up")
    address = f"192.0.2.{10 + n}"
    _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "route", "add", "default", "via", ROUTER)
    state = f"{install.root}/state/vpc-{tag}"
    conf: dict[str, Any] = {
        "type": "podnet-cni", "mode": "vpc", "ipMasq": True, "stateDir": f"{state}/cni",
        "ipam": {"type": "podnet-ipam", "dataDir": f"{state}/ipam",
                 "ranges": [[{"subnet": "192.0.2.0/24", "rangeStart": f"192.0.2.{100 + 10 * n}",
                              "rangeEnd": f"192.0.2.{109 + 10 * n}"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}}
    if uplink:
        conf["uplink"] = uplink
    # In-process in the host's namespace (the agent serves only its own namespace).
    plugin = Plugin(f"vpc{n}", f"{install.lone_bin_dir}/podnet-cni", conf,
                    f"{install.lone_bin_dir}:{REFERENCE_DIR}", name="nodenet", version="1.1.0",
                    host_netns=_path(ns))
    return Host(ns, address, plugin)


@contextlib.contextmanager
def _network(netns_factory: NetnsFactory, install: Install) -> Iterator[Network]:
    lan, outside = netns_factory("lan"), netns_factory("outside")
    _ip("-n", lan, "link", "add", "lan0", "type", "bridge")
    _ip("-n", lan, "addr", "add", f"{ROUTER}/24", "dev", "lan0")
    _ip("-n", lan, "link", "set", "lan0", "up")
    _ip("-n", lan, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns",
        outside)
    _ip("-n", lan, "addr", "add", f"{OUT_ROUTER}/24", "dev", "out0")
    _ip("-n", lan, "link", "set", "out0", "up")
    _ip("-n", outside, "addr", "add", f"{OUTSIDE}/24", "dev", "eth0")
    _ip("-n", outside, "link", "set", "eth0", "up")
    _ip("-n", outside, "route", "add", "default", "via", OUT_ROUTER)
    subprocess.run(["ip", "netns", "exec", lan, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                   check=True)
    # One host names its uplink, the other leaves it to its default route.
    yield Network(lan, outside, (_host(netns_factory, lan, 1, install, "eth0"),
                                 _host(netns_factory, lan, 2, install, None)))


def _add(host: Host, netns_factory: NetnsFactory, container: str) -> str:
    pod = netns_factory("vpod")
    result = host.plugin.add(container, _path(pod)).ok().doc
    host.pods[container] = pod
    (ip,) = result["ips"]
    assert ip["address"].endswith("/32") and ip["gateway"] == "169.254.1.1"
    return str(ip["address"]).split("/")[0]


def test_pods_on_two_hosts_share_the_node_network(netns_factory: NetnsFactory,
                                                  cni_install: Install) -> None:
    with _network(netns_factory, cni_install) as net:
        h1, h2 = net.hosts
        a, b = _add(h1, netns_factory, "a"), _add(h2, netns_factory, "b")
        assert a.startswith("192.0.2.11") and b.startswith("192.0.2.12")
        _assert_shape(h1, "a", a)
        for host in (h1, h2):
            assert subprocess.run(["ip", "netns", "exec", host.ns, "sysctl", "-n",
                                   "net.ipv4.conf.eth0.proxy_arp"], capture_output=True,
                                  text=True, check=True).stdout.strip() == "1"
        pa, pb = h1.pods["a"], h2.pods["b"]
        with tcp_server(pb, 8080):
            assert tcp_reach(pa, b, 8080) == a  # pod to pod across hosts, no pod routes
            assert tcp_reach(net.lan, b, 8080) == ROUTER  # from the node network
            assert tcp_reach(h1.ns, b, 8080) == h1.address  # another host to a pod
        with tcp_server(pa, 8081):
            assert tcp_reach(pb, a, 8081) == b
            assert tcp_reach(h1.ns, a, 8081) == h1.address  # the pod's own host
        with tcp_server(net.outside, 9090):
            assert tcp_reach(pa, OUTSIDE, 9090) == h1.address  # masqueraded beyond the subnet
        for host, container in ((h1, "a"), (h2, "b")):
            host.plugin.check(container, _path(host.pods[container])).ok()
        _del_twice_leaves_nothing(h1, h2)


def _assert_shape(host: Host, container: str, ip: str) -> None:
    pod = host.pods[container]
    (neigh,) = [n for n in ip_json("-n", pod, "neigh") if n["dst"] == "169.254.1.1"]
    veth = next(r["dev"] for r in host.json("route") if r["dst"] == ip)
    host_link = host.json("link", "show", veth)[0]
    assert "PERMANENT" in neigh["state"] and neigh["lladdr"] == host_link["address"]
    assert [r["dst"] for r in ip_json("-n", pod, "route")] == ["default", "169.254.1.1"]
    assert not [a for link in host.json("addr", "show", veth) for a in link["addr_info"]
                if a["family"] == "inet"]  # the host end has no address
    rules = [r for r in host.json("rule") if r.get("dst") == ip]
    assert [(r["priority"], r["table"]) for r in rules] == [(512, "main")]


def _del_twice_leaves_nothing(h1: Host, h2: Host) -> None:
    for host in (h1, h2):
        for container, pod in host.pods.items():
            host.plugin.delete(container, _path(pod)).ok()
            host.plugin.delete(container, _path(pod)).ok()  # twice: nothing left to remove
        assert [r["priority"] for r in host.json("rule")] == [0, 32766, 32767]
        assert [r["dst"] for r in host.json("route")] == ["default", "192.0.2.0/24"]
        assert [link["ifname"] for link in host.json("link")] == ["lo", "eth0"]


def test_gc_and_a_failed_add_leave_no_rule(netns_factory: NetnsFactory,
                                           cni_install: Install) -> None:
    with _network(netns_factory, cni_install) as net:
        h1 = net.hosts[0]
        for container in ("keep", "stale"):
            _add(h1, netns_factory, container)
        h1.plugin.gc([("keep", "eth0")]).ok()
        rules = [r.get("dst") for r in h1.json("rule") if r["priority"] == 512]
        assert len(rules) == 1
        h1.plugin.check("keep", _path(h1.pods["keep"])).ok()
        # A route the kernel refuses, after the veth, route and rule exist: all of it goes.
        h1.plugin.conf["ipam"] = {**h1.plugin.conf["ipam"], "routes": [
            {"dst": "0.0.0.0/0"}, {"dst": "10.96.0.0/12", "gw": "203.0.113.9"}]}
        refused = h1.plugin.add("bad", _path(netns_factory("bad")))
        assert refused.code != 0 and "10.96.0.0/12" in refused.doc["msg"], refused.doc
        assert [r.get("dst") for r in h1.json("rule") if r["priority"] == 512] == rules
        assert len(h1.json("link")) == 3  # lo, eth0, keep's veth
        h1.plugin.delete("keep", _path(h1.pods["keep"])).ok()
        h1.plugin.gc([]).ok()
        assert [r["priority"] for r in h1.json("rule")] == [0, 32766, 32767]


def test_a_host_without_an_uplink_is_refused_with_a_hint(netns_factory: NetnsFactory,
                                                         cni_install: Install) -> None:
    with _network(netns_factory, cni_install) as net:
        h2 = net.hosts[1]
        _ip("-n", h2.ns, "route", "del", "default")
        answer = h2.plugin.add("x", _path(netns_factory("x")))
        assert answer.doc["code"] == 7 and "default route" in answer.doc["msg"]
        assert '"uplink"' in answer.doc["details"]
        held = Path(h2.plugin.conf["ipam"]["dataDir"]) / h2.plugin.name
        assert not held.exists() or not [p for p in held.iterdir() if p.name[0].isdigit()]
