"""A CNI runtime for tests: runs a plugin executable as libcni and cnitool do.

Each call is a new process with the CNI_* environment and the network configuration on stdin
(CHECK and DEL carry the ADD's result as prevResult, and the runtime injects "name" and
"cniVersion" into the plugin's object, as libcni does for a conflist).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "Chain", "Plugin", "run_plugin"]

BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # what a runtime gives: no venv, no PYTHONPATH


@dataclass(frozen=True)
class Answer:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def doc(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    def ok(self) -> Answer:
        assert self.code == 0, f"plugin failed ({self.code}): {self.stdout!r} {self.stderr!r}"
        return self


def run_plugin(exe: str, env: dict[str, str], stdin: bytes, timeout: float = 60) -> Answer:
    proc = subprocess.run([exe], input=stdin, env={**BASE_ENV, **env}, capture_output=True,
                          timeout=timeout, check=False)
    return Answer(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Plugin:
    """One network: an executable and its plugin object (type, ipam, ...)."""

    label: str
    exe: str
    conf: dict[str, Any]
    cni_path: str
    name: str = "testnet"
    version: str = "1.0.0"
    results: dict[tuple[str, str], Any] = field(default_factory=dict)

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"cniVersion": self.version, "name": self.name, **self.conf, **extra}

    def call(self, command: str, *, container_id: str = "", netns: str = "",
             ifname: str = "eth0", conf: dict[str, Any] | None = None,
             stdin: bytes | None = None, env: dict[str, str] | None = None) -> Answer:
        full = {"CNI_COMMAND": command, "CNI_PATH": self.cni_path}
        if command not in ("VERSION", "STATUS", "GC"):
            full.update({"CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
                         "CNI_IFNAME": ifname})
        full.update(env or {})
        data = stdin if stdin is not None else json.dumps(conf or self.config()).encode()
        return run_plugin(self.exe, full, data)

    def add(self, container_id: str, netns: str, ifname: str = "eth0") -> Answer:
        answer = self.call("ADD", container_id=container_id, netns=netns, ifname=ifname)
        if answer.code == 0:
            self.results[(container_id, ifname)] = answer.doc
        return answer

    def with_prev(self, container_id: str, ifname: str = "eth0") -> dict[str, Any]:
        prev = self.results.get((container_id, ifname))
        return self.config(prevResult=prev) if prev is not None else self.config()

    def check(self, container_id: str, netns: str, ifname: str = "eth0") -> Answer:
        return self.call("CHECK", container_id=container_id, netns=netns, ifname=ifname,
                         conf=self.with_prev(container_id, ifname))

    def delete(self, container_id: str, netns: str, ifname: str = "eth0") -> Answer:
        answer = self.call("DEL", container_id=container_id, netns=netns, ifname=ifname,
                           conf=self.with_prev(container_id, ifname))
        if answer.code == 0:
            self.results.pop((container_id, ifname), None)
        return answer

    def gc(self, valid: list[tuple[str, str]]) -> Answer:
        attachments = [{"containerID": c, "ifname": i} for c, i in valid]
        return self.call("GC", conf=self.config(**{"cni.dev/valid-attachments": attachments}))

    def status(self) -> Answer:
        return self.call("STATUS")


@dataclass
class Chain:
    """A conflist run as libcni runs it: ADD through each plugin in order, each given the
    previous one's result as prevResult and the runtimeConfig keys its capabilities name; CHECK
    and DEL with the cached final result, DEL in reverse order."""

    name: str
    plugins: list[tuple[str, dict[str, Any]]]  # (executable, plugin object)
    cni_path: str
    version: str = "1.0.0"
    results: dict[tuple[str, str], Any] = field(default_factory=dict)

    def _conf(self, plugin: dict[str, Any], prev: Any, runtime: dict[str, Any]) -> bytes:
        conf = {"cniVersion": self.version, "name": self.name, **plugin}
        wanted = {k: v for k, v in runtime.items() if plugin.get("capabilities", {}).get(k)}
        if wanted:
            conf["runtimeConfig"] = wanted
        if prev is not None:
            conf["prevResult"] = prev
        return json.dumps(conf).encode()

    def _env(self, command: str, container_id: str, netns: str, ifname: str,
             extra: dict[str, str] | None) -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_PATH": self.cni_path,
                "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
                **(extra or {})}

    def add(self, container_id: str, netns: str, ifname: str = "eth0",
            runtime: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Answer:
        prev: Any = None
        answer = Answer(0, b"", b"")
        for exe, plugin in self.plugins:
            answer = run_plugin(exe, self._env("ADD", container_id, netns, ifname, env),
                                self._conf(plugin, prev, runtime or {}))
            if answer.code != 0:
                return answer
            prev = answer.doc
        self.results[(container_id, ifname)] = (prev, runtime or {})
        return answer

    def _with_cache(self, command: str, container_id: str, netns: str, ifname: str,
                    order: list[tuple[str, dict[str, Any]]]) -> Answer:
        prev, runtime = self.results.get((container_id, ifname), (None, {}))
        for exe, plugin in order:
            answer = run_plugin(exe, self._env(command, container_id, netns, ifname, None),
                                self._conf(plugin, prev, runtime))
            if answer.code != 0:
                return answer
        return Answer(0, b"", b"")

    def check(self, container_id: str, netns: str, ifname: str = "eth0") -> Answer:
        return self._with_cache("CHECK", container_id, netns, ifname, self.plugins)

    def delete(self, container_id: str, netns: str, ifname: str = "eth0") -> Answer:
        answer = self._with_cache("DEL", container_id, netns, ifname, self.plugins[::-1])
        if answer.code == 0:
            self.results.pop((container_id, ifname), None)
        return answer
