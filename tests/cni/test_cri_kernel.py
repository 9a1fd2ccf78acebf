"""podnet-cni as kubelet drives a node: containerd 1.6's CRI over gRPC (RunPodSandbox,
CreateContainer, StartContainer, StopPodSandbox, RemovePodSandbox), with nothing but what
`podnet cni install` writes (the plugin starts its own agent). Two pods talk HTTP; then the edge
cases: the pause process killed, containerd restarted and crashed with pods up, 8 sandboxes at
once, and a reboot after which kubelet removes the stale sandboxes and the new pod's egress
still works. After each, nothing is left. See cri.py for how it stays inside the sandbox."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from podnet.cni.agentctl import alive as running
from tests.cni.conftest import REFERENCE_DIR, ip_json, stop_autostarted
from tests.cni.cri import Node, Pod, node
from tests.cni.nets import NodeNets, node_networks, tcp_server

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not all(shutil.which(t) for t in ("containerd", "ctr", "runc")),
                       reason="needs containerd and runc (./podnet.sh test installs them)"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]

NETWORK = "podnet"
SUBNET = "10.88.0.0/24"
PAGE = "podnet-cri-ok"


@pytest.fixture(scope="module")
def cri_node(var_lib_cni: str) -> Iterator[tuple[Node, str]]:
    pytest.importorskip("cri_api", reason="needs container-runtime-interface-api (dev extras)")
    from podnet.cni.install import InstallOptions, install

    root = Path(f"/run/podnet-cri-{uuid.uuid4().hex[:8]}")
    root.mkdir(mode=0o700)
    socket = str(root / "podnet" / "cni.sock")
    bin_dir, conf_dir = str(root / "cni-bin"), str(root / "cni-conf")
    install(InstallOptions(bin_dir=bin_dir, conf_dir=conf_dir, subnet=SUBNET, network=NETWORK,
                           socket=socket, reference_dir=REFERENCE_DIR))
    try:
        with node(root, bin_dir, conf_dir) as made:
            yield made, socket
    finally:
        stop_autostarted(socket)
        subprocess.run(["nft", "delete", "table", "inet", "podnet-cni"], capture_output=True,
                       check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def nets(netns_factory: Callable[[str], str]) -> Iterator[NodeNets]:
    with node_networks(netns_factory) as made:
        yield made


def _reservations(var_lib: str = "/var/lib/cni") -> list[str]:
    base = Path(var_lib) / "networks" / NETWORK
    return sorted(p.name for p in base.iterdir() if p.name[0].isdigit()) if base.exists() else []


def _masq_members() -> list[str]:
    out = subprocess.run(["nft", "-j", "list", "table", "inet", "podnet-cni"],
                         capture_output=True, check=False).stdout
    items = json.loads(out)["nftables"] if out else []
    return [e["elem"]["val"] if isinstance(e, dict) else e
            for i in items for e in i.get("set", {}).get("elem", ())]


def _assert_nothing_left() -> None:
    assert _reservations() == []
    assert _masq_members() == []
    assert not [link["ifname"] for link in ip_json("-d", "link")
                if link.get("ifalias") == "podnet"]
    assert not [n for n in os.listdir("/run/netns") if n.startswith("cni-")]
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True,
                         check=False).stdout
    assert "CNI-DN-" not in nat  # portmap's per-pod chains went with the pods
    cache = Path("/var/lib/cni/results")  # libcni's cached results: the runtime's, gone too
    assert not [p.name for p in cache.iterdir()] if cache.exists() else True


def _web(cri: Node, name: str = "web", host_ports: dict[int, int] | None = None) \
        -> tuple[Pod, str]:
    pod = cri.run_pod(name, host_ports=host_ports)
    container = cri.start_container(pod, "httpd", [
        "sh", "-c", f"echo {PAGE} > /www/index.html && exec httpd -f -p 80 -h /www"])
    return pod, container


def _client(cri: Node, name: str = "client") -> tuple[Pod, str]:
    pod = cri.run_pod(name)
    return pod, cri.start_container(pod, "sleep", ["sleep", "600"])


def _fetch(cri: Node, container: str, ip: str) -> str:
    page = ""
    for attempt in range(50):  # httpd may need a moment to listen
        code, out = cri.exec(container, ["timeout", "5", "wget", "-q", "-O", "-",
                                         f"http://{ip}/"])
        page = out.strip()
        if code == 0 and page == PAGE:
            break
        time.sleep(0.1 + attempt * 0.01)
    return page


def _remove(cri: Node, *pods: Pod) -> None:
    for pod in pods:
        cri.stop_pod(pod)
        cri.remove_pod(pod)


def test_two_pods_talk_http_and_leave_nothing(cri_node: tuple[Node, str],
                                              nets: NodeNets) -> None:
    cri, socket = cri_node
    web, _ = _web(cri, host_ports={18081: 80})  # kubelet's hostPort, through portmap
    client, sleeper = _client(cri)
    web_ip = cri.pod_ip(web)
    assert web_ip.startswith("10.88.0.") and cri.pod_ip(client) != web_ip
    assert cri.netns(web).startswith("/var/run/netns/cni-")
    assert _fetch(cri, sleeper, web_ip) == PAGE
    # The hostPort from another node on the node network, as a Service-less client would.
    page = subprocess.run(["ip", "netns", "exec", nets.peer, "curl", "-s", "-m", "5",
                           f"http://{nets.node_ip}:18081/"], capture_output=True, text=True,
                          check=False).stdout.strip()
    assert page == PAGE
    assert sorted(_reservations()) == sorted([web_ip, cri.pod_ip(client)])
    # The plugin started its agent itself: it runs in its own session, beside the socket.
    pid = int(Path(f"{socket}.lock").read_text().split()[0])
    assert running(pid) and os.getsid(pid) == pid
    _remove(cri, web, client)
    _assert_nothing_left()


def test_pause_killed_then_the_next_attempt(cri_node: tuple[Node, str]) -> None:
    cri, _ = cri_node
    web, _ = _web(cri)
    client, sleeper = _client(cri)
    os.kill(cri.pause_pid(web), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while cri.ready(web):
        assert time.monotonic() < deadline, "the sandbox stayed ready without its pause"
        time.sleep(0.1)
    # kubelet: stop and remove the dead sandbox, then a new attempt of the same pod.
    _remove(cri, web)
    again, _ = _web(cri)
    assert _fetch(cri, sleeper, cri.pod_ip(again)) == PAGE
    assert len(_reservations()) == 2
    _remove(cri, again, client)
    _assert_nothing_left()


@pytest.mark.parametrize("crash", [False, True], ids=["restarted", "crashed"])
def test_containerd_restarted_with_pods_up(cri_node: tuple[Node, str], crash: bool) -> None:
    cri, socket = cri_node
    web, _ = _web(cri)
    client, sleeper = _client(cri)
    agent = int(Path(f"{socket}.lock").read_text().split()[0])
    cri.restart(crash=crash)
    assert running(agent), "the agent died with containerd"
    assert cri.ready(web) and cri.ready(client)
    assert _fetch(cri, sleeper, cri.pod_ip(web)) == PAGE
    late, late_sleeper = _client(cri, "late")  # a pod after the restart
    assert _fetch(cri, late_sleeper, cri.pod_ip(web)) == PAGE
    assert int(Path(f"{socket}.lock").read_text().split()[0]) == agent
    _remove(cri, web, client, late)
    _assert_nothing_left()


def test_eight_sandboxes_at_once(cri_node: tuple[Node, str]) -> None:
    cri, _ = cri_node
    with ThreadPoolExecutor(8) as pool:
        pods = list(pool.map(lambda i: cri.run_pod(f"par{i}"), range(8)))
    ips = [cri.pod_ip(p) for p in pods]
    assert len(set(ips)) == 8 and sorted(_reservations()) == sorted(ips)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: _remove(cri, p), pods))
    _assert_nothing_left()


def test_reboot_then_kubelet_removes_the_stale_sandboxes(cri_node: tuple[Node, str],
                                                          nets: NodeNets) -> None:
    """The reboot: every process and link goes, state under /run goes (containerd's state,
    podnet's records and agent), nftables goes; containerd's root and /var/lib/cni stay. Then a
    new pod, then kubelet stops and removes the old sandboxes (CNI DEL with their cached
    results): the new pod's egress is still masqueraded."""
    cri, socket = cri_node
    old = [cri.run_pod(f"old{i}") for i in range(2)]
    old_ips = {cri.pod_ip(p) for p in old}
    cri.stop(crash=True)
    cri.kill_tasks()
    stop_autostarted(socket)
    for name in os.listdir("/run/netns"):
        if name.startswith("cni-"):
            subprocess.run(["ip", "netns", "del", name], check=True)
    subprocess.run(["nft", "delete", "table", "inet", "podnet-cni"], check=True)
    shutil.rmtree(cri.state, ignore_errors=True)
    shutil.rmtree(Path(socket).parent, ignore_errors=True)
    for gone in ("/run/podnet/cni", "/run/podnet/ipam"):  # records; reservations of old
        shutil.rmtree(gone, ignore_errors=True)
    assert set(_reservations()) == old_ips  # kept, as host-local keeps them

    cri.start()
    new, probe = _client(cri, "new")
    new_ip = cri.pod_ip(new)
    assert new_ip not in old_ips
    for pod in old:  # kubelet garbage-collects the sandboxes it no longer wants
        _remove(cri, pod)
    assert _reservations() == [new_ip]
    with tcp_server(nets.outside, 9090):
        code, seen = cri.exec(probe, ["sh", "-c", f"timeout 5 nc {nets.outside_ip} 9090 "
                                                  "</dev/null"])
    assert code == 0 and seen.strip() == nets.router_ip  # egress still masqueraded
    _remove(cri, new)
    _assert_nothing_left()
