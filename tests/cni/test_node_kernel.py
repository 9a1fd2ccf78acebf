"""podnet-cni on a real node (issue 13): who owns an address and its masquerade entry across
repeated DELs and reboots, static addresses, hostPort and bandwidth through the chained reference
plugins, the agent's failures (SIGTERM mid-request, kill -9 mid-ADD) and odd input. Real
namespaces, real packets; inside the sandbox."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cni.conftest import (
    REFERENCE_DIR,
    Install,
    install_podnet,
    ip_json,
    start_agent,
    stop_process,
)
from tests.cni.driver import Answer, Chain, Plugin, run_plugin
from tests.cni.nets import NodeNets, node_networks, tcp_reach, tcp_server
from tests.iperf import assert_shaped, iperf

pytestmark = pytest.mark.kernel

Flavor = Callable[..., Plugin]
NetnsFactory = Callable[[str], str]


def _path(ns: str) -> str:
    return f"/run/netns/{ns}"


def _ip_of(answer: Answer) -> str:
    return str(answer.doc["ips"][0]["address"]).split("/")[0]


def _masq_members() -> set[str]:
    out = subprocess.run(["nft", "-j", "list", "table", "inet", "podnet-cni"],
                         capture_output=True, check=False).stdout
    if not out:
        return set()
    found = set()
    for item in json.loads(out)["nftables"]:
        for elem in item.get("set", {}).get("elem", ()):
            found.add(elem["elem"]["val"] if isinstance(elem, dict) else elem)
    return found


def _one_address(plugin: Plugin, count: int = 1) -> None:
    """Shrink the range to `count` addresses, so the next pod gets a freed one at once."""
    subnet = ipaddress.ip_network(plugin.conf["ipam"]["ranges"][0][0]["subnet"])
    first = subnet.network_address + 10
    plugin.conf["ipam"]["ranges"] = [[{"subnet": str(subnet), "rangeStart": str(first),
                                       "rangeEnd": str(first + count - 1)}]]


@pytest.fixture
def nets(netns_factory: NetnsFactory) -> Any:
    with node_networks(netns_factory) as made:
        yield made


def _egress_is_masqueraded(nets: NodeNets, pod_ns: str) -> bool:
    with tcp_server(nets.outside, 9090):
        return tcp_reach(pod_ns, nets.outside_ip, 9090) == nets.router_ip


# --- ownership: a repeated DEL, a reboot, GC ------------------------------------------------

def test_repeated_del_with_a_stale_prev_result_keeps_the_new_owner(
        flavor: Flavor, netns_factory: NetnsFactory, nets: NodeNets) -> None:
    """A's DEL again (the spec allows it) with A's cached result, after B got A's address:
    B's masquerade entry stays (the issue: it was removed, cutting B's egress)."""
    plugin = flavor("podnet-ptp", ipMasq=True)
    _one_address(plugin)
    a, b = netns_factory("a"), netns_factory("b")
    stale = plugin.add("A", _path(a)).ok().doc
    plugin.delete("A", _path(a)).ok()
    ip_b = _ip_of(plugin.add("B", _path(b)).ok())
    assert ip_b == stale["ips"][0]["address"].split("/")[0]  # B holds A's old address
    again = plugin.call("DEL", container_id="A", netns=_path(a),
                        conf=plugin.config(prevResult=stale))
    assert again.code == 0, again
    plugin.check("B", _path(b)).ok()
    assert _egress_is_masqueraded(nets, b)
    assert ip_b in _masq_members()
    plugin.delete("B", _path(b)).ok()
    assert ip_b not in _masq_members()


def test_a_reboot_never_hands_out_an_address_an_old_sandbox_holds(
        flavor: Flavor, netns_factory: NetnsFactory, nets: NodeNets, var_lib_cni: str) -> None:
    """Reservations live in /var/lib/cni/networks (kept by a reboot, as the runtime's cached
    results are); after a reboot the new pod gets another address, and kubelet's DEL of the
    stale sandbox with its cached result leaves the new pod's egress alone."""
    plugin = flavor("podnet-ptp", ipMasq=True)
    del plugin.conf["ipam"]["dataDir"]  # the default, as `podnet cni install` writes it
    _one_address(plugin, count=2)
    old_ns = netns_factory("old")
    old = plugin.add("old", _path(old_ns)).ok().doc
    reservations = Path(var_lib_cni) / "networks" / plugin.name
    assert (reservations / old["ips"][0]["address"].split("/")[0]).exists()
    # The reboot: the pod's namespace and links, the rules and everything under /run go.
    subprocess.run(["ip", "netns", "del", old_ns], check=True)
    subprocess.run(["nft", "delete", "table", "inet", "podnet-cni"], check=True)
    shutil.rmtree(plugin.conf["stateDir"])
    shutil.rmtree("/run/podnet/ipam", ignore_errors=True)  # where reservations used to live
    new_ns = netns_factory("new")
    ip_new = _ip_of(plugin.add("new", _path(new_ns)).ok())
    assert ip_new != old["ips"][0]["address"].split("/")[0]
    # kubelet removes the stale sandbox: DEL with its cached result, its namespace gone.
    gone = plugin.call("DEL", container_id="old", netns=_path(old_ns),
                       conf=plugin.config(prevResult=old))
    assert gone.code == 0, gone
    plugin.check("new", _path(new_ns)).ok()
    assert _egress_is_masqueraded(nets, new_ns)
    assert sorted(p.name for p in reservations.iterdir() if p.name[0].isdigit()) == [ip_new]
    plugin.delete("new", _path(new_ns)).ok()


def test_gc_removes_masquerade_entries_nothing_owns(flavor: Flavor,
                                                    netns_factory: NetnsFactory) -> None:
    """Runtime state lost while links and rules stay: GC reconciles the ipMasq set against what
    the runtime's valid attachments own."""
    plugin = flavor("podnet-ptp", ipMasq=True, version="1.1.0")
    keep_ns, lost_ns = netns_factory("keep"), netns_factory("lost")
    ip_keep = _ip_of(plugin.add("keep", _path(keep_ns)).ok())
    ip_lost = _ip_of(plugin.add("lost", _path(lost_ns)).ok())
    shutil.rmtree(plugin.conf["stateDir"])  # records gone (say, /run wiped): entries stay
    orphan = str(ipaddress.ip_address(ip_keep) + 100)  # left by a crash: nobody owns it
    set_name = next(n for n in _set_names() if plugin.name.replace("-", "_") in n)
    subprocess.run(["nft", "add", "element", "inet", "podnet-cni", set_name,
                    f"{{ {orphan} }}"], check=True)
    assert {ip_keep, ip_lost, orphan} <= _masq_members()
    plugin.gc([("keep", "eth0")]).ok()
    members = _masq_members()
    assert ip_keep in members and ip_lost not in members and orphan not in members
    plugin.check("keep", _path(keep_ns)).ok()
    plugin.delete("keep", _path(keep_ns)).ok()


def _set_names() -> list[str]:
    out = subprocess.run(["nft", "-j", "list", "sets", "inet"], capture_output=True,
                         check=True).stdout
    return [i["set"]["name"] for i in json.loads(out)["nftables"] if "set" in i]


def test_del_never_removes_an_unmarked_veth_with_podnets_name(
        flavor: Flavor, netns_factory: NetnsFactory) -> None:
    from podnet.cni.plugin import host_veth_name

    plugin = flavor("podnet-ptp")
    name = host_veth_name(plugin.name, "c-unmarked", "eth0")
    other = netns_factory("other")
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", "x0", "netns",
                    other], check=True)
    try:
        plugin.call("DEL", container_id="c-unmarked", netns="").ok()
        assert ip_json("link", "show", name), "DEL removed a veth podnet did not mark"
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def test_a_derived_name_someone_else_holds_is_passed_over(flavor: Flavor,
                                                          netns_factory: NetnsFactory) -> None:
    """The host end's derived name taken by a link that is not this attachment's (someone's
    veth, or a hash collision with another pod): ADD takes the next derived name, as the
    reference plugins retry a random one on EEXIST; DEL removes that one and nothing else."""
    from podnet.cni.plugin import host_veth_name

    plugin = flavor("podnet-ptp", family="dual")
    first = host_veth_name(plugin.name, "c-taken", "eth0")
    other = netns_factory("other")
    subprocess.run(["ip", "link", "add", first, "type", "veth", "peer", "name", "x0", "netns",
                    other], check=True)
    try:
        ns = netns_factory("taken")
        end = plugin.add("c-taken", _path(ns)).ok().doc["interfaces"][0]["name"]
        assert end == host_veth_name(plugin.name, "c-taken", "eth0", 1)
        plugin.check("c-taken", _path(ns)).ok()
        plugin.delete("c-taken", _path(ns)).ok()
        links = {link["ifname"] for link in ip_json("link")}
        assert first in links and end not in links
    finally:
        subprocess.run(["ip", "link", "del", first], capture_output=True, check=False)


def test_an_existing_bridge_is_kept_and_a_link_of_its_name_refused(
        flavor: Flavor, netns_factory: NetnsFactory) -> None:
    """The bridge is made only when missing (the reference bridge's ensureBridge): one made by
    someone else is used as it is; a link of that name that is no bridge stops the ADD, which
    leaves nothing behind."""
    plugin = flavor("podnet-bridge", family="dual", mtu=1400)
    bridge = plugin.conf["bridge"]
    subprocess.run(["ip", "link", "add", bridge, "mtu", "1500", "type", "bridge"], check=True)
    ns = netns_factory("br")
    plugin.add("c1", _path(ns)).ok()
    link = ip_json("-d", "link", "show", bridge)[0]
    assert link["linkinfo"]["info_kind"] == "bridge" and link["mtu"] == 1400  # its port's MTU
    addrs = {a["local"] for a in ip_json("addr", "show", bridge)[0]["addr_info"]}
    assert {str(ipaddress.ip_network(rs[0]["subnet"]).network_address + 1)
            for rs in plugin.conf["ipam"]["ranges"]} <= addrs
    plugin.check("c1", _path(ns)).ok()
    plugin.add("c2", _path(netns_factory("br2"))).ok()  # the second ADD finds it all there
    plugin.delete("c1", _path(ns)).ok()
    plugin.delete("c2", "").ok()
    subprocess.run(["ip", "link", "del", bridge], check=True)
    subprocess.run(["ip", "link", "add", bridge, "type", "veth", "peer", "name", "x1"],
                   check=True)
    try:
        answer = plugin.add("c3", _path(netns_factory("br3")))
        assert answer.code != 0 and bridge in answer.doc["msg"], answer.doc
        assert not [p for p in Path(plugin.conf["ipam"]["dataDir"], plugin.name).iterdir()
                    if ":" in p.name or p.name[0].isdigit()]
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


# --- a re-run ADD converges; the agent drains on SIGTERM; kill -9 mid-ADD ----------------------

def test_rerun_add_takes_back_its_own_half_made_veth(flavor: Flavor,
                                                     netns_factory: NetnsFactory) -> None:
    """What an ADD killed between creating the veth and marking it leaves: the pod's eth0 is
    the peer of the host end derived for this very attachment. Run again, ADD converges."""
    from podnet.cni.plugin import host_veth_name

    plugin = flavor("podnet-ptp", ipMasq=True)
    ns = netns_factory("half")
    name = host_veth_name(plugin.name, "c-half", "eth0")
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns",
                    ns], check=True)
    plugin.add("c-half", _path(ns)).ok()
    plugin.check("c-half", _path(ns)).ok()
    plugin.delete("c-half", _path(ns)).ok()
    # An eth0 that is NOT that peer is still refused.
    subprocess.run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
                    "other"], check=True)
    refused = plugin.add("c-half", _path(ns))
    assert refused.code != 0 and "already exists" in refused.doc["msg"]


def _parallel_adds(plugin: Plugin, pods: list[tuple[str, str]]) -> list[Answer]:
    with ThreadPoolExecutor(len(pods)) as pool:
        return list(pool.map(lambda p: plugin.call("ADD", container_id=p[0], netns=p[1]), pods))


def _agent_plugin(cni_install: Install, flavor: Flavor, tag: str) -> tuple[Plugin, str]:
    """A network whose executables talk to an agent of the test's own (never starting one)."""
    socket = f"{cni_install.root}/{tag}/agent.sock"
    bin_dir = f"{cni_install.root}/{tag}/bin"
    install_podnet(bin_dir, socket, agent="never")
    plugin = flavor("podnet-ptp", ipMasq=True)
    plugin.exe = f"{bin_dir}/podnet-cni"
    plugin.cni_path = f"{bin_dir}:{REFERENCE_DIR}"
    return plugin, socket


def _assert_nothing_left(plugin: Plugin, ends: list[str]) -> None:
    state = Path(plugin.conf["ipam"]["dataDir"]) / plugin.name
    assert not [p for p in state.iterdir() if p.name[0].isdigit()] if state.exists() else True
    names = {link["ifname"] for link in ip_json("link")}
    assert not names & set(ends)
    subnet = ipaddress.ip_network(plugin.conf["ipam"]["ranges"][0][0]["subnet"])
    assert not [m for m in _masq_members() if ipaddress.ip_address(m) in subnet]


def _slow_ipam(plugin: Plugin, seconds: float) -> None:
    """host-local behind a script that first sleeps: every request stays in flight a while, so
    all of them reach the agent before the first is answered."""
    bin_dir = plugin.cni_path.split(":")[0]
    script = Path(bin_dir) / "slow-ipam"
    script.write_text(f"#!/bin/sh\nsleep {seconds}\nexec {REFERENCE_DIR}/host-local\n")
    script.chmod(0o755)
    ipam = plugin.conf["ipam"]
    plugin.conf["ipam"] = {**ipam, "type": "slow-ipam"}


def test_sigterm_drains_requests_in_flight(cni_install: Install, flavor: Flavor,
                                           netns_factory: NetnsFactory) -> None:
    plugin, socket = _agent_plugin(cni_install, flavor, "drain")
    _slow_ipam(plugin, 0.5)
    agent = start_agent(socket, quiet=False)
    log: list[str] = []
    first = threading.Event()

    def read_log() -> None:
        assert agent.stderr is not None
        for line in agent.stderr:
            log.append(line.decode())
            first.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    pods = [(f"drain{i}", _path(netns_factory("drain"))) for i in range(8)]
    try:
        with ThreadPoolExecutor(1) as pool:
            adds = pool.submit(_parallel_adds, plugin, pods)
            assert first.wait(30), "the agent answered nothing"
            agent.send_signal(signal.SIGTERM)  # a service restart, with requests running
            answers = adds.result(timeout=120)
        assert agent.wait(timeout=60) == 0
        reader.join(10)
    finally:
        stop_process(agent)
    assert [a.code for a in answers] == [0] * len(pods), [a.doc for a in answers]
    # Every ADD was answered by the agent itself: none was dropped and re-run elsewhere.
    assert sum(line.startswith("ADD -> 0") for line in log) == len(pods), log
    ends = [a.doc["interfaces"][0]["name"] for a in answers]
    plugin.conf["ipam"]["type"] = "host-local"  # the same reservations, without the wait
    for (cid, ns), answer in zip(pods, answers, strict=True):
        plugin.results[(cid, "eth0")] = answer.doc
        plugin.check(cid, ns).ok()
        plugin.delete(cid, ns).ok()
    _assert_nothing_left(plugin, ends)


@pytest.mark.parametrize("delay", [0.03, 0.12])
def test_kill_9_mid_add_then_the_adds_converge(cni_install: Install, flavor: Flavor,
                                               netns_factory: NetnsFactory,
                                               delay: float) -> None:
    """The agent dies with ADDs half-applied; each client runs its ADD again in-process, which
    must converge (the issue: `interface eth0 already exists`); then CHECK, DEL and GC leave
    nothing behind."""
    plugin, socket = _agent_plugin(cni_install, flavor, f"kill{int(delay * 1000)}")
    plugin.version = "1.1.0"
    agent = start_agent(socket)
    pods = [(f"kill{i}", _path(netns_factory("kill"))) for i in range(8)]
    try:
        with ThreadPoolExecutor(1) as pool:
            adds = pool.submit(_parallel_adds, plugin, pods)
            time.sleep(delay)
            agent.kill()
            answers = adds.result(timeout=180)
    finally:
        stop_process(agent)
    assert [a.code for a in answers] == [0] * len(pods), [a.doc for a in answers]
    assert len({_ip_of(a) for a in answers}) == len(pods)
    ends = [a.doc["interfaces"][0]["name"] for a in answers]
    for (cid, ns), answer in zip(pods, answers, strict=True):
        plugin.results[(cid, "eth0")] = answer.doc
        plugin.check(cid, ns).ok()
    for cid, ns in pods:
        plugin.delete(cid, ns).ok()
    plugin.gc([]).ok()
    _assert_nothing_left(plugin, ends)


def test_the_first_call_starts_the_agent(flavor: Flavor, netns_factory: NetnsFactory,
                                         cni_install: Install) -> None:
    """What `podnet cni install` alone sets up: no agent runs; the first call starts one, which
    serves the calls after it and outlives the process that started it."""
    from tests.cni.conftest import stop_autostarted

    stop_autostarted(cni_install.auto_socket)
    plugin = flavor("podnet-ptp", auto=True)
    ns = netns_factory("auto")
    plugin.add("c1", _path(ns)).ok()
    lock = Path(f"{cni_install.auto_socket}.lock")
    pid = int(lock.read_text().split()[0])
    assert os.path.exists(f"/proc/{pid}") and os.getsid(pid) == pid  # its own session
    took = []
    for _ in range(3):  # the fastest of three: one call may meet a busy machine
        start = time.perf_counter()
        plugin.check("c1", _path(ns)).ok()
        took.append(time.perf_counter() - start)
    # Served by the agent (10 to 40 ms here), not a fresh Python (160 to 650 ms here).
    assert min(took) < 0.15, took
    plugin.delete("c1", _path(ns)).ok()
    assert int(lock.read_text().split()[0]) == pid


# --- static addresses ---------------------------------------------------------------------------

def test_static_address_from_cni_args_and_runtime_config(flavor: Flavor,
                                                         netns_factory: NetnsFactory) -> None:
    plugin = flavor("podnet-ptp")
    net = ipaddress.ip_network(plugin.conf["ipam"]["ranges"][0][0]["subnet"])
    ip_a, ip_b = str(net.network_address + 77), str(net.network_address + 78)
    a, b = netns_factory("sa"), netns_factory("sb")
    got = plugin.call("ADD", container_id="sa", netns=_path(a),
                      env={"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME=x;IP={ip_a}"}).ok()
    assert _ip_of(got) == ip_a
    addrs = [i["local"] for link in ip_json("-n", a, "addr") for i in link["addr_info"]]
    assert ip_a in addrs
    got = plugin.call("ADD", container_id="sb", netns=_path(b), conf=plugin.config(
        runtimeConfig={"ips": [f"{ip_b}/{net.prefixlen}"]})).ok()
    assert _ip_of(got) == ip_b
    taken = plugin.call("ADD", container_id="sc", netns=_path(netns_factory("sc")),
                        env={"CNI_ARGS": f"IP={ip_a}"})
    assert taken.code != 0 and taken.doc["code"] == 11 and ip_a in taken.doc["msg"]
    outside = plugin.call("ADD", container_id="sd", netns=_path(netns_factory("sd")),
                          env={"CNI_ARGS": "IP=192.0.2.99"})
    assert outside.code != 0 and outside.doc["code"] == 7 and "outside" in outside.doc["msg"]
    for cid, ns in (("sa", a), ("sb", b), ("sc", ""), ("sd", "")):
        plugin.call("DEL", container_id=cid, netns=_path(ns) if ns else "").ok()
    assert not [p for p in (Path(plugin.conf["ipam"]["dataDir"]) / plugin.name).iterdir()
                if p.name[0].isdigit()]


# --- kubelet's capabilities: hostPort and bandwidth, chained reference plugins ---------------

def _chain(cni_install: Install, tag: str) -> Chain:
    """The conflist `podnet cni install` writes (podnet-cni, portmap, bandwidth), own subnet."""
    from podnet.cni.install import InstallOptions, render_conflist

    n = abs(hash(tag)) % 200 + 20
    doc = render_conflist(InstallOptions(subnet=f"10.{n}.0.0/24", network=f"chain-{tag}"))
    state = f"{cni_install.root}/state/chain-{tag}"
    plugins = []
    for entry in doc["plugins"]:
        exe = f"{cni_install.bin_dir}/{entry['type']}"
        if entry["type"] == "podnet-cni":
            entry = {**entry, "stateDir": f"{state}/cni",  # noqa: PLW2901
                     "ipam": {**entry["ipam"], "dataDir": f"{state}/ipam"}}
        plugins.append((exe if os.path.exists(exe) else f"{REFERENCE_DIR}/{entry['type']}",
                        entry))
    return Chain(doc["name"], plugins, cni_install.cni_path, doc["cniVersion"])


def test_host_port_reached_from_the_node_network_and_from_outside(
        cni_install: Install, netns_factory: NetnsFactory, nets: NodeNets) -> None:
    chain = _chain(cni_install, "hostport")
    pod = netns_factory("hp")
    ports = {"portMappings": [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]}
    result = chain.add("hp", _path(pod), runtime=ports).ok().doc
    assert [i["name"] for i in result["interfaces"]][-1] == "eth0"
    try:
        with tcp_server(pod, 8080):
            assert tcp_reach(nets.peer, nets.node_ip, 18080) == nets.peer_ip
            assert tcp_reach(nets.outside, nets.node_ip, 18080) == nets.outside_ip
        # CHECK of Debian's portmap 1.1.1 fails for any IPv4-only pod ("could not check ipv6
        # dnat"), behind the reference bridge as well: check podnet-cni's link of the chain.
        podnet_only = Chain(chain.name, chain.plugins[:1], chain.cni_path, chain.version,
                            chain.results)
        podnet_only.check("hp", _path(pod)).ok()
    finally:
        chain.delete("hp", _path(pod)).ok()
    with tcp_server(pod, 8080):
        assert tcp_reach(nets.peer, nets.node_ip, 18080, timeout=1) == ""  # the mapping went


def test_bandwidth_limits_measured_with_iperf3(cni_install: Install,
                                               netns_factory: NetnsFactory,
                                               nets: NodeNets) -> None:
    if shutil.which("iperf3") is None:
        pytest.skip("needs iperf3")
    chain = _chain(cni_install, "bw")
    pod = netns_factory("bw")
    limit = {"ingressRate": 20_000_000, "ingressBurst": 1_000_000,
             "egressRate": 10_000_000, "egressBurst": 1_000_000}
    ip = _ip_of(chain.add("bw", _path(pod), runtime={"bandwidth": limit}).ok())
    try:
        into = assert_shaped(lambda: iperf(pod, nets.peer, ip),  # the peer sends to the pod
                             limit["ingressRate"] / 1e6, "ingressRate")
        out = assert_shaped(lambda: iperf(pod, nets.peer, ip, reverse=True),  # the pod sends
                            limit["egressRate"] / 1e6, "egressRate")
    finally:
        chain.delete("bw", _path(pod)).ok()
    print(f"bandwidth: ingress {into:.2f} Mbit/s, egress {out:.2f} Mbit/s")


# --- odd input -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
@pytest.mark.parametrize("path", ["/proc/1/ns/mnt", "/proc/self/ns/uts", "/etc/hostname"])
def test_cni_netns_that_is_not_a_network_namespace_is_code_4(
        flavor: Flavor, command: str, path: str) -> None:
    plugin = flavor("podnet-ptp")
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": path}], "ips": []}
    answer = plugin.call(command, container_id="c1", netns=path,
                         conf=plugin.config(prevResult=prev))
    if command == "DEL" and not path.startswith("/proc"):
        # A plain file is what a namespace's mount point is once the namespace is gone: DEL
        # cleans up without it, as it does for a path that no longer exists.
        assert answer.code == 0, answer
        return
    assert answer.code != 0 and answer.doc["code"] == 4, answer
    assert "CNI_NETNS" in answer.doc["msg"] and b"Traceback" not in answer.stderr


@pytest.mark.parametrize("prev", [{"ips": 5}, {"interfaces": "eth0"},
                                  {"ips": [{"address": "10.0.0.1/24", "interface": "x"}]}])
def test_prev_result_of_the_wrong_shape_is_code_6_naming_the_field(
        flavor: Flavor, netns_factory: NetnsFactory, prev: dict[str, Any]) -> None:
    plugin = flavor("podnet-ptp")
    for command in ("ADD", "DEL"):
        answer = plugin.call(command, container_id="c1", netns=_path(netns_factory("pr")),
                             conf=plugin.config(prevResult=prev))
        assert answer.code != 0 and answer.doc["code"] == 6, answer
        assert f"prevResult.{next(iter(prev))}" in answer.doc["msg"]
        assert b"Traceback" not in answer.stderr


def test_deeply_nested_input_is_code_6(flavor: Flavor, netns_factory: NetnsFactory) -> None:
    plugin = flavor("podnet-ptp")
    head = json.dumps(plugin.config())[:-1]
    deep = (head + ', "prevResult": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    for exe in (plugin.exe, plugin.exe.replace("/bin/", "/bin-lone/")):  # agent, in-process
        answer = run_plugin(exe, {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
                                  "CNI_NETNS": _path(netns_factory("deep")), "CNI_IFNAME": "eth0",
                                  "CNI_PATH": plugin.cni_path}, deep)
        assert answer.code != 0 and answer.doc["code"] == 6, answer
        assert "prevResult" in answer.doc["msg"] and b"Traceback" not in answer.stderr


def test_a_config_over_the_cap_is_too_large(flavor: Flavor, netns_factory: NetnsFactory) -> None:
    plugin = flavor("podnet-ptp")
    padding = "x" * (17 << 20)
    big = json.dumps(plugin.config(args={"padding": padding})).encode()
    for exe in (plugin.exe, plugin.exe.replace("/bin/", "/bin-lone/")):
        answer = run_plugin(exe, {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
                                  "CNI_NETNS": _path(netns_factory("big")), "CNI_IFNAME": "eth0",
                                  "CNI_PATH": plugin.cni_path}, big)
        assert answer.code != 0 and answer.doc["code"] == 6, answer.stdout[:300]
        assert "too large" in answer.doc["msg"]


# --- podman -------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (not in podnet.sh)")
def test_podman_shows_the_subnet(cni_install: Install) -> None:
    """podman's CNI backend parses subnets only out of bridge/macvlan/ipvlan plugins with
    host-local; of any other conflist it shows the labels, where podnet puts the subnet."""
    from podnet.cni.install import InstallOptions, install

    work = Path(cni_install.root) / "podman"
    install(InstallOptions(bin_dir=str(work / "bin"), conf_dir=str(work / "conf"),
                           subnet="10.244.5.0/24", socket=str(work / "cni.sock"),
                           agent="never"))
    conf = work / "containers.conf"
    conf.write_text(f'[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "{work}/conf"\n'
                    f'cni_plugin_dirs = ["{work}/bin"]\n')
    storage = work / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{work}/run"\n'
                       f'graphroot = "{work}/root"\n')
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}
    out = subprocess.run(["podman", "--root", f"{work}/root", "--runroot", f"{work}/run",
                          "--tmpdir", f"{work}/tmp", "network", "inspect", "podnet"],
                         env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    (network,) = json.loads(out)
    assert network["driver"] == "podnet-cni"
    assert network["labels"]["podnet.subnets"] == "10.244.5.0/24"
