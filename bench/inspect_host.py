"""`podnet inspect -o json` against the loop people write, on 200 and 1,000 pods, in one run.

    ./podnet.sh bench inspect_host   (or: python bench/inspect_host.py [--pods 200 1000])

The pods are built the way the lesson's kind node has them (kindnet's /32 style): a named
namespace `cni-N` per pod, a veth pair with `eth0` born in the pod, the node end holding
10.244.0.1/32 and a host route per pod, the pod holding its /24 and a default route. They are
built with plain `ip` (one `ip -batch` for the node, one per pod), which is not timed.

Timed, as whole commands (interpreter start-up included), median of --repeat runs, interleaved:

- podnet: `python -m podnet.cli.inspect -o json` and `python -m podnet inspect -o json` (every
  namespace, link, address and main-table route, every veth pair joined end to end, holders and
  pods); the second also pays for what the `podnet` entry point imports;
- the loop: `ip -j link` and `ip -n NS -j addr` for every namespace, joined into one output. It
  does less than podnet (no routes, no pairing): it is the floor of what people run by hand.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox, run, timed

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
LOOP = (
    "ip -j link; "
    "for ns in $(ip netns list | cut -d' ' -f1); do ip -n \"$ns\" -j addr; done"
)


def pod_ip(i: int) -> str:
    return f"10.244.{1 + i // 250}.{2 + i % 250}"


def build(first: int, last: int) -> None:
    """Pods first..last-1, the lesson's way, with plain `ip`."""
    node = []
    for i in range(first, last):
        ns, veth = f"cni-{i:05d}", f"veth{i:05d}"
        node += [
            f"netns add {ns}",
            f"link add {veth} type veth peer name eth0 netns {ns}",
            f"link set {veth} up",
            f"addr add 10.244.0.1/32 dev {veth}",
            f"route add {pod_ip(i)}/32 dev {veth} scope host",
        ]
    run(["ip", "-batch", "-"], stdin="\n".join(node) + "\n")
    for i in range(first, last):
        ip = pod_ip(i)
        pod = [
            "link set lo up",
            "link set eth0 up",
            f"addr add {ip}/24 dev eth0",
            "route add 10.244.0.1 dev eth0 scope link",
            "route add default via 10.244.0.1 dev eth0",
        ]
        run(["ip", "-n", f"cni-{i:05d}", "-batch", "-"], stdin="\n".join(pod) + "\n")


COMMANDS = {
    # the inspect command alone, as the lead's entry point loads it
    "python -m podnet.cli.inspect -o json": ["-m", "podnet.cli.inspect", "-o", "json"],
    # through the `podnet` entry point: whatever else cli/main.py imports is paid too
    "python -m podnet inspect -o json": ["-m", "podnet", "inspect", "-o", "json"],
}


def podnet_json(argv: list[str] | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = argv or COMMANDS["python -m podnet.cli.inspect -o json"]
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True,
                         env=env)
    return out.stdout


def loop_output() -> str:
    out = subprocess.run(["bash", "-c", LOOP], capture_output=True, text=True, check=True)
    return out.stdout


def check(pods: int) -> None:
    """podnet must have found every pod and joined every pair, or the timing means nothing."""
    doc = json.loads(podnet_json())
    ok = [p for p in doc["veth_pairs"] if p["status"] == "ok"]
    if len(doc["namespaces"]) != pods + 1 or len(ok) != pods:
        raise SystemExit(
            f"podnet found {len(doc['namespaces'])} namespaces and {len(ok)} pairs, "
            f"expected {pods + 1} and {pods}"
        )


def measure(repeat: int, commands: dict[str, list[str]]) -> dict[str, float]:
    """Median seconds per command and for the loop, runs interleaved so drift hits all."""
    times: dict[str, list[float]] = {name: [] for name in [*commands, "loop"]}
    for _ in range(repeat):
        for name, argv in commands.items():
            times[name].append(timed(functools.partial(podnet_json, argv)))
        times["loop"].append(timed(loop_output))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    ensure_sandbox()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    commands = dict(COMMANDS)
    if not os.path.exists(os.path.join(SRC, "podnet", "cli", "main.py")):
        del commands["python -m podnet inspect -o json"]

    built = 0
    failed = False
    for pods in sorted(args.pods):
        build(built, pods)
        built = pods
        check(pods)
        times = measure(args.repeat, commands)
        loop = times.pop("loop")
        print(f"\n{pods} pods, median of {args.repeat}:")
        print(f"  {'ip -j link + ip -n NS -j addr loop':<40} {loop * 1000:>7.0f} ms")
        for name, took in times.items():
            ratio = loop / took
            met = ratio >= 2 if pods <= 200 else took < 1.0
            target = "target 2x" if pods <= 200 else "target < 1 s"
            failed |= not met
            print(f"  {name:<40} {took * 1000:>7.0f} ms  {ratio:5.1f}x faster  "
                  f"({target}: {'met' if met else 'MISSED'})", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
