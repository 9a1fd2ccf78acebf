"""Dual-stack podnet-cni as kubelet drives a node: containerd 1.6's CRI over gRPC, with the
conflist `podnet cni install --dual-stack` writes (the plugin starts its own agent). Each pod
gets an address per family (containerd reports them as `ip` and `additional_ips`, kubelet's
`podIPs`), two pods talk HTTP over IPv4 and over IPv6, and Stop/Remove leave nothing of either
family. See cri.py for how it stays inside the sandbox."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cni.conftest import REFERENCE_DIR, ip_json, stop_autostarted
from tests.cni.cri import Node, Pod, node
from tests.cni.test_cri_kernel import (
    NETWORK,
    PAGE,
    _assert_nothing_left,
    _client,
    _remove,
    _reservations,
    _web,
)
from tests.cni.test_cri_kernel import pytestmark as cri_marks

pytestmark = cri_marks

SUBNET, SUBNET6 = "10.89.0.0/24", "fd00:89::/64"


@pytest.fixture(scope="module")
def dual_node(var_lib_cni: str) -> Iterator[Node]:
    pytest.importorskip("cri_api", reason="needs container-runtime-interface-api (dev extras)")
    from podnet.cni.install import InstallOptions, install

    root = Path(f"/run/podnet-cri-ds-{uuid.uuid4().hex[:8]}")
    root.mkdir(mode=0o700)
    socket = str(root / "podnet" / "cni.sock")
    bin_dir, conf_dir = str(root / "cni-bin"), str(root / "cni-conf")
    install(InstallOptions(bin_dir=bin_dir, conf_dir=conf_dir, subnet=SUBNET, subnet6=SUBNET6,
                           families="dual", network=NETWORK, socket=socket,
                           reference_dir=REFERENCE_DIR))
    try:
        with node(root, bin_dir, conf_dir) as made:
            yield made
    finally:
        stop_autostarted(socket)
        subprocess.run(["nft", "delete", "table", "inet", "podnet-cni"], capture_output=True,
                       check=False)
        shutil.rmtree(root, ignore_errors=True)


def _pod_ips(cri: Node, pod: Pod) -> dict[int, str]:
    net = cri.status(pod).status.network
    ips = [net.ip, *(extra.ip for extra in net.additional_ips)]
    return {ipaddress.ip_address(ip).version: ip for ip in ips}


def _ip_json_in(netns: str, *args: str) -> Any:
    """`ip -j` in the namespace at a path (containerd's /var/run/netns/cni-...)."""
    out = subprocess.run(["nsenter", f"--net={netns}", "ip", "-j", *args], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out or "[]")


def _fetch(cri: Node, container: str, url: str) -> str:
    code, out = 1, ""
    for _ in range(50):  # httpd may need a moment to listen
        code, out = cri.exec(container, ["timeout", "5", "wget", "-q", "-O", "-", url])
        if code == 0 and out.strip() == PAGE:
            break
    return out.strip()


def test_dual_stack_pods_talk_over_both_families(dual_node: Node) -> None:
    cri = dual_node
    web, _ = _web(cri)
    client, sleeper = _client(cri)
    ips = _pod_ips(cri, web)
    assert set(ips) == {4, 6}, ips  # kubelet's podIPs: one per family, IPv4 first
    assert cri.status(web).status.network.ip == ips[4]
    assert ipaddress.ip_address(ips[4]) in ipaddress.ip_network(SUBNET)
    assert ipaddress.ip_address(ips[6]) in ipaddress.ip_network(SUBNET6)
    assert _fetch(cri, sleeper, f"http://{ips[4]}/") == PAGE
    assert _fetch(cri, sleeper, f"http://[{ips[6]}]/") == PAGE
    # The pod's global IPv6 address was usable at once: no DAD on the pod end.
    netns = cri.netns(web)
    addrs = [a for link in _ip_json_in(netns, "-6", "addr", "show", "dev", "eth0")
             for a in link["addr_info"] if a.get("scope") == "global"]
    assert [a["local"] for a in addrs] == [ips[6]] and not addrs[0].get("tentative")
    held = sorted(_reservations())
    assert held == sorted([*_pod_ips(cri, web).values(), *_pod_ips(cri, client).values()])
    _remove(cri, web, client)
    _assert_nothing_left()
    assert not [r for r in ip_json("-6", "route") if r["dst"].startswith("fd00:89:")]

