"""Helpers of the reliability suite: run podnet, look for what it may have left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PODNET = [sys.executable, "-m", "podnet"]
STATE_ROOT = "/run/podnet"
# What `ps` shows for processes podnet starts: the zygote, the built-in responder, a pause.
TITLES = (b"podnet-zygote", b"podnet-http", b"pause ")


def podnet(*args: str, check: bool = True, env: dict[str, str] | None = None,
           timeout: float = 120, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run the real CLI; `prefix` runs it through another program (setpriv, chroot)."""
    result = subprocess.run([*prefix, *PODNET, *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podnet {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Refused as a person should see it: exit status 1, `podnet: ...`, never a traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("podnet: "), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def netns_names() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _stat(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def podnet_processes() -> list[int]:
    """Live (not zombie) processes podnet started: zygote, responders, pause containers."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                title = fh.read()
        except OSError:
            continue
        if title.startswith(TITLES) and _stat(entry) not in (None, "Z", "X"):
            found.append(int(entry))
    return found


def foreign_namespaces() -> list[int]:
    """PIDs of processes in a network namespace other than this sandbox's: a container that
    outlived its pod holds a namespace `ip netns` no longer lists."""
    home = os.stat("/proc/self/ns/net").st_ino
    held = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _stat(entry) not in (None, "Z", "X"):
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino != home:
                    held.append(int(entry))
            except OSError:
                continue
    return held


def wait_for(condition: Callable[[], bool], message: str, timeout: float = 10.0) -> float:
    """Poll until `condition` holds; return how long it took (never sleep blindly)."""
    begun = time.monotonic()
    while not condition():
        if time.monotonic() - begun > timeout:
            raise AssertionError(message)
        time.sleep(0.01)
    return time.monotonic() - begun


def assert_nothing_left(cluster: str) -> None:
    """No namespace, no process, no state of podnet's: what `down` must leave."""
    wait_for(lambda: not podnet_processes(), f"podnet processes outlived lab {cluster}: "
             f"{podnet_processes()}")
    assert netns_names() == [], f"namespaces left: {netns_names()}"
    assert foreign_namespaces() == [], f"processes in other namespaces: {foreign_namespaces()}"
    assert not os.path.exists(f"{STATE_ROOT}/{cluster}"), os.listdir(f"{STATE_ROOT}/{cluster}")


def deployment_lab(tmp_path: Path, name: str, replicas: int, *, port: int = 8080) -> Path:
    """A three-node lab with one Deployment of responders."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {name}
nodes: [{{role: control-plane}}, {{role: worker}}, {{role: worker}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: dev}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        ports: [{{containerPort: {port}}}]
""")
    return path
