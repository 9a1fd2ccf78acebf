"""podnet at 100 to 2,000 pods on 10 nodes (5,000 with --big) beside Mininet, in one run.

    ./podnet.sh bench scale     (or: python bench/scale.py [--pods 100,500] [--big] [--no-mininet])

For each size: `podnet up` (and its CPU time; the CPU the lab's own processes, podhosts and DNS,
used meanwhile; and the CPU everything else on the machine used meanwhile, from /proc/stat), a
second `up` that has nothing to do, `get pods -o wide`, `inspect -o json`, `check` (every pod probes
3 targets: `check`'s default), `trace` between two pods on different nodes, `graph -o json`, `down`
(each with its own CPU time too: podnet's, and that of the processes it waited for);
the netlink floor under `up` and `down` (bench/netlink_floor.py: the same pods' namespaces, veths,
addresses and routes from a minimal loop, start-up counted in as for podnet's; then again with a
pause process holding each pod's namespace, the part of a pod's cost this machine's own agents
charge per namespace with a process in it); the memory of every process the lab started (the sum
of their PSS, divided by the pods); the kernel memory a pod costs (slab, from /proc/slabinfo before
and after `up`: machine-wide, so other work on the machine blurs it). Then Mininet: N hosts on 10
Linux bridges through its Python API (build, stop, PSS of the hosts' shells), in a sandbox of its
own inside this one (its cleanup kills processes by name and deletes links by pattern), when
Debian's `mininet` and `bridge-utils` are installed. Growth ratios follow the table: linear
growth from one size to the next is the ratio of the sizes.

Neighbour tables: the machine-wide ARP and NDP tables hold 1,024 entries for everyone. Nothing
here sends traffic between pods: an IPv4 lab's `up` adds no neighbour entry (IPv6 is off in its
namespaces), nor do Mininet's hosts, whose IPv6 is turned off before their links exist.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import NODES as LAB_NODES
from lab import topology as lab_topology
from sandbox import ensure_sandbox, run, timed

NODES = 10
SIZES = (100, 500, 1000, 2000)
BIG = 5000
CLUSTER = "bench"  # bench/lab.py's


def topology(pods: int) -> str:
    """bench/lab.py's Deployment of responders, on 10 workers (a /22 each: room for 5,000)."""
    workers = "\n".join("  - role: worker" for _ in range(NODES))
    return (lab_topology(pods)
            .replace("\n".join("  - role: worker" for _ in LAB_NODES), workers)
            .replace("  podSubnet: 10.244.0.0/16\n",
                     "  podSubnet: 10.240.0.0/12\n  nodeCIDRPrefix: 22\n"))


def slab_bytes() -> int:
    """Kernel slab memory in use, machine-wide (objects in use times their size)."""
    total = 0
    with open("/proc/slabinfo") as fh:
        for line in fh.readlines()[2:]:
            fields = line.split()
            total += int(fields[1]) * int(fields[3])
    return total


def _ancestors() -> set[int]:
    """This process and those above it: the sandbox's shell and the bench."""
    out, pid = set(), os.getpid()
    while pid > 0:
        out.add(pid)
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        pid = int(raw[raw.rindex(b")") + 1 :].split()[1])
    return out


def pss_kb(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def lab_processes() -> list[int]:
    """Every live process in this sandbox but the bench's own: what the lab started (the
    sandbox's shell does not reap the orphans of earlier rounds: zombies are left out)."""
    mine = _ancestors()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        if raw[raw.rindex(b")") + 1 :].split()[0] not in (b"Z", b"X"):
            out.append(int(entry))
    return out


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process and kernel
    thread, inside this sandbox or not: /proc/stat is machine-wide)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICKS


def processes_cpu(pids: Sequence[int]) -> float:
    """CPU seconds the processes `pids` have used (user and system, their own)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def namespaces_alive() -> int:
    """Network namespaces the kernel holds, machine-wide (the `net_namespace` slab)."""
    with open("/proc/slabinfo") as fh:
        return next((int(line.split()[1]) for line in fh if line.startswith("net_namespace ")), 0)


def settle(baseline: int, timeout: float = 120.0) -> None:
    """Wait until the kernel has freed the namespaces of the last round (it does so in the
    background after `down`: a round started earlier would share the CPU with that work): until
    the machine-wide count is back near `baseline`, or stops falling (others' namespaces)."""
    deadline = time.monotonic() + timeout
    last, still = namespaces_alive(), 0
    while last > baseline + 20 and still < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = namespaces_alive()
        still = still + 1 if now >= last else 0
        last = now


def measure_podnet(podnet: str, pods: int, work: str) -> dict[str, float]:
    topo = os.path.join(work, f"scale-{pods}.yaml")
    with open(topo, "w") as fh:
        fh.write(topology(pods))
    slab0 = slab_bytes()
    cpu0, busy0 = _cpu(), machine_busy()
    out: dict[str, float] = {"up": timed(lambda: run([podnet, "up", "-q", "-f", topo]))}
    out["up cpu"] = _cpu() - cpu0
    busy = machine_busy() - busy0
    slab1 = slab_bytes()
    procs = lab_processes()
    # What else ran meanwhile: the lab's own processes (podhosts, DNS), then everything else on
    # the machine (the kernel's threads, other people's work, the machine's own agents).
    out["lab cpu"] = processes_cpu(procs)
    out["others cpu"] = max(0.0, busy - out["up cpu"] - out["lab cpu"])
    out["pss/pod kB"] = pss_kb(procs) / pods
    out["processes"] = len(procs)
    out["slab/pod kB"] = (slab1 - slab0) / 1024 / pods

    def command(name: str, argv: list[str], keep: list[str] | None = None) -> None:
        """Time one command: its wall time under `name`, its own CPU under `name cpu`."""
        began = _cpu()
        out[name] = timed(lambda: (keep if keep is not None else []).extend(
            run(argv).stdout.splitlines()))
        out[f"{name} cpu"] = _cpu() - began

    command("re-up", [podnet, "up", "-q", "-f", topo])
    listed: list[str] = []
    command("get pods", [podnet, "get", "pods", "-C", CLUSTER, "-n", CLUSTER, "-o", "wide",
                         "--no-headers"], listed)
    assert len(listed) == pods, f"expected {pods} pods, got {len(listed)}"
    assert all(" Running " in line for line in listed), "a pod is not Running"
    command("inspect", [podnet, "inspect", "-o", "json"])
    command("check", [podnet, "check", "-C", CLUSTER])
    first, last = (f"{CLUSTER}/{line.split()[0]}" for line in (listed[0], listed[-1]))
    command("trace", [podnet, "trace", "-C", CLUSTER, first, last, "-p", "80"])
    command("graph", [podnet, "graph", "-C", CLUSTER, "-o", "json"])
    command("down", [podnet, "down", "-q", "-C", CLUSTER])
    leftover = run(["ip", "netns", "list"]).stdout.strip()
    assert not leftover, f"namespaces left behind: {leftover[:200]}"
    return out


def measure_floor(pods: int) -> dict[str, float]:
    """bench/netlink_floor.py at the same size: its build from the process's start, and its down;
    then again with a pause process per pod ("pause up", "pause down")."""
    floor = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netlink_floor.py")
    out: dict[str, float] = {}
    for prefix, extra in (("", []), ("pause ", ["--pause"])):
        begun = time.time()
        values = json.loads(run([sys.executable, floor, str(pods), str(NODES), *extra]).stdout)
        out |= {f"{prefix}up": values["built_at"] - begun, f"{prefix}down": values["down"]}
    return out


MININET = r"""
import json, sys, time
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo

hosts, switches = int(sys.argv[1]), int(sys.argv[2])


class QuietHost(Host):
    # IPv6 off before any link exists, as in podnet's IPv4 pods: no DAD or MLD, so no entries
    # in the machine-wide neighbour table (a few per host otherwise).
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")


class Star(Topo):
    def build(self):
        sw = [self.addSwitch(f"s{i + 1}") for i in range(switches)]
        for a, b in zip(sw, sw[1:]):
            self.addLink(a, b)
        for h in range(hosts):
            self.addLink(self.addHost(f"h{h + 1}"), sw[h % switches])


def pss(pid):
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))


setLogLevel("error")
begun = time.perf_counter()
net = Mininet(topo=Star(), switch=LinuxBridge, host=QuietHost, controller=None,
              autoSetMacs=True, ipBase="10.0.0.0/8", waitConnected=False)
net.start()
up = time.perf_counter() - begun
memory = sum(pss(h.shell.pid) for h in net.hosts)
begun = time.perf_counter()
net.stop()
print(json.dumps({"up": up, "stop": time.perf_counter() - begun, "pss/host kB": memory / hosts}))
"""

_NESTED = (
    "mount -t tmpfs tmpfs /tmp && ip link set lo up && "
    "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && "
    'exec "$@"'
)


def mininet_ready() -> str:
    """Why Mininet cannot run here ("" when it can)."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import mininet.net"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        return "Debian's mininet is not installed (apt-get install mininet bridge-utils)"
    if not shutil.which("brctl") or not shutil.which("mnexec"):
        return "Mininet's Linux bridges need brctl (bridge-utils) and mnexec"
    return ""


def measure_mininet(hosts: int) -> dict[str, float]:
    """Mininet in a PID, mount and network namespace of its own, with a private /tmp."""
    argv = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
            "--propagation", "private", "--", "bash", "-c", _NESTED, "mininet",
            "/usr/bin/python3", "-c", MININET, str(hosts), str(NODES)]
    result = run(argv)
    values: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


def _row(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))


def _ratio(later: float, earlier: float) -> float:
    """Growth from one size to the next (0: nothing to compare, shown as -)."""
    return later / earlier if earlier > 0.01 else 0.0


def report(sizes: Sequence[int], podnet: dict[int, dict[str, float]],
           floor: dict[int, dict[str, float]], mininet: dict[int, dict[str, float]],
           why_not: str) -> None:
    timed_keys = ("up", "up cpu", "lab cpu", "others cpu", "re-up", "get pods", "inspect",
                  "check", "trace", "graph", "down")
    cols = ["pods", "up s", "up cpu s", "lab cpu s", "others cpu s", "re-up s", "get s",
            "inspect s", "check s", "trace s", "graph s", "down s", "PSS/pod kB", "slab/pod kB",
            "floor up s", "floor down s", "floor+pause up s", "mn up s", "mn stop s",
            "mn PSS/host kB"]
    widths = [max(len(c), 6) for c in cols]
    print(f"\nscale: N pods on {NODES} nodes (podnet), the netlink floor (floor), N hosts on "
          f"{NODES} Linux bridges (mininet, mn); whole commands, start-up included")
    print(_row(cols, widths))
    for n in sizes:
        p, f, m = podnet[n], floor[n], mininet.get(n, {})
        cells = [f"{n}", *(f"{p[k]:.2f}" for k in timed_keys),
                 f"{p['pss/pod kB']:.0f}", f"{p['slab/pod kB']:.0f}",
                 f"{f['up']:.2f}", f"{f['down']:.2f}", f"{f['pause up']:.2f}",
                 f"{m['up']:.2f}" if m else "-", f"{m['stop']:.2f}" if m else "-",
                 f"{m['pss/host kB']:.0f}" if m else "-"]
        print(_row(cells, widths))
    if why_not:
        print(f"  mininet: not run: {why_not}")
    for n in sizes:
        print(f"  {n} pods: podnet's up takes {podnet[n]['up'] / floor[n]['up']:.2f}x the "
              f"netlink floor's ({podnet[n]['up'] / floor[n]['pause up']:.2f}x the floor's with a "
              f"pause process per pod), its down {podnet[n]['down'] / floor[n]['down']:.2f}x")
    print("\ngrowth from one size to the next (linear: the ratio of the sizes)")
    keys = list(timed_keys)
    widths = [11, 6, *[10] * (len(keys) + 5)]
    print(_row(["sizes", "pods x", *keys, "floor up", "floor dn", "+pause up", "mn up", "mn stop"],
               widths))
    for a, b in itertools.pairwise(sizes):
        ratios = [_ratio(podnet[b][k], podnet[a][k]) for k in keys]
        ratios += [_ratio(floor[b][k], floor[a][k]) for k in ("up", "down", "pause up")]
        mn = [mininet[b][k] / mininet[a][k] if a in mininet and b in mininet else 0.0
              for k in ("up", "stop")]
        cells = [f"{a}->{b}", f"{b / a:.1f}", *(f"{r:.2f}" if r else "-" for r in ratios),
                 *(f"{r:.2f}" if r else "-" for r in mn)]
        print(_row(cells, widths))
    cpu_keys = ("up", "re-up", "get pods", "inspect", "check", "trace", "graph", "down")
    print("\neach command's own CPU in seconds (podnet's process and those it waited for), then "
          "its growth")
    widths = [11, *[10] * len(cpu_keys)]
    print(_row(["pods", *cpu_keys], widths))
    for n in sizes:
        print(_row([f"{n}", *(f"{podnet[n][k + ' cpu']:.2f}" for k in cpu_keys)], widths))
    for a, b in itertools.pairwise(sizes):
        ratios = [_ratio(podnet[b][k + " cpu"], podnet[a][k + " cpu"]) for k in cpu_keys]
        print(_row([f"{a}->{b}", *(f"{r:.2f}x" if r else "-" for r in ratios)], widths))
    for n in sizes:
        if n in mininet:
            p, m = podnet[n], mininet[n]
            print(f"  {n} pods: podnet builds {m['up'] / p['up']:.1f}x faster than Mininet, "
                  f"tears down {m['stop'] / p['down']:.1f}x faster, and a pod takes "
                  f"{p['pss/pod kB'] / m['pss/host kB']:.2f}x the memory of a Mininet host")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", help="comma-separated sizes (default 100,500,1000,2000)")
    parser.add_argument("--big", action="store_true", help=f"add {BIG:,} pods (about 10 GB "
                        "of memory for Mininet's part: it runs podnet only at that size)")
    parser.add_argument("--no-mininet", action="store_true")
    args = parser.parse_args()
    ensure_sandbox()
    podnet = shutil.which("podnet") or sys.exit("podnet is not on PATH: run ./podnet.sh bench")
    sizes = [int(s) for s in args.pods.split(",")] if args.pods else list(SIZES)
    if args.big:
        sizes.append(BIG)
    why_not = "--no-mininet" if args.no_mininet else mininet_ready()
    work = tempfile.mkdtemp(prefix="podnet-bench-scale-")
    podnet_rows: dict[int, dict[str, float]] = {}
    floor_rows: dict[int, dict[str, float]] = {}
    mininet_rows: dict[int, dict[str, float]] = {}
    baseline = namespaces_alive()
    try:
        for n in sizes:
            settle(baseline)
            podnet_rows[n] = measure_podnet(podnet, n, work)
            print(f"podnet {n}: " + ", ".join(f"{k} {v:.2f}" for k, v in podnet_rows[n].items()),
                  flush=True)
            settle(baseline)
            floor_rows[n] = measure_floor(n)
            print(f"floor {n}: " + ", ".join(f"{k} {v:.2f}" for k, v in floor_rows[n].items()),
                  flush=True)
            if not why_not and n < BIG:
                settle(baseline)
                mininet_rows[n] = measure_mininet(n)
                print(f"mininet {n}: " + ", ".join(f"{k} {v:.2f}"
                                                   for k, v in mininet_rows[n].items()),
                      flush=True)
    finally:
        shutil.rmtree(work)
    report(sizes, podnet_rows, floor_rows, mininet_rows, why_not)


if __name__ == "__main__":
    main()
