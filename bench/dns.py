"""Cluster DNS: podnet's server against a bare dnsmasq fed the same records, in one run.

    ./podnet.sh bench dns      (or: python bench/dns.py --seconds 3)

Three namespaces: a client, podnet's DNS server (as a coredns pod runs it) and Debian's dnsmasq,
each server behind its own veth pair. Both serve the record set of a lab (Services with named
ports, a headless Service, pods of two families), dnsmasq from a configuration generated from
podnet's records file. Before any timing, every query of the mix is asked of both and the
answers compared. Then dnsperf (Debian's, the tool DNS operators measure with) drives each:

  - queries per second: UDP with 20 queries in flight, TCP over 10 connections
  - latency p50 / p99: one query in flight, each timed by dnsperf (-v)
  - start: process start to the first answer; reload: a rewritten records file to the first
    answer from it (dnsmasq re-reads its configuration only when restarted: SRV and PTR
    records live there, so a change costs it a restart)
  - memory: resident set size after the runs

podnet's server runs twice: as deployed (answers cached by query bytes) and with --cache 0,
where dnspython parses and renders every answer. The mix repeats, so the cache answers all but
the first round: that is what pods asking for the same Services do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox, run

# This file is named dns.py: off the path, or it would stand in for dnspython's `dns` package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

CLIENT = "dnsb-client"
SERVERS = {"podnet": ("dnsb-podnet", "10.96.0.10", "10.96.0.1"),
           "dnsmasq": ("dnsb-dnsmasq", "10.97.0.10", "10.97.0.1")}
NETWORKS = ("10.96.0.0/16", "10.244.0.0/16", "fd00:10:96::/112", "fd00:10:244::/56")


def lab_records(extra: bool = False):  # type: ignore[no-untyped-def]
    from podnet.dns.records import DnsPod, DnsPort, DnsService, cluster_records

    pods = [DnsPod("dev", f"web-{i}", (f"10.244.{i % 3 + 1}.{i + 10}",
                                       f"fd00:10:244:{i % 3 + 1}::{i + 10:x}"))
            for i in range(40)]
    pods += [DnsPod("dev", f"db-{i}", (f"10.244.1.{i + 100}",), hostname=f"db-{i}",
                    subdomain="db") for i in range(3)]
    services = [
        DnsService("dev", f"svc{i}", (f"10.96.{i}.{i + 20}", f"fd00:10:96::{i + 20:x}"),
                   (DnsPort("http", 80, "TCP"), DnsPort("metrics", 9090, "TCP")),
                   tuple(f"dev/web-{j}" for j in range(i % 5, 40, 10)))
        for i in range(20)
    ]
    services.append(DnsService("dev", "db", (), (DnsPort("pg", 5432, "TCP"),),
                               ("dev/db-0", "dev/db-1", "dev/db-2")))
    if extra:
        services.append(DnsService("dev", "late", ("10.96.77.7",), (), ()))
    return cluster_records(services, pods, networks=NETWORKS, nameservers=("10.96.0.10",))


def query_mix(records) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every A, AAAA, SRV, PTR and TXT record of the set once, plus the misses pods make."""
    asked = sorted({(r.name[:-1], r.type) for r in records.records
                    if r.type in ("A", "AAAA", "SRV", "PTR", "TXT")})
    misses = [("nope.dev.svc.cluster.local", "A"), ("svc1.dev.dev.svc.cluster.local", "A"),
              ("db.dev.svc.cluster.local", "AAAA"), ("example.com", "A")]
    return asked + misses


def dnsmasq_conf(records, address: str, port: int = 53) -> str:  # type: ignore[no-untyped-def]
    """The same records as dnsmasq options; its zones answer NXDOMAIN for the rest."""
    lines = ["no-resolv", "no-hosts", "bind-interfaces", f"listen-address={address}",
             f"port={port}", f"local-ttl={records.ttl}", "user=root", "pid-file="]
    lines += [f"local=/{zone[:-1]}/" for zone in records.zones]
    for r in records.records:
        name = r.name[:-1]
        if r.type in ("A", "AAAA"):
            lines.append(f"host-record={name},{r.data}")
        elif r.type == "PTR":
            lines.append(f"ptr-record={name},{r.data[:-1]}")
        elif r.type == "SRV":
            priority, weight, port, target = r.data.split()
            lines.append(f"srv-host={name},{target[:-1]},{port},{priority},{weight}")
        elif r.type == "TXT":
            lines.append(f"txt-record={name},{r.data.strip(chr(34))}")
    return "\n".join(lines) + "\n"


def network() -> None:
    for ns in (CLIENT, *(s[0] for s in SERVERS.values())):
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    for i, (ns, address, gateway) in enumerate(SERVERS.values()):
        link = f"to{i}"
        run(["ip", "-n", CLIENT, "link", "add", link, "type", "veth", "peer", "name", "eth0",
             "netns", ns])
        run(["ip", "-n", CLIENT, "addr", "add", f"{gateway}/24", "dev", link])
        run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
        run(["ip", "-n", CLIENT, "link", "set", link, "up"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])


@dataclass
class Server:
    label: str
    netns: str
    address: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    start_s: float = 0.0

    def start(self) -> None:
        begin = time.perf_counter()
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *self.argv],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_answer(self.address, "dns-version.cluster.local", "TXT", self.proc)
        self.start_s = time.perf_counter() - begin

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # our own child, by PID
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def rss_mb(self) -> float:
        """Resident memory of the server process (ip netns exec execs into it: same PID)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        return kb / 1024


def ask(address: str, name: str, rdtype: str, tcp: bool = False,  # type: ignore[no-untyped-def]
        timeout: float = 1.0):
    import dns.message
    import dns.query

    from podnet.kernel import netns

    q = dns.message.make_query(name, rdtype)
    with netns.entered(f"/run/netns/{CLIENT}"):
        return (dns.query.tcp if tcp else dns.query.udp)(q, address, timeout=timeout)


def wait_answer(address: str, name: str, rdtype: str,
                proc: subprocess.Popen[bytes] | None = None, timeout: float = 20) -> None:
    import dns.exception
    import dns.rcode

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server at {address} exited with {proc.returncode}")
        try:
            # A short wait: a query sent before the server listens is lost, not refused.
            if ask(address, name, rdtype, timeout=0.02).rcode() == dns.rcode.NOERROR:
                return
        except (OSError, dns.exception.Timeout):
            pass
        time.sleep(0.001)
    raise SystemExit(f"{address} did not answer {name} {rdtype} within {timeout} s")


def compare(mix: Sequence[tuple[str, str]], a: str, b: str) -> list[str]:
    """Queries whose rcode or answer set differ between the two servers."""
    def key(address: str, name: str, rdtype: str) -> tuple[int, list[str]]:
        r = ask(address, name, rdtype)
        return r.rcode(), sorted(rd.to_text().lower() for s in r.answer for rd in s)

    return [f"{n} {t}" for n, t in mix if key(a, n, t) != key(b, n, t)]


@dataclass
class Perf:
    qps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    lost: int = 0


def dnsperf(address: str, queries: str, seconds: int, *, tcp: bool, latency: bool,
            netns: str = CLIENT, port: int = 53) -> Perf:
    argv = ["ip", "netns", "exec", netns, "dnsperf", "-s", address, "-p", str(port),
            "-d", queries, "-l", str(seconds), "-m", "tcp" if tcp else "udp", "-t", "2"]
    if latency:
        argv += ["-c", "1", "-q", "1", "-v"]
    else:
        argv += ["-c", "10", "-q", "10"] if tcp else ["-c", "1", "-q", "20"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30,
                         check=False).stdout
    perf = Perf()
    times = []
    for line in out.splitlines():
        words = line.split()
        if line.startswith("> ") and len(words) == 5:
            times.append(float(words[4]) * 1000)
        elif "Queries per second:" in line:
            perf.qps = float(words[-1])
        elif "Queries lost:" in line:
            perf.lost = int(words[2])
    if times:
        times.sort()
        perf.p50_ms = statistics.median(times)
        perf.p99_ms = times[min(len(times) - 1, int(len(times) * 0.99))]
    return perf


@contextmanager
def servers(work: str, records_path: str) -> Iterator[list[Server]]:
    from podnet.dns.files import read_records
    from podnet.dns.server import server_command

    records = read_records(records_path)
    ns, address, _ = SERVERS["dnsmasq"]
    conf = os.path.join(work, "dnsmasq.conf")
    with open(conf, "w") as fh:
        fh.write(dnsmasq_conf(records, address))
    argv, env = server_command(records_path)
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]
    podnet_ns, podnet_addr, _ = SERVERS["podnet"]
    made = [
        Server("podnet-dns", podnet_ns, podnet_addr,
               [*argv, "--listen", podnet_addr, "--metrics-port", "0"]),
        Server("podnet-dns --cache 0", podnet_ns, podnet_addr,
               [*argv, "--listen", podnet_addr, "--metrics-port", "0", "--cache", "0"]),
        Server("dnsmasq", ns, address,
               ["dnsmasq", f"--conf-file={conf}", "--keep-in-foreground"]),
    ]
    try:
        yield made
    finally:
        for server in made:
            server.stop()


def measure(server: Server, queries: str, seconds: int) -> dict[str, Perf]:
    server.start()
    try:
        return {
            f"{proto} {kind}": dnsperf(server.address, queries, seconds, tcp=proto == "tcp",
                                       latency=kind == "latency")
            for proto in ("udp", "tcp") for kind in ("qps", "latency")
        }
    finally:
        server.stop()


def restart_facts(server: Server, records_path: str) -> tuple[float, float, float]:
    """Start time, reload time and resident memory of one fresh start."""
    server.start()
    try:
        start, rss = server.start_s, server.rss_mb()
        if server.label.startswith("podnet"):
            return start, reload_time(records_path, server.address), rss
    finally:
        server.stop()
    begin = time.perf_counter()  # dnsmasq: a change to SRV or PTR records is a restart
    server.start()
    server.stop()
    return start, time.perf_counter() - begin, rss


def median_perf(perfs: list[Perf]) -> Perf:
    return Perf(
        statistics.median(p.qps for p in perfs),
        statistics.median(p.p50_ms for p in perfs),
        statistics.median(p.p99_ms for p in perfs),
        sum(p.lost for p in perfs),
    )


def reload_time(records_path: str, address: str) -> float:
    from podnet.dns.files import write_records

    begin = time.perf_counter()
    write_records(records_path, lab_records(extra=True))
    wait_answer(address, "late.dev.svc.cluster.local", "A", timeout=5)
    took = time.perf_counter() - begin
    write_records(records_path, lab_records())
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2, help="length of each dnsperf run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every server (median)")
    args = parser.parse_args()
    ensure_sandbox()
    for tool in ("dnsperf", "dnsmasq"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: apt-get install dnsperf dnsmasq-base")
    from podnet.dns.files import write_records

    work = tempfile.mkdtemp(prefix="podnet-dnsb-")
    records_path = os.path.join(work, "records.json")
    records = lab_records()
    write_records(records_path, records)
    mix = query_mix(records)
    queries = os.path.join(work, "queries.txt")
    with open(queries, "w") as fh:
        fh.writelines(f"{name} {rdtype}\n" for name, rdtype in mix)
    runs: dict[str, list[dict[str, Perf]]] = {}
    facts: dict[str, list[tuple[float, float, float]]] = {}  # start s, reload s, RSS MB
    try:
        network()
        with servers(work, records_path) as made:
            podnet, _, dnsmasq = made
            podnet.start()
            dnsmasq.start()
            differ = compare(mix, podnet.address, dnsmasq.address)
            podnet.stop()
            dnsmasq.stop()
            # Rounds over every server, so a burst of load elsewhere on the machine lands on
            # all of them alike; medians of the rounds are reported.
            for _ in range(args.repeat):
                for server in made:
                    runs.setdefault(server.label, []).append(measure(server, queries, args.seconds))
                    facts.setdefault(server.label, []).append(restart_facts(server, records_path))
    finally:
        for ns in (CLIENT, *(s[0] for s in SERVERS.values())):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        shutil.rmtree(work)
    rows = {label: {k: median_perf([r[k] for r in rounds]) for k in rounds[0]}
            for label, rounds in runs.items()}
    medians = {label: tuple(statistics.median(f[i] for f in got) for i in range(3))
               for label, got in facts.items()}
    report(rows, medians, mix, differ, args.seconds, args.repeat)  # type: ignore[arg-type]


def report(rows: dict[str, dict[str, Perf]], facts: dict[str, tuple[float, float, float]],
           mix: Sequence[tuple[str, str]], differ: list[str], seconds: int, repeat: int) -> None:
    print(f"Cluster DNS from a client namespace, {len(mix)} queries in the mix (every record type, "
          f"NXDOMAIN, NODATA, an outside name), dnsperf {seconds} s per run, median of {repeat} "
          f"rounds, {os.cpu_count()} CPUs")
    same = "the same" if not differ else f"DIFFERENT for {len(differ)}: {', '.join(differ[:5])}"
    print(f"  answers of podnet-dns and dnsmasq (rcode and records): {same}")
    print(f"  {'server':<22} {'UDP q/s':>9} {'TCP q/s':>9} {'UDP p50':>8} {'UDP p99':>8}"
          f" {'TCP p50':>8} {'TCP p99':>8} {'start':>7} {'reload':>7} {'RSS':>6}")
    for label, perf in rows.items():
        start, again, rss = facts[label]
        lost = sum(p.lost for p in perf.values())
        print(f"  {label:<22} {perf['udp qps'].qps:9.0f} {perf['tcp qps'].qps:9.0f}"
              f" {perf['udp latency'].p50_ms:6.3f}ms {perf['udp latency'].p99_ms:6.3f}ms"
              f" {perf['tcp latency'].p50_ms:6.3f}ms {perf['tcp latency'].p99_ms:6.3f}ms"
              f" {start * 1000:5.0f}ms {again * 1000:5.0f}ms {rss:4.1f}MB"
              + (f"  ({lost} lost)" if lost else ""))
    base = rows["dnsmasq"]
    print("  ratios podnet-dns / dnsmasq (q/s: higher is better; latency: lower is better):")
    for label in (k for k in rows if k != "dnsmasq"):
        perf = rows[label]
        print(f"    {label:<20} UDP q/s {perf['udp qps'].qps / base['udp qps'].qps:5.2f}"
              f"  TCP q/s {perf['tcp qps'].qps / base['tcp qps'].qps:5.2f}"
              f"  UDP p50 {perf['udp latency'].p50_ms / base['udp latency'].p50_ms:5.2f}"
              f"  UDP p99 {perf['udp latency'].p99_ms / base['udp latency'].p99_ms:5.2f}"
              f"  TCP p50 {perf['tcp latency'].p50_ms / base['tcp latency'].p50_ms:5.2f}")
    print("  reload: podnet-dns sees the rewritten file (inotify) and answers from it; dnsmasq "
          "reads SRV/PTR records only at start: its reload is a restart")


if __name__ == "__main__":
    main()
