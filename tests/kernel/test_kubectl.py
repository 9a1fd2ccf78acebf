"""kubectl's habits on a real lab (sandbox only): get's options and watch, describe against
what `ip` says, logs (tail and follow), exec -it on a terminal, and two labs with a current one.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

PODNET = [sys.executable, "-m", "podnet"]
DEFAULT = Path(__file__).parents[2] / "src/podnet/model/default.yaml"


def podnet(*args: str, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODNET, *args], capture_output=True, text=True, timeout=120,
                            check=False, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"podnet {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


def ip_json(netns: str, *what: str) -> Any:
    out = subprocess.run(["ip", "-n", netns, "-j", *what], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def lab() -> Iterator[list[dict[str, Any]]]:
    podnet("up", "-q")
    try:
        yield json.loads(podnet("get", "pods", "-o", "json").stdout)["items"]
    finally:
        podnet("down", "-q")


@contextmanager
def running(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`podnet ARGS` in the background; killed (if still running) and its pipes closed after."""
    with subprocess.Popen([*PODNET, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def read_until(fd: int, pattern: str, timeout: float = 20.0) -> str:
    """What `fd` says until `pattern` appears (or the time is up: then fail with what came)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern.encode(), seen):
        left = deadline - time.monotonic()
        assert left > 0, f"{pattern!r} never came; got {seen.decode(errors='replace')!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                break
            seen += chunk
    assert re.search(pattern.encode(), seen), seen
    return seen.decode(errors="replace")


# --- get ------------------------------------------------------------------------------------------


def test_get_selects_sorts_and_prints_as_kubectl(lab: list[dict[str, Any]]) -> None:
    demo = sorted((p for p in lab if p["metadata"]["labels"].get("app") == "demo"),
                  key=lambda p: tuple(int(x) for x in p["status"]["podIP"].split(".")))
    names = podnet("get", "pods", "-l", "app in (demo)", "--sort-by", "{.status.podIP}",
                   "-o", "name").stdout.split()
    assert names == [f"pod/{p['metadata']['name']}" for p in demo]
    # One pod in `default`: a query still prints a List, so {.items[*]} finds it.
    assert podnet("get", "pods", "-n", "default", "-o",
                  "jsonpath={.items[*].metadata.name}").stdout == "jumpbox"
    assert podnet("get", "pod", "jumpbox", "-o", "jsonpath={.metadata.name}").stdout == "jumpbox"
    ranged = podnet("get", "pods", "-l", "app=demo", "-o",
                    'jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{"\\n"}{end}')
    assert sorted(ranged.stdout.splitlines()) == sorted(
        f"{p['metadata']['name']} {p['spec']['nodeName']}" for p in demo)
    rows = podnet("get", "pods", "-A", "--no-headers", "--show-labels").stdout.splitlines()
    assert len(rows) == len(lab) and rows[0].split()[0] == "default"
    assert rows[0].endswith("run=jumpbox")
    import yaml

    assert yaml.safe_load(podnet("get", "svc", "demo", "-n", "dev", "-o", "yaml").stdout)[
        "kind"] == "Service"
    nodes = podnet("get", "nodes", "-l", "node-role.kubernetes.io/control-plane",
                   "-o", "name").stdout.split()
    assert nodes == ["node/kind-control-plane"]


@pytest.mark.parametrize(("args", "message"), [
    (("get", "pods", "-o", "yml"), "unknown output format 'yml'"),
    (("get", "pods", "-l", "app in demo"), "set in parentheses"),
    (("get", "deployments"), "no resource type 'deployments'"),
    (("get", "pods", "nope"), "pod 'nope' not found"),
    (("get", "pods", "-o", "jsonpath={.items[9]}"), "out of bounds"),
    (("get", "pods", "--sort-by", "{.a"), "unclosed action"),
    (("get", "pods", "-C", "../victim"), "cannot name a lab"),
])
def test_get_refuses_what_kubectl_refuses(lab: list[dict[str, Any]], args: tuple[str, ...],
                                          message: str) -> None:
    result = podnet(*args, check=False)
    assert result.returncode != 0 and result.stdout == ""
    assert message in result.stderr and "Traceback" not in result.stderr


def test_get_links_names_the_uplinks_real_peer(lab: list[dict[str, Any]]) -> None:
    links = json.loads(podnet("get", "links", "-o", "json").stdout)["items"]
    record = json.loads(podnet("get", "nodes", "-o", "json").stdout)["items"]
    fabric = {link["ifindex"]: link for link in ip_json("podnet-kind", "link")}
    for node in record:
        uplink = next(x for x in links if x["node"] == node["metadata"]["name"]
                      and x["peer"]["netns"] == "podnet-kind")
        peer = fabric[uplink["peer"]["ifindex"]]  # what `ip` says lives at that index
        assert peer["ifname"] == uplink["peer"]["ifname"] == node["podnet"]["uplink"]
        assert peer["master"] == "br-kind"
    table = podnet("get", "links").stdout
    assert re.search(r"kind-worker\s+eth0@if\d+\s+UP\s+172\.18\.0\.3/16\s+veth[0-9a-f]{8}\s+"
                     r"\(node network\)", table), table


def test_watch_prints_changes_and_ends_cleanly_on_ctrl_c(lab: list[dict[str, Any]],
                                                         tmp_path: Path) -> None:
    with running("get", "pods", "-n", "dev", "-w", "--output-watch-events") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        fd = proc.stdout.fileno()
        first = read_until(fd, r"(ADDED.*\n.*){3}")
        assert first.splitlines()[0].split()[:3] == ["EVENT", "NAME", "READY"]
        more = tmp_path / "more.yaml"
        more.write_text(DEFAULT.read_text().replace("replicas: 3", "replicas: 4"))
        podnet("up", "-q", "-f", str(more))
        try:
            added = read_until(fd, r"ADDED\s+demo-\S+")
            new = re.search(r"ADDED\s+(demo-\S+)", added)
            assert new and new.group(1) not in first
            # seen Running, at once or (while `up` still starts it) in a MODIFIED row after
            if not re.search(rf"{re.escape(new.group(1))}\s+1/1\s+Running", added):
                read_until(fd, rf"MODIFIED\s+{re.escape(new.group(1))}\s+1/1\s+Running")
        finally:
            podnet("up", "-q")  # back to three replicas: the fourth goes
        read_until(fd, rf"DELETED\s+{re.escape(new.group(1))}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert b"Traceback" not in proc.stderr.read()


# --- describe -------------------------------------------------------------------------------------


def test_describe_pod_matches_what_ip_says(lab: list[dict[str, Any]]) -> None:
    doc = json.loads(podnet("describe", "pod", "jumpbox", "-o", "json").stdout)
    pod = next(p for p in lab if p["metadata"]["name"] == "jumpbox")
    netns, node = pod["podnet"]["netns"], pod["spec"]["nodeName"]
    eth0 = next(x for x in ip_json(netns, "addr") if x["ifname"] == "eth0")
    veth = next(x for x in ip_json(node, "addr") if x["ifname"] == pod["podnet"]["veth"])
    assert doc["Veth pair"]["Pod end"].startswith(f"eth0 (ifindex {eth0['ifindex']})")
    assert doc["Veth pair"]["Node end"].startswith(f"{veth['ifname']} (ifindex {veth['ifindex']})")
    assert eth0["link_index"] == veth["ifindex"] and veth["link_index"] == eth0["ifindex"]
    assert doc["Veth pair"]["Joined"].startswith("yes")
    line = next(x for x in doc["Interfaces"] if x.startswith("eth0 "))
    for a in eth0["addr_info"]:  # every family, link-local included
        assert f"{a['local']}/{a['prefixlen']}" in line
    routes = ip_json(netns, "route")
    assert len([r for r in doc["Routes"] if ":" not in r.split()[0]]) == len(routes)
    assert doc["Containers"]["nginx"]["PID"] == str(pod["status"]["containerStatuses"][0]["pid"])
    text = podnet("describe", "pod/jumpbox").stdout
    assert re.search(r"^Name:\s+jumpbox$", text, re.M) and "Joined:    yes" in text


def test_describe_node_and_service(lab: list[dict[str, Any]]) -> None:
    node = json.loads(podnet("describe", "node", "kind-worker", "-o", "json").stdout)
    uplink = node["Uplink"]["Peer"].split()[0]
    fabric = {x["ifname"]: x for x in ip_json("podnet-kind", "link")}
    assert fabric[uplink]["master"] == "br-kind"
    svc = json.loads(podnet("describe", "svc", "demo", "-n", "dev", "-o", "json").stdout)
    ips = sorted(p["status"]["podIP"] for p in lab if p["metadata"]["namespace"] == "dev")
    assert sorted(e.split(":")[0] for e in svc["Ports"]["http"]["Endpoints"].split(",")) == ips
    bad = podnet("describe", "link", "eth0", check=False)
    assert bad.returncode == 2 and "describe takes one of: pod, node, service" in bad.stderr


# --- logs -----------------------------------------------------------------------------------------


def fetch_from(pod: str, url: str) -> None:
    podnet("exec", pod, "--", "curl", "-s", "-o", "/dev/null", url)


def test_logs_tail_and_follow(lab: list[dict[str, Any]]) -> None:
    jump = next(p for p in lab if p["metadata"]["name"] == "jumpbox")
    url = f"http://{jump['status']['podIP']}/logs-test-1"
    fetch_from("jumpbox", url)
    whole = podnet("logs", "jumpbox").stdout.splitlines()
    assert whole[0].startswith("podnet responder for pod default/jumpbox")
    assert podnet("logs", "jumpbox", "--tail", "1").stdout.splitlines() == whole[-1:]
    assert "logs-test-1" in whole[-1]
    with running("logs", "jumpbox", "-f", "--tail", "0") as proc:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while True:  # until the follower, started meanwhile, prints a request made after it
            fetch_from("jumpbox", url.replace("-1", "-2"))
            try:
                read_until(proc.stdout.fileno(), "logs-test-2", timeout=1.0)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "logs -f printed nothing new"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    bad = podnet("logs", "jumpbox", "-c", "nope", check=False)
    assert bad.returncode == 1 and "container nope is not valid" in bad.stderr


# --- exec -it -------------------------------------------------------------------------------------


def test_exec_it_gives_a_terminal_of_the_callers_size(lab: list[dict[str, Any]]) -> None:
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (33, 101))
    proc = subprocess.Popen(
        [*PODNET, "exec", "-it", "jumpbox", "--", "sh", "-c",
         "tty; stty size; hostname; read line; echo got:$line; exit 7"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        out = read_until(master, r"jumpbox")
        assert re.search(r"/dev/pts/\d+", out) and "33 101" in out
        os.write(master, b"hello\r")
        read_until(master, r"got:hello")
        assert proc.wait(timeout=20) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    plain = podnet("exec", "-t", "jumpbox", "--", "true", check=False)
    assert plain.returncode == 0 and "Unable to use a TTY" in plain.stderr


# --- several labs ---------------------------------------------------------------------------------


def test_two_labs_and_the_current_one(lab: list[dict[str, Any]], tmp_path: Path) -> None:
    second = tmp_path / "lab2.yaml"
    text = DEFAULT.read_text()
    text = re.sub(r"(?m)^name: kind\b.*$", "name: lab2", text)
    text = text.replace("172.18.0.0/16", "172.19.0.0/16")
    assert "name: lab2" in text
    second.write_text(text)
    podnet("up", "-q", "-f", str(second))
    try:
        listed = json.loads(podnet("labs", "-o", "json").stdout)
        assert listed["current"] == "lab2"  # `up` made it current, as kind sets the context
        assert {x["name"] for x in listed["labs"]} == {"kind", "lab2"}
        assert podnet("labs", "current").stdout.strip() == "lab2"
        assert podnet("labs", "use", "kind").stdout.strip() == 'Switched to lab "kind".'
        nodes = json.loads(podnet("get", "nodes", "-o", "json").stdout)["items"]
        assert nodes[0]["status"]["internalIP"].startswith("172.18.")
        other = json.loads(podnet("get", "nodes", "-o", "json", "-C", "lab2").stdout)["items"]
        assert other[0]["status"]["internalIP"].startswith("172.19.")
        env = json.loads(podnet("get", "nodes", "-o", "json",
                                env={"PODNET_CLUSTER": "lab2"}).stdout)["items"]
        assert env[0]["status"]["internalIP"].startswith("172.19.")
        bad = podnet("labs", "use", "nope", check=False)
        assert bad.returncode == 1 and "no lab named nope is up" in bad.stderr
        assert "kind, lab2" in bad.stderr
        table = podnet("labs").stdout.splitlines()
        assert table[0].split()[:2] == ["CURRENT", "NAME"]
        assert any(re.match(r"\*\s+kind\s+up", row) for row in table)
    finally:
        podnet("down", "-q", "-C", "lab2")
    assert podnet("labs", "current").stdout.strip() == "kind"


# --- shell completion -----------------------------------------------------------------------------


def complete(line: str) -> list[str]:
    """What click's bash completion offers for the last word of `line` (as `podnet`)."""
    words = line.split(" ")
    env = {**os.environ, "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1),
           "_PODNET_COMPLETE": "bash_complete"}
    out = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'podnet'; "
                          "from podnet.cli.main import main; main()"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    return [item.split(",", 1)[1] for item in out.stdout.splitlines()]


def test_completion_offers_the_labs_names(lab: list[dict[str, Any]]) -> None:
    demo = sorted(p["metadata"]["name"] for p in lab if p["metadata"]["namespace"] == "dev")
    dns = sorted(p["metadata"]["name"] for p in lab if p["metadata"]["namespace"] == "kube-system")
    assert complete("podnet exec j") == ["jumpbox"]
    assert complete("podnet exec -n dev d") == demo
    assert complete("podnet logs ") == sorted(["jumpbox", *(f"dev/{n}" for n in demo),
                                               *(f"kube-system/{n}" for n in dns)])
    assert complete("podnet get pods -n ") == ["default", "dev", "kube-system"]
    assert complete("podnet get pods ") == sorted(["jumpbox", *demo, *dns])
    assert complete("podnet describe node kind-w") == ["kind-worker", "kind-worker2"]
    assert complete("podnet node-exec kind-c") == ["kind-control-plane"]
    assert complete("podnet labs use ") == ["kind"]
    assert complete("podnet get pods -C ") == ["kind"]
    assert complete("podnet get svc,po") == ["svc,pods"]


def test_a_container_started_again_counts_a_restart(lab: list[dict[str, Any]]) -> None:
    pod = json.loads(podnet("get", "pod", "jumpbox", "-o", "json").stdout)
    pid = pod["status"]["containerStatuses"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while "0/1" not in podnet("get", "pod", "jumpbox").stdout:  # until it is seen gone
        assert time.monotonic() < deadline
    podnet("up", "-q")
    again = json.loads(podnet("get", "pod", "jumpbox", "-o", "json").stdout)
    statuses = again["status"]["containerStatuses"]
    assert len(statuses) == 1 and statuses[0]["restartCount"] == 1 and statuses[0]["running"]
    row = podnet("get", "pod", "jumpbox", "--no-headers").stdout.split()
    assert row[2:5] == ["1/1", "Running", "1"]  # after NAMESPACE and NAME
    assert "Restart Count:  1" in podnet("describe", "pod", "jumpbox").stdout
