"""`podnet inspect` and `podnet trace` on pods podnet-cni made, dual-stack (beside the reference
plugins' cases in tests/kernel/test_inspect.py): a throw-away namespace plays the node and runs
the plugin (ptp and bridge, an IPv4 and an IPv6 address per pod); inspect must find both ends of
every pair, both families' addresses and routes exactly as `ip -j` shows them, and the pod behind
each veth (from libcni's cache); trace must walk a real packet from one pod to the other."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cni.driver import Plugin
from tests.kernel.test_inspect import _describe, assert_matches_ip, look, one, pair_at

pytestmark = pytest.mark.kernel

Flavor = Callable[..., Plugin]
NetnsFactory = Callable[[str], str]


def _path(ns: str) -> str:
    return f"/run/netns/{ns}"


def _cache(tmp_path: Path, plugin: Plugin, container: str, ns: str, pod: str,
           result: dict[str, Any]) -> None:
    """What libcni (containerd's CRI) caches for an attachment: inspect names pods from it."""
    (tmp_path / "cni").mkdir(exist_ok=True)
    namespace, name = pod.split("/")
    (tmp_path / "cni" / f"{plugin.name}-{container}-eth0").write_text(json.dumps({
        "kind": "cniCacheV1", "containerId": container, "ifName": "eth0",
        "networkName": plugin.name, "netns": _path(ns),
        "cniArgs": [["K8S_POD_NAMESPACE", namespace], ["K8S_POD_NAME", name]],
        "result": result}))


def _by_family(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {6 if ":" in ip["address"] else 4: ip for ip in result["ips"]}


@pytest.mark.parametrize("kind", ["podnet-ptp", "podnet-bridge"])
def test_inspect_and_trace_podnet_dual_stack_pods(flavor: Flavor, netns_factory: NetnsFactory,
                                                  tmp_path: Path, kind: str) -> None:
    node = netns_factory("node")
    plugin = flavor(kind, family="dual", lone=True)
    plugin.host_netns = _path(node)
    pods = {"web": netns_factory("cni"), "client": netns_factory("cni")}
    results = {}
    try:
        for container, ns in pods.items():
            results[container] = plugin.add(container, _path(ns)).ok().doc
            _cache(tmp_path, plugin, container, ns, f"dev/{container}", results[container])
        host = look(tmp_path, node, *pods.values())
        for container, ns in pods.items():
            result = results[container]
            veth = next(i for i in result["interfaces"] if i["name"].startswith("veth"))
            pod_if = next(i for i in result["interfaces"] if i.get("sandbox"))
            near, far = pair_at(host, node, veth["name"]).ends
            assert (near.mac, far.netns, far.ifname, far.mac) == (veth["mac"], ns, "eth0",
                                                                   pod_if["mac"])
            ips = _by_family(result)
            assert far.addresses is not None
            assert {ips[4]["address"], ips[6]["address"]} <= set(far.addresses)
            routes = {(r.family, r.dst, r.gateway, r.dev) for r in one(host, ns).routes}
            assert {(4, "default", ips[4]["gateway"], "eth0"),
                    (6, "default", ips[6]["gateway"], "eth0")} <= routes
            assert one(host, ns).pod == f"dev/{container}"
            assert_matches_ip(host, ns)
            assert _describe(host, veth["name"]) == [
                f"{veth['name']} in {node}: peer is eth0 in {ns}, pod dev/{container}"]
        assert_matches_ip(host, node)
        for family in (4, 6):  # a real packet each way, per family
            web = _by_family(results["web"])[family]["address"].split("/")[0]
            code, report = _trace(pods["client"], web)
            assert code == 0, (family, report["summary"])
            owners = [hop["owner"] for hop in report["forward"]["hops"]]
            assert owners[0] == pods["client"] and node in owners and owners[-1] == pods["web"]
            assert report["probe"]["outcome"] == "reply"
    finally:
        for container, ns in pods.items():
            if container in results:
                plugin.delete(container, _path(ns)).ok()


def _trace(source: str, destination: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "podnet", "trace", "-o", "json",
                             "--timeout", "1", source, destination], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode in (0, 1, 2), result.stderr
    return result.returncode, json.loads(result.stdout)
