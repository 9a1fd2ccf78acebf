"""`get pods`, `describe pod` and `graph -o html` on a 150-pod lab, beside the `ip -j` commands
people run for the same facts, in one run.

    ./podnet.sh bench graph          (or: python bench/graph.py --pods 150 --repeat 5)

The lab is the default one with its Deployment scaled to fill --pods (built with `podnet up`,
not timed). Timed as whole commands, start-up included, median of --repeat runs, interleaved:

- `podnet get pods -A -o json` (every pod, its address, node and containers checked alive)
  beside `ip netns list` and `ip -n POD -j addr show eth0` for every pod;
- `podnet describe pod NAME` (addresses, the veth pair with both ends, routes of the pod and
  the node's route to it, containers) beside `ip -j addr` and `ip -j route` in the pod and
  `ip -j link` and `ip -j route` on its node: four `ip` processes;
- `podnet graph -o html` (the whole lab read, laid out and drawn, with every pod's describe
  text in the page) beside `ip -j link` and `ip -n NS -j addr` for every namespace (the
  reading alone: what people would start a drawing from).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
DEFAULT = os.path.join(SRC, "podnet", "model", "default.yaml")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
PODNET = [sys.executable, "-m", "podnet"]


def podnet(*args: str) -> str:
    out = subprocess.run([*PODNET, *args], capture_output=True, text=True, env=ENV, check=False)
    if out.returncode != 0:
        raise SystemExit(f"podnet {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def shell(script: str) -> str:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          check=True).stdout


def main() -> None:
    ensure_sandbox()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with open(DEFAULT) as fh:
        text = fh.read().replace("replicas: 3", f"replicas: {args.pods - 1}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(text)
        topology = fh.name
    try:
        podnet("up", "-q", "-f", topology)
        items = json.loads(podnet("get", "pods", "-A", "-o", "json"))["items"]
        if len(items) != args.pods:
            raise SystemExit(f"the lab has {len(items)} pods, expected {args.pods}")
        pod = items[len(items) // 2]
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        netns, node = pod["podnet"]["netns"], pod["spec"]["nodeName"]
        pods_loop = ("ip netns list >/dev/null; for ns in " + " ".join(
            p["podnet"]["netns"] for p in items) + "; do ip -n $ns -j addr show eth0; done")
        describe_ip = (f"ip -n {netns} -j addr; ip -n {netns} -j route; "
                       f"ip -n {node} -j link; ip -n {node} -j route")
        graph_loop = ("ip -j link; for ns in $(ip netns list | cut -d' ' -f1); do "
                      "ip -n \"$ns\" -j addr; done")
        cases = {
            "get pods": (lambda: podnet("get", "pods", "-A", "-o", "json"),
                         lambda: shell(pods_loop),
                         f"ip -n POD -j addr show eth0, {len(items)} times"),
            "describe pod": (lambda: podnet("describe", "pod", name, "-n", namespace),
                             lambda: shell(describe_ip),
                             "ip -j addr/route (pod) + link/route (node)"),
            "graph -o html": (lambda: podnet("graph", "-o", "html"),
                              lambda: shell(graph_loop),
                              "ip -j link + ip -n NS -j addr, every netns"),
        }
        if "Joined:    yes" not in podnet("describe", "pod", name, "-n", namespace):
            raise SystemExit("describe did not join the pod's veth pair: timing means nothing")
        times: dict[str, tuple[list[float], list[float]]] = {c: ([], []) for c in cases}
        for _ in range(args.repeat):
            for case, (ours, theirs, _what) in cases.items():
                times[case][0].append(timed(ours))
                times[case][1].append(timed(theirs))
        print(f"\n{args.pods} pods on 3 nodes, median of {args.repeat} (whole commands):")
        for case, (ours, theirs) in times.items():
            a, b = statistics.median(ours), statistics.median(theirs)
            what = cases[case][2]
            ratio = f"{b / a:5.1f}x faster" if a <= b else f"{a / b:5.1f}x the time"
            print(f"  podnet {case:<15} {a * 1000:7.0f} ms   {what:<46} {b * 1000:7.0f} ms"
                  f"   {ratio}", flush=True)
    finally:
        podnet("down", "-q", "-C", "kind")
        os.unlink(topology)


if __name__ == "__main__":
    main()
