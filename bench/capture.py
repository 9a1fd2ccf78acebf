"""Packet capture: packets per second written to a pcap without loss, podnet beside Debian's
`tcpdump -w` (and beside the design podnet did not take: an AF_PACKET socket read in Python,
written with dpkt), all three on the same veth at once, in one run.

    ./podnet.sh bench capture      (or: python bench/capture.py --seconds 2 --repeat 3)

Two namespaces joined by a veth; iperf3 sends UDP datagrams of 64 bytes from one to the other
at fixed offered rates (then as fast as it can). At each rate the three captures listen on the
receiving eth0 with the filter `udp`, are stopped with SIGINT as a Ctrl-C would, and their
files are read back with dpkt: a capture is lossless at a rate when its file holds every
datagram iperf3 says it sent. All five processes share the 2 cores, as they would on a node;
each rate runs --repeat times and the median share is shown (the machine is shared: one run is
noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox import ensure_sandbox, run

A, B = "cap-a", "cap-b"
PORT = 5201
SIZE = 64  # UDP payload bytes: small packets are what stresses a capture
RATES = (20_000, 50_000, 100_000, 200_000, 0)  # offered packets per second; 0: as fast as iperf3

PY_CAPTURE = r"""
import signal, socket, struct, sys
import dpkt
stop = False
def on_signal(*_):
    global stop
    stop = True
signal.signal(signal.SIGINT, on_signal)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("eth0", 0))
s.settimeout(0.2)
with open(sys.argv[1], "wb") as fh:
    w = dpkt.pcap.Writer(fh, snaplen=262144)
    print("listening", file=sys.stderr, flush=True)
    while not stop:
        try:
            frame = s.recv(65536)
        except (TimeoutError, InterruptedError):
            continue
        if frame[12:14] == b"\x08\x00" and frame[23] == 17:
            w.writepkt(frame)
"""


def setup() -> None:
    run(["ip", "netns", "add", A])
    run(["ip", "netns", "add", B])
    run(["ip", "-n", A, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
         "netns", B])
    for ns, ip in ((A, "10.88.0.1"), (B, "10.88.0.2")):
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])


def wait_ready(proc: subprocess.Popen[bytes], word: bytes, timeout: float = 10.0) -> None:
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while word not in seen:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"a capture did not start: {seen.decode(errors='replace')}")
        seen += os.read(proc.stderr.fileno(), 4096)


def start_captures(workdir: str) -> dict[str, tuple[subprocess.Popen[bytes], str]]:
    files = {name: os.path.join(workdir, f"{name}.pcap")
             for name in ("tcpdump -w", "podnet capture -w", "python AF_PACKET + dpkt")}
    podnet = [sys.executable, "-m", "podnet"]
    argvs = {
        "tcpdump -w": ["ip", "netns", "exec", B, "tcpdump", "-i", "eth0", "-n",
                       "-w", files["tcpdump -w"], "-Z", "root", "udp"],
        "podnet capture -w": [*podnet, "capture", "--netns", B, "-i", "eth0", "-w",
                              files["podnet capture -w"], "udp"],
        "python AF_PACKET + dpkt": ["ip", "netns", "exec", B, sys.executable, "-c", PY_CAPTURE,
                                    files["python AF_PACKET + dpkt"]],
    }
    words = {"tcpdump -w": b"listening on", "podnet capture -w": b"capturing on",
             "python AF_PACKET + dpkt": b"listening"}
    procs = {}
    for name, argv in argvs.items():
        procs[name] = (subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                       files[name])
    for name, (proc, _) in procs.items():
        wait_ready(proc, words[name])
    return procs


def count(path: str) -> int:
    import dpkt

    with open(path, "rb") as fh:
        return sum(1 for _ts, frame in dpkt.pcap.Reader(fh)
                   if len(frame) > 37 and frame[23] == 17
                   and int.from_bytes(frame[36:38], "big") == PORT)


def offered(rate: int, seconds: float) -> int:
    """Send UDP at `rate` packets per second (0: flat out); the packets iperf3 sent."""
    server = subprocess.Popen(["ip", "netns", "exec", B, "iperf3", "-s", "-1", "-B",
                               "10.88.0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bandwidth = str(rate * SIZE * 8) if rate else "0"
        for _ in range(100):
            done = subprocess.run(["ip", "netns", "exec", A, "iperf3", "-c", "10.88.0.2", "-u",
                                   "-l", str(SIZE), "-b", bandwidth, "-t", str(seconds), "-J"],
                                  capture_output=True, text=True, timeout=seconds + 30,
                                  check=False)
            report = json.loads(done.stdout or "{}")
            if done.returncode == 0 and "sum" in report.get("end", {}):
                return int(report["end"]["sum"]["packets"])
            time.sleep(0.05)
        raise SystemExit(f"iperf3 failed: {done.stdout[-400:]}")
    finally:
        server.kill()
        server.wait()


def reap(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> float:
    """Wait for `proc`; the CPU seconds it (and the children it waited for) used."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return float(usage.ru_utime + usage.ru_stime)
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.02)


def measure(rate: int, seconds: float) -> tuple[int, dict[str, float], dict[str, int]]:
    with tempfile.TemporaryDirectory(prefix="podnet-capture-") as workdir:
        os.chmod(workdir, 0o755)
        procs = start_captures(workdir)
        cpu: dict[str, float] = {}
        try:
            sent = offered(rate, seconds)
            time.sleep(0.2)  # the last datagrams cross the veth
        finally:
            for proc, _ in procs.values():
                proc.send_signal(signal.SIGINT)
            for name, (proc, _) in procs.items():
                cpu[name] = reap(proc)
        return sent, cpu, {name: count(path) for name, (_, path) in procs.items()}


def main() -> None:
    ensure_sandbox()
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    setup()
    names = ("tcpdump -w", "podnet capture -w", "python AF_PACKET + dpkt")
    print(f"UDP datagrams of {SIZE} bytes over one veth, {args.seconds:g} s per rate, median of "
          f"{args.repeat}; three captures at once on the receiving end\n")
    print("each capture: share of the datagrams in its file, CPU seconds it used (podnet's include "
          "its own start, about 0.3 s)\n")
    print(f"{'offered':>10} {'sent pps':>10}  " + "  ".join(f"{n:>24}" for n in names)
          + "  podnet/tcpdump")
    lossless: dict[str, int] = dict.fromkeys(names, 0)
    for rate in RATES:
        runs = [measure(rate, args.seconds) for _ in range(args.repeat)]
        pps = round(statistics.median(sent for sent, _, _ in runs) / args.seconds)
        share = {n: statistics.median(got[n] / sent for sent, _, got in runs if sent)
                 for n in names}
        for name in names:
            if share[name] >= 1.0:
                lossless[name] = max(lossless[name], pps)
        cpu = {n: statistics.median(c[n] for _, c, _ in runs) for n in names}
        ratio = share["podnet capture -w"] / share["tcpdump -w"] if share["tcpdump -w"] else 0.0
        label = f"{rate:,}" if rate else "max"
        print(f"{label:>10} {pps:>10,}  "
              + "  ".join(f"{share[n]:>14.2%} {cpu[n]:>5.2f} s" for n in names)
              + f"  {ratio:>13.3f}", flush=True)
    print("\nhighest rate written without loss (packets per second, median run):")
    for name in names:
        print(f"  {name:<26} {lossless[name]:>10,}")


if __name__ == "__main__":
    main()
