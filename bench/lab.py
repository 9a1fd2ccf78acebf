"""`podnet up`/`down` of a 200-pod Deployment on 3 nodes against the lesson's `ip` recipe, one run.

    ./podnet.sh bench lab            (or: python bench/lab.py --pods 200 --rounds 3)

Both sides are timed as whole commands, start-up included. The recipe is what the lesson (and
most tutorials) type: a veth pair made in the node, one end moved into the pod's namespace,
renamed, addressed and routed, one `ip` process per command. podnet also starts one container
process per pod (its built-in HTTP responder), which the recipe does not: it is timed anyway.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox, run, timed

NODES = ("bench-worker", "bench-worker2", "bench-worker3")


def topology(pods: int) -> str:
    nodes = "\n".join("  - role: worker" for _ in NODES)
    return f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: bench
nodes:
{nodes}
networking:
  podSubnet: 10.244.0.0/16
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: bench}}
spec:
  replicas: {pods}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        ports: [{{containerPort: 80}}]
"""


def recipe_up(pods: int) -> str:
    """The lesson's commands for `pods` pods spread over three nodes, as one bash script."""
    lines = ["set -e"]
    for i, node in enumerate(NODES):
        lines += [f"ip netns add r{node}", f"ip -n r{node} link set lo up",
                  f"ip netns exec r{node} sysctl -qw net.ipv4.ip_forward=1"]
        lines.append(f"# node {i}")
    for p in range(pods):
        n = p % len(NODES)
        node = f"r{NODES[n]}"
        ns, host, peer = f"rpod{p}", f"rv{p}", f"rc{p}"
        ip = f"10.245.{n}.{p // len(NODES) + 2}"
        gw = f"10.245.{n}.1"
        lines += [
            f"ip netns add {ns}",
            f"ip -n {node} link add {host} type veth peer name {peer}",
            f"ip -n {node} link set {peer} netns {ns}",
            f"ip -n {ns} link set {peer} name eth0",
            f"ip -n {ns} link set lo up",
            f"ip -n {ns} addr add {ip}/24 dev eth0",
            f"ip -n {ns} link set eth0 up",
            f"ip -n {ns} route add default via {gw} dev eth0 onlink",
            f"ip -n {node} addr add {gw}/32 dev {host}",
            f"ip -n {node} link set {host} up",
            f"ip -n {node} route add {ip}/32 dev {host} scope host",
        ]
    return "\n".join(lines) + "\n"


def recipe_down(pods: int) -> str:
    names = [f"rpod{p}" for p in range(pods)] + [f"r{n}" for n in NODES]
    return "\n".join(f"ip netns del {n}" for n in names) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ensure_sandbox()
    podnet = shutil.which("podnet") or sys.exit("podnet is not on PATH: run ./podnet.sh bench")
    work = tempfile.mkdtemp(prefix="podnet-bench-")
    topo = os.path.join(work, "bench.yaml")
    with open(topo, "w") as fh:
        fh.write(topology(args.pods))
    up_script, down_script = recipe_up(args.pods), recipe_down(args.pods)
    results: dict[str, list[float]] = {k: [] for k in ("podnet up", "recipe up", "podnet down",
                                                        "recipe down (ip netns del)")}
    for _ in range(args.rounds):
        results["podnet up"].append(timed(lambda: run([podnet, "up", "-q", "-f", topo])))
        listed = [podnet, "get", "pods", "-C", "bench", "-n", "bench", "-o", "name"]
        check = run(listed).stdout.split()
        assert len(check) == args.pods, f"expected {args.pods} pods, got {len(check)}"
        results["recipe up"].append(timed(lambda: run(["bash", "-c", up_script])))
        results["podnet down"].append(timed(lambda: run([podnet, "down", "-q", "-C", "bench"])))
        results["recipe down (ip netns del)"].append(
            timed(lambda: run(["bash", "-c", down_script]))
        )
        leftover = run(["ip", "netns", "list"]).stdout.strip()
        assert not leftover, f"namespaces left behind: {leftover[:200]}"
    shutil.rmtree(work)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"lab: {args.pods} pods on {len(NODES)} nodes, median of {args.rounds} rounds "
          "(whole commands, start-up included)")
    for name, value in med.items():
        print(f"  {name:<28} {value * 1000:8.0f} ms   ({value / args.pods * 1000:5.1f} ms/pod)")
    print(f"  up:   podnet is {med['recipe up'] / med['podnet up']:.1f}x faster than the recipe "
          "(target >= 5x)")
    print(f"  down: podnet takes {med['podnet down'] / med['recipe down (ip netns del)']:.2f}x "
          "the time of `ip netns del` by hand (target <= 1x)")


if __name__ == "__main__":
    main()
