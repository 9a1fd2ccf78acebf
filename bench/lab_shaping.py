"""Pods with bandwidth limits: `podnet up` of annotated pods against kubelet's way, one run.

    ./podnet.sh bench lab_shaping      (or: python bench/lab_shaping.py --pods 40 --rounds 5)

Every pod carries kubernetes.io/ingress-bandwidth: 10M and egress-bandwidth: 5M. kubelet's way is
the CNI chain's tail: after the pod's network is up, Debian's reference `bandwidth` plugin runs
once per pod (a process each, in the node's namespace, prevResult naming the host veth), as
containerd calls it. Both sides start from the same lab: podnet builds it with the annotations;
the reference builds it without, then shapes each pod with the plugin; both are timed whole and
shown beside: the plugin's time, and podnet's annotated lab against the unshaped one plus the
plugin. Then one shaped pod each way is measured with iperf3 on both sides, to show the limits
hold alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox, run, timed
from throughput import iperf

REFERENCE = "/usr/lib/cni/bandwidth"
INGRESS, EGRESS = 10_000_000, 5_000_000


def topology(pods: int, shaped: bool) -> str:
    notes = ("\n  annotations: {kubernetes.io/ingress-bandwidth: 10M, "
             "kubernetes.io/egress-bandwidth: 5M}") if shaped else ""
    docs = ["kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: shape\n"
            "nodes: [{role: control-plane}, {role: worker}, {role: worker}]\n"]
    docs += [f"---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}{notes}\n"
             "spec:\n  containers: [{name: idle}]\n" for i in range(pods)]
    docs.append("---\napiVersion: v1\nkind: Pod\nmetadata: {name: peer}\n"
                "spec:\n  containers: [{name: idle}]\n")
    return "".join(docs)


def pods() -> list[dict[str, str]]:
    with open("/run/podnet/shape/state.json") as fh:
        return [p for p in json.load(fh)["pods"] if p["name"] != "peer"]


def reference_shape(lab: list[dict[str, str]]) -> None:
    """The bandwidth plugin's ADD for every pod, as containerd runs the chain's tail."""
    for pod in lab:
        sandbox = f"/run/netns/{pod['netns']}"
        conf = {
            "cniVersion": "1.0.0", "name": "shape", "type": "bandwidth",
            "runtimeConfig": {"bandwidth": {"ingressRate": INGRESS, "ingressBurst": 16384 * 8,
                                            "egressRate": EGRESS, "egressBurst": 16384 * 8}},
            "prevResult": {"cniVersion": "1.0.0",
                           "interfaces": [{"name": pod["veth"]},
                                          {"name": "eth0", "sandbox": sandbox}],
                           "ips": [{"address": pod["ip"], "interface": 1}]},
        }
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": pod["netns"], "CNI_IFNAME": "eth0",
               "CNI_NETNS": sandbox, "CNI_PATH": "/usr/lib/cni",
               "PATH": os.environ.get("PATH", "")}
        done = subprocess.run(["ip", "netns", "exec", pod["node"], REFERENCE],
                              input=json.dumps(conf), capture_output=True, text=True, env=env,
                              check=False)
        if done.returncode != 0:
            raise SystemExit(f"bandwidth plugin failed: {done.stdout} {done.stderr}")


def measure(label: str) -> str:
    with open("/run/podnet/shape/state.json") as fh:
        lab = json.load(fh)["pods"]
    shaped = next(p for p in lab if p["name"] == "p0")
    peer = next(p for p in lab if p["name"] == "peer")
    address = shaped["ip"].split("/")[0]
    into = 1000 * iperf(peer["netns"], shaped["netns"], address, 3).gbits
    out = 1000 * iperf(peer["netns"], shaped["netns"], address, 3, reverse=True).gbits
    return f"  {label:<34} to the pod {into:5.2f} Mbit/s (10M), from it {out:5.2f} Mbit/s (5M)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ensure_sandbox()
    podnet = shutil.which("podnet") or sys.exit("podnet is not on PATH: run ./podnet.sh bench")
    if not os.path.exists(REFERENCE):
        sys.exit(f"{REFERENCE} is missing: Debian's containernetworking-plugins")
    work = tempfile.mkdtemp(prefix="podnet-bench-")
    files = {}
    for name, shaped in (("plain", False), ("shaped", True)):
        files[name] = os.path.join(work, f"{name}.yaml")
        with open(files[name], "w") as fh:
            fh.write(topology(args.pods, shaped))
    times: dict[str, list[float]] = {"unshaped up": [], "podnet up, annotated": [],
                                     "bandwidth plugin, per pod": []}
    rates: list[str] = []
    for round_ in range(args.rounds):
        times["unshaped up"].append(timed(lambda: run([podnet, "up", "-q", "-f",
                                                       files["plain"]])))
        times["bandwidth plugin, per pod"].append(timed(lambda: reference_shape(pods())))
        if round_ == 0:
            rates.append(measure("reference bandwidth plugin:"))
        run([podnet, "down", "-q", "-C", "shape"])
        times["podnet up, annotated"].append(timed(lambda: run([podnet, "up", "-q", "-f",
                                                                files["shaped"]])))
        if round_ == 0:
            rates.append(measure("podnet's lab (annotations):"))
        run([podnet, "down", "-q", "-C", "shape"])
        assert not run(["ip", "netns", "list"]).stdout.strip(), "namespaces left behind"
    shutil.rmtree(work)
    med = {k: statistics.median(v) for k, v in times.items()}
    kubelet = [a + b for a, b in zip(times["unshaped up"], times["bandwidth plugin, per pod"],
                                     strict=True)]
    print(f"lab_shaping: {args.pods} pods with ingress 10M and egress 5M on 2 workers, median of "
          f"{args.rounds} rounds (whole commands)")
    for name, value in med.items():
        print(f"  {name:<28} {value * 1000:8.0f} ms")
    both = statistics.median(kubelet)
    per_pod = med["bandwidth plugin, per pod"] / args.pods * 1000
    print(f"  shaped lab: podnet {med['podnet up, annotated'] * 1000:.0f} ms, unshaped lab and "
          f"the plugin per pod {both * 1000:.0f} ms ({per_pod:.1f} ms/pod for the plugin): "
          f"podnet takes {med['podnet up, annotated'] / both:.2f}x the time")
    print("\n".join(rates))


if __name__ == "__main__":
    main()
