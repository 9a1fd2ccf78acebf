"""NetworkPolicy in a lab built by `podnet up`: 200 pods and 50 policies, in one run.

    ./podnet.sh bench policy_lab    (or: python bench/policy_lab.py --rounds 3 --seconds 3)

The world of bench/policy.py (10 namespaces, 200 pods, 50 policies of every kind) as a real lab
on 3 workers. Measured, alternating with and without the policies in each round so that load
elsewhere falls on both alike:
- `podnet up` of the whole lab from nothing (its nodes' tables then carry the policies' sets,
  maps and chains), and `down`;
- TCP throughput (iperf3, one stream) from the client pod to a server pod on its node and to one
  on another node, through the lab's real veths, routes and tables; the policies that let the
  client through are the last ones the node's chains meet.
Target: throughput with policies at least 0.9 of without.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import throughput  # noqa: E402
from policy import topology as policy_world  # noqa: E402
from sandbox import ensure_sandbox, run, timed  # noqa: E402

CLUSTER = "npb"
PLACES = {"pod0": "npb-worker", "pod10": "npb-worker", "pod20": "npb-worker2"}


def lab(with_policies: bool) -> str:
    docs = policy_world().split("---\n")
    if not with_policies:
        docs = [d for d in docs if "kind: NetworkPolicy" not in d]
    text = "---\n".join(docs)
    # The containers idle (no built-in web server on their ports, which iperf3 needs), and the
    # three real ends are pinned: client and server on one node, the remote on another.
    text = text.replace("spec: {containers: [{name: c, ports:",
                        "spec: {containers: [{name: c, command: [sleep, infinity], ports:")
    for pod, node in PLACES.items():
        text = re.sub(rf"(metadata: {{name: {pod}, .*\n)spec: {{", rf"\1spec: {{nodeName: {node}, ",
                      text)
    cluster = (f"kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: {CLUSTER}\n"
               "nodes: [{role: control-plane}, {role: worker}, {role: worker}, "
               "{role: worker}]\n")
    return cluster + "---\n" + text


def placed(pod: str) -> tuple[str, str]:
    """(network namespace, address) of a pod of the running lab, from its record."""
    from podnet import state as lab_state

    record = lab_state.load(CLUSTER)
    assert record is not None
    found = next(p for p in record.layout.pods if p.name == pod)
    return found.netns, str(found.ip.ip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    ensure_sandbox()
    podnet = shutil.which("podnet") or sys.exit("podnet is not on PATH: run ./podnet.sh bench")
    work = tempfile.mkdtemp(prefix="podnet-bench-")
    files = {}
    for label, on in (("with", True), ("without", False)):
        files[label] = os.path.join(work, f"{label}.yaml")
        with open(files[label], "w") as fh:
            fh.write(lab(on))
    times: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for label in ("with", "without"):
            times.setdefault(f"up {label}", []).append(
                timed(lambda f=files[label]: run([podnet, "up", "-q", "-f", f])))
            client, _ = placed("pod0")
            for where, pod in (("same node", "pod10"), ("across nodes", "pod20")):
                server, ip = placed(pod)
                sample = throughput.iperf(client, server, ip, args.seconds)
                rates.setdefault(f"{where} {label}", []).append(sample.gbits)
            times.setdefault(f"down {label}", []).append(
                timed(lambda: run([podnet, "down", "-q", "-C", CLUSTER])))
    shutil.rmtree(work)
    med_t = {k: statistics.median(v) for k, v in times.items()}
    med_r = {k: statistics.median(v) for k, v in rates.items()}
    print(f"policy_lab: 200 pods on 3 workers, 50 NetworkPolicies, median of {args.rounds} "
          "rounds")
    for name, value in med_t.items():
        print(f"  {name:<24} {value * 1000:8.0f} ms")
    print(f"  up: with policies / without: {med_t['up with'] / med_t['up without']:.2f}x")
    for where in ("same node", "across nodes"):
        w, wo = med_r[f"{where} with"], med_r[f"{where} without"]
        print(f"  iperf3 {where:<13} with {w:6.2f} Gbit/s, without {wo:6.2f} Gbit/s: "
              f"{w / wo:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
