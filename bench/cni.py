"""podnet-cni against the reference plugins, in one run: per-call latency, IPAM cost as
reservations grow, 8 concurrent callers, and CRI pod start/stop through containerd.

    python bench/cni.py [--pods 40] [--fallback-pods 10] [--cri-pods 12] [--no-cri] [--json]

Each plugin is run as a runtime runs it: a new process per call, the CNI_* environment, the
configuration on stdin (CHECK and DEL with the ADD's result as prevResult).

1. ADD / CHECK / DEL medians, ratios against the reference bridge + host-local. The row that
   the targets (ADD within 2x, DEL within 1.5x) are about is "as installed": exactly what
   `podnet cni install` writes (ptp, podnet-ipam, ipMasq on), no agent running when it starts
   (its first call starts one, and that call counts in the median).
2. IPAM cost at 0, 1,000 and 5,000 reservations: podnet-ipam and host-local run alone (ADD then
   DEL), and podnet-ipam's store in this process.
3. 8 callers at once, each adding and deleting its own pods: pods per second, podnet as
   installed against the reference ptp + host-local.
4. CRI: RunPodSandbox, StopPodSandbox and RemovePodSandbox medians through containerd 1.6 (its
   CRI over gRPC, as kubelet calls it), podnet's conflist as installed (agent started by the
   first call), the same with `--agent never` (every call in-process), and the reference bridge +
   host-local with the same chain tail (portmap, bandwidth).

Runs inside its own sandbox (new network, mount and PID namespaces, tmpfs on /run, /var/lib
overlaid with a tmpfs): it re-executes itself under `unshare` unless PODNET_SANDBOX=1 says it is
already in one. Everything it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = REPO / "src"
REFERENCE_DIR = "/usr/lib/cni"
WORK = Path("/run/podnet-bench")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


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
    full = {**ENV, **env, "CNI_COMMAND": command}
    start = time.perf_counter()
    proc = subprocess.run([exe], input=json.dumps(conf).encode(), env=full,
                          capture_output=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} {command} failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    return took, proc.stdout


def _pod_env(i: int, ns: str, path: str) -> dict[str, str]:
    return {"CNI_CONTAINERID": f"bench{i:04d}", "CNI_NETNS": f"/run/netns/{ns}",
            "CNI_IFNAME": "eth0", "CNI_PATH": path}


def _run_row(exe: str, conf: dict[str, Any], pods: list[str], path: str) -> dict[str, float]:
    times: dict[str, list[float]] = {"ADD": [], "CHECK": [], "DEL": []}
    results = {}
    for i, ns in enumerate(pods):
        env = _pod_env(i, ns, path)
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


def _install(bin_dir: str, socket: str, agent: str) -> str:
    from podnet.cni.install import InstallOptions, install

    done = install(InstallOptions(bin_dir=bin_dir, conf_dir=f"{bin_dir}-conf", socket=socket,
                                  agent=agent))  # type: ignore[arg-type]
    return done.client


def _start_agent(socket: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    agent = subprocess.Popen(
        [sys.executable, "-c", "from podnet.cli.main import main; main()", "cni", "agent",
         "--quiet", "--socket", socket], env=env, stderr=subprocess.PIPE)
    assert agent.stderr is not None
    if b"serving" not in agent.stderr.readline():
        raise RuntimeError("the podnet agent did not start")
    return agent


def _stop_autostarted(socket: str) -> None:
    from podnet.cni.agentctl import stop_agent

    stop_agent(socket, timeout=20)


# --- 1. latency per call -------------------------------------------------------------------------

def latency(pods: list[str], fallback: int, bins: dict[str, str]) -> dict[str, dict[str, float]]:
    path = f"{bins['agent']}:{REFERENCE_DIR}"
    podnet = f"{bins['agent']}/podnet-cni"
    plan: list[tuple[str, str, dict[str, Any], list[str], str]] = [
        ("bridge + host-local (reference)", f"{REFERENCE_DIR}/bridge", _conf("refbr", {
            "type": "bridge", "bridge": "refbr0", "isGateway": True,
            "ipam": _host_local("10.10.0.0/24", "refbr")}), pods, path),
        ("ptp + host-local (reference)", f"{REFERENCE_DIR}/ptp", _conf("refptp", {
            "type": "ptp", "ipam": _host_local("10.11.0.0/24", "refptp")}), pods, path),
        ("podnet ptp + podnet-ipam (agent)", podnet, _conf("pnptp", {
            "type": "podnet-cni", "mode": "ptp", "ipam": _podnet_ipam("10.12.0.0/24")}),
         pods, path),
        ("podnet bridge + podnet-ipam (agent)", podnet, _conf("pnbr", {
            "type": "podnet-cni", "mode": "bridge", "bridge": "pnbr0",
            "ipam": _podnet_ipam("10.13.0.0/24")}), pods, path),
        ("podnet ptp + host-local (agent)", podnet, _conf("pnhl", {
            "type": "podnet-cni", "mode": "ptp",
            "ipam": _host_local("10.14.0.0/24", "pnhl")}), pods, path),
        ("podnet as installed (ipMasq; its first call starts the agent)",
         f"{bins['auto']}/podnet-cni",
         _installed_conf("pninst", "10.15.0.0/24"), pods, f"{bins['auto']}:{REFERENCE_DIR}"),
        ("podnet ptp, no agent (in-process)", f"{bins['never']}/podnet-cni", _conf("pnnone", {
            "type": "podnet-cni", "mode": "ptp", "ipam": _podnet_ipam("10.16.0.0/24")}),
         pods[:fallback], f"{bins['never']}:{REFERENCE_DIR}"),
    ]
    rows = {}
    for label, exe, conf, on, cni_path in plan:
        rows[label] = _run_row(exe, conf, on, cni_path)
    return rows


def _installed_conf(name: str, subnet: str) -> dict[str, Any]:
    """podnet-cni's object of the conflist `podnet cni install` writes."""
    from podnet.cni.install import InstallOptions, render_conflist

    doc = render_conflist(InstallOptions(subnet=subnet, network=name))
    plugin = dict(doc["plugins"][0])
    plugin["ipam"] = {**plugin["ipam"], "dataDir": f"{WORK}/installed-ipam"}
    return _conf(name, plugin, doc["cniVersion"])


# --- 2. IPAM cost as reservations grow -----------------------------------------------------------

def _fill(directory: Path, subnet: ipaddress.IPv4Network, count: int) -> None:
    """`count` reservations as host-local and podnet-ipam both keep them (a file per address)."""
    directory.mkdir(parents=True, mode=0o700, exist_ok=True)
    base = subnet.network_address
    for i in range(count):
        (directory / str(base + 2 + i)).write_bytes(f"filler{i}\r\neth0".encode())
    if count:
        (directory / "last_reserved_ip.0").write_text(str(base + 1 + count))


def ipam_scaling(sizes: list[int], bins: dict[str, str],
                 rounds: int) -> dict[str, dict[str, float]]:
    from podnet.ipam.ranges import parse_ipam_config
    from podnet.ipam.store import Store

    rows: dict[str, dict[str, float]] = {}
    path = f"{bins['agent']}:{REFERENCE_DIR}"
    for n in sizes:
        subnet = ipaddress.IPv4Network("10.40.0.0/16")
        row: dict[str, float] = {}
        for kind, exe in (("host-local", f"{REFERENCE_DIR}/host-local"),
                          ("podnet-ipam", f"{bins['agent']}/podnet-ipam")):
            data = WORK / f"scale-{kind}-{n}"
            name = f"scale{n}"
            _fill(data / name, subnet, n)
            conf = _conf(name, {"type": kind, "ipam": {
                "type": kind, "ranges": [[{"subnet": str(subnet)}]], "dataDir": str(data)}})
            conf["ipam"] = conf.pop("ipam")
            adds, dels = [], []
            for r in range(rounds):
                env = {"CNI_CONTAINERID": f"scale{r}", "CNI_NETNS": "/run/netns/none",
                       "CNI_IFNAME": "eth0", "CNI_PATH": path}
                took, _ = _call(exe, "ADD", conf, env)
                adds.append(took)
                took, _ = _call(exe, "DEL", conf, env)
                dels.append(took)
            row[f"{kind} ADD"] = statistics.median(adds) * 1000
            row[f"{kind} DEL"] = statistics.median(dels) * 1000
        # The store alone, in this process: the algorithm's cost without process starts.
        data = WORK / f"scale-store-{n}"
        _fill(data / "s", subnet, n)
        store = Store(str(data), "s")
        sets = parse_ipam_config({"type": "podnet-ipam",
                                  "ranges": [[{"subnet": str(subnet)}]]}).range_sets
        took_add, took_del = [], []
        for r in range(rounds * 5):
            start = time.perf_counter()
            store.allocate(f"in{r}", "eth0", sets)
            took_add.append(time.perf_counter() - start)
            start = time.perf_counter()
            store.release(f"in{r}", "eth0")
            took_del.append(time.perf_counter() - start)
        row["store ADD"] = statistics.median(took_add) * 1000
        row["store DEL"] = statistics.median(took_del) * 1000
        rows[str(n)] = row
    return rows


# --- 3. 8 callers at once ------------------------------------------------------------------------

def concurrency(callers: int, per_caller: int, bins: dict[str, str]) -> dict[str, float]:
    from podnet.kernel import netns

    out = {}
    plan = [("ptp + host-local (reference)", f"{REFERENCE_DIR}/ptp",
             _conf("cref", {"type": "ptp", "ipam": _host_local("10.20.0.0/22", "cref")}),
             f"{bins['agent']}:{REFERENCE_DIR}"),
            ("podnet as installed (agent)", f"{bins['auto']}/podnet-cni",
             _installed_conf("cpod", "10.21.0.0/22"), f"{bins['auto']}:{REFERENCE_DIR}")]
    for label, exe, conf, path in plan:
        names = [[f"cc-{label[:3]}-{c}-{i}" for i in range(per_caller)] for c in range(callers)]
        for group in names:
            for name in group:
                netns.create(name)
        errors: list[str] = []

        def caller(c: int, group: list[str], exe: str = exe, conf: dict[str, Any] = conf,
                   path: str = path, errors: list[str] = errors) -> None:
            try:
                for i, ns in enumerate(group):
                    env = _pod_env(c * 1000 + i, ns, path)
                    _, result = _call(exe, "ADD", conf, env)
                    _call(exe, "DEL", {**conf, "prevResult": json.loads(result)}, env)
            except RuntimeError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=caller, args=(c, g)) for c, g in enumerate(names)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - start
        for group in names:
            for name in group:
                netns.delete(name)
        if errors:
            raise RuntimeError(errors[0])
        out[label] = callers * per_caller / took
    return out


# --- 4. CRI ---------------------------------------------------------------------------------------

def cri(pods: int, root: Path) -> dict[str, dict[str, float]]:
    sys.path.insert(0, str(REPO))
    from tests.cni.cri import node

    from podnet.cni.install import InstallOptions, install

    rows: dict[str, dict[str, float]] = {}
    variants: list[tuple[str, Callable[[Path], tuple[str, str, str]]]] = [
        ("bridge + host-local, portmap, bandwidth (reference)", _reference_conflist),
        ("podnet as installed (first call starts the agent)",
         lambda d: _podnet_conflist(d, "auto", install, InstallOptions)),
        ("podnet, --agent never (in-process)",
         lambda d: _podnet_conflist(d, "never", install, InstallOptions)),
    ]
    for i, (label, make) in enumerate(variants):
        where = root / f"cri{i}"
        where.mkdir(parents=True)
        bin_dir, conf_dir, socket = make(where)
        times: dict[str, list[float]] = {"Run": [], "Stop": [], "Remove": []}
        with node(where, bin_dir, conf_dir) as made:
            for n in range(pods):
                start = time.perf_counter()
                pod = made.run_pod(f"bench{n}")
                times["Run"].append(time.perf_counter() - start)
                start = time.perf_counter()
                made.stop_pod(pod)
                times["Stop"].append(time.perf_counter() - start)
                start = time.perf_counter()
                made.runtime.RemovePodSandbox(made.cri.RemovePodSandboxRequest(
                    pod_sandbox_id=pod.id), timeout=60)
                times["Remove"].append(time.perf_counter() - start)
        if socket:
            _stop_autostarted(socket)
        rows[label] = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return rows


def _reference_conflist(where: Path) -> tuple[str, str, str]:
    conf_dir = where / "conf"
    conf_dir.mkdir()
    doc = {"cniVersion": "1.0.0", "name": "refnet", "plugins": [
        {"type": "bridge", "bridge": "cniref0", "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.30.0.0/24"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}}]}
    (conf_dir / "10-ref.conflist").write_text(json.dumps(doc))
    return REFERENCE_DIR, str(conf_dir), ""


def _podnet_conflist(where: Path, agent: str, install: Any, options: Any) -> tuple[str, str, str]:
    socket = str(where / "podnet" / "cni.sock")
    install(options(bin_dir=str(where / "bin"), conf_dir=str(where / "conf"),
                    subnet=f"10.{31 if agent == 'auto' else 32}.0.0/24",
                    network=f"podnet-{agent}", socket=socket, agent=agent))
    return str(where / "bin"), str(where / "conf"), socket


# --- the run -------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=40)
    parser.add_argument("--fallback-pods", type=int, default=10)
    parser.add_argument("--cri-pods", type=int, default=12)
    parser.add_argument("--ipam-sizes", default="0,1000,5000")
    parser.add_argument("--ipam-rounds", type=int, default=15)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--per-caller", type=int, default=6)
    parser.add_argument("--no-cri", action="store_true", help="skip the containerd rows")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    opts = parser.parse_args()
    if os.environ.get("PODNET_SANDBOX") != "1":
        _reexec_in_sandbox()
    sys.path.insert(0, str(SRC))
    sys.path.insert(1, str(REPO))
    from tests.cni.cri import overlay_var_lib

    from podnet.kernel import netns

    WORK.mkdir(parents=True, exist_ok=True)
    bins = {kind: f"{WORK}/bin-{kind}" for kind in ("agent", "auto", "never")}
    client = _install(bins["agent"], f"{WORK}/agent.sock", "never")
    _install(bins["auto"], f"{WORK}/auto/cni.sock", "auto")
    _install(bins["never"], f"{WORK}/nobody.sock", "never")
    agent = _start_agent(f"{WORK}/agent.sock")
    pods = [f"bench-{i}" for i in range(opts.pods)]
    made: list[str] = []
    report: dict[str, Any] = {"pods": opts.pods, "client": client}
    try:
        for name in pods:
            netns.create(name)
            made.append(name)
        report["latency"] = latency(pods, opts.fallback_pods, bins)
        report["ipam"] = ipam_scaling([int(x) for x in opts.ipam_sizes.split(",")], bins,
                                      opts.ipam_rounds)
        report["concurrency"] = concurrency(opts.callers, opts.per_caller, bins)
        _stop_autostarted(f"{WORK}/auto/cni.sock")
        if not opts.no_cri and shutil.which("containerd"):
            with overlay_var_lib(WORK / "varlib"):
                report["cri"] = cri(opts.cri_pods, WORK / "cri")
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        _stop_autostarted(f"{WORK}/auto/cni.sock")
        for name in made:
            netns.delete(name)
    if opts.json:
        print(json.dumps(report, indent=1))
        return 0
    _print(report, opts)
    return 0


def _print(report: dict[str, Any], opts: argparse.Namespace) -> None:
    rows = report["latency"]
    ref = rows["bridge + host-local (reference)"]
    print(f"1. CNI latency, median of {opts.pods} pods ({opts.fallback_pods} without the agent); "
          f"client: {report['client']}; ratios against the reference bridge")
    print(f"{'plugin':62} {'ADD ms':>7} {'CHECK ms':>9} {'DEL ms':>7}  {'ADD x':>6} "
          f"{'CHECK x':>7} {'DEL x':>6}")
    for label, row in rows.items():
        ratios = [row[k] / ref[k] for k in ("ADD", "CHECK", "DEL")]
        print(f"{label:62} {row['ADD']:7.1f} {row['CHECK']:9.1f} {row['DEL']:7.1f}  "
              f"{ratios[0]:6.2f} {ratios[1]:7.2f} {ratios[2]:6.2f}")
    installed = next(v for k, v in rows.items() if k.startswith("podnet as installed"))
    add_x, del_x = installed["ADD"] / ref["ADD"], installed["DEL"] / ref["DEL"]
    verdict = "met" if add_x <= 2 and del_x <= 1.5 else "MISSED"
    print(f"targets for what `podnet cni install` sets up (ADD <= 2x, DEL <= 1.5x): {verdict} "
          f"(ADD {add_x:.2f}x, DEL {del_x:.2f}x)\n")
    print(f"2. IPAM cost as reservations grow: median ms of {opts.ipam_rounds} ADD+DEL pairs "
          "(executables as a runtime runs them; the store alone in-process)")
    print(f"{'reservations':>12} {'host-local ADD':>15} {'DEL':>7} {'podnet-ipam ADD':>16} "
          f"{'DEL':>7} {'store ADD':>10} {'DEL':>7}")
    for n, row in report["ipam"].items():
        print(f"{n:>12} {row['host-local ADD']:15.2f} {row['host-local DEL']:7.2f} "
              f"{row['podnet-ipam ADD']:16.2f} {row['podnet-ipam DEL']:7.2f} "
              f"{row['store ADD']:10.3f} {row['store DEL']:7.3f}")
    print(f"\n3. {opts.callers} callers at once, each ADD then DEL of {opts.per_caller} pods")
    conc = report["concurrency"]
    base = conc["ptp + host-local (reference)"]
    for label, rate in conc.items():
        print(f"{label:62} {rate:7.1f} pods/s  {rate / base:5.2f}x")
    if "cri" in report:
        cri_rows = report["cri"]
        cref = next(iter(cri_rows.values()))
        print(f"\n4. CRI through containerd 1.6, median ms of {opts.cri_pods} pods")
        print(f"{'conflist':62} {'Run':>7} {'Stop':>7} {'Remove':>7}  {'Run x':>6} {'Stop x':>6} "
              f"{'Remove x':>8}")
        for label, row in cri_rows.items():
            print(f"{label:62} {row['Run']:7.1f} {row['Stop']:7.1f} {row['Remove']:7.1f}  "
                  f"{row['Run'] / cref['Run']:6.2f} {row['Stop'] / cref['Stop']:6.2f} "
                  f"{row['Remove'] / cref['Remove']:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
