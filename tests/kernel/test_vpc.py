"""`attachment: vpc`, AWS VPC CNI's shape, with real packets: pods take addresses from the node
network's own subnet; each pod's eth0 has a /32 and a default route via 169.254.1.1, a permanent
neighbour entry naming the host end's MAC; the host end has no address, the node routes the /32
to it under a "to pod" rule and answers ARP for it on the node network (proxy ARP), so other
nodes and the node network's host reach pods with no pod routes of their own."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest

from podnet import state as lab_state
from podnet.plan.layout import Layout
from tests.kernel.test_lab import podnet
from tests.kernel.topologies import web_lab

pytestmark = pytest.mark.kernel

CLUSTER = "vpc"
TOPOLOGY = web_lab(CLUSTER, "{attachment: vpc}", replicas=4, client_node=f"{CLUSTER}-worker",
                   service="  type: NodePort\n", ports="[{port: 80, nodePort: 30080}]")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    path = tmp_path_factory.mktemp("vpc") / "lab.yaml"
    path.write_text(TOPOLOGY)
    podnet("up", "-q", "-f", str(path))
    try:
        record = lab_state.load(CLUSTER)
        assert record is not None
        yield record.layout
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def ip_json(netns: str, *args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-n", netns, "-j", *args], capture_output=True, text=True,
                         check=True).stdout
    result: list[dict[str, object]] = json.loads(out) if out.strip() else []
    return result


def curl(netns: str, url: str) -> str:
    result = subprocess.run(["ip", "netns", "exec", netns, "curl", "-s", "-m", "3", url],
                            capture_output=True, text=True, check=False, timeout=20)
    assert result.returncode == 0, f"{netns} -> {url}: exit {result.returncode}"
    return result.stdout


def test_pods_take_addresses_from_the_node_network(lab: Layout) -> None:
    node_net = lab.fabric_gateway.network
    taken = {n.ip.ip for n in lab.nodes} | {lab.fabric_gateway.ip}
    ips = [p.ip.ip for p in lab.pods]
    assert all(ip in node_net and ip not in taken for ip in ips)
    assert len(set(ips)) == len(ips)
    assert all(n.pod_cidrs == () for n in lab.nodes)


def test_the_pod_side_is_aws_nodes(lab: Layout) -> None:
    pod = lab.pods[0]
    node = lab.node(pod.node)
    (addr,) = [a for link in ip_json(pod.netns, "addr", "show", "dev", "eth0")
               for a in link["addr_info"]]  # type: ignore[attr-defined]
    assert (addr["local"], addr["prefixlen"]) == (str(pod.ip.ip), 32)
    routes = ip_json(pod.netns, "route")
    assert {"dst": "default", "gateway": "169.254.1.1", "dev": "eth0"}.items() <= \
        next(r for r in routes if r["dst"] == "default").items()
    (neigh,) = ip_json(pod.netns, "neigh", "show", "nud", "permanent")
    host_end = ip_json(node.netns, "link", "show", "dev", pod.veth)[0]
    assert (neigh["dst"], neigh["lladdr"]) == ("169.254.1.1", host_end["address"])
    assert ip_json(node.netns, "addr", "show", "dev", pod.veth)[0]["addr_info"] == []
    rules = ip_json(node.netns, "rule")
    assert any(r.get("dst") == str(pod.ip.ip) and r.get("priority") == 512
               and r.get("table") == "main" for r in rules)
    proxy = subprocess.run(["ip", "netns", "exec", node.netns, "cat",
                            "/proc/sys/net/ipv4/conf/eth0/proxy_arp"], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert proxy == "1"


def test_pod_to_pod_across_nodes_without_pod_routes(lab: Layout) -> None:
    client = lab.pod("default/client")
    assert client is not None
    for node in lab.nodes:
        assert not [r for r in ip_json(node.netns, "route") if r.get("gateway")
                    and r["dst"] != "default"], "vpc needs no routes between nodes"
    for web in (p for p in lab.pods if p.namespace == "dev"):
        page = curl(client.netns, f"http://{web.ip.ip}/")
        assert f"Pod {web.key} answered" in page


def test_the_node_network_reaches_pods_directly(lab: Layout) -> None:
    """The docker host's namespace has no route to any pod: it ARPs on the node network, and
    the pod's node answers for it."""
    web = next(p for p in lab.pods if p.namespace == "dev")
    assert f"Pod {web.key} answered" in curl(lab.fabric_netns, f"http://{web.ip.ip}/")


def test_service_nodeport_and_egress(lab: Layout) -> None:
    client = lab.pod("default/client")
    assert client is not None and lab.internet is not None
    (svc,) = [s for s in lab.services if s.namespace != "kube-system"]
    assert re.search(r"Pod dev/web-\S+ answered", curl(client.netns, f"http://{svc.cluster_ip}/"))
    node = lab.nodes[0]
    assert re.search(r"Pod dev/web-\S+ answered",
                     curl(lab.fabric_netns, f"http://{node.ip.ip}:30080/"))
    page = curl(client.netns, lab.internet.url)
    assert f"client: <b>{lab.node(client.node).ip.ip}:" in page  # SNAT to the node, as aws-node


def test_a_pod_removed_takes_its_rule_with_it(lab: Layout, tmp_path_factory: pytest.TempPathFactory
                                              ) -> None:
    """aws-node's `to POD` rule outlives the pod's veth: removing the pod removes it too."""
    gone = next(p for p in lab.pods if p.namespace == "dev")
    node = lab.node(gone.node)
    assert any(r.get("dst") == str(gone.ip.ip) for r in ip_json(node.netns, "rule"))
    podnet("delete", "pod", "-n", "dev", gone.name, "-C", CLUSTER)
    assert not any(r.get("dst") == str(gone.ip.ip) for r in ip_json(node.netns, "rule"))
