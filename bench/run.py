"""Run every benchmark (or those named) in one sandbox: `./podnet.sh bench [lab cni ...]`."""

from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox

ALL = ("lab", "families", "inspect_host", "cni", "throughput", "dns", "capture", "policy",
       "policy_lab", "graph", "lab_shaping")


def main() -> None:
    ensure_sandbox()
    here = os.path.dirname(os.path.abspath(__file__))
    wanted = sys.argv[1:] or [b for b in ALL if os.path.exists(os.path.join(here, f"{b}.py"))]
    failed = 0
    for name in wanted:
        print(f"\n=== bench/{name}.py ===", flush=True)
        failed |= subprocess.call([sys.executable, os.path.join(here, f"{name}.py")])
    sys.exit(failed)


if __name__ == "__main__":
    main()
