"""`podnet up` of the same 200-pod lab as IPv4-only, IPv6-only and dual-stack, in one run.

    ./podnet.sh bench families      (or: python bench/families.py --pods 200 --rounds 3)

Target: dual-stack `up` within 1.3x of IPv4-only `up`. Whole commands, start-up included; each
`up` is followed by a `down` that is timed too. The rounds interleave the families, so a busy
machine slows all three alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import topology
from sandbox import ensure_sandbox, run, timed

FAMILIES = ("ipv4", "ipv6", "dual")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ensure_sandbox()
    podnet = shutil.which("podnet") or sys.exit("podnet is not on PATH: run ./podnet.sh bench")
    work = tempfile.mkdtemp(prefix="podnet-bench-")
    files = {}
    for family in FAMILIES:
        text = topology(args.pods).replace("  podSubnet: 10.244.0.0/16\n",
                                           f"  ipFamily: {family}\n")
        files[family] = os.path.join(work, f"{family}.yaml")
        with open(files[family], "w") as fh:
            fh.write(text)
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for family in FAMILIES:
            times.setdefault(f"up {family}", []).append(
                timed(lambda f=family: run([podnet, "up", "-q", "-f", files[f]])))
            pods = run([podnet, "get", "pods", "-C", "bench", "-o", "name"]).stdout.split()
            assert len(pods) == args.pods, f"{family}: {len(pods)} pods"
            times.setdefault(f"down {family}", []).append(
                timed(lambda: run([podnet, "down", "-q", "-C", "bench"])))
    shutil.rmtree(work)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"families: {args.pods} pods on 3 nodes, median of {args.rounds} rounds")
    for name, value in med.items():
        print(f"  {name:<24} {value * 1000:8.0f} ms")
    for family in ("ipv6", "dual"):
        print(f"  up {family} / up ipv4: {med[f'up {family}'] / med['up ipv4']:.2f}x"
              + ("   (target <= 1.3x)" if family == "dual" else ""))


if __name__ == "__main__":
    main()
