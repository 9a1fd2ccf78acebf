"""kubelet's capabilities and link impairment in the lab, through `podnet up`, with real traffic
(sandbox only): the bandwidth annotations measured with iperf3 both ways, podnet's per-pod rate,
a node's uplink rate, a changed rate converged in place, hostPort reached from another node, the
node network and the outside, a hostNetwork pod at its node's address, and what `trace`, `get
links` and `graph` say of lab-made shaping. Delay and loss where the kernel has netem; where it
has none (this project's VMs), `up` refuses with tc's words and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podnet.kernel import netns
from tests.iperf import assert_shaped, iperf
from tests.kernel.test_lab import host_snapshot, podnet
from tests.kernel.test_netem import rtts

pytestmark = pytest.mark.kernel

CLUSTER = "caps"

LAB = """kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: caps
nodes:
- role: control-plane
- role: worker
  netem: {rate: 50mbit}
- role: worker
---
apiVersion: v1
kind: Pod
metadata:
  name: limited
  annotations: {kubernetes.io/ingress-bandwidth: 10M, kubernetes.io/egress-bandwidth: 5M}
spec:
  nodeName: caps-worker
  containers: [{name: web, ports: [{containerPort: 80, hostPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata:
  name: paced
  annotations: {podnet.io/rate: 20mbit}
spec:
  nodeName: caps-worker2
  containers: [{name: idle}]
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  nodeName: caps-worker
  containers: [{name: idle}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: caps-worker2
  containers: [{name: idle}]
---
apiVersion: v1
kind: Pod
metadata: {name: agent}
spec:
  nodeName: caps-worker2
  hostNetwork: true
  containers: [{name: web, ports: [{containerPort: 9100}]}]
"""


def record() -> dict[str, Any]:
    with open(f"/run/podnet/{CLUSTER}/state.json") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def pod(name: str) -> dict[str, Any]:
    return next(p for p in record()["pods"] if p["name"] == name)


def node_ip(name: str) -> str:
    node = next(n for n in record()["nodes"] if n["name"] == name)
    return str(node["ip"]).split("/")[0]


def inside(ns: str, *argv: str, check: bool = True, timeout: float = 30,
           ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} in {ns} -> {done.returncode}\n{done.stderr}")
    return done


def iperf_pods(client: str, server: str, *, reverse: bool = False) -> float:
    """Mbit/s from pod `client` to pod `server` (back with `reverse`), by iperf3 in their
    namespaces."""
    dst = pod(server)
    return iperf(dst["netns"], pod(client)["netns"], str(dst["ip"]).split("/")[0],
                 reverse=reverse)


def curl(ns: str, url: str) -> str:
    done = inside(ns, "curl", "-s", "-m", "3", url, check=False)
    return done.stdout if done.returncode == 0 else f"curl failed ({done.returncode})"


def pids(name: str) -> list[int]:
    return [c["pid"] for c in pod(name)["containers"]]


def node_state(ns: str) -> str:
    return "\n".join(inside(ns, "ip", "-j", *what).stdout
                     for what in (["link"], ["addr"], ["route", "show", "table", "all"]))


@pytest.fixture(scope="module")
def caps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    topo = tmp_path_factory.mktemp("caps") / "caps.yaml"
    topo.write_text(LAB)
    before = host_snapshot()
    podnet("up", "-q", "-f", str(topo))
    try:
        yield topo
    finally:
        podnet("down", "-q", "-C", CLUSTER)
        assert host_snapshot() == before
        assert not [n for n in netns.list_named() if n.startswith(("caps", "cni-", "podnet-"))]


# --- bandwidth ------------------------------------------------------------------------------


def test_bandwidth_annotations_limit_both_ways(caps: Path) -> None:
    assert_shaped(lambda: iperf_pods("client", "limited"), 10, "ingress-bandwidth 10M")
    assert_shaped(lambda: iperf_pods("client", "limited", reverse=True), 5, "egress-bandwidth 5M")


def test_podnets_rate_limits_what_a_pod_sends(caps: Path) -> None:
    assert_shaped(lambda: iperf_pods("paced", "client"), 20, "podnet.io/rate 20mbit")
    back = iperf_pods("paced", "client", reverse=True)
    assert back > 200, f"what reaches the pod is not limited, yet only {back:.0f} Mbit/s"


def test_a_nodes_uplink_rate_limits_what_leaves_the_node(caps: Path) -> None:
    assert_shaped(lambda: iperf_pods("plain", "client"),  # caps-worker's eth0, then caps-worker2
                  50, "netem rate 50mbit on caps-worker")
    arriving = iperf_pods("plain", "client", reverse=True)  # the node's eth0 shapes what leaves
    assert arriving > 200, f"what reaches caps-worker is not limited, yet {arriving:.0f} Mbit/s"


def test_what_the_lab_shaped_is_shown_by_get_trace_and_graph(caps: Path) -> None:
    from podnet.kernel.tc import ifb_name

    veth = pod("limited")["veth"]
    links = json.loads(podnet("get", "links", "-C", CLUSTER, "-o", "json").stdout)["items"]
    qdisc = {(o["node"], o["metadata"]["name"]): o["qdisc"] for o in links}
    assert qdisc[("caps-worker", veth)] == f"tbf rate 10mbit; ingress via {ifb_name(veth)}: " \
        "rate 5mbit"
    assert qdisc[("caps-worker", "eth0")] == "tbf rate 50mbit"
    assert qdisc[("caps-worker2", "eth0")] == "noqueue"
    wide = podnet("get", "links", "-C", CLUSTER, "-o", "wide").stdout
    assert "QDISC" in wide.splitlines()[0] and "tbf rate 10mbit; ingress via" in wide
    report = json.loads(podnet("trace", "-C", CLUSTER, "client", "limited", "--no-probe",
                               "-o", "json").stdout)
    notes = [n for h in report["forward"]["hops"] for n in h["notes"]]
    assert f"rate-limited to 10mbit by tbf on {veth}" in notes, notes
    back = json.loads(podnet("trace", "-C", CLUSTER, "limited", "client", "--no-probe",
                             "-o", "json").stdout)
    notes = [n for h in back["forward"]["hops"] for n in h["notes"]]
    assert f"rate-limited to 5mbit by tbf on {ifb_name(veth)} (arriving on {veth})" in notes
    assert "rate-limited to 50mbit by tbf on eth0" in notes, notes
    mermaid = podnet("graph", "-C", CLUSTER, "-o", "mermaid").stdout
    assert "impaired: rate 10mbit; arriving: rate 5mbit" in mermaid
    assert "impaired: rate 50mbit" in mermaid


# --- hostPort and hostNetwork ---------------------------------------------------------------


def test_a_host_port_answers_on_its_node_from_everywhere(caps: Path) -> None:
    url = f"http://{node_ip('caps-worker')}:8080/"
    answered = "Pod default/limited answered"
    for ns in ("caps-worker2", "podnet-caps", "caps-internet", "caps-worker",
               pod("client")["netns"], pod("limited")["netns"]):  # the last: hairpin
        assert answered in curl(ns, url), ns
    other = f"http://{node_ip('caps-worker2')}:8080/"
    assert "curl failed" in curl("caps-internet", other)  # published only where the pod runs
    trace = podnet("trace", "-C", CLUSTER, "client", node_ip("caps-worker"), "--port", "8080",
                   "--no-probe").stdout
    assert (f"dnat: destination {node_ip('caps-worker')}:8080 -> {pod('limited')['ip'][:-3]}:80 "
            "(nftables prerouting, table inet podnet chain hostport-default/limited/tcp/8080)"
            in trace), trace


def test_a_host_network_pod_is_its_node(caps: Path) -> None:
    agent = json.loads(podnet("get", "pods", "-C", CLUSTER, "agent", "-o", "json").stdout)
    ip = node_ip("caps-worker2")
    assert agent["status"]["podIP"] == ip and agent["spec"]["hostNetwork"] is True
    wide = podnet("get", "pods", "-C", CLUSTER, "-o", "wide").stdout
    row = next(line.split() for line in wide.splitlines() if line.split()[1:2] == ["agent"])
    assert ip in row and "caps-worker2" in row
    for ns in (pod("client")["netns"], "caps-internet", pod("limited")["netns"]):
        assert "Pod default/agent answered" in curl(ns, f"http://{ip}:9100/"), ns
    assert podnet("exec", "-C", CLUSTER, "agent", "--", "hostname").stdout.strip() == \
        "caps-worker2"
    hosts = podnet("exec", "-C", CLUSTER, "agent", "--", "cat", "/etc/hosts").stdout
    assert f"{ip}\tcaps-worker2" in hosts
    addresses = podnet("exec", "-C", CLUSTER, "agent", "--", "ip", "-br", "addr").stdout
    assert f"{ip}/16" in addresses and pod("client")["veth"] in addresses
    # trace names it as it runs: from its node's namespace, to its node's address
    there = podnet("trace", "-C", CLUSTER, "client", "agent", "--port", "9100").stdout
    assert f"to node caps-worker2 {ip} port 9100/tcp: connected" in there, there
    back = podnet("trace", "-C", CLUSTER, "agent", "limited", "--port", "80").stdout
    assert back.startswith(f"trace from node caps-worker2 ({ip})"), back


# --- changes on a running lab ---------------------------------------------------------------


def test_a_changed_rate_is_reshaped_in_place(caps: Path, tmp_path: Path) -> None:
    from podnet.kernel.tc import read_link

    before = pids("limited")
    edited = tmp_path / "edited.yaml"
    edited.write_text(LAB.replace("ingress-bandwidth: 10M", "ingress-bandwidth: 20M")
                      .replace("  netem: {rate: 50mbit}\n", ""))
    plan = podnet("up", "-f", str(edited), "--dry-run").stdout
    assert plan.splitlines()[0].startswith("links.shape   caps-worker  # caps-worker: shape ")
    podnet("up", "-q", "-f", str(edited))
    try:
        path = netns.path_of("caps-worker")
        assert read_link(path, pod("limited")["veth"]).egress.rate_bps == 20_000_000
        assert read_link(path, "eth0").egress.empty
        assert pids("limited") == before, "reshaped, not restarted"
        assert_shaped(lambda: iperf_pods("client", "limited"), 20, "20M after the edit")
        assert "nothing to do" in podnet("up", "-f", str(edited)).stdout
    finally:
        podnet("up", "-q", "-f", str(caps))
    assert read_link(netns.path_of("caps-worker"), "eth0").egress.rate_bps == 50_000_000


def test_a_lab_link_reset_by_hand_is_put_back_and_a_foreign_qdisc_refused(caps: Path) -> None:
    from podnet.kernel.tc import read_link

    veth = pod("limited")["veth"]
    podnet("netem", "caps-worker", "-i", veth, "--reset")
    assert podnet("up", "-f", str(caps)).stdout.startswith(f"lab {CLUSTER} up")
    assert read_link(netns.path_of("caps-worker"), veth).egress.rate_bps == 10_000_000
    plain = pod("plain")["veth"]  # a link the file does not shape: podnet netem's stays
    podnet("netem", "caps-worker", "-i", plain, "--rate", "30mbit")
    try:
        assert "nothing to do" in podnet("up", "-f", str(caps)).stdout
        assert read_link(netns.path_of("caps-worker"), plain).egress.rate_bps == 30_000_000
    finally:
        podnet("netem", "caps-worker", "-i", plain, "--reset")
    inside("caps-worker", "tc", "qdisc", "del", "dev", veth, "root")
    inside("caps-worker", "tc", "qdisc", "add", "dev", veth, "root", "handle", "1:", "tbf",
           "rate", "1mbit", "burst", "16k", "latency", "10ms")
    try:
        done = podnet("up", "-f", str(caps), check=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "tbf qdisc (handle 1:) that podnet did not add" in done.stderr
    finally:
        inside("caps-worker", "tc", "qdisc", "del", "dev", veth, "root")
        podnet("up", "-q", "-f", str(caps))


def names(brief: str) -> list[str]:
    return sorted(line.split()[0] for line in brief.splitlines() if line.strip())


def qdiscs(ns: str) -> list[tuple[str, str, str]]:
    rows = json.loads(inside(ns, "tc", "-j", "qdisc", "show").stdout)
    return sorted((q["dev"], q["kind"], json.dumps(q.get("options"), sort_keys=True))
                  for q in rows)


def test_a_failed_up_puts_every_link_back(caps: Path, tmp_path: Path) -> None:
    """A new shaped pod (its shaping waits for the end of the run) and a reshaped link (done
    at once), then a failure: the link is shaped as before, no ifb is left, nothing else moved."""
    from podnet.kernel.tc import read_link

    links, shaped = inside("caps-worker", "ip", "-br", "link").stdout, qdiscs("caps-worker")
    edited = tmp_path / "more.yaml"
    edited.write_text(LAB.replace("ingress-bandwidth: 10M", "ingress-bandwidth: 20M") + """---
apiVersion: v1
kind: Pod
metadata:
  name: late
  annotations: {kubernetes.io/egress-bandwidth: 1M}
spec:
  nodeName: caps-worker
  containers: [{name: idle}]
""")
    done = podnet("up", "-f", str(edited), check=False,
                  env={"PODNET_INJECT_FAILURE": "links.shape:caps-worker@1"})
    assert done.returncode == 1 and "rolled back" in done.stderr, done.stderr
    assert qdiscs("caps-worker") == shaped
    assert read_link(netns.path_of("caps-worker"), pod("limited")["veth"]).egress.rate_bps == \
        10_000_000
    assert names(inside("caps-worker", "ip", "-br", "link").stdout) == names(links)
    assert "late" not in {p["name"] for p in record()["pods"]}
    assert "nothing to do" in podnet("up", "-f", str(caps)).stdout


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie its new parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def test_deleting_pods_leaves_their_node_whole(caps: Path) -> None:
    from podnet.kernel.tc import ifb_name

    worker2 = node_state("caps-worker2")
    agent_pid = pids("agent")[0]
    podnet("delete", "-C", CLUSTER, "pod", "agent")
    try:
        assert node_state("caps-worker2") == worker2, "the node's network is as it was"
        assert _gone(agent_pid)
        assert "caps-worker2" in netns.list_named()
        assert "Pod default/agent" not in curl(pod("client")["netns"],
                                               f"http://{node_ip('caps-worker2')}:9100/")
        ifb = ifb_name(pod("limited")["veth"])
        podnet("delete", "-C", CLUSTER, "pod", "limited")
        links = inside("caps-worker", "ip", "-br", "link").stdout
        assert ifb not in links, "the ifb that shaped the pod's traffic went with it"
        assert "hostport" not in inside("caps-worker", "nft", "list", "ruleset").stdout
    finally:
        podnet("up", "-q", "-f", str(caps))
    assert "Pod default/agent answered" in curl(pod("client")["netns"],
                                                f"http://{node_ip('caps-worker2')}:9100/")


# --- netem: delay and loss, where the kernel has it -----------------------------------------

DELAYED = """kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: slow
nodes: [{role: control-plane}, {role: worker}]
---
apiVersion: v1
kind: Pod
metadata:
  name: far
  annotations: {podnet.io/delay: 50ms}
spec:
  containers:
  - name: echo
    command: [python3, -c, "import socket\\ns = socket.socket(socket.AF_INET,
      socket.SOCK_DGRAM)\\ns.bind(('0.0.0.0', 7))\\nwhile True:\\n    d, p =
      s.recvfrom(64)\\n    s.sendto(d, p)\\n"]
---
apiVersion: v1
kind: Pod
metadata: {name: near}
spec:
  containers: [{name: idle}]
"""


def _netem_missing() -> bool:
    from tests.kernel.test_netem import netem_missing

    name = f"probe-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        return netem_missing(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_delay_and_loss_from_the_file(tmp_path: Path) -> None:
    topo = tmp_path / "slow.yaml"
    topo.write_text(DELAYED)
    if _netem_missing():
        done = podnet("up", "-f", str(topo), check=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "this kernel has no netem qdisc (sch_netem)" in done.stderr
        assert "netem delay 50ms" in done.stderr and "modprobe sch_netem" in done.stderr
        assert "rolled back" in done.stderr
        assert not [n for n in netns.list_named() if n.startswith(("slow", "podnet-slow"))]
        assert not Path("/run/podnet/slow/state.json").exists()
        pytest.skip("this kernel has no sch_netem: delay and loss cannot be measured here "
                    "(the refusal was checked)")
    podnet("up", "-q", "-f", str(topo))
    try:
        lab = {p["name"]: p for p in json.loads(
            Path("/run/podnet/slow/state.json").read_text())["pods"]}
        far = str(lab["far"]["ip"]).split("/")[0]
        for _ in range(100):  # the echo server starts
            if rtts(lab["near"]["netns"], 1, 0.2, far)[0] is not None:
                break
        times = [r for r in rtts(lab["near"]["netns"], 20, address=far) if r is not None]
        median = statistics.median(times)
        assert abs(median - 50) <= 5, f"RTT {median:.1f} ms for a 50 ms delay"
        edited = tmp_path / "lossy.yaml"
        edited.write_text(DELAYED.replace("podnet.io/delay: 50ms", "podnet.io/loss: 10%"))
        podnet("up", "-q", "-f", str(edited))
        answers = rtts(lab["near"]["netns"], 1000, 0.2, far)
        lost = sum(r is None for r in answers) / len(answers)
        sigma = (0.1 * 0.9 / len(answers)) ** 0.5
        assert abs(lost - 0.1) <= 3 * sigma, f"{lost:.1%} lost for 10% loss"
    finally:
        podnet("down", "-q", "-C", "slow")
