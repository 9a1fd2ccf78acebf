"""What a person sees when a command cannot do its work (issue 10, items 6, 7 and 8): one clear
message, exit status 1, never a traceback, and nothing created or removed.

The tests without the `kernel` mark create nothing (commands refused before they start, or run
as an unprivileged user); the others run only in the sandbox.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.reliability.helpers import (
    PODNET,
    STATE_ROOT,
    assert_refused,
    netns_names,
    podnet,
    podnet_processes,
)

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")

# Every command that needs root, with arguments that would make it work as root.
ROOT_COMMANDS = [
    ("up",), ("down",), ("get", "pods"), ("exec", "jumpbox", "--", "true"),
    ("node-exec", "kind-worker", "--", "true"), ("check",), ("inspect",), ("inspect", "-o", "json"),
    ("trace", "jumpbox", "10.244.1.2"), ("graph",), ("graph", "-o", "svg"),
    ("tour", "--non-interactive"), ("describe", "pod", "jumpbox"), ("logs", "jumpbox"),
    ("delete", "pod", "jumpbox"),
]


def _unprivileged() -> tuple[str, ...]:
    if os.geteuid() != 0:
        return ()  # already
    return NOBODY


@pytest.mark.parametrize("args", ROOT_COMMANDS, ids=" ".join)
def test_a_command_that_needs_root_says_so_in_one_line(args: tuple[str, ...]) -> None:
    """Without root, inspect showed empty namespaces, graph an empty SVG, tour "no lab is up",
    trace "no pod matches", up and down tracebacks: wrong answers, exit 0 for some."""
    done = podnet(*args, check=False, prefix=_unprivileged())
    assert_refused(done, f"`podnet {args[0]}` needs root")
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert done.stdout == ""


@pytest.mark.parametrize("command", sorted({args[0] for args in ROOT_COMMANDS}))
def test_help_needs_no_root(command: str) -> None:
    done = podnet(command, "--help", prefix=_unprivileged())
    assert "Usage:" in done.stdout


def test_explain_and_graph_from_a_file_need_no_root() -> None:
    assert "ip netns add" in podnet("explain", prefix=_unprivileged()).stdout
    with tempfile.TemporaryDirectory() as where:  # readable by anyone, unlike pytest's tmp_path
        os.chmod(where, 0o755)
        doc = Path(where) / "host.json"
        doc.write_text(json.dumps({"schema": 1, "namespaces": [], "veth_pairs": []}))
        doc.chmod(0o644)
        drawn = podnet("graph", "--from", str(doc), prefix=_unprivileged())
    assert drawn.returncode == 0 and "\ngraph " in drawn.stdout  # Mermaid, after its init line


@pytest.mark.parametrize("content", ["{not json", '{"namespaces": [{"label": 1}]}', "[1, 2]"])
def test_graph_from_a_wrong_file_is_one_error(tmp_path: Path, content: str) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(content)
    assert_refused(podnet("graph", "--from", str(wrong), check=False),
                   "not a `podnet inspect -o json` document", "podnet inspect -o json > FILE")


def test_graph_from_an_endless_file_is_bounded() -> None:
    assert_refused(podnet("graph", "--from", "/dev/zero", check=False, timeout=30),
                   "larger than 64 MiB")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_cluster_name_that_is_a_path_is_refused(how: str) -> None:
    """`podnet down -C ../victim` unlinked /run/victim/lock, rules.nft, state.json."""
    args, env = (("-C", "../victim"), {}) if how == "option" else ((), {"PODNET_CLUSTER": "../v"})
    assert_refused(podnet("down", *args, check=False, env=env), "cannot name a lab",
                   "is not a DNS-1123 label")


def test_bad_state_paths_are_never_built() -> None:
    from podnet import state
    from podnet.errors import StateError

    for name in ("../victim", "a/b", ".", "..", "", "x" * 13, "UPPER"):
        with pytest.raises(StateError, match="lab name"):
            state.lab_dir(name)
        with pytest.raises(StateError):
            state.remove(name)
    assert state.lab_dir("kind") == f"{STATE_ROOT}/kind"


# --- in the sandbox ----------------------------------------------------------------------------


@pytest.mark.kernel
def test_down_of_a_path_leaves_the_victim_alone() -> None:
    victim = Path("/run/victim")
    victim.mkdir()
    try:
        for name in ("lock", "rules.nft", "state.json"):
            (victim / name).write_text("not podnet's")
        for args in (("down", "-C", "../victim"), ("get", "pods", "-C", "../victim")):
            podnet(*args, check=False)
        assert sorted(os.listdir(victim)) == ["lock", "rules.nft", "state.json"]
    finally:
        for child in victim.iterdir():
            child.unlink()
        victim.rmdir()


BAD_FILES = {
    "empty": ("# nothing but a comment\n", "is empty"),
    "loopback pods": ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
                      "networking: {podSubnet: 127.0.0.0/16}\n", "loopback"),
    "multicast pods": ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
                       "networking: {podSubnet: 224.0.0.0/16}\n", "multicast"),
    "a /30 node network": ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
                           "nodes: [{role: control-plane}, {role: worker}, {role: worker}]\n"
                           "networking: {nodeSubnet: 172.18.0.0/30}\n", "has room for 2"),
    "a /32 node network": ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
                           "networking: {nodeSubnet: 172.18.0.0/32}\n", "has room for 0"),
    "25,000 deep": ("nodes: " + "[" * 25000 + "]" * 25000 + "\n", "nests deeper"),
    "an alias bomb": ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {\n"
                      "  a: &a [x, x, x, x, x, x, x, x, x],\n"
                      + "".join(f"  {n}: &{n} [{', '.join([f'*{p}'] * 9)}],\n"
                                for p, n in zip("abcdefgh", "bcdefghi", strict=True))
                      + "}}\nspec: {containers: [{name: c}]}\n", "aliases expand"),
    "hostNetwork shaped": ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: "
                           "{kubernetes.io/egress-bandwidth: 1M}}\n"
                           "spec: {hostNetwork: true, containers: [{name: c}]}\n",
                           "a hostNetwork pod has none"),
    "hostIP": ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, "
               "ports: [{containerPort: 80, hostPort: 80, hostIP: 172.18.0.2}]}]}\n", "hostIP"),
    "two pods, one host port": (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: "
        "[{name: c, ports: [{containerPort: 80, hostPort: 80}]}]}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec: {containers: "
        "[{name: c, ports: [{containerPort: 81, hostPort: 80}]}]}\n", "host port 80/TCP"),
}


@pytest.mark.kernel
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_is_refused_and_creates_nothing(tmp_path: Path, case: str) -> None:
    text, fragment = BAD_FILES[case]
    topo = tmp_path / "bad.yaml"
    topo.write_text(text)
    assert_refused(podnet("up", "-f", str(topo), check=False, timeout=30), fragment,
                   "nothing was created")
    assert netns_names() == [] and podnet_processes() == []
    assert not os.path.exists(f"{STATE_ROOT}/kind"), "not even a lock file is left"


@pytest.mark.kernel
def test_dev_zero_is_refused_at_once() -> None:
    done = podnet("up", "-f", "/dev/zero", check=False, timeout=30)
    assert_refused(done, "larger than 8 MiB")
    with open("/dev/zero", "rb") as zero:  # `-f -`, kubectl's standard input, the same
        piped = subprocess.run([*PODNET, "up", "-f", "-"], stdin=zero, capture_output=True,
                               text=True, timeout=30, check=False)
    assert_refused(piped, "standard input", "larger than 8 MiB")
    assert not os.path.exists(f"{STATE_ROOT}/kind")


@pytest.mark.kernel
def test_a_full_run_podnet_is_said_plainly() -> None:
    """/run/podnet full (ENOSPC) was `OSError: [Errno 28]` and a traceback."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", STATE_ROOT], check=True)
    try:
        fd = os.open(f"{STATE_ROOT}/filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError, match="No space left"):
                while True:
                    os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
        done = podnet("up", "-q", check=False)
        assert_refused(done, "No space left on device", f"{STATE_ROOT} is full")
        assert netns_names() == [] and podnet_processes() == []
        assert sorted(os.listdir(STATE_ROOT)) == ["filler"], "no half-written record is left"
    finally:
        subprocess.run(["umount", STATE_ROOT], check=True)


@pytest.mark.kernel
def test_graph_serve_on_a_busy_port_is_one_error(tmp_path: Path) -> None:
    doc = tmp_path / "host.json"
    doc.write_text(json.dumps({"schema": 1, "namespaces": [], "veth_pairs": []}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = podnet("graph", "--from", str(doc), "--serve", "--port", str(port),
                      "--timeout", "1", check=False)
    assert_refused(done, f"cannot serve on 127.0.0.1:{port}", "--port 0")


def _removed_by_steps(out: str) -> dict[str, list[str]]:
    """Targets of the dry run's delete steps that no create step builds again."""
    steps = [line.split()[:2] for line in out.splitlines()
             if line and not line.startswith("dry run")]
    built = {target for action, target in steps if action.endswith(".create")}
    return {kind: [t for a, t in steps if a == f"{kind}.delete" and t not in built]
            for kind in ("pod", "node")}


@pytest.mark.kernel
def test_dry_run_names_what_it_would_remove(tmp_path: Path, labs: list[str]) -> None:
    """`up -f pod.yaml --dry-run` on the default lab planned to delete 4 pods and 2 nodes and
    its summary never said so. Whatever a plan removes, the summary names; without --prune
    what the file does not name is kept, and said to be."""
    labs.append("kind")
    podnet("up", "-q")
    before = podnet("get", "pods", "-o", "name").stdout
    pod = tmp_path / "pod.yaml"  # a cluster of one node and one pod: the lab's others unnamed
    pod.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
                   "nodes: [{role: control-plane}]\n---\n"
                   "apiVersion: v1\nkind: Pod\nmetadata: {name: solo}\n"
                   "spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\n")
    kept = podnet("up", "-f", str(pod), "--dry-run")
    assert _removed_by_steps(kept.stdout) == {"pod": [], "node": []}
    assert "0 pods to remove" in kept.stdout and "kept what" in kept.stderr
    pruned = podnet("up", "-f", str(pod), "--dry-run", "--prune").stdout
    removed = _removed_by_steps(pruned)
    assert len(removed["pod"]) == 4 and removed["node"] == ["kind-worker", "kind-worker2"]
    assert f"4 pods to remove ({', '.join(removed['pod'])})" in pruned
    assert "2 nodes to remove (kind-worker, kind-worker2)" in pruned
    assert podnet("get", "pods", "-o", "name").stdout == before, "a dry run changes nothing"
    assert "0 pods to remove" in podnet("up", "--dry-run").stdout
