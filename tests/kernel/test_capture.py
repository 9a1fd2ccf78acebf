"""`podnet capture` on real veths (sandbox only): the pcap, read back with dpkt, holds every
datagram sent, with its addresses, whether the capture ends by Ctrl-C, a count or a duration;
namespaces are found the ways inspect finds them (a name, pid:N, an inode); a bad filter or
interface is a clear error, and a failed start leaves no tcpdump behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import dpkt
import pytest

from podnet.kernel import netns

pytestmark = pytest.mark.kernel

PODNET = [sys.executable, "-m", "podnet"]


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


@pytest.fixture
def pair(netns_factory: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    a, b = netns_factory("ca"), netns_factory("cb")
    sh("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
    for name, ip in ((a, "10.66.0.1"), (b, "10.66.0.2")):
        sh("ip", "-n", name, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", name, "link", "set", "eth0", "up")
    yield a, b


def send(src: str, count: int, port: int = 9999) -> None:
    with netns.entered(netns.path_of(src)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(count):
            sock.sendto(i.to_bytes(4, "big"), ("10.66.0.2", port))
    finally:
        sock.close()


def started(*args: str) -> subprocess.Popen[str]:
    """`podnet capture ARGS`, returned once it says it is capturing."""
    proc = subprocess.Popen([*PODNET, "capture", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "capturing on" not in line:
        proc.kill()
        _, rest = proc.communicate()
        raise AssertionError(line + rest)
    return proc


def datagrams(path: str, port: int = 9999) -> list[tuple[str, str, int]]:
    out = []
    with open(path, "rb") as fh:
        for _ts, frame in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(frame).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP) \
                    and ip.data.dport == port:
                out.append((socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst),
                            int.from_bytes(ip.data.data[:4], "big")))
    return out


def test_ctrl_c_leaves_a_complete_pcap(pair: tuple[str, str], tmp_path: object) -> None:
    a, b = pair
    path = os.path.join(str(tmp_path), "b.pcap")
    proc = started("--netns", b, "-i", "eth0", "-w", path, "udp")
    send(a, 500)
    proc.send_signal(signal.SIGINT)  # what a Ctrl-C does
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    got = datagrams(path)
    assert [n for *_, n in got] == list(range(500)), "every datagram, in order, none torn"
    assert set((s, d) for s, d, _ in got) == {("10.66.0.1", "10.66.0.2")}
    assert "500 packets captured" in err and f"written to {path}" in err


def test_a_count_and_a_duration_end_it_by_themselves(pair: tuple[str, str],
                                                      tmp_path: object) -> None:
    a, b = pair
    path = os.path.join(str(tmp_path), "c.pcap")
    proc = started(b, "-c", "7", "-w", path, "udp", "port", "9999")
    send(a, 20)
    proc.communicate(timeout=20)
    assert proc.returncode == 0 and len(datagrams(path)) == 7
    start = time.monotonic()
    done = subprocess.run([*PODNET, "capture", b, "--duration", "0.5", "udp"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0 and time.monotonic() - start < 10
    assert "0 packets captured" in done.stderr


def test_live_lines_are_tcpdumps_own(pair: tuple[str, str]) -> None:
    a, b = pair
    proc = started("--netns", b, "-c", "3", "udp")
    send(a, 3, port=4242)
    out, _ = proc.communicate(timeout=20)
    lines = out.splitlines()
    assert len(lines) == 3
    assert all("IP 10.66.0.1." in ln and "> 10.66.0.2.4242: UDP, length 4" in ln
               for ln in lines), lines


def test_namespaces_by_pid_and_inode(pair: tuple[str, str], tmp_path: object) -> None:
    a, b = pair
    holder = subprocess.Popen(["ip", "netns", "exec", b, "sleep", "60"])
    try:
        for selector in (f"pid:{holder.pid}", str(netns.inode(netns.path_of(b)))):
            path = os.path.join(str(tmp_path), "p.pcap")
            proc = started("--netns", selector, "-i", "eth0", "-c", "2", "-w", path, "udp")
            send(a, 2)
            proc.communicate(timeout=20)
            assert len(datagrams(path)) == 2, selector
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


def _tcpdumps() -> set[int]:
    found = set()
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/comm") as fh:
                if fh.read().strip() == "tcpdump":
                    found.add(int(pid))
        except (OSError, ValueError):
            continue
    return found


def test_bad_filters_and_interfaces_are_clear_errors(pair: tuple[str, str]) -> None:
    _, b = pair
    before = _tcpdumps()
    for args, words in (((b, "tcp", "port"), "syntax"),
                        ((b, "-i", "eth9"), "has no interface 'eth9'"),
                        (("--netns", "nope-0"), "no pod, node or network namespace matches"),
                        ((), "name what to capture on")):
        done = subprocess.run([*PODNET, "capture", *args], capture_output=True, text=True,
                              timeout=20, check=False)
        assert done.returncode != 0 and words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert _tcpdumps() <= before, "a failed capture leaves no tcpdump running"
