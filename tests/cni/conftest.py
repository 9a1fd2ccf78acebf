"""Fixtures for the CNI tests: podnet-cni installed into a throw-away bin dir under /run (the
sandbox's tmpfs), a running agent, and networks of each flavor with their own subnet and state."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cni.driver import Plugin

SRC = str(Path(__file__).resolve().parents[2] / "src")
REFERENCE_DIR = "/usr/lib/cni"
_subnets = itertools.count(1)


@dataclass(frozen=True)
class Install:
    root: str
    bin_dir: str  # podnet-cni, podnet-ipam: C clients of the running agent
    lone_bin_dir: str  # the same, compiled against a socket nobody serves: in-process fallback
    socket: str
    agent_pid: int

    @property
    def cni_path(self) -> str:
        return f"{self.bin_dir}:{REFERENCE_DIR}"


def _install(bin_dir: str, socket: str) -> None:
    from podnet.cni.install import InstallOptions, install

    # The C client where a compiler exists (as on the project's machines), else the Python one.
    install(InstallOptions(bin_dir=bin_dir, conf_dir=bin_dir + "-conf", socket=socket))


@pytest.fixture(scope="session")
def cni_install() -> Iterator[Install]:
    root = f"/run/podnet-cni-test-{uuid.uuid4().hex[:8]}"
    os.makedirs(root, mode=0o700)
    socket = f"{root}/agent.sock"
    _install(f"{root}/bin", socket)
    _install(f"{root}/bin-lone", f"{root}/nobody.sock")
    env = {**os.environ, "PYTHONPATH": SRC}
    agent = subprocess.Popen(
        [sys.executable, "-c", "from podnet.cli.main import main; main()", "cni", "agent",
         "--quiet", "--socket", socket], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not os.path.exists(socket):
        assert agent.poll() is None, agent.stderr.read() if agent.stderr else "agent died"
        assert time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.02)
    try:
        yield Install(root, f"{root}/bin", f"{root}/bin-lone", socket, agent.pid)
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        if agent.stderr:
            agent.stderr.close()
        subprocess.run(["nft", "delete", "table", "inet", "podnet-cni"], capture_output=True,
                       check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def bridges() -> Iterator[list[str]]:
    """Bridge names a test creates (bridges outlive DEL by design); deleted after the test."""
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


@pytest.fixture
def flavor(cni_install: Install, bridges: list[str]) -> Callable[..., Plugin]:
    """Make a network: flavor(kind, **overrides) with kind one of podnet-ptp, podnet-bridge,
    podnet-ptp-hostlocal, podnet-bridge-hostlocal, ref-bridge, ref-ptp."""

    def make(kind: str, *, lone: bool = False, ipam: dict[str, Any] | None = None,
             version: str = "1.0.0", **extra: Any) -> Plugin:
        n = next(_subnets)
        name = f"t{n}-{uuid.uuid4().hex[:6]}"
        subnet = f"10.{100 + n // 250}.{n % 250}.0/24"
        state = f"{cni_install.root}/state/{name}"
        host_local = {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{state}/host-local"}
        podnet_ipam = {"type": "podnet-ipam", "ranges": [[{"subnet": subnet}]],
                       "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{state}/ipam"}
        bridge = f"br{n}"
        podnet_bin = cni_install.lone_bin_dir if lone else cni_install.bin_dir
        exe = f"{podnet_bin}/podnet-cni"
        if kind.startswith("ref-"):
            exe = f"{REFERENCE_DIR}/{kind[4:]}"
            conf: dict[str, Any] = {"type": kind[4:], "ipam": host_local}
            if kind == "ref-bridge":
                conf.update({"bridge": bridge, "isGateway": True})
        else:
            mode = "bridge" if "bridge" in kind else "ptp"
            conf = {"type": "podnet-cni", "mode": mode, "stateDir": f"{state}/cni",
                    "ipam": host_local if kind.endswith("hostlocal") else podnet_ipam}
            if mode == "bridge":
                conf["bridge"] = bridge
        if "bridge" in kind:
            bridges.append(bridge)
        if ipam:
            conf["ipam"] = {**conf["ipam"], **ipam}
        conf.update(extra)
        return Plugin(kind, exe, conf, f"{podnet_bin}:{REFERENCE_DIR}", name=name,
                      version=version)

    return make


def ip_json(*args: str) -> Any:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, check=True).stdout
    return json.loads(out or b"[]")


def snapshot(netns: str | None, *dirs: str) -> dict[str, Any]:
    """Links, addresses and routes of the host (and a pod namespace), and every state file: what
    "nothing was touched" compares."""
    pre = ["-n", netns] if netns else []
    files = {}
    for d in dirs:
        for path in sorted(Path(d).rglob("*")) if os.path.isdir(d) else ():
            files[str(path)] = path.read_bytes() if path.is_file() else b"<dir>"
    return {
        "host": [(link["ifname"], link.get("operstate")) for link in ip_json("link")],
        "host_routes": ip_json("route"),
        "pod": ip_json(*pre, "addr") if netns else None,
        "files": files,
    }
