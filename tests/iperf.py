"""iperf3 between two namespaces, and the one check every shaping test makes of a reading.

A shaper caps a rate: a busy machine can lower what iperf3 sees, never raise it. So
`assert_shaped` fails at once on a reading above the limit's tolerance, and measures again after
a reading below it. One slow reading on a loaded 2-core CI machine is not a broken shaper (CI
once saw 7.5 Mbit/s through a 10 Mbit/s limit); three in a row are.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

TOLERANCE = 0.15  # a reading within 15% of the limit
TRIES = 3  # readings below the limit before it counts as a failure


def iperf(server_ns: str, client_ns: str, server_ip: str, *, reverse: bool = False,
          seconds: int = 3) -> float:
    """Mbit/s the receiver measured, iperf3 from `client_ns` to `server_ns` (with `reverse`,
    the server sends). The first second, a shaper's burst and TCP's slow start, is left out."""
    with subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B",
                           server_ip, "-p", "5201", "--forceflush"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as server:
        try:
            assert server.stdout is not None
            while "listening" not in server.stdout.readline():
                assert server.poll() is None, f"iperf3 -s in {server_ns} exited"
            argv = ["ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-p", "5201",
                    "-t", str(seconds), "-O", "1", "-J", *(["-R"] if reverse else [])]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30,
                                  check=False)
        finally:
            server.kill()  # our own child, by PID; leaving the block reaps it
    report = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "sum_received" not in report.get("end", {}):
        raise AssertionError(f"iperf3 {client_ns} -> {server_ip} failed: "
                             f"{report.get('error', done.stderr[-500:])}")
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e6


def assert_shaped(measure: Callable[[], float], limit: float, what: str) -> float:
    """The reading of `measure()` (Mbit/s) within TOLERANCE of `limit`, or AssertionError naming
    `what` and every reading taken."""
    readings: list[float] = []
    for _ in range(TRIES):
        readings.append(measure())
        if readings[-1] > limit * (1 + TOLERANCE):
            break  # more than the limit lets through: no machine load explains that
        if readings[-1] >= limit * (1 - TOLERANCE):
            return readings[-1]
    shown = ", ".join(f"{r:.2f}" for r in readings)
    raise AssertionError(f"{what}: limit {limit:g} Mbit/s, iperf3 measured {shown} Mbit/s")
