"""`podnet explain` says what `up` does: each lab shape is built twice, once by `podnet up` and once
by running `podnet explain | bash -e` as a person would, each in a fresh sandbox of its own, and
the two kernels must hold the same links (with MTUs, state, aliases, masters), addresses, routes
of every table and family, permanent neighbours, VXLAN forwarding entries, routing rules,
sysctls, nftables ruleset and qdiscs (read with iproute2, nft and tc by `kernel_state.py`, not by
podnet). One shape adds what kubelet's capabilities and the file's impairment make: pods' and a
node's tc shaping (ifb devices and all), hostPort DNAT and a hostNetwork pod.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podnet.model.loader import load_topology
from podnet.plan.layout import layout
from tests.kernel.topologies import web_lab

pytestmark = pytest.mark.kernel

STATE = Path(__file__).with_name("kernel_state.py")
ROOT = Path(__file__).resolve().parents[2]

# attachment, routing, ipFamily, MTU: every attachment and routing, every family, a jumbo MTU;
# "+caps": with shaping, host ports and a hostNetwork pod; "+policy": with NetworkPolicies.
SHAPES = [
    ("ptp", "static", "ipv4", 1500),
    ("ptp", "host-gw", "ipv4", 1500),
    ("ptp", "vxlan", "ipv4", 9000),
    ("bridge", "static", "ipv4", 1500),
    ("bridge", "vxlan", "dual", 1500),
    ("ptp", "static", "ipv6", 1500),
    ("bridge", "host-gw", "ipv6", 1500),
    ("ptp", "vxlan", "dual", 1500),
    ("vpc", "static", "ipv4", 1500),
    ("ptp", "static", "dual+caps", 1500),
    ("ptp", "host-gw", "dual+policy", 1500),
]

CAPS = """---
apiVersion: v1
kind: Pod
metadata:
  name: edge
  annotations: {kubernetes.io/ingress-bandwidth: 10M, kubernetes.io/egress-bandwidth: 5M}
spec:
  nodeName: same-worker
  containers: [{name: web, ports: [{containerPort: 80, hostPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: agent}
spec:
  nodeName: same-worker2
  hostNetwork: true
  containers: [{name: web, ports: [{containerPort: 9100}]}]
"""

# The web pods take HTTP from namespace default only; the client may send only to dev's port 80
# and to addresses outside 10.0.0.0/8 (both families' rules, ipBlock with an exception).
POLICY = """---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-default, namespace: dev}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}}]
    ports: [{protocol: TCP, port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-out}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dev}}}]
    ports: [{protocol: TCP, port: 80}]
  - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]
"""


def topology(attachment: str, routing: str, family: str, mtu: int) -> str:
    family, _, extra = family.partition("+")
    caps = extra == "caps"
    text = web_lab("same", f"{{attachment: {attachment}, routing: {routing}, "
                   f"ipFamily: {family}, mtu: {mtu}}}",
                   service="  type: NodePort\n  ipFamilyPolicy: PreferDualStack\n",
                   extra={"caps": CAPS, "policy": POLICY}.get(extra, ""))
    if caps:  # a node whose uplink is shaped both ways
        text = text.replace("{role: worker}, {role: worker}",
                            "{role: worker, netem: {rate: 200mbit, ingress: {rate: 100mbit}}}, "
                            "{role: worker}", 1)
    return text


def in_new_sandbox(script: str) -> str:
    """Run `script` in a sandbox of its own (network, mount and PID namespaces, private /run)
    and return what it printed; everything it started ends with it."""
    setup = ("mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/netns /run/podnet && "
             "ip link set lo up && ")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
         "--propagation", "private", "--", "bash", "-c", setup + script],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )
    assert result.returncode == 0, f"{script}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.parametrize(("attachment", "routing", "family", "mtu"), SHAPES,
                         ids=[f"{a}-{r}-{f}-{m}" for a, r, f, m in SHAPES])
def test_explain_builds_what_up_builds(
    tmp_path: Path, attachment: str, routing: str, family: str, mtu: int
) -> None:
    topo = tmp_path / "lab.yaml"
    topo.write_text(topology(attachment, routing, family, mtu))
    podnet = f"{sys.executable} -m podnet"
    dump = f"{sys.executable} {STATE}"
    by_up = in_new_sandbox(f"{podnet} up -q -f {topo} >/dev/null && {dump}")
    script = tmp_path / "explain.sh"
    # The script's containers are real too: the client reaches a web pod on another node.
    lay = layout(load_topology(topo.read_text()))
    client = lay.pod("default/client")
    assert client is not None
    web = next(p for p in lay.pods if p.namespace == "dev" and p.node != client.node)
    url = f"http://{web.ip.ip}/" if web.ip.version == 4 else f"http://[{web.ip.ip}]/"
    fetch = (f"for i in $(seq 50); do ip netns exec {client.netns} curl -s -m 1 {url} "
             f"> {tmp_path}/page && break; sleep 0.1; done")
    by_hand = in_new_sandbox(f"{podnet} explain -f {topo} > {script} && bash -e {script} && "
                             f"{fetch} && {dump}")
    assert f"Pod {web.key} answered" in (tmp_path / "page").read_text()
    if by_up != by_hand:
        diff = difflib.unified_diff(by_up.splitlines(), by_hand.splitlines(), "podnet up",
                                    "podnet explain | bash -e", lineterm="", n=4)
        pytest.fail("the kernels differ:\n" + "\n".join(list(diff)[:200]))
    namespaces = json.loads(by_up)
    own = sum(1 for p in lay.pods if not p.host_network)
    assert len(namespaces) == 1 + 1 + 1 + 3 + own  # sandbox, fabric, internet, nodes, pods
    if family.endswith("+caps"):  # the shaping and the DNAT are there, not only alike
        worker = namespaces["same-worker"]
        assert sum(q["kind"] == "tbf" for q in worker["qdiscs"]) == 4  # eth0, veth, two ifbs
        assert sum(link["kind"] == "ifb" for link in worker["links"]) == 2
        assert "hostport-default/edge/tcp/8080" in worker["nft"]
        assert "hostport" not in namespaces["same-worker2"]["nft"]
    if family.endswith("+policy"):  # the policies' chains are there, on the pods' nodes
        assert any("web-from-default" in ns.get("nft", "") for ns in namespaces.values())
