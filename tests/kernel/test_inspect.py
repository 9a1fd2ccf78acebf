"""`podnet inspect` on hosts built the way others build them, with plain `ip` and the reference
CNI plugins (sandbox only). Every test checks that inspect reconstructs exactly what was built:
both ends of every pair, addresses, masters, routes and holders, checked against the commands
that built it and against `ip -j`; packets cross the pairs to show the topology is real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from podnet.inspect.build import inspect_host
from podnet.inspect.model import Host, Namespace, VethPair
from podnet.kernel import netns

pytestmark = pytest.mark.kernel

CNI_BIN = "/usr/lib/cni"


def ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def ip_json(ns: str | None, *args: str) -> Any:
    """`ip -j` in a named namespace, or in the one at a path such as /proc/PID/ns/net."""
    if ns is not None and ns.startswith("/"):
        argv = ["nsenter", f"--net={ns}", "ip", "-j", *args]
        return json.loads(subprocess.run(argv, capture_output=True, text=True,
                                         check=True).stdout or "[]")
    return json.loads(ip(*(["-n", ns] if ns else []), "-j", *args) or "[]")


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def look(tmp_path: Path, *names: str) -> Host:
    """inspect, with pod sources pointed at this test's own files.

    IPv6 adds link-local addresses and routes a moment after a link gets carrier: inspect runs
    again until `ip` shows the same namespaces before and after it, so the checks against `ip`
    compare one state of the kernel."""
    for _ in range(100):
        before = _snapshot(list(names), routes_all=False)
        host = inspect_host(state_dir=str(tmp_path / "state"),
                            cni_cache_dir=str(tmp_path / "cni"))
        if _snapshot(list(names), routes_all=False) == before:
            return host
        time.sleep(0.05)
    raise AssertionError("the namespaces kept changing")


def v4(addresses: tuple[str, ...] | None) -> list[str]:
    assert addresses is not None
    return [a for a in addresses if "." in a]


def one(host: Host, selector: str) -> Namespace:
    found = host.find(selector)
    assert len(found) == 1, f"{selector}: {[n.label for n in found]}"
    return found[0]


def pair_at(host: Host, netns_label: str, ifname: str) -> VethPair:
    """The pair with an end `ifname` in `netns_label`, turned so that end comes first."""
    for pair in host.veth_pairs:
        for n, end in enumerate(pair.ends):
            if end.netns == netns_label and end.ifname == ifname:
                if n == 1:
                    return VethPair((pair.ends[1], pair.ends[0]), pair.status, pair.netnsid)
                return pair
    raise AssertionError(f"no veth pair with {ifname} in {netns_label}")


def assert_matches_ip(host: Host, name: str, path: str | None = None) -> None:
    """Every link, address and main-table route inspect reports for a namespace is what `ip -j`
    reports for it, and nothing is missing."""
    ns = one(host, name)

    def ipj(*args: str) -> Any:
        return ip_json(path or name, *args)

    links = {link["ifname"]: link for link in ipj("-d", "link", "show")}
    assert sorted(links) == sorted(i.ifname for i in ns.interfaces)
    addrs = {a["ifname"]: a for a in ipj("addr", "show")}
    for iface in ns.interfaces:
        link = links[iface.ifname]
        assert iface.ifindex == link["ifindex"]
        assert iface.mac == link.get("address")
        assert iface.mtu == link["mtu"]
        assert iface.state == link["operstate"]
        assert iface.master == link.get("master")
        assert iface.kind == link.get("linkinfo", {}).get("info_kind", iface.kind)
        assert list(iface.addresses) == [
            f"{a['local']}/{a['prefixlen']}" for a in addrs[iface.ifname]["addr_info"]
        ]
    routes = [*ipj("route", "show", "table", "main"), *ipj("-6", "route", "show", "table", "main")]
    want = sorted(
        (r["dst"], r.get("gateway"), r.get("dev"), r.get("prefsrc")) for r in routes
    )

    def short(dst: str) -> str:
        return dst.removesuffix("/32") if "." in dst else dst.removesuffix("/128")

    got = sorted((short(r.dst), r.gateway, r.dev, r.src) for r in ns.routes)
    assert got == want


def udp_across(src_ns: str, dst_ns: str, dst_ip: str) -> None:
    """One datagram from a socket in src_ns to dst_ip, received by a socket in dst_ns."""
    with netns.entered(netns.path_of(dst_ns)):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns.entered(netns.path_of(src_ns)):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind((dst_ip, 0))
        rx.settimeout(5)
        payload = uuid.uuid4().bytes
        tx.sendto(payload, (dst_ip, rx.getsockname()[1]))
        assert rx.recv(64) == payload


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; each is killed by its PID afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _snapshot(names: list[str], *, routes_all: bool = True) -> str:
    """Links, addresses and routes of each namespace (and ours), as `ip -j` prints them."""
    table = "all" if routes_all else "main"
    # -d adds a bridge's running timers: only for the read-only check, which has no bridge
    link = ["-d", "link"] if routes_all else ["link"]
    out = []
    for name in [None, *names]:
        for what in (link, ["addr"], ["route", "show", "table", table],
                     ["-6", "route", "show", "table", table]):
            out.append(json.dumps(ip_json(name, *what), sort_keys=True))
    return "\n".join(out)


# --- hosts built with plain `ip` ---------------------------------------------------------------


def test_bridge_style_node(netns_factory: Callable[[str], str], tmp_path: Path) -> None:
    """cni0-style: host ends enslaved to a bridge that holds the pods' gateway."""
    node, pods = netns_factory("node"), [netns_factory("pod") for _ in range(3)]
    ip("-n", node, "link", "add", "cni0", "type", "bridge")
    ip("-n", node, "addr", "add", "10.244.1.1/24", "dev", "cni0")
    ip("-n", node, "link", "set", "cni0", "up")
    for n, pod in enumerate(pods):
        ip("-n", node, "link", "add", f"veth{n}", "type", "veth", "peer", "name", "eth0",
           "netns", pod)
        ip("-n", node, "link", "set", f"veth{n}", "master", "cni0", "up")
        ip("-n", pod, "addr", "add", f"10.244.1.{n + 2}/24", "dev", "eth0")
        ip("-n", pod, "link", "set", "eth0", "up")
        ip("-n", pod, "route", "add", "default", "via", "10.244.1.1")
    udp_across(pods[0], pods[2], "10.244.1.4")

    host = look(tmp_path, node, *pods)

    for n, pod in enumerate(pods):
        pair = pair_at(host, node, f"veth{n}")
        near, far = pair.ends
        assert pair.status == "ok"
        assert (far.netns, far.ifname) == (pod, "eth0")
        assert near.master == "cni0" and far.master is None
        assert far.addresses is not None and f"10.244.1.{n + 2}/24" in far.addresses
        assert near.mac == ip_json(node, "link", "show", f"veth{n}")[0]["address"]
        assert far.mac == ip_json(pod, "link", "show", "eth0")[0]["address"]
        routes = {(r.dst, r.gateway, r.dev) for r in one(host, pod).routes}
        assert ("default", "10.244.1.1", "eth0") in routes
        assert ("10.244.1.0/24", None, "eth0") in routes
    bridge = one(host, node).interface("cni0")
    assert bridge is not None and bridge.kind == "bridge" and "10.244.1.1/24" in bridge.addresses
    for name in (node, *pods):
        assert_matches_ip(host, name)


def test_kindnet_32_style_node(netns_factory: Callable[[str], str], tmp_path: Path) -> None:
    """kindnet's shape from the lesson: 10.244.3.1/32 on every node end, a host route per pod."""
    node, pods = netns_factory("node"), [netns_factory("cni") for _ in range(2)]
    ip("netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for n, pod in enumerate(pods):
        veth, pod_ip = f"veth{n:08x}", f"10.244.3.{n + 5}"
        ip("-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod)
        ip("-n", node, "addr", "add", "10.244.3.1/32", "dev", veth)
        ip("-n", node, "link", "set", veth, "up")
        ip("-n", node, "route", "add", f"{pod_ip}/32", "dev", veth, "scope", "host")
        ip("-n", pod, "addr", "add", f"{pod_ip}/24", "dev", "eth0")
        ip("-n", pod, "link", "set", "eth0", "up")
        ip("-n", pod, "route", "replace", "10.244.3.0/24", "via", "10.244.3.1", "dev", "eth0",
           "src", pod_ip, "onlink")
        ip("-n", pod, "route", "add", "default", "via", "10.244.3.1", "dev", "eth0", "onlink")
    udp_across(pods[0], pods[1], "10.244.3.6")

    host = look(tmp_path, node, *pods)

    node_ns = one(host, node)
    for n, pod in enumerate(pods):
        veth = f"veth{n:08x}"
        near, far = pair_at(host, node, veth).ends
        assert near.addresses is not None and "10.244.3.1/32" in near.addresses
        assert (far.netns, far.ifname) == (pod, "eth0")
        assert far.addresses is not None and f"10.244.3.{n + 5}/24" in far.addresses
        host_route = next(r for r in node_ns.routes if r.dst == f"10.244.3.{n + 5}/32")
        assert (host_route.dev, host_route.scope) == (veth, "host")
        pod_routes = {(r.dst, r.gateway, r.dev, r.src) for r in one(host, pod).routes}
        assert ("10.244.3.0/24", "10.244.3.1", "eth0", f"10.244.3.{n + 5}") in pod_routes
        assert ("default", "10.244.3.1", "eth0", None) in pod_routes
    line = _describe(host, "veth00000000")
    assert line == [f"veth00000000 in {node}: peer is eth0 in {pods[0]}"]
    for name in (node, *pods):
        assert_matches_ip(host, name)


def _describe(host: Host, ifname: str) -> list[str]:
    from podnet.render.inspect_text import describe_interface

    return describe_interface(host, ifname)


@pytest.mark.parametrize("same_mac", [False, True], ids=["own-macs", "one-mac-for-all"])
def test_pairs_between_non_root_namespaces(
    netns_factory: Callable[[str], str], tmp_path: Path, same_mac: bool
) -> None:
    """Pairs whose ends are both away from podnet's namespace, with every end at ifindex 2: the
    ifindexes alone cannot tell them apart. A look at each end's peer does, by its MAC address;
    where every end has the same MAC (set by hand, as some runtimes do), the namespace ids must."""
    lefts = [netns_factory("left") for _ in range(4)]
    rights = [netns_factory("right") for _ in range(4)]
    for n, (left, right) in enumerate(zip(lefts, rights, strict=True)):
        ip("-n", left, "link", "add", "xa", "type", "veth", "peer", "name", "xb", "netns", right)
        if same_mac:
            ip("-n", left, "link", "set", "xa", "address", "02:00:00:00:00:99")
            ip("-n", right, "link", "set", "xb", "address", "02:00:00:00:00:99")
        ip("-n", left, "addr", "add", f"192.168.{n}.1/30", "dev", "xa")
        ip("-n", right, "addr", "add", f"192.168.{n}.2/30", "dev", "xb")
        ip("-n", left, "link", "set", "xa", "up")
        ip("-n", right, "link", "set", "xb", "up")
    # and a pair with both ends in one namespace
    ip("-n", lefts[0], "link", "add", "loop-a", "type", "veth", "peer", "name", "loop-b")
    for n, (left, right) in enumerate(zip(lefts, rights, strict=True)):
        udp_across(left, right, f"192.168.{n}.2")

    host = look(tmp_path, *lefts, *rights)

    for n, (left, right) in enumerate(zip(lefts, rights, strict=True)):
        a, b = pair_at(host, left, "xa").ends
        assert (a.ifindex, b.ifindex) == (2, 2)
        assert (b.netns, b.ifname) == (right, "xb")
        assert v4(a.addresses) == [f"192.168.{n}.1/30"] and v4(b.addresses) == [f"192.168.{n}.2/30"]
    a, b = pair_at(host, lefts[0], "loop-a").ends
    assert (b.netns, b.ifname) == (lefts[0], "loop-b")
    assert all(p.status == "ok" for p in host.veth_pairs)
    assert len([p for p in host.veth_pairs if p.touches(one(host, lefts[0]).inode)]) == 2


def test_peer_in_a_namespace_nobody_can_name_then_gone(
    netns_factory: Callable[[str], str], tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """The pod's name is deleted while a process still holds it by an open fd: the node's veth
    leads to a namespace podnet cannot see. Once the holder ends, the kernel frees the namespace
    and both ends of the pair: nothing dangling is reported."""
    node, pod = netns_factory("node"), netns_factory("pod")
    ip("-n", node, "link", "add", "vhidden", "type", "veth", "peer", "name", "eth0", "netns", pod)
    peer_mac = ip_json(pod, "link", "show", "eth0")[0]["address"]
    fd = os.open(netns.path_of(pod), os.O_RDONLY)
    try:
        processes.append(subprocess.Popen(["sleep", "300"], pass_fds=[fd]))
    finally:
        os.close(fd)
    netns.delete(pod)

    host = look(tmp_path, node)

    pair = pair_at(host, node, "vhidden")
    near, far = pair.ends
    assert pair.status == "peer-hidden"
    assert (far.netns, far.inode, far.ifname, far.mac) == (None, None, "eth0", peer_mac)
    assert far.addresses is None  # not visible, so not known
    assert pair.netnsid == ip_json(node, "link", "show", "vhidden")[0]["link_netnsid"]
    assert near.ifname == "vhidden" and one(host, node).interface("vhidden") is not None
    lines = _describe(host, "vhidden")
    assert lines[0].startswith(f"vhidden in {node}: peer is eth0 in a namespace podnet cannot see")

    os.kill(processes[0].pid, signal.SIGKILL)
    processes[0].wait()
    wait_for(lambda: "vhidden" not in {x["ifname"] for x in ip_json(node, "link", "show")},
             "the kernel to free the pod namespace and its veth")

    host = look(tmp_path, node)
    assert one(host, node).interface("vhidden") is None
    assert not [p for p in host.veth_pairs if p.touches(one(host, node).inode)]


def test_unnamed_namespace_held_by_a_sleeping_process(
    netns_factory: Callable[[str], str], tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    node = netns_factory("node")
    proc = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    processes.append(proc)
    ours = os.readlink("/proc/self/ns/net")
    wait_for(lambda: os.readlink(f"/proc/{proc.pid}/ns/net") != ours, "unshare --net")
    inside = ["nsenter", f"--net=/proc/{proc.pid}/ns/net", "ip"]
    ip("-n", node, "link", "add", "vsleep", "type", "veth", "peer", "name", "eth0",
       "netns", str(proc.pid))
    ip("-n", node, "addr", "add", "10.9.0.1/24", "dev", "vsleep")
    ip("-n", node, "link", "set", "vsleep", "up")
    subprocess.run([*inside, "addr", "add", "10.9.0.2/24", "dev", "eth0"], check=True)
    subprocess.run([*inside, "link", "set", "eth0", "up"], check=True)

    host = look(tmp_path, node, f"/proc/{proc.pid}/ns/net")

    label = f"pid:{proc.pid}"
    ns = one(host, label)
    assert ns.name is None and ns.paths == ()
    assert [(h.pid, h.comm) for h in ns.holders] == [(proc.pid, "sleep")]
    assert ns.inode == os.stat(f"/proc/{proc.pid}/ns/net").st_ino
    near, far = pair_at(host, node, "vsleep").ends
    assert (far.netns, far.ifname, v4(far.addresses)) == (label, "eth0", ["10.9.0.2/24"])
    assert v4(near.addresses) == ["10.9.0.1/24"]
    assert _describe(host, "vsleep") == [
        f"vsleep in {node}: peer is eth0 in {label}, held by PID {proc.pid} (sleep)"
    ]
    assert_matches_ip(host, label, f"/proc/{proc.pid}/ns/net")


# --- hosts built by the reference CNI plugins, driven as a runtime drives them -----------------


def _cni(plugin: str, command: str, node: str, pod: str, container_id: str,
         config: dict[str, Any]) -> dict[str, Any]:
    env = {
        "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns.path_of(pod), "CNI_IFNAME": "eth0", "CNI_PATH": CNI_BIN,
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    # The plugin makes the host side in the namespace it runs in: the test's node, not ours.
    result = subprocess.run(
        ["nsenter", f"--net={netns.path_of(node)}", f"{CNI_BIN}/{plugin}"],
        input=json.dumps(config), capture_output=True, text=True, env=env, check=False,
    )
    assert result.returncode == 0, f"{plugin} {command}: {result.stdout}{result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip() else {}


def _host_end(result: dict[str, Any]) -> dict[str, Any]:
    """The node end of the veth in a CNI result: no sandbox, and not the bridge (listed first)."""
    node_side = [i for i in result["interfaces"] if not i.get("sandbox")]
    return dict(node_side[-1])


@pytest.mark.skipif(not os.path.exists(f"{CNI_BIN}/bridge"), reason="containernetworking-plugins")
def test_reference_cni_plugins(netns_factory: Callable[[str], str], tmp_path: Path) -> None:
    node, bridged, ptp = netns_factory("node"), netns_factory("cni"), netns_factory("cni")
    data_dir = f"/run/podnet-test-ipam-{uuid.uuid4().hex[:8]}"
    configs = {
        "bridge": {
            "cniVersion": "1.0.0", "name": "test-bridge", "type": "bridge",
            "bridge": "cnitest0", "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/24"}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir},
        },
        "ptp": {
            "cniVersion": "1.0.0", "name": "test-ptp", "type": "ptp", "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir},
        },
    }
    ids = {"bridge": uuid.uuid4().hex * 2, "ptp": uuid.uuid4().hex * 2}
    pods = {"bridge": bridged, "ptp": ptp}
    results: dict[str, dict[str, Any]] = {}
    try:
        for plugin in ("bridge", "ptp"):
            results[plugin] = _cni(plugin, "ADD", node, pods[plugin], ids[plugin],
                                   configs[plugin])
        # What libcni (containerd's CRI) would have cached for the bridge pod, and a lab state
        # naming the ptp pod: inspect reads both.
        (tmp_path / "cni").mkdir()
        (tmp_path / "cni" / f"test-bridge-{ids['bridge']}-eth0").write_text(json.dumps({
            "kind": "cniCacheV1", "containerId": ids["bridge"], "ifName": "eth0",
            "networkName": "test-bridge", "netns": f"/var/run/netns/{bridged}",
            "cniArgs": [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "dev"],
                        ["K8S_POD_NAME", "demo-58465f467c-24bcq"]],
            "result": results["bridge"],
        }))
        (tmp_path / "state" / "lab").mkdir(parents=True)
        (tmp_path / "state" / "lab" / "state.json").write_text(json.dumps({
            "cluster": "lab",
            "nodes": [{"name": "kind-worker", "netns": node, "ip": "", "pod_cidr": ""}],
            "pods": [{"namespace": "default", "name": "jumpbox", "node": "kind-worker",
                      "netns": ptp, "containers": []}],
        }))

        host = look(tmp_path, node, bridged, ptp)

        for plugin, pod in pods.items():
            result = results[plugin]
            host_if = _host_end(result)
            pod_if = next(i for i in result["interfaces"] if i.get("sandbox"))
            near, far = pair_at(host, node, host_if["name"]).ends
            assert (near.mac, far.netns, far.ifname, far.mac) == (
                host_if["mac"], pod, "eth0", pod_if["mac"])
            address = result["ips"][0]
            assert far.addresses is not None and address["address"] in far.addresses
            routes = {(r.dst, r.gateway, r.dev) for r in one(host, pod).routes}
            assert ("default", address["gateway"], "eth0") in routes
            assert_matches_ip(host, pod)
        near, _ = pair_at(host, node, _host_end(results["bridge"])["name"]).ends
        assert near.master == "cnitest0"
        bridge = one(host, node).interface("cnitest0")
        assert bridge is not None and "10.88.0.1/24" in bridge.addresses
        near, _ = pair_at(host, node, _host_end(results["ptp"])["name"]).ends
        assert near.master is None and near.addresses is not None
        assert "10.89.0.1/32" in near.addresses
        assert_matches_ip(host, node)
        assert one(host, bridged).pod == "dev/demo-58465f467c-24bcq"
        assert one(host, ptp).pod == "default/jumpbox"
        assert one(host, node).node == "kind-worker"
        veth = _host_end(results["bridge"])["name"]
        assert _describe(host, veth) == [
            f"{veth} in {node} (node kind-worker): peer is eth0 in {bridged}, "
            "pod dev/demo-58465f467c-24bcq"
        ]
    finally:
        for plugin in results:
            _cni(plugin, "DEL", node, pods[plugin], ids[plugin], configs[plugin])
        shutil.rmtree(data_dir, ignore_errors=True)


# --- read-only, robust, and faithful to pyroute2 ------------------------------------------------


def test_inspect_changes_nothing(netns_factory: Callable[[str], str], tmp_path: Path) -> None:
    node, pod = netns_factory("node"), netns_factory("pod")
    ip("-n", node, "link", "add", "vro", "type", "veth", "peer", "name", "eth0", "netns", pod)
    ip("-n", pod, "addr", "add", "10.7.0.2/24", "dev", "eth0")
    ip("-n", pod, "link", "set", "eth0", "up")
    ip("-n", node, "link", "set", "vro", "up")
    ip("-n", pod, "link", "show")  # lets the kernel assign its nsids before the snapshot
    ip("-n", node, "link", "show")
    deadline = time.monotonic() + 5
    while "NO-CARRIER" in ip("-n", node, "link", "show", "vro") and time.monotonic() < deadline:
        time.sleep(0.02)  # the carrier comes up a moment after both ends are up
    before = _snapshot([node, pod])
    inspect_host(state_dir=str(tmp_path), cni_cache_dir=str(tmp_path))
    assert _snapshot([node, pod]) == before


def test_a_namespace_that_cannot_be_entered_is_reported(tmp_path: Path) -> None:
    from podnet.kernel.discover import Session

    not_a_namespace = tmp_path / "file"
    not_a_namespace.write_text("")
    with Session() as session:
        dump = session.dump([str(not_a_namespace)], os.stat(not_a_namespace).st_ino)
        gone = session.dump(["/proc/999999999/ns/net"], 1)
        here = session.dump(None, 0)
    assert dump.error is not None and "cannot enter" in dump.error
    assert gone.error is not None and "cannot open network namespace" in gone.error
    assert dump.links == [] and here.error is None and here.links


def test_decoding_agrees_with_pyroute2(netns_factory: Callable[[str], str]) -> None:
    """podnet unpacks only the attributes it prints; pyroute2's full decode must agree."""
    from podnet.kernel.discover import Session
    from podnet.kernel.netlink import Netlink

    node, pod = netns_factory("node"), netns_factory("pod")
    ip("-n", node, "link", "add", "br0", "type", "bridge")
    ip("-n", node, "link", "add", "vdiff", "type", "veth", "peer", "name", "eth0", "netns", pod)
    ip("-n", node, "link", "set", "vdiff", "master", "br0", "up")
    ip("-n", node, "addr", "add", "10.6.0.1/24", "dev", "br0")
    ip("-n", node, "link", "set", "br0", "up")
    ip("-n", pod, "addr", "add", "10.6.0.2/24", "dev", "eth0")
    ip("-n", pod, "addr", "add", "fd00::2/64", "dev", "eth0", "nodad")
    ip("-n", pod, "link", "set", "eth0", "up")
    ip("-n", pod, "route", "add", "default", "via", "10.6.0.1")
    ip("-n", pod, "route", "add", "10.50.0.0/16", "nexthop", "via", "10.6.0.1", "dev", "eth0",
       "nexthop", "via", "10.6.0.3", "dev", "eth0")
    for name in (node, pod):
        path = netns.path_of(name)
        with Session() as session:
            ours = session.dump([path], os.stat(path).st_ino)
        with Netlink.open(path) as nl:
            theirs_links, theirs_addrs, theirs_routes = nl.links(), nl.addresses(), nl.routes()
        assert ours.error is None
        for link, ref in zip(ours.links, theirs_links, strict=True):
            assert (link.index, link.ifname, link.mac, link.mtu, link.state) == (
                ref["index"], ref["ifname"], ref["mac"], ref["mtu"], ref["state"])
            assert link.kind == (ref["kind"] or link.kind)
            assert link.master == ref["master"]
            assert link.peer_netnsid == ref["link_netnsid"]
            if link.kind == "veth":  # the kernel omits IFLA_LINK when it equals the ifindex
                assert link.peer_index == (ref["link"] or link.index)
        assert [(a.index, f"{a.address}/{a.prefixlen}", a.scope, a.family) for a in ours.addresses
                ] == [(a["index"], a["address"], a["scope"], a["family"]) for a in theirs_addrs]
        assert [(r.dst or "default", r.gateway, r.oif, r.prefsrc) for r in ours.routes] == [
            (r["dst"].split("/")[0] if r["dst"] != "default" else "default", r["gateway"],
             r["oif"], r["src"]) for r in theirs_routes]
    multipath = next(r for r in ours.routes if r.dst == "10.50.0.0")
    assert [(h.gateway, h.oif) for h in multipath.nexthops] == [("10.6.0.1", 2), ("10.6.0.3", 2)]


def test_command_prints_json_and_the_interface_line(
    netns_factory: Callable[[str], str],
) -> None:
    """The whole command, as a script runs it."""
    node, pod = netns_factory("node"), netns_factory("pod")
    ip("-n", node, "link", "add", "vcli", "type", "veth", "peer", "name", "eth0", "netns", pod)
    run = [sys.executable, "-m", "podnet.cli.inspect"]
    doc = json.loads(subprocess.run([*run, "-o", "json"], capture_output=True, text=True,
                                    check=True).stdout)
    assert {"namespaces", "veth_pairs"} <= set(doc)
    # Which end comes first follows the namespaces' inode numbers, which the kernel reuses:
    # a namespace made later may have the lower one.
    pair = next(p for p in doc["veth_pairs"] if "vcli" in {e["ifname"] for e in p["ends"]})
    assert sorted((e["netns"], e["ifname"]) for e in pair["ends"]) == sorted(
        [(node, "vcli"), (pod, "eth0")])
    line = subprocess.run([*run, "--interface", "vcli"], capture_output=True, text=True,
                          check=True).stdout
    assert line == f"vcli in {node}: peer is eth0 in {pod}\n"
    mermaid = subprocess.run([*run, "--netns", pod, "-o", "mermaid"], capture_output=True,
                             text=True, check=True).stdout
    assert "===|veth pair|" in mermaid and f'["{pod}"]' in mermaid
    missing = subprocess.run([*run, "--netns", "no-such-ns"], capture_output=True, text=True,
                             check=False)
    assert missing.returncode == 1 and "no network namespace matches" in missing.stderr
