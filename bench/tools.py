"""`podnet check` and `podnet trace` on the same lab as IPv4-only, IPv6-only and dual-stack, in one
run, beside what people do instead: a `curl` per path (`ip netns exec POD curl ...`, the loop a
connectivity check script runs) and the commands a trace prints under its hops, typed one after
the other (`ip route get`, `ip neigh show`, `bridge fdb show`, ...).

    ./podnet.sh bench tools          (or: python bench/tools.py --pods 90 --rounds 3)

Whole commands, start-up included. Each round builds the lab once per family, interleaved (a
burst of load elsewhere hits every family alike); podnet's commands run once a round (median of
the rounds), the curl loop and the hop commands in the first round only (they take long). The
lab stays under 100 pods: every pod's probes add ARP and NDP entries to the machine-wide
neighbour tables (1,024 entries each, shared by everyone); the lab's peak count is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import NODES
from lab import topology as lab_topology
from sandbox import ensure_sandbox, run, timed

FAMILIES = ("ipv4", "ipv6", "dual")
NEIGHBOUR_LIMIT = 900  # of the 1,024 the machine allows per family: stop before, not after


SERVICE = """---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: bench}
spec:
  type: NodePort
  ipFamilyPolicy: PreferDualStack
  selector: {app: web}
  ports: [{port: 80}]
"""


def topology(pods: int, family: str) -> str:
    """bench/lab.py's Deployment on 3 nodes, of `family`, with a Service in front of it."""
    return lab_topology(pods).replace("  podSubnet: 10.244.0.0/16\n",
                                      f"  ipFamily: {family}\n") + SERVICE


def neighbours() -> tuple[int, int]:
    """The lab's ARP and NDP entries, every namespace's (what it adds to the machine's tables;
    the kernel's own counts in /proc/net/stat are not readable from a sandbox)."""
    counts = [0, 0]
    for name in os.listdir("/run/netns"):
        for i, family in enumerate(("-4", "-6")):
            shown = subprocess.run(["ip", "-n", name, family, "neigh", "show"],
                                   capture_output=True, text=True, check=False).stdout
            counts[i] += len(shown.splitlines())
    return counts[0], counts[1]


def url(address: str, port: int) -> str:
    return f"http://[{address}]:{port}/" if ":" in address else f"http://{address}:{port}/"


def curl_loop(podnet: str, probes: list[dict[str, object]]) -> float:
    """One `ip netns exec NETNS curl` per path podnet probed, as a check script does."""
    pods = json.loads(run([podnet, "get", "pods", "-C", "bench", "-o", "json"]).stdout)["items"]
    netns = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["podnet"]["netns"]
             for p in pods}
    fabric = "podnet-bench"
    argvs = []
    for p in probes:
        where = netns.get(str(p["from"]), fabric)
        argvs.append(["ip", "netns", "exec", where, "curl", "-s", "-o", "/dev/null", "-m", "2",
                      url(str(p["address"]), int(str(p["port"])))])

    def loop() -> None:
        for argv in argvs:  # a closed port's reset is an answer too: curl's status is not judged
            subprocess.run(argv, capture_output=True, check=False)

    return timed(loop)


def hop_commands(podnet: str, args: list[str]) -> list[list[str]]:
    """The commands `podnet trace` prints under its hops, each as a person would type it."""
    text = run([podnet, "trace", "--no-probe", *args]).stdout
    return [shlex.split(line.strip()[2:]) for line in text.splitlines()
            if line.strip().startswith("$ ")]


def trace_argv(podnet: str, fam: str, pair: list[str]) -> list[str]:
    return [podnet, "trace", "-q", *([f"-{fam}"] if fam else []), *pair]


def measure(podnet: str, family: str, peak: list[int], *, others: bool) -> dict[str, float]:
    """On the lab that is up: check and trace once, podnet's way; with `others`, the other way
    too."""
    pods = json.loads(run([podnet, "get", "pods", "-C", "bench", "-o", "json"]).stdout)["items"]
    src = pods[0]
    dst = next(p for p in pods if p["spec"]["nodeName"] != src["spec"]["nodeName"])
    pair = [f"bench/{src['metadata']['name']}", f"bench/{dst['metadata']['name']}", "--port",
            "80"]
    fams = ("4", "6") if family == "dual" else ("",)
    done = subprocess.run([podnet, "check", "-C", "bench", "-o", "json"], capture_output=True,
                          text=True, check=False)
    report = json.loads(done.stdout)
    out = {"probing": float(report["seconds"]), "paths": float(len(report["probes"])),
           "check": timed(lambda: subprocess.run([podnet, "check", "-C", "bench"],
                                                 capture_output=True, check=False))}
    peak[:] = [max(a, b) for a, b in zip(peak, neighbours(), strict=True)]
    if max(peak) > NEIGHBOUR_LIMIT:
        sys.exit(f"neighbour entries reached {peak}: stopped to spare the machine")
    for fam in fams:
        argv = trace_argv(podnet, fam, pair)
        out[f"trace{fam}"] = timed(lambda a=argv: subprocess.run(a, capture_output=True,
                                                                 check=False))
    if not others:
        return out
    out["curl"] = curl_loop(podnet, report["probes"])
    for fam in fams:
        commands = hop_commands(podnet, ([f"-{fam}"] if fam else []) + pair)
        out[f"typed{fam}"] = timed(lambda c=commands: [  # type: ignore[misc]
            subprocess.run(argv, capture_output=True, check=False) for argv in c])
        out[f"commands{fam}"] = len(commands)
    return out


def rows_of(m: dict[str, float], family: str) -> dict[str, str]:
    fams = ("4", "6") if family == "dual" else ("",)
    return {
        "paths probed": f"{m['paths']:.0f}",
        "podnet check (command)": f"{m['check']:.2f} s",
        "  of which probing": f"{m['probing']:.2f} s",
        "curl per path (loop)": f"{m['curl']:.1f} s",
        "  curl loop / check": f"{m['curl'] / m['check']:.0f}x",
        "podnet trace (walk + probe)": " / ".join(f"{m[f'trace{f}']:.2f}" for f in fams) + " s",
        "its hops' commands, typed": " / ".join(f"{m[f'typed{f}']:.2f}" for f in fams)
        + f" s ({m[f'commands{fams[0]}']:.0f})",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.pods >= 100:
        sys.exit("keep the lab under 100 pods: the machine's neighbour tables are shared")
    ensure_sandbox()
    podnet = shutil.which("podnet") or sys.exit("podnet is not on PATH: run ./podnet.sh bench")
    work = tempfile.mkdtemp(prefix="podnet-bench-")
    runs: dict[str, list[dict[str, float]]] = {f: [] for f in FAMILIES}
    peak = [0, 0]
    try:
        for round_ in range(args.rounds):  # the families interleaved: load elsewhere hits all
            for family in FAMILIES:
                path = os.path.join(work, f"{family}.yaml")
                with open(path, "w") as fh:
                    fh.write(topology(args.pods, family))
                run([podnet, "up", "-q", "-f", path])
                try:
                    runs[family].append(measure(podnet, family, peak, others=round_ == 0))
                finally:
                    run([podnet, "down", "-q", "-C", "bench"])
    finally:
        shutil.rmtree(work)
    med = {f: {k: statistics.median(r[k] for r in runs[f] if k in r) for k in runs[f][0]}
           for f in FAMILIES}
    rows = {f: rows_of(med[f], f) for f in FAMILIES}
    print(f"tools: {args.pods} pods on {len(NODES)} nodes, a NodePort Service (PreferDualStack); "
          f"podnet: median of {args.rounds} rounds; dual's trace: -4 / -6")
    width = max(len(k) for r in rows.values() for k in r) + 2
    print(" " * width + "".join(f"{f:>24}" for f in FAMILIES))
    for key in rows["ipv4"]:
        print(f"{key:<{width}}" + "".join(f"{rows[f][key]:>24}" for f in FAMILIES))
    for family in ("ipv6", "dual"):
        print(f"check {family} / check ipv4: {med[family]['check'] / med['ipv4']['check']:.2f}x")
    print(f"trace ipv6 / trace ipv4: {med['ipv6']['trace'] / med['ipv4']['trace']:.2f}x; "
          f"dual -6 / dual -4: {med['dual']['trace6'] / med['dual']['trace4']:.2f}x")
    print(f"the lab's neighbour entries at most: ARP {peak[0]}, NDP {peak[1]} (the machine allows "
          "1,024 of each, for everyone)")


if __name__ == "__main__":
    main()
