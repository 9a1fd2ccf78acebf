"""Progress on standard error when it is a terminal (a bar for `up`, `check` and `down`, a spinner
while `inspect`, `graph` and `trace` read the host), gone when the work ends; never on a pipe,
never in standard output, so scripts read the same text either way."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.test_lab import PODNET, podnet
from tests.kernel.topologies import web_lab

pytestmark = pytest.mark.kernel

CLUSTER = "bar"


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "lab.yaml"
    path.write_text(web_lab(CLUSTER, replicas=4))
    try:
        yield path
    finally:
        podnet("down", "-q", "-C", CLUSTER, check=False)


def on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run podnet with standard error on a pseudo-terminal and standard output on a pipe: (exit
    status, standard output, what the terminal showed)."""
    master, slave = pty.openpty()
    try:
        with subprocess.Popen([*PODNET, *args], stdout=subprocess.PIPE, stderr=slave,
                              stdin=subprocess.DEVNULL,
                              env={**os.environ, "COLUMNS": "100"}) as proc:
            os.close(slave)
            slave = -1
            shown = bytearray()
            while select.select([master], [], [], 60)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            else:
                proc.kill()
                raise AssertionError(f"podnet {' '.join(args)} printed nothing for 60 s")
            out, _ = proc.communicate(timeout=60)
            return proc.returncode, out.decode(), shown.decode(errors="replace")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_up_check_and_down_show_progress_on_a_terminal_only(topo: Path) -> None:
    status, out, shown = on_a_terminal("up", "-f", str(topo))
    assert status == 0, shown
    assert f"building lab {CLUSTER}" in shown
    assert "\x1b[" not in out and f"lab {CLUSTER} up" in out

    status, out, shown = on_a_terminal("check", "-C", CLUSTER)
    assert status == 0, out
    assert "probing" in shown and "paths" in shown, shown
    assert "\x1b[" not in out and "paths work" in out

    # Piped, the same commands show no bar at all.
    piped = podnet("check", "-C", CLUSTER)
    assert "probing" not in piped.stderr and piped.stdout.count("paths work") == 1

    web = podnet("get", "pods", "-C", CLUSTER, "-n", "dev", "-o", "name").stdout.split()[0]
    for command in (["inspect", "-o", "json"], ["graph", "-C", CLUSTER, "-o", "json"],
                    ["trace", "-C", CLUSTER, "client", "dev/" + web.split("/")[-1], "-p", "80"]):
        status, out, shown = on_a_terminal(*command)
        assert status == 0, (command, shown)
        assert "reading this host's namespaces" in shown, (command, shown)
        assert "\x1b[" not in out, command
        if command[-1] == "json":
            json.loads(out)

    status, out, shown = on_a_terminal("down", "-C", CLUSTER)
    assert status == 0, shown
    assert f"removing lab {CLUSTER}" in shown and f"lab {CLUSTER} down" in out
