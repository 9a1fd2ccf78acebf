"""`podnet tour`: the lesson on a real lab (sandbox only), and its pure parts.

The tour runs every step for real; `--non-interactive` must pass on the default lab (and on the
bridge lab), fail when the lab does not behave as the lesson says, and leave nothing behind
whether it finishes or is stopped halfway.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.tour.lesson import LESSON
from podnet.tour.runner import Facts, fill, prepare

PODNET = [sys.executable, "-m", "podnet"]
DEFAULT = Path(__file__).parents[2] / "src/podnet/model/default.yaml"


def podnet(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODNET, *args], capture_output=True, text=True, timeout=300,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podnet {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


def leftovers() -> tuple[list[str], list[str]]:
    """Tour namespaces still named, and tour servers still running."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout
    spaces = [line.split()[0] for line in names.splitlines() if "-tour-" in line]
    servers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"tour/" in fh.read():
                    servers.append(pid)
        except OSError:
            continue
    return spaces, servers


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    podnet("up", "-q")
    yield
    podnet("down", "-q")


@pytest.mark.kernel
def test_the_tour_passes_on_the_default_lab(lab: None) -> None:
    result = podnet("tour", "--non-interactive", check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "as the lesson expects" in result.stdout.splitlines()[-1]
    assert "✗" not in result.stdout
    for section in ("1. Talk within your pod", "2. Talk to another process", "3. Look at",
                    "4. Build a veth pair", "5. Talk within and between pods",
                    "6. Is it DNS?", "7. Who may talk"):
        assert section in result.stdout
    assert "read-from-the-pipe:jumpbox" in result.stdout
    assert re.search(r"tap1@if\d+: <BROADCAST,MULTICAST", result.stdout)
    assert leftovers() == ([], [])
    assert "No resources found" in podnet("get", "networkpolicies", "-A").stderr


@pytest.mark.kernel
def test_the_tour_says_which_steps_differ_when_the_lab_is_broken(lab: None) -> None:
    pods = {p["metadata"]["name"]: p for p in
            json.loads(podnet("get", "pods", "-o", "json").stdout)["items"]}
    node, veth = pods["jumpbox"]["spec"]["nodeName"], pods["jumpbox"]["podnet"]["veth"]
    subprocess.run(["ip", "-n", node, "link", "set", veth, "down"], check=True)
    try:
        result = podnet("tour", "--non-interactive", check=False)
    finally:
        subprocess.run(["ip", "-n", node, "link", "set", veth, "up"], check=True)
        subprocess.run(["ip", "-n", node, "route", "replace", pods["jumpbox"]["status"]["podIP"],
                        "dev", veth, "scope", "host"], check=False)
    assert result.returncode == 1
    assert re.search(r"tour: 32 steps on lab kind: \d+ of 32 steps differ", result.stdout)
    failed = re.findall(r"── step (\d+)/32[^\n]*\n(.*?)(?=── step|\Z)", result.stdout, re.S)
    differing = {int(n) for n, body in failed if "✗ not what the lesson expects" in body}
    assert 21 in differing  # curl across nodes to the jumpbox
    assert 1 not in differing and 12 not in differing  # loopback and the hand-built pair
    assert leftovers() == ([], [])


class Terminal:
    """A process on a pseudo-terminal, read until its output shows something."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     close_fds=True)
        os.close(slave)
        self.seen = b""

    def wait_for(self, text: bytes, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.seen.count(text) < count:
            left = deadline - time.monotonic()
            assert left > 0, self.seen.decode(errors="replace")[-2000:]
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the process closed the terminal
                    return

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.mark.kernel
def test_interactive_waits_for_enter_and_cleans_up_when_stopped(lab: None) -> None:
    term = Terminal([*PODNET, "tour", "--step", "12"])
    prompt = b"Enter for the next step, q to stop"
    try:
        for n in (1, 2):  # steps 12 and 13: the pair and its addresses
            term.wait_for(prompt, n)
            term.type(b"\n")
        term.wait_for(prompt, 3)  # step 14 started the server, and the tour waits
        spaces, servers = leftovers()
        assert len(spaces) == 2 and len(servers) == 1
        assert b"step 15/32" not in term.seen  # it did not run ahead
        term.type(b"q")  # the key alone: no Enter
        term.wait_for(b"did not run", 1)
        assert term.proc.wait(timeout=60) == 2  # stopped early: never a success
    finally:
        term.close()
    tail = term.seen.decode(errors="replace").strip().splitlines()[-1]
    assert "stopped after step 14 of 32" in tail and "as the lesson expects" not in tail
    assert leftovers() == ([], [])  # stopping early still removed the pair and the server


@pytest.mark.kernel
def test_a_step_past_the_end_is_an_error(lab: None) -> None:
    result = podnet("tour", "--step", "99", check=False)
    assert result.returncode == 2 and "the tour has 32 steps: choose 1 to 32" in result.stderr
    assert "Traceback" not in result.stderr and leftovers() == ([], [])


# --- pure ----------------------------------------------------------------------------------------


FACTS: Facts = {
    "attachment": "ptp", "cluster": "kind", "pod_key": "default/jumpbox", "pod_name": "jumpbox",
    "pod_ns": "default", "pod_ip": "10.244.1.2", "pod_netns": "cni-1", "pod_veth": "veth1",
    "port": "80", "worker": "kind-worker", "worker_ip": "172.18.0.3",
    "worker_pod_netns": ["cni-1", "cni-2"], "gateway": "10.244.1.1",
    "orange": "kind-tour-orange", "green": "kind-tour-green", "pod_host": "10.244.1.2",
    "family": "IPv4", "inet": "inet", "host_prefix": "32",
}


def test_placeholders_are_escaped_in_checks_and_lists_expand() -> None:
    assert fill("{worker_ip} up", FACTS) == ["172.18.0.3 up"]
    assert fill(r"inet {gateway}/32", FACTS, regex=True) == [r"inet 10\.244\.1\.1/32"]
    assert fill("{worker_pod_netns}", FACTS, regex=True) == ["cni\\-1", "cni\\-2"]


def test_steps_follow_the_lab_shape_and_what_it_has() -> None:
    ptp = prepare(FACTS)
    titles = [r.title for r in ptp]
    assert any("kindnet's /32" in t for t in titles)
    assert not any("cni0" in t for t in titles)
    assert not any(r.step.needs for r in ptp)  # no second pod: its steps are left out
    bridge = prepare({**FACTS, "attachment": "bridge"})
    assert any("bridge and its ports" in r.title for r in bridge)
    assert [r.number for r in ptp] == list(range(1, len(ptp) + 1))


def test_an_ipv6_lab_gets_the_lesson_in_its_family() -> None:
    v6 = prepare({**FACTS, "pod_ip": "fd00:10:244:1::2", "pod_host": "[fd00:10:244:1::2]",
                  "gateway": "fd00:10:244:1::1", "family": "IPv6", "inet": "inet6",
                  "host_prefix": "128", "other": "yes", "other_key": "dev/w",
                  "other_name": "w", "other_ns": "dev", "other_ip": "fd00:10:244:2::2",
                  "other_node": "kind-worker2", "other_veth": "veth2"})
    step = next(r for r in v6 if "kindnet's /128 gateway" in r.title)
    assert step.title.startswith("Display the IPv6 addresses")
    output = ("3: veth1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue\n"
              "    link/ether 0e:8a:ad:d3:39:c6 brd ff:ff:ff:ff:ff:ff\n"
              "    inet6 fd00:10:244:1::1/128 scope global nodad\n")
    assert re.search(step.expect[0], output, re.MULTILINE)
    assert not re.search(step.expect[0], output.replace("veth1@", "veth9@"), re.MULTILINE)
    curl = next(c for r in v6 for c in r.commands if "curl -s http://[" in c)
    assert curl.endswith("curl -s http://[fd00:10:244:1::2]:80")


def test_every_lesson_section_has_steps_with_checks_and_explanations() -> None:
    sections = {s.section for s in LESSON}
    assert len(sections) == 7
    for step in LESSON:
        assert step.run
        assert step.expect or step.expect_not or step.background, step.title
        assert step.explain or step.cleanup, step.title
    assert sum(1 for s in LESSON if s.diagram) >= 8


@pytest.mark.kernel
def test_the_tour_passes_on_the_bridge_lab(lab: None, tmp_path: Path) -> None:
    bridge = tmp_path / "bridge.yaml"
    bridge.write_text(DEFAULT.read_text().replace("attachment: ptp  ", "attachment: bridge  "))
    podnet("down", "-q")
    podnet("up", "-q", "-f", str(bridge))
    try:
        result = podnet("tour", "--non-interactive", check=False)
    finally:
        podnet("down", "-q")
        podnet("up", "-q")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "bridge and its ports" in result.stdout and "kindnet's /32" not in result.stdout
