"""Cluster DNS in the lab: `up` of the default lab with its DNS add-on against without it, and
queries from a lab pod to kube-dns against a bare dnsmasq fed the same records, in one run.

    ./podnet.sh bench dns_lab      (or: python bench/dns_lab.py --rounds 5 --seconds 2)

`up` and `down` run in this process (`podnet.apply.lab`, a spawner each), alternately with the
add-on and without it (the layout's `with_addons` replaced by the identity here: podnet has no
switch for it, as kind has none), so both sides pay the same imports; medians of the rounds.

Queries: dnsperf in the jumpbox's namespace (the pod a person execs into) asks, with the mix of
`bench/dns.py` built from the lab's own records file:
  - kube-dns, 10.96.0.10:53: the Service's DNAT on the node to one of the two coredns pods
  - one coredns pod at its pod address (no DNAT): podnet's server, in the lab
  - a bare dnsmasq, fed the same records, in that coredns pod's namespace on port 5353
UDP with 20 queries in flight and TCP over 10 connections (q/s), one in flight (p50/p99).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # dnspython's `dns`


def _round1() -> object:
    """bench/dns.py (its query mix, dnsmasq configuration and dnsperf), under another name:
    as `dns` it would shadow dnspython."""
    spec = importlib.util.spec_from_file_location("dns_bench", os.path.join(_HERE, "dns.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dns_bench"] = module
    spec.loader.exec_module(module)
    return module


def one_up(with_dns: bool) -> tuple[float, int, int]:
    """Seconds of one `up` of the default lab (then `down`), its pods and steps."""
    import podnet.plan.layout as layout_module
    from podnet.apply.lab import down, up
    from podnet.model.loader import default_topology
    from podnet.runtime.spawner import Spawner

    saved = layout_module.with_addons
    if not with_dns:
        layout_module.with_addons = lambda spec, state_dir: spec
    try:
        begin = time.perf_counter()
        with Spawner() as spawner:
            outcome = up(default_topology(), spawner=spawner)
        took = time.perf_counter() - begin
    finally:
        layout_module.with_addons = saved
    assert outcome.layout is not None
    down(outcome.layout.cluster)
    return took, len(outcome.layout.pods), len(outcome.steps)


def up_times(rounds: int) -> dict[bool, list[tuple[float, int, int]]]:
    out: dict[bool, list[tuple[float, int, int]]] = {True: [], False: []}
    one_up(True)  # warm the page cache and the imports, not counted
    for i in range(rounds):
        for with_dns in ((True, False) if i % 2 == 0 else (False, True)):
            out[with_dns].append(one_up(with_dns))
    return out


def queries(bench: object, seconds: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """dnsperf from the jumpbox to kube-dns, to one coredns pod, and to dnsmasq."""
    from podnet import state as lab_state
    from podnet.apply.lab import down, up
    from podnet.dns.files import read_records
    from podnet.model.loader import default_topology
    from podnet.plan.addons import records_path
    from podnet.runtime.spawner import Spawner

    with Spawner() as spawner:
        up(default_topology(), spawner=spawner)
    record = lab_state.load("kind")
    assert record is not None
    lay = record.layout
    jump = lay.pod("default/jumpbox")
    coredns = next(p for p in lay.pods if p.namespace == "kube-system")
    assert jump is not None
    records = read_records(records_path(lay.state_dir))
    work = tempfile.mkdtemp(prefix="podnet-dnslab-")
    mix = bench.query_mix(records)  # type: ignore[attr-defined]
    qfile = os.path.join(work, "queries.txt")
    with open(qfile, "w") as fh:
        fh.writelines(f"{name} {rdtype}\n" for name, rdtype in mix)
    conf = os.path.join(work, "dnsmasq.conf")
    pod_ip = str(coredns.ip.ip)
    with open(conf, "w") as fh:
        fh.write(bench.dnsmasq_conf(records, pod_ip, port=5353))  # type: ignore[attr-defined]
    dnsmasq = subprocess.Popen(["ip", "netns", "exec", coredns.netns, "dnsmasq",
                                f"--conf-file={conf}", "--keep-in-foreground"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    targets = {"kube-dns (DNAT, 2 coredns pods)": ("10.96.0.10", 53),
               "one coredns pod (podnet-dns)": (pod_ip, 53),
               "bare dnsmasq (same pod)": (pod_ip, 5353)}
    out: dict[str, dict[str, list[float]]] = {k: {} for k in targets}
    try:
        time.sleep(0.3)  # dnsmasq binds in a few ms; dnsperf's first query would be lost
        for _ in range(rounds):
            for label, (address, port) in targets.items():
                for proto in ("udp", "tcp"):
                    for kind in ("qps", "latency"):
                        perf = bench.dnsperf(  # type: ignore[attr-defined]
                            address, qfile, seconds, tcp=proto == "tcp",
                            latency=kind == "latency", netns=jump.netns, port=port)
                        row = out[label]
                        if kind == "qps":
                            row.setdefault(f"{proto} q/s", []).append(perf.qps)
                        else:
                            row.setdefault(f"{proto} p50", []).append(perf.p50_ms)
                            row.setdefault(f"{proto} p99", []).append(perf.p99_ms)
    finally:
        dnsmasq.terminate()  # our own child, by PID
        dnsmasq.wait(timeout=5)
        down("kind")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each measure (median)")
    parser.add_argument("--seconds", type=int, default=2, help="length of each dnsperf run")
    args = parser.parse_args()
    ensure_sandbox()
    bench = _round1()
    ups = up_times(args.rounds)
    med: Callable[[list[float]], float] = statistics.median
    print(f"`up` of the default lab, in process, median of {args.rounds} "
          f"(then `down`), {os.cpu_count()} CPUs:")
    for with_dns in (True, False):
        runs = ups[with_dns]
        word = "with the DNS add-on   " if with_dns else "without it            "
        print(f"  {word} {med([r[0] for r in runs]) * 1000:7.0f} ms  "
              f"({runs[0][1]} pods, {runs[0][2]} steps)")
    ratio = med([r[0] for r in ups[True]]) / med([r[0] for r in ups[False]])
    print(f"  ratio with / without: {ratio:.2f}")
    rows = queries(bench, args.seconds, max(1, args.rounds // 2))
    print(f"\nqueries from pod default/jumpbox, dnsperf {args.seconds} s per run, median of "
          f"{max(1, args.rounds // 2)}:")
    heads = ("udp q/s", "tcp q/s", "udp p50", "udp p99", "tcp p50", "tcp p99")
    print(f"  {'server':<34}" + "".join(f"{h:>10}" for h in heads))
    for label, row in rows.items():
        cells = [f"{med(row[h]):10.0f}" if "q/s" in h else f"{med(row[h]):8.3f}ms"
                 for h in heads]
        print(f"  {label:<34}" + "".join(cells))
    base = rows["bare dnsmasq (same pod)"]
    for label in list(rows)[:2]:
        row = rows[label]
        print(f"  ratio {label} / dnsmasq: UDP q/s {med(row['udp q/s']) / med(base['udp q/s']):.2f}"
              f"  TCP q/s {med(row['tcp q/s']) / med(base['tcp q/s']):.2f}"
              f"  UDP p50 {med(row['udp p50']) / med(base['udp p50']):.2f}")


if __name__ == "__main__":
    main()
