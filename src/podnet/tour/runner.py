"""Run the lesson on the live lab: fill in each step from the lab, run its commands for real
(pipes between processes, no shell), and check the output against what the lesson expects.

Every process the tour starts is bounded: a step's commands are killed after STEP_TIMEOUT, and
background servers are stopped by PID when the tour ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from podnet.errors import StateError
from podnet.tour.lesson import LESSON, TourStep
from podnet.trace.target import LabView, read_lab

__all__ = [
    "STEP_TIMEOUT",
    "Facts",
    "ReadyStep",
    "StepResult",
    "TourSession",
    "fill",
    "lab_facts",
    "load_facts",
    "prepare",
]

STEP_TIMEOUT = 30.0
Facts = dict[str, "str | list[str]"]
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class ReadyStep:
    """A lesson step with the lab's names filled in."""

    number: int
    step: TourStep
    title: str
    commands: tuple[str, ...]  # as shown to people
    expect: tuple[str, ...]  # regular expressions, values escaped
    expect_not: tuple[str, ...]
    explain: str
    diagram: str


@dataclass(frozen=True)
class StepResult:
    ready: ReadyStep
    output: str
    ok: bool
    problems: tuple[str, ...] = ()
    seconds: float = 0.0


def _pod_key(p: Mapping[str, object]) -> str:
    return f"{p.get('namespace')}/{p.get('name')}"


def _ports(p: Mapping[str, object]) -> list[int]:
    out: list[int] = []
    for c in p.get("spec") or []:  # type: ignore[attr-defined]
        if isinstance(c, dict):
            out += [x for x in c.get("ports") or [] if isinstance(x, int)]
    return out


def lab_facts(lab: LabView) -> Facts:
    """The names the lesson's placeholders stand for, from the running lab."""
    if not lab.pods:
        raise StateError("no lab is up (or it has no pods)",
                         hint="bring the lesson's lab up first: `podnet up`")
    own = [p for p in lab.pods if p.get("namespace") != "kube-system"]  # not the cluster DNS
    served = [p for p in own if _ports(p)]
    if not served:
        raise StateError("no pod of the lab serves a port",
                         hint="the tour needs a pod with a containerPort, as the jumpbox has")
    pod = next((p for p in served if p.get("name") == "jumpbox"), served[0])
    node = next((n for n in lab.nodes if n.get("name") == pod.get("node")), {})
    cidr = str(node.get("pod_cidr", ""))
    gateway = ""
    if cidr:
        import ipaddress

        gateway = str(ipaddress.ip_network(cidr).network_address + 1)
    cluster = lab.cluster or "kind"
    pod_ip = str(pod.get("ip", "")).split("/")[0]
    v6 = ":" in pod_ip  # an IPv6-only lab (a dual-stack one's first family is IPv4, as kind's)
    facts: Facts = {
        "cluster": cluster,
        "attachment": str(lab.raw.get("attachment", "ptp")),
        "pod_key": _pod_key(pod),
        "pod_name": str(pod.get("name")),
        "pod_ns": str(pod.get("namespace")),
        "pod_ip": pod_ip,
        "pod_host": f"[{pod_ip}]" if v6 else pod_ip,  # as a URL holds it
        "family": "IPv6" if v6 else "IPv4",
        "inet": "inet6" if v6 else "inet",  # how `ip address` names the family's addresses
        "host_prefix": "128" if v6 else "32",
        "pod_netns": str(pod.get("netns")),
        "pod_veth": str(pod.get("veth")),
        "port": str(_ports(pod)[0]),
        "worker": str(pod.get("node")),
        "worker_ip": str(node.get("ip", "")).split("/")[0],
        "worker_pod_netns": [str(p.get("netns")) for p in lab.pods
                             if p.get("node") == pod.get("node")],
        "gateway": gateway,
        "orange": f"{cluster}-tour-orange",
        "green": f"{cluster}-tour-green",
    }
    facts.update(_dns_facts(lab))
    others = [p for p in own if p.get("node") != pod.get("node")]
    other = next((p for p in others if _ports(p)), others[0] if others else None)
    if other is not None:
        facts.update({
            "other": "yes",
            "other_key": _pod_key(other),
            "other_name": str(other.get("name")),
            "other_ns": str(other.get("namespace")),
            "other_ip": str(other.get("ip", "")).split("/")[0],
            "other_node": str(other.get("node")),
            "other_veth": str(other.get("veth")),
        })
    return facts


def _dns_facts(lab: LabView) -> Facts:
    """A Service to resolve, and the cluster DNS's address and domain (none: no such step)."""
    def ips(svc: dict[str, object]) -> list[str]:
        found = svc.get("cluster_ips")
        return [str(ip) for ip in found] if isinstance(found, list) else []

    dns = next((s for s in lab.services if s.get("namespace") == "kube-system"
                and s.get("name") == "kube-dns" and ips(s)), None)
    svc = next((s for s in lab.services if s.get("namespace") != "kube-system" and ips(s)
                and s.get("ports")), None)
    if dns is None or svc is None:
        return {}
    domain = str(lab.raw.get("dns_domain") or "cluster.local")
    ports = svc.get("ports")
    port = ports[0].get("port") if isinstance(ports, list) and isinstance(ports[0], dict) else 80
    name, ns = str(svc.get("name")), str(svc.get("namespace"))
    return {"service": "yes", "svc_name": name, "svc_ns": ns, "svc_ip": ips(svc)[0],
            "svc_port": str(port), "svc_fqdn": f"{name}.{ns}.svc.{domain}", "domain": domain,
            "dns_ip": ips(dns)[0]}


def fill(text: str, facts: Facts, *, regex: bool = False) -> list[str]:
    """`text` with its placeholders filled; one text per value of a list-valued placeholder."""
    names = _PLACEHOLDER.findall(text)
    lists = [n for n in names if isinstance(facts.get(n), list)]
    variants: list[dict[str, str]] = [{}]
    for name in dict.fromkeys(lists):
        values = facts[name]
        assert isinstance(values, list)
        variants = [{**v, name: item} for v in variants for item in values] or []
    out = []
    for chosen in variants:
        def sub(m: re.Match[str], chosen: dict[str, str] = chosen) -> str:
            name = m.group(1)
            value = chosen.get(name, facts.get(name))
            if value is None or isinstance(value, list):
                raise KeyError(name)
            return re.escape(value) if regex else value
        out.append(_PLACEHOLDER.sub(sub, text))
    return out


def prepare(facts: Facts, lesson: Sequence[TourStep] = LESSON) -> list[ReadyStep]:
    """The steps that apply to this lab, filled in."""
    ready: list[ReadyStep] = []
    for step in lesson:
        if step.when is not None and step.when != facts.get("attachment"):
            continue
        if any(n not in facts for n in step.needs):
            continue
        ready.append(ReadyStep(
            number=len(ready) + 1,
            step=step,
            title=fill(step.title, facts)[0],
            commands=tuple(c for line in step.run for c in fill(line, facts)),
            expect=tuple(e for x in step.expect for e in fill(x, facts, regex=True)),
            expect_not=tuple(e for x in step.expect_not for e in fill(x, facts, regex=True)),
            explain=fill(step.explain, facts)[0] if step.explain else "",
            diagram=fill(step.diagram, facts)[0].strip("\n") if step.diagram else "",
        ))
    return ready


def _argv(words: list[str]) -> list[str]:
    """`podnet` and `python3` are this podnet and its interpreter, wherever it is installed."""
    out: list[str] = []
    for i, word in enumerate(words):
        if i == 0 and word == "podnet":
            out += [sys.executable, "-m", "podnet"]
        elif word == "python3":
            out.append(sys.executable)
        else:
            out.append(word)
    return out


def _pipeline(line: str) -> list[list[str]]:
    return [_argv(shlex.split(part)) for part in line.split(" | ")]


@dataclass
class TourSession:
    """Runs steps; keeps the background processes it started, and stops them on close."""

    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    timeout: float = STEP_TIMEOUT

    def __enter__(self) -> TourSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_background()

    def stop_background(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=3)
        self.background.clear()

    def _run_line(self, line: str, deadline: float) -> tuple[str, int]:
        """Run one command line (a pipeline); its output and the last command's exit code."""
        stages = _pipeline(line)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            previous = None
            for n, argv in enumerate(stages):
                last = n == len(stages) - 1
                proc = subprocess.Popen(
                    argv, stdin=previous.stdout if previous else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT if last else subprocess.PIPE,
                )
                if previous is not None and previous.stdout is not None:
                    previous.stdout.close()  # the next stage owns the pipe now
                procs.append(proc)
                previous = proc
            out, _ = procs[-1].communicate(timeout=max(0.1, deadline - time.monotonic()))
            errors = b""
            for proc in procs[:-1]:
                if proc.stderr is not None:
                    errors += proc.stderr.read()
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            return (errors + out).decode(errors="replace"), procs[-1].returncode
        except subprocess.TimeoutExpired:
            return f"(stopped after {self.timeout:g} s)\n", 124
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()

    def start(self, ready: ReadyStep) -> StepResult:
        for line in ready.commands:
            argv = _pipeline(line)[0]
            self.background.append(subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            ))
        pids = ", ".join(str(p.pid) for p in self.background)
        return StepResult(ready, f"(started in the background: PID {pids})\n", True)

    def run(self, ready: ReadyStep) -> StepResult:
        if ready.step.stop_background:
            self.stop_background()
        if ready.step.background:
            return self.start(ready)
        started = time.monotonic()
        deadline = started + self.timeout
        while True:
            output, problems = self._attempt(ready, deadline)
            if not problems or time.monotonic() - started >= ready.step.retry:
                break
            time.sleep(0.2)
        return StepResult(ready, output, not problems, tuple(problems),
                          time.monotonic() - started)

    def _attempt(self, ready: ReadyStep, deadline: float) -> tuple[str, list[str]]:
        output = ""
        problems = []
        for line in ready.commands:
            text, code = self._run_line(line, deadline)
            output += text
            if code != 0 and not ready.step.fails:
                problems.append(f"`{line}` exited with status {code}")
        if ready.step.fails and code == 0:
            problems.append(f"`{line}` succeeded, and should have failed")
        for pattern in ready.expect:
            if not re.search(pattern, output, re.MULTILINE):
                problems.append(f"the output does not show /{pattern}/")
        for pattern in ready.expect_not:
            if re.search(pattern, output, re.MULTILINE):
                problems.append(f"the output shows /{pattern}/, which it should not")
        return output, problems

    def results(self, steps: Sequence[ReadyStep]) -> Generator[StepResult, None, None]:
        """Run `steps` in order; if the caller stops early, the cleanup steps still run."""
        done = 0
        try:
            for ready in steps:
                yield self.run(ready)
                done += 1
        finally:
            for ready in steps[done + 1:] if done < len(steps) else []:
                if ready.step.cleanup:
                    self.run(replace(ready))


def load_facts(cluster: str | None) -> Facts:
    return lab_facts(read_lab(cluster))
