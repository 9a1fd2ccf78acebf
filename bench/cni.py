"""ADD, CHECK and DEL latency of podnet-cni against the reference plugins, in one run.

    python bench/cni.py [--pods 50] [--fallback-pods 10] [--json]

Each plugin is run as a runtime runs it: a new process per call, the CNI_* environment, the
configuration on stdin (CHECK and DEL with the ADD's result as prevResult). Rows:

    bridge + host-local         Debian's reference plugins (Go), the yardstick
    ptp + host-local            the reference ptp plugin
    podnet-cni ptp / bridge     the installed C client talking to a running `podnet cni agent`
    podnet-cni ptp, no agent    the same executable when no agent runs (Python + pyroute2 per call)

Medians over --pods pods, each in its own network namespace. Runs inside its own sandbox (new
network, mount and PID namespaces, tmpfs on /run): it re-executes itself under `unshare` unless
PODNET_SANDBOX=1 says it is already in one. Everything it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
REFERENCE_DIR = "/usr/lib/cni"
WORK = "/run/podnet-bench"


def _reexec_in_sandbox() -> None:
    script = (
        "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/netns /run/podnet && "
        "ip link set lo up && PODNET_SANDBOX=1 exec \"$0\" \"$@\""
    )
    cmd = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
           "--propagation", "private", "--", "bash", "-c", script, sys.executable,
           str(Path(__file__).resolve()), *sys.argv[1:]]
    os.execvp("unshare", cmd)


def _conf(name: str, plugin: dict[str, Any], version: str = "1.0.0") -> dict[str, Any]:
    return {"cniVersion": version, "name": name, **plugin}


def _host_local(subnet: str, name: str) -> dict[str, Any]:
    return {"type": "host-local", "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{WORK}/host-local-{name}"}


def _podnet_ipam(subnet: str) -> dict[str, Any]:
    return {"type": "podnet-ipam", "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{WORK}/podnet-ipam"}


def _call(exe: str, command: str, conf: dict[str, Any], env: dict[str, str]) -> tuple[float, bytes]:
    full = {**env, "CNI_COMMAND": command}
    start = time.perf_counter()
    proc = subprocess.run([exe], input=json.dumps(conf).encode(), env=full,
                          capture_output=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} {command} failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    return took, proc.stdout


def _run_row(exe: str, conf: dict[str, Any], pods: list[str], path: str) -> dict[str, float]:
    times: dict[str, list[float]] = {"ADD": [], "CHECK": [], "DEL": []}
    results = {}
    for i, ns in enumerate(pods):
        env = {"CNI_CONTAINERID": f"bench{i:04d}", "CNI_NETNS": f"/run/netns/{ns}",
               "CNI_IFNAME": "eth0", "CNI_PATH": path, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        took, out = _call(exe, "ADD", conf, env)
        times["ADD"].append(took)
        results[ns] = (env, json.loads(out))
    for env, result in results.values():
        took, _ = _call(exe, "CHECK", {**conf, "prevResult": result}, env)
        times["CHECK"].append(took)
    for env, result in results.values():
        took, _ = _call(exe, "DEL", {**conf, "prevResult": result}, env)
        times["DEL"].append(took)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def _wait_for_socket(path: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the podnet agent did not start")
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--fallback-pods", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    opts = parser.parse_args()
    if os.environ.get("PODNET_SANDBOX") != "1":
        _reexec_in_sandbox()
    sys.path.insert(0, str(SRC))
    from podnet.cni.install import InstallOptions, install
    from podnet.kernel import netns

    bin_dir = f"{WORK}/bin"
    socket_path = f"{WORK}/agent.sock"
    installed = install(InstallOptions(bin_dir=bin_dir, conf_dir=f"{WORK}/net.d",
                                       socket=socket_path))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    agent = subprocess.Popen(
        [sys.executable, "-c", "from podnet.cli.main import main; main()", "cni", "agent",
         "--quiet", "--socket", socket_path], env=env)
    pods = [f"bench-{i}" for i in range(opts.pods)]
    made: list[str] = []
    rows: dict[str, dict[str, float]] = {}
    try:
        _wait_for_socket(socket_path, agent)
        for name in pods:
            netns.create(name)
            made.append(name)
        path = f"{bin_dir}:{REFERENCE_DIR}"
        podnet = f"{bin_dir}/podnet-cni"
        plan: list[tuple[str, str, dict[str, Any], list[str]]] = [
            ("bridge + host-local (reference)", f"{REFERENCE_DIR}/bridge", _conf("refbr", {
                "type": "bridge", "bridge": "refbr0", "isGateway": True,
                "ipam": _host_local("10.10.0.0/24", "refbr")}), pods),
            ("ptp + host-local (reference)", f"{REFERENCE_DIR}/ptp", _conf("refptp", {
                "type": "ptp", "ipam": _host_local("10.11.0.0/24", "refptp")}), pods),
            ("podnet-cni ptp + podnet-ipam (agent)", podnet, _conf("pnptp", {
                "type": "podnet-cni", "mode": "ptp", "ipam": _podnet_ipam("10.12.0.0/24")}), pods),
            ("podnet-cni bridge + podnet-ipam (agent)", podnet, _conf("pnbr", {
                "type": "podnet-cni", "mode": "bridge", "bridge": "pnbr0",
                "ipam": _podnet_ipam("10.13.0.0/24")}), pods),
            ("podnet-cni ptp + host-local (agent)", podnet, _conf("pnhl", {
                "type": "podnet-cni", "mode": "ptp",
                "ipam": _host_local("10.14.0.0/24", "pnhl")}), pods),
            ("podnet-cni ptp + ipMasq (agent)", podnet, _conf("pnmasq", {
                "type": "podnet-cni", "mode": "ptp", "ipMasq": True,
                "ipam": _podnet_ipam("10.15.0.0/24")}), pods),
        ]
        for label, exe, conf, on in plan:
            rows[label] = _run_row(exe, conf, on, path)
        agent.terminate()
        agent.wait(timeout=10)
        rows["podnet-cni ptp, no agent (in-process)"] = _run_row(podnet, _conf("pnnoagent", {
            "type": "podnet-cni", "mode": "ptp", "ipam": _podnet_ipam("10.16.0.0/24")}),
            pods[: opts.fallback_pods], path)
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(timeout=10)
        for name in made:
            netns.delete(name)
    ref = rows["bridge + host-local (reference)"]
    if opts.json:
        print(json.dumps({"pods": opts.pods, "client": installed.client, "rows": rows}, indent=1))
        return 0
    print(f"CNI latency, median of {opts.pods} pods ({opts.fallback_pods} without the agent); "
          f"client: {installed.client}; ratios against the reference bridge")
    print(f"{'plugin':44} {'ADD ms':>8} {'CHECK ms':>9} {'DEL ms':>8}   {'ADD x':>6} "
          f"{'CHECK x':>7} {'DEL x':>6}")
    for label, row in rows.items():
        ratios = [row[k] / ref[k] for k in ("ADD", "CHECK", "DEL")]
        print(f"{label:44} {row['ADD']:8.1f} {row['CHECK']:9.1f} {row['DEL']:8.1f}   "
              f"{ratios[0]:6.2f} {ratios[1]:7.2f} {ratios[2]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
