"""Run every benchmark (or those named) in one sandbox: `./podnet.sh bench [lab cni ...]`."""

from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox

HELPERS = {"run", "sandbox"}  # modules of bench/ that measure nothing themselves


def main() -> None:
    ensure_sandbox()
    here = os.path.dirname(os.path.abspath(__file__))
    every = sorted(name[:-3] for name in os.listdir(here)
                   if name.endswith(".py") and name[:-3] not in HELPERS)
    wanted = sys.argv[1:] or every
    failed = 0
    for name in wanted:
        print(f"\n=== bench/{name}.py ===", flush=True)
        failed |= subprocess.call([sys.executable, os.path.join(here, f"{name}.py")])
    sys.exit(failed)


if __name__ == "__main__":
    main()
