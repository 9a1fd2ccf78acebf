"""Fixtures for the CNI tests: podnet-cni installed into a throw-away bin dir under /run (the
sandbox's tmpfs), a running agent, and networks of each flavor with their own subnet and state."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from podnet.cni.agentctl import stop_agent
from tests.cni.driver import Plugin

SRC = str(Path(__file__).resolve().parents[2] / "src")
REFERENCE_DIR = "/usr/lib/cni"
_subnets = itertools.count(1)


@dataclass(frozen=True)
class Install:
    root: str
    bin_dir: str  # podnet-cni, podnet-ipam: C clients of the running agent
    lone_bin_dir: str  # the same, never starting an agent: every call runs in-process
    auto_bin_dir: str  # as `podnet cni install` sets up: the first call starts an agent
    socket: str
    auto_socket: str
    agent_pid: int

    @property
    def cni_path(self) -> str:
        return f"{self.bin_dir}:{REFERENCE_DIR}"


def install_podnet(bin_dir: str, socket: str, agent: str = "auto", client: str = "auto") -> None:
    from podnet.cni.install import InstallOptions, install

    # The C client where a compiler exists (as on the project's machines), else the Python one.
    install(InstallOptions(bin_dir=bin_dir, conf_dir=bin_dir + "-conf", socket=socket,
                           agent=agent, client=client))  # type: ignore[arg-type]


def start_agent(socket: str, *, quiet: bool = True) -> subprocess.Popen[bytes]:
    """`podnet cni agent` in the foreground, as a service manager runs it; returns once it
    serves."""
    env = {**os.environ, "PYTHONPATH": SRC}
    agent = subprocess.Popen(
        [sys.executable, "-c", "from podnet.cli.main import main; main()", "cni", "agent",
         *(["--quiet"] if quiet else []), "--socket", socket], env=env, stderr=subprocess.PIPE)
    assert agent.stderr is not None
    line = agent.stderr.readline()  # "podnet cni agent serving ...", after pyroute2 loaded
    assert b"serving" in line, line + agent.stderr.read()
    return agent


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


def stop_autostarted(socket: str) -> None:
    """The agent a client started for `socket` (its PID is in the lock file beside it)."""
    stop_agent(socket, timeout=20)


@pytest.fixture(scope="session")
def cni_install() -> Iterator[Install]:
    root = f"/run/podnet-cni-test-{uuid.uuid4().hex[:8]}"
    os.makedirs(root, mode=0o700)
    socket, auto_socket = f"{root}/agent.sock", f"{root}/auto/agent.sock"
    install_podnet(f"{root}/bin", socket)
    install_podnet(f"{root}/bin-lone", f"{root}/nobody.sock", agent="never")
    install_podnet(f"{root}/bin-auto", auto_socket)
    agent = start_agent(socket)
    try:
        yield Install(root, f"{root}/bin", f"{root}/bin-lone", f"{root}/bin-auto", socket,
                      auto_socket, agent.pid)
    finally:
        stop_process(agent)
        for served in (socket, auto_socket):  # agents the clients started (install stops ours)
            stop_autostarted(served)
        subprocess.run(["nft", "delete", "table", "inet", "podnet-cni"], capture_output=True,
                       check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def var_lib_cni() -> Iterator[str]:
    """/var/lib/cni as a node has it, inside the sandbox only: an overlay on /var/lib whose
    writes land in a tmpfs (the sandbox's mount namespace is private, so the machine's /var/lib
    never changes). What a simulated reboot keeps. Per module: later tests (inspect reads
    libcni's cache there) see the machine's /var/lib again."""
    from tests.cni.cri import overlay_var_lib

    work = Path(f"/run/podnet-varlib-{uuid.uuid4().hex[:8]}")
    try:
        with overlay_var_lib(work):
            yield "/var/lib/cni"
    finally:
        shutil.rmtree(work, ignore_errors=True)


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

    def make(kind: str, *, lone: bool = False, auto: bool = False,
             ipam: dict[str, Any] | None = None,
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
        podnet_bin = cni_install.lone_bin_dir if lone else \
            cni_install.auto_bin_dir if auto else cni_install.bin_dir
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
