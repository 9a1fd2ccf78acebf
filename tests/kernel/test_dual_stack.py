"""IPv6-only and dual-stack labs of every shape, with real packets per family: pod to pod on one
node and across nodes, a Service's ClusterIP of each family, egress masqueraded to the node's
address of that family; and what the kernel holds (no DAD, no router advertisements accepted on
host ends, IPv6 off entirely in an IPv4 lab)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet import state as lab_state
from podnet.plan.layout import Layout
from tests.kernel.test_lab import podnet
from tests.kernel.topologies import web_lab

pytestmark = pytest.mark.kernel

CLUSTER = "ds"
SHAPES = [("ptp", "static", "ipv6"), ("ptp", "vxlan", "dual"), ("bridge", "static", "dual"),
          ("bridge", "vxlan", "ipv6"), ("ptp", "host-gw", "dual")]


def topology(attachment: str, routing: str, family: str) -> str:
    return web_lab(CLUSTER, f"{{attachment: {attachment}, routing: {routing}, ipFamily: {family}}}",
                   replicas=4, client_node=f"{CLUSTER}-worker",
                   service="  ipFamilyPolicy: PreferDualStack\n")


@pytest.fixture(scope="module", params=SHAPES, ids=["-".join(s) for s in SHAPES])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        Layout]:
    path = tmp_path_factory.mktemp("ds") / "lab.yaml"
    path.write_text(topology(*request.param))
    podnet("up", "-q", "-f", str(path))
    try:
        record = lab_state.load(CLUSTER)
        assert record is not None
        yield record.layout
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def url(ip: object, port: int = 80) -> str:
    text = str(ip)
    return f"http://[{text}]:{port}/" if ":" in text else f"http://{text}:{port}/"


def fetch(lay: Layout, source: str, target: str) -> str:
    pod = lay.pod(source)
    assert pod is not None
    result = subprocess.run(["ip", "netns", "exec", pod.netns, "curl", "-s", "-m", "3",
                             target], capture_output=True, text=True, check=False, timeout=20)
    assert result.returncode == 0, f"{source} -> {target}: curl exit {result.returncode}"
    return result.stdout


def answered(page: str) -> str:
    found = re.search(r"Pod (\S+) answered", page)
    assert found, page[:200]
    return found.group(1)


def test_every_pod_has_one_address_per_family(lab: Layout) -> None:
    for pod in lab.pods:
        assert [ip.version for ip in pod.ips] == list(lab.families)
        node = lab.node(pod.node)
        for ip in pod.ips:
            cidr = node.pod_cidr_of(ip.version)
            assert cidr is not None and ip.ip in cidr


def test_pod_to_pod_per_family_on_one_node_and_across(lab: Layout) -> None:
    client = lab.pod("default/client")
    assert client is not None
    webs = [p for p in lab.pods if p.namespace == "dev"]
    assert {p.node == client.node for p in webs} == {True, False}  # both cases are covered
    for web in webs:
        for ip in web.ips:
            assert answered(fetch(lab, client.key, url(ip.ip))) == web.key


def test_service_answers_on_each_family(lab: Layout) -> None:
    (svc,) = [s for s in lab.services if s.namespace == "dev"]  # and kube-system's kube-dns
    assert [ip.version for ip in svc.cluster_ips] == list(lab.families)
    for ip in svc.cluster_ips:
        assert answered(fetch(lab, "default/client", url(ip))).startswith("dev/web-")


def test_egress_is_masqueraded_per_family(lab: Layout) -> None:
    assert lab.internet is not None
    client = lab.pod("default/client")
    assert client is not None
    node = lab.node(client.node)
    for address in lab.internet.addresses:
        page = fetch(lab, client.key, url(address.ip))
        seen = node.ip_of(address.version)
        assert seen is not None
        shown = f"[{seen.ip}]" if seen.version == 6 else str(seen.ip)
        assert f"client: <b>{shown}:" in page, page


def _sysctl(netns: str, key: str) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    return subprocess.run(["ip", "netns", "exec", netns, "cat", path], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_no_dad_and_no_router_advertisements_on_host_ends(lab: Layout) -> None:
    pod = lab.pods[0]
    node = lab.node(pod.node)
    assert _sysctl(pod.netns, "net.ipv6.conf.eth0.accept_dad") == "0"
    assert _sysctl(node.netns, f"net.ipv6.conf.{pod.veth}.accept_ra") == "0"
    assert _sysctl(node.netns, "net.ipv6.conf.all.forwarding") == "1"
    addrs = subprocess.run(["ip", "-n", pod.netns, "-6", "addr", "show", "dev", "eth0"],
                           capture_output=True, text=True, check=True).stdout
    assert "tentative" not in addrs


def test_an_ipv4_lab_has_no_ipv6_at_all(tmp_path: Path) -> None:
    """No link-local addresses, no DAD or MLD: nothing of it in the machine's neighbour table."""
    path = tmp_path / "v4.yaml"
    path.write_text(topology("ptp", "static", "ipv4"))
    podnet("up", "-q", "-f", str(path))
    try:
        record = lab_state.load(CLUSTER)
        assert record is not None
        for ns in [record.layout.fabric_netns, *(n.netns for n in record.layout.nodes),
                   *(p.netns for p in record.layout.pods)]:
            out = subprocess.run(["ip", "-n", ns, "-6", "addr"], capture_output=True, text=True,
                                 check=True).stdout
            assert out.strip() == "", ns
    finally:
        podnet("down", "-q", "-C", CLUSTER)
