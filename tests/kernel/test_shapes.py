"""Every network shape with real traffic: bridge and ptp attachment crossed with static, host-gw
and VXLAN routing; Services (ClusterIP spread, hairpin, NodePort), egress masquerade, MTU (sandbox
only).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kernel.test_lab import PODNET, podnet

pytestmark = pytest.mark.kernel

CLUSTER = "shapes"
FABRIC = f"podnet-{CLUSTER}"
INTERNET = f"{CLUSTER}-internet"
INTERNET_IP = "198.51.100.100"
SHAPES = [("ptp", "static"), ("ptp", "vxlan"), ("bridge", "static"), ("bridge", "vxlan"),
          ("ptp", "host-gw")]


def topology(attachment: str, routing: str, *, cluster: str = CLUSTER, extra: str = "") -> str:
    return f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {cluster}
nodes: [{{role: control-plane}}, {{role: worker}}, {{role: worker}}]
networking: {{attachment: {attachment}, routing: {routing}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: default}}
spec:
  containers: [{{name: c, command: [sleep, infinity]}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: demo, namespace: dev}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: demo}}}}
  template:
    metadata: {{labels: {{app: demo}}}}
    spec:
      containers: [{{name: web, ports: [{{containerPort: 80}}]}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: solo, namespace: dev}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: solo}}}}
  template:
    metadata: {{labels: {{app: solo}}}}
    spec:
      containers: [{{name: web, ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: demo, namespace: dev}}
spec:
  selector: {{app: demo}}
  ports: [{{name: http, port: 80, targetPort: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: demo-np, namespace: dev}}
spec:
  type: NodePort
  selector: {{app: demo}}
  ports: [{{port: 8080, targetPort: 80, nodePort: 30080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: solo, namespace: dev}}
spec:
  selector: {{app: solo}}
  ports: [{{port: 80, targetPort: 8080}}]
{extra}"""


@dataclass
class Lab:
    attachment: str
    routing: str
    pods: dict[str, dict[str, object]]  # name -> `podnet get pods -o json` item
    nodes: dict[str, str]  # node name -> its address

    def named(self, prefix: str) -> list[str]:
        return sorted(n for n in self.pods if n.startswith(prefix))

    def node_of(self, pod: str) -> str:
        return str(self.pods[pod]["spec"]["nodeName"])  # type: ignore[index]

    def ip_of(self, pod: str) -> str:
        return str(self.pods[pod]["status"]["podIP"])  # type: ignore[index]


def read_lab(attachment: str, routing: str, cluster: str = CLUSTER) -> Lab:
    items = json.loads(podnet("get", "pods", "-C", cluster, "-o", "json").stdout)["items"]
    nodes = json.loads(podnet("get", "nodes", "-C", cluster, "-o", "json").stdout)["items"]
    return Lab(attachment, routing, {i["metadata"]["name"]: i for i in items},
               {n["metadata"]["name"]: n["status"]["internalIP"] for n in nodes})


@pytest.fixture(scope="module", params=SHAPES, ids=[f"{a}-{r}" for a, r in SHAPES])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    attachment, routing = request.param
    path = tmp_path_factory.mktemp("shapes") / f"{attachment}-{routing}.yaml"
    path.write_text(topology(attachment, routing))
    podnet("up", "-q", "-f", str(path))
    try:
        yield read_lab(attachment, routing)
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def in_pod(pod: str, *cmd: str, namespace: str | None = None, check: bool = True) -> str:
    ns = ["-n", namespace] if namespace else []
    return podnet("exec", "-C", CLUSTER, *ns, pod, "--", *cmd, check=check).stdout


def in_netns(netns: str, *cmd: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True,
                          timeout=timeout, check=False)


def answered_by(page: str) -> str:
    found = re.search(r"podnet: pod (\S+) answered", page)
    return found.group(1) if found else ""


def curl_loop(pod: str, url: str, count: int, namespace: str | None = None) -> list[str]:
    """`count` requests from one exec: which pod answered each (one line per request)."""
    script = (f"for i in $(seq {count}); do curl -s -m 2 -H 'Accept: text/plain' {url} "
              "| head -1; echo; done")
    out = in_pod(pod, "sh", "-c", script, namespace=namespace)
    return [answered_by(line) for line in out.splitlines() if line.strip()]


# --- every shape --------------------------------------------------------------------------------


def test_check_passes_on_every_path(lab: Lab) -> None:
    result = podnet("check", "-C", CLUSTER, "-o", "json", "--targets", "0", check=False)
    report = json.loads(result.stdout)
    failed = [p for p in report["probes"] if not p["ok"]]
    assert result.returncode == 0 and report["ok"], failed
    kinds = {p["kind"] for p in report["probes"]}
    assert kinds == {"self", "same-node", "other-node", "node", "service", "dns", "nodeport",
                     "outside"}
    assert report["attachment"] == lab.attachment and report["routing"] == lab.routing


def test_pod_mtu_leaves_room_for_the_tunnel(lab: Lab) -> None:
    want = 1450 if lab.routing == "vxlan" else 1500
    link = json.loads(in_pod("client", "ip", "-j", "link", "show", "eth0"))[0]
    assert link["mtu"] == want
    node = lab.node_of("client")
    eth0 = json.loads(podnet("node-exec", "-C", CLUSTER, node, "--", "ip", "-j", "link", "show",
                             "eth0").stdout)[0]
    assert eth0["mtu"] == 1500


def test_service_spreads_over_its_three_replicas(lab: Lab) -> None:
    demos = lab.named("demo-")
    answers = curl_loop("client", "http://demo.dev/", 60)
    assert len(answers) == 60 and set(answers) == {f"dev/{d}" for d in demos}
    # Every backend answers within a bounded number of requests: with a uniform draw, one
    # missing from 60 happens with probability 3 * (2/3)^60, about 1e-10.
    first = {who: answers.index(who) for who in set(answers)}
    assert max(first.values()) < 60


def test_a_pod_reaches_itself_through_its_service(lab: Lab) -> None:
    (solo,) = lab.named("solo-")
    answers = curl_loop(solo, "http://solo/", 5, namespace="dev")  # the short name: same namespace
    assert answers == [f"dev/{solo}"] * 5


def test_nodeport_from_the_node_network_and_the_outside(lab: Lab) -> None:
    demos = {f"dev/{d}" for d in lab.named("demo-")}
    for where in (FABRIC, INTERNET):
        for node, ip in lab.nodes.items():
            out = in_netns(where, "curl", "-s", "-m", "3", "-H", "Accept: text/plain",
                           f"http://{ip}:30080/")
            assert answered_by(out.stdout) in demos, f"{where} -> {node}: {out.stderr}"


def test_egress_leaves_with_the_nodes_address(lab: Lab) -> None:
    for pod in ("client", *lab.named("demo-")):
        ns = "dev" if pod.startswith("demo-") else None
        page = in_pod(pod, "curl", "-s", "-m", "3", "-H", "Accept: text/plain",
                      f"http://{INTERNET_IP}/", namespace=ns)
        seen = re.search(r"^client:\s+(\S+):\d+$", page, re.MULTILINE)
        assert seen, page
        assert seen.group(1) == lab.nodes[lab.node_of(pod)] != lab.ip_of(pod)
    # The server's own log says the same: it never saw a pod address.
    log = Path(f"/run/podnet/{CLUSTER}/logs/internet.log").read_text()
    assert not re.search(r"\b10\.244\.\d+\.\d+", log)
    assert any(ip in log for ip in lab.nodes.values())


# --- bridge attachment --------------------------------------------------------------------------


def test_bridge_ports_are_the_pods_with_hairpin(lab: Lab) -> None:
    if lab.attachment != "bridge":
        pytest.skip("ptp attachment has no bridge")
    node = lab.node_of("client")
    out = podnet("node-exec", "-C", CLUSTER, node, "--", "bridge", "-d", "link", "show").stdout
    veths = {str(p["podnet"]["veth"]) for p in lab.pods.values()  # type: ignore[index]
             if p["spec"]["nodeName"] == node}  # type: ignore[index]
    ports = re.findall(r"^\d+: (\S+)@\S+: .* master cni0 .*\n(.*)", out, re.MULTILINE)
    assert {name for name, _ in ports} == veths
    assert all("hairpin on" in detail for _, detail in ports)
    gw = podnet("node-exec", "-C", CLUSTER, node, "--", "ip", "-4", "-o", "addr", "show",
                "cni0").stdout
    assert re.search(r"inet 10\.244\.\d+\.1/24", gw)


# --- VXLAN ------------------------------------------------------------------------------------


def test_vxlan_device_and_per_node_entries(lab: Lab) -> None:
    if lab.routing != "vxlan":
        pytest.skip("not a VXLAN lab")
    node = "shapes-worker"
    run = lambda *cmd: podnet("node-exec", "-C", CLUSTER, node, "--", *cmd).stdout  # noqa: E731
    link = run("ip", "-d", "link", "show", "flannel.1")
    assert "vxlan id 1 " in link and "dstport 8472" in link and "mtu 1450" in link
    assert f"local {lab.nodes[node]} dev eth0" in link and "nolearning" in link
    routes, neigh, fdb = run("ip", "route"), run("ip", "neigh"), run("bridge", "fdb", "show")
    for other, ip in lab.nodes.items():
        if other == node:
            continue
        index = list(lab.nodes).index(other)
        vtep = f"10.244.{index}.0"
        assert f"10.244.{index}.0/24 via {vtep} dev flannel.1 onlink" in routes
        mac = re.search(rf"^{re.escape(vtep)} dev flannel.1 lladdr (\S+) PERMANENT", neigh,
                        re.MULTILINE)
        assert mac, neigh
        assert f"{mac.group(1)} dev flannel.1 dst {ip} self permanent" in fdb


def test_vxlan_carries_full_size_df_datagrams_unfragmented(lab: Lab) -> None:
    if lab.routing != "vxlan":
        pytest.skip("not a VXLAN lab")
    src = "client"
    dst = next(d for d in lab.named("demo-") if lab.node_of(d) != lab.node_of(src))
    receiver = subprocess.Popen(
        [*PODNET, "exec", "-C", CLUSTER, "-n", "dev",
         dst, "--", "timeout", "10", "python3", "-c",
         "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
         "s.bind(('0.0.0.0', 9999))\nprint('ready', flush=True)\n"
         "for _ in range(3):\n    print(len(s.recv(65535)), flush=True)\n"],
        stdout=subprocess.PIPE, text=True)
    capture = subprocess.Popen(
        ["ip", "netns", "exec", FABRIC, "timeout", "10", "tcpdump", "-l", "-nn", "-v", "-c", "3",
         "-i", f"br-{CLUSTER}", "udp dst port 8472 and greater 1400"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fragments = subprocess.Popen(
        ["ip", "netns", "exec", FABRIC, "timeout", "2", "tcpdump", "-nn", "-c", "1",
         "-i", f"br-{CLUSTER}", "ip[6:2] & 0x3fff != 0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    _wait_listening(capture)
    _wait_listening(fragments)
    # IP_MTU_DISCOVER = 10, IP_PMTUDISC_DO = 2: DF set, the kernel refuses to fragment.
    sender = in_pod(src, "python3", "-c", f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)
for size in (1422, 1422, 1422, 1423):
    try:
        s.sendto(b"x" * size, ("{lab.ip_of(dst)}", 9999))
        print("sent", size)
    except OSError as exc:
        print("refused", size, exc.errno)
""")
    assert sender.split("\n")[:4] == ["sent 1422"] * 3 + ["refused 1423 90"]  # EMSGSIZE
    received, _ = receiver.communicate(timeout=15)
    assert received.split() == ["1422"] * 3  # 1422 + 8 UDP + 20 IP = the pod MTU, 1450
    captured, _ = capture.communicate(timeout=15)
    # The outer packet: node to node, UDP to the VXLAN port, 1500 bytes (1450 + 50), unfragmented.
    assert re.search(r"proto UDP \(17\), length 1500\)", captured), captured
    assert re.search(r"> \d+\.\d+\.\d+\.\d+\.8472: ", captured), captured
    assert "offset 0, flags [none]" in captured and "length 1450)" in captured
    frag_out, _ = fragments.communicate(timeout=15)
    assert frag_out.strip() == "", f"fragments on the node network: {frag_out}"


def _wait_listening(proc: subprocess.Popen[str]) -> None:
    """tcpdump says `listening on` on stderr once its filter is in place."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            return
    raise AssertionError("tcpdump did not start")
