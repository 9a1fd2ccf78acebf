"""TCP throughput of each network shape (iperf3), beside loopback and a bare veth pair, in one run.

    ./podnet.sh bench throughput      (or: python bench/throughput.py --seconds 3 --repeat 2)

For every shape (ptp or bridge attachment; static, host-gw or VXLAN routing) a lab of two workers
is built with three idle pods: two on one worker, one on the other. iperf3 runs pod to pod on one
node and across nodes. In the same run, the references: iperf3 over loopback inside one namespace
and over a bare veth pair between two namespaces. Results are printed as Gbit/s and as ratios to
the veth pair, with iperf3's CPU figures (sender and receiver), which say what bounds a path on
these 2-core machines. Every iperf3 run is bounded in time; every server is stopped by its PID.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox, run

REF_NETNS = ("tput-lo", "tput-a", "tput-b", "tput-c", "tput-d")
VETH = "veth pair (two namespaces)"
VETH_1450 = "veth pair, MTU 1450"  # the pod MTU of VXLAN shapes, for a like-for-like ratio
SHAPES = ("ptp-static", "ptp-host-gw", "ptp-vxlan", "bridge-static", "bridge-vxlan")
PORT = 5201


@dataclass(frozen=True)
class Sample:
    gbits: float
    best: float
    cpu_sender: float  # iperf3's host_total: the client process's CPU time over the run, in %
    cpu_receiver: float
    retransmits: int


def topology(cluster: str, attachment: str, routing: str) -> str:
    idle = "containers: [{name: c, command: [sleep, infinity]}]"
    pods = "".join(
        f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n"
        f"spec: {{nodeName: {cluster}-{node}, {idle}}}\n"
        for name, node in (("a", "worker"), ("b", "worker"), ("c", "worker2"))
    )
    return (
        f"kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: {cluster}\n"
        "nodes: [{role: control-plane}, {role: worker}, {role: worker}]\n"
        f"networking: {{attachment: {attachment}, routing: {routing}}}\n{pods}"
    )


@contextmanager
def iperf_server(netns: str) -> Iterator[None]:
    """`iperf3 -s` in `netns` until the block ends; ready when it says it listens."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "iperf3", "-s", "-p", str(PORT), "--forceflush"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening" in line:
                break
        else:
            raise SystemExit(f"iperf3 server in {netns} did not start")
        yield
    finally:
        proc.terminate()  # our own child, by PID
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def iperf(client_netns: str, server_netns: str, address: str, seconds: int, *,
          reverse: bool = False) -> Sample:
    """One iperf3 run from the client to the server (with `reverse`, the server sends)."""
    with iperf_server(server_netns):
        argv = ["ip", "netns", "exec", client_netns, "iperf3", "-c", address, "-p", str(PORT),
                "-t", str(seconds), "-O", "1", "-J", *(["-R"] if reverse else [])]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 15,
                                 check=False)
        except subprocess.TimeoutExpired:
            why = f"iperf3 {client_netns} -> {address} overran {seconds + 15} s"
            raise SystemExit(why) from None
    data = json.loads(out.stdout or "{}")
    if "error" in data or "end" not in data:
        raise SystemExit(f"iperf3 {client_netns} -> {address}: {data.get('error', out.stderr)}")
    end = data["end"]
    gbits = end["sum_received"]["bits_per_second"] / 1e9
    return Sample(
        gbits=gbits,
        best=gbits,
        cpu_sender=end["cpu_utilization_percent"]["host_total"],
        cpu_receiver=end["cpu_utilization_percent"]["remote_total"],
        retransmits=int(end["sum_sent"].get("retransmits", 0)),
    )


def median(samples: list[Sample]) -> Sample:
    middle = sorted(samples, key=lambda s: s.gbits)[len(samples) // 2]
    return Sample(statistics.median(s.gbits for s in samples), max(s.gbits for s in samples),
                  middle.cpu_sender, middle.cpu_receiver, middle.retransmits)


Path = tuple[str, str, str, str]  # (label, client netns, server netns, server address)


def references() -> list[Path]:
    """Loopback inside one namespace, and bare veth pairs between two (MTU 1500 and 1450)."""
    for ns in REF_NETNS:
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    for (a, b), mtu, net in ((("tput-a", "tput-b"), "1500", "10.99.0"),
                             (("tput-c", "tput-d"), "1450", "10.98.0")):
        run(["ip", "-n", a, "link", "add", "veth", "mtu", mtu, "type", "veth", "peer", "name",
             "veth", "mtu", mtu, "netns", b])
        for ns, ip in ((a, f"{net}.1/24"), (b, f"{net}.2/24")):
            run(["ip", "-n", ns, "addr", "add", ip, "dev", "veth"])
            run(["ip", "-n", ns, "link", "set", "veth", "up"])
    return [("loopback (one namespace)", "tput-lo", "tput-lo", "127.0.0.1"),
            (VETH, "tput-a", "tput-b", "10.99.0.2"),
            (VETH_1450, "tput-c", "tput-d", "10.98.0.2")]


def cluster_of(name: str) -> str:
    """A short lab name per shape: the fabric bridge br-<name> must fit in 15 bytes."""
    return "t" + "".join(part[0] for part in name.split("-"))  # ptp-host-gw -> tphg


def shape(podnet: str, name: str, work: str) -> list[Path]:
    attachment, routing = name.split("-", 1)
    cluster = cluster_of(name)
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as fh:
        fh.write(topology(cluster, attachment, routing))
    run([podnet, "up", "-q", "-f", path])
    items = json.loads(run([podnet, "get", "pods", "-C", cluster, "-o", "json"]).stdout)
    pods = {i["metadata"]["name"]: i for i in items["items"]}
    ns = {n: p["podnet"]["netns"] for n, p in pods.items()}
    ip = {n: p["status"]["podIP"] for n, p in pods.items()}
    return [(f"{name}: pod to pod, same node", ns["a"], ns["b"], ip["b"]),
            (f"{name}: pod to pod, across nodes", ns["a"], ns["c"], ip["c"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2, help="length of each iperf3 run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every path (median)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes")
    args = parser.parse_args()
    ensure_sandbox()
    podnet = shutil.which("podnet") or sys.exit("podnet is not on PATH: run ./podnet.sh bench")
    if not shutil.which("iperf3"):
        sys.exit("iperf3 is not installed (apt-get install iperf3)")
    work = tempfile.mkdtemp(prefix="podnet-tput-")
    shapes = args.shapes.split(",")
    samples: dict[str, list[Sample]] = {}
    try:
        paths = references()
        for name in shapes:
            paths += shape(podnet, name, work)
        # Rounds over every path, so that a burst of load elsewhere on the machine lands on all
        # of them alike instead of on whichever path ran at that moment.
        for _ in range(args.repeat):
            for label, client, server, address in paths:
                samples.setdefault(label, []).append(iperf(client, server, address, args.seconds))
    finally:
        for name in shapes:
            subprocess.run([podnet, "down", "-q", "-C", cluster_of(name)], check=False,
                           capture_output=True)
        for ns in REF_NETNS:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        shutil.rmtree(work)
    results = {label: median(runs) for label, runs in samples.items()}
    veth = results[VETH].gbits
    loop = results["loopback (one namespace)"].gbits

    def like(name: str) -> float:
        """The veth pair with the path's MTU: VXLAN shapes give pods 1450."""
        return results[VETH_1450 if "vxlan" in name or "1450" in name else VETH].gbits

    print(f"TCP throughput, iperf3 single stream, {args.seconds} s per run, median (and best) of "
          f"{args.repeat} rounds, {os.cpu_count()} CPUs; ratios of medians")
    print(f"  {'path':<38} {'Gbit/s':>7} {'best':>6} {'/veth':>6} {'/vethMTU':>8} {'/lo':>5}"
          f" {'cpu snd':>8} {'cpu rcv':>8} {'retr':>6}")
    for name, s in results.items():
        print(f"  {name:<38} {s.gbits:7.1f} {s.best:6.1f} {s.gbits / veth:6.2f}"
              f" {s.gbits / like(name):8.2f} {s.gbits / loop:5.2f} {s.cpu_sender:7.0f}%"
              f" {s.cpu_receiver:7.0f}% {s.retransmits:6d}")
    print("  /vethMTU: against the bare veth pair of the same MTU (1450 for VXLAN shapes)")
    same = {n: s for n, s in results.items() if n.endswith("same node")}
    if same:
        worst_name, worst = min(same.items(), key=lambda kv: kv[1].gbits / like(kv[0]))
        ratio = worst.gbits / like(worst_name)
        verdict = "meets" if ratio >= 0.9 else "misses"
        print(f"  same-node shapes: the lowest ({worst_name.split(':')[0]}) is {ratio:.0%} of a "
              f"veth pair of its MTU: {verdict} the 90% target")
    vx = {n: s for n, s in results.items() if "vxlan" in n and n.endswith("across nodes")}
    for name, s in vx.items():
        print(f"  {name.split(':')[0]} across nodes: {s.gbits / veth:.0%} of the veth pair; "
              f"CPU sender {s.cpu_sender:.0f}%, receiver {s.cpu_receiver:.0f}%: the sending core "
              "runs the whole path in softirq, encapsulation included")

if __name__ == "__main__":
    main()
