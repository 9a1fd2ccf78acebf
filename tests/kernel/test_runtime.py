"""Containers as real processes in a pod's namespaces: spawn, exec, stop, hostname, /etc/hosts.

Every test builds its own pods (a named netns with lo up, a UTS namespace, a hosts file) inside
the sandbox and sends traffic only to them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import podnet
from podnet.errors import ObjectExistsError, ObjectMissingError, StateError
from podnet.kernel import netns
from podnet.runtime.enter import enter_pod
from podnet.runtime.hosts import render_hosts
from podnet.runtime.pod import create_pod_uts, delete_pod_uts, write_hosts_file
from podnet.runtime.procs import ProcessRef, identify, is_alive, stop
from podnet.runtime.spawner import Spawner, SpawnError, SpawnRequest

pytestmark = pytest.mark.kernel

SERVICE_ALIAS = ("10.96.0.10", ["web.dev.svc.cluster.local", "web"])
SRC = os.path.dirname(os.path.dirname(os.path.abspath(podnet.__file__)))


@dataclass(frozen=True)
class Pod:
    name: str
    ip: str
    netns: str
    uts: str
    hosts: str
    logs: str

    def request(
        self, container: str, argv: list[str] | None = None, ports: tuple[int, ...] = ()
    ) -> SpawnRequest:
        return SpawnRequest(
            netns_path=self.netns,
            uts_path=self.uts,
            hosts_file=self.hosts,
            argv=argv,
            ports=list(ports),
            log_path=f"{self.logs}/{container}.log",
            pod_name=self.name,
            pod_namespace="dev",
            node_name="kind-worker",
            pod_ip=self.ip,
            container_name=container,
            env=[("GREETING", "hello from env")],
        )


@pytest.fixture
def state_dir() -> Iterator[str]:
    path = f"/run/podnet/test-{uuid.uuid4().hex[:8]}"
    os.makedirs(f"{path}/logs", mode=0o700)
    yield path
    for name in os.listdir(path):
        if name.endswith(".uts"):
            delete_pod_uts(f"{path}/{name}")
    shutil.rmtree(path)


@pytest.fixture
def make_pod(netns_factory: Callable[[str], str], state_dir: str) -> Callable[[str, str], Pod]:
    def make(name: str, ip: str) -> Pod:
        path = netns.path_of(netns_factory("pod"))
        pod = Pod(name, ip, path, f"{state_dir}/{name}.uts", f"{state_dir}/{name}.hosts",
                  f"{state_dir}/logs")
        create_pod_uts(pod.uts, name)
        write_hosts_file(pod.hosts, ip, name, [SERVICE_ALIAS])
        return pod

    return make


@pytest.fixture
def started() -> Iterator[list[ProcessRef]]:
    """Every container a test starts goes here, so none outlives it even when it fails."""
    refs: list[ProcessRef] = []
    yield refs
    stop(refs)


@pytest.fixture
def web(make_pod: Callable[[str, str], Pod]) -> Pod:
    return make_pod("web-1", "10.244.1.5")


def exec_in(pod: Pod, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`podnet exec` in miniature: a fresh Python that calls exec_in_pod, as the CLI does."""
    code = (
        "import sys\n"
        "from podnet.runtime.enter import ExecError, exec_in_pod\n"
        "try:\n"
        "    exec_in_pod(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])\n"
        "except ExecError as exc:\n"
        "    sys.stderr.write(exc.for_people() + '\\n')\n"
        "    sys.exit(exc.exit_status)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, pod.netns, pod.uts, pod.hosts, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )


def ns_inode(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def pids_in(netns_path: str) -> list[int]:
    want = os.stat(netns_path).st_ino
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if ns_inode(entry, "net") == want:
                    found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return found


def http(pod: Pod, raw: bytes, host: str = "127.0.0.1", port: int = 80) -> bytes:
    """Send raw bytes to the pod's own address from inside its namespace; read until close."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with netns.entered(pod.netns):
        sock = socket.socket(family, socket.SOCK_STREAM)  # stays in the pod's namespace
    with sock:
        sock.settimeout(10)
        sock.connect((host, port))
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- the pod sandbox ---------------------------------------------------------------------------


def test_containers_live_in_the_pods_namespaces_and_outlive_the_spawner(
    web: Pod, started: list[ProcessRef]
) -> None:
    with Spawner() as spawner:
        refs = spawner.spawn_many(
            [web.request("http", ports=(80,)), web.request("sleeper", ["sleep", "1000"])]
        )
        started.extend(refs)
        spawner.keep()  # recorded (in `started`): they outlive the spawner
    # The spawner (and its zygote) are gone; the containers are not.
    assert all(is_alive(ref) for ref in refs)
    for ref in refs:
        assert ns_inode(ref.pid, "net") == os.stat(web.netns).st_ino
        assert ns_inode(ref.pid, "uts") == os.stat(web.uts).st_ino
        assert ns_inode(ref.pid, "net") != ns_inode("self", "net")
        assert ns_inode(ref.pid, "mnt") != ns_inode("self", "mnt")
        # Each leads its own process group and session, so `stop` can signal the group.
        assert os.getpgid(ref.pid) == ref.pid
        assert os.getsid(ref.pid) == ref.pid
        # Its /etc/hosts is the pod's file, and it holds no namespace of any other pod.
        with open(f"/proc/{ref.pid}/root/etc/hosts") as fh:
            assert fh.read() == render_hosts(web.ip, web.name, [SERVICE_ALIAS])
        with open(f"/proc/{ref.pid}/mountinfo") as fh:
            assert " nsfs " not in fh.read()
    http_ref, sleep_ref = refs
    # `ps` names what runs: the responder's container is a pause process (`sleep infinity`)
    # titled for it; its parent, the node's podhost, holds the pod's listening socket.
    with open(f"/proc/{http_ref.pid}/cmdline", "rb") as fh:
        assert fh.read() == b"podnet-http dev/web-1 http :80\0infinity\0"
    host = int(_status(http_ref.pid, "PPid"))
    with open(f"/proc/{host}/cmdline", "rb") as fh:
        assert fh.read().rstrip(b"\0") == b"podnet-http node kind-worker"
    assert ns_inode(host, "net") == ns_inode("self", "net")  # it sets foot in no pod
    with open(f"/proc/{sleep_ref.pid}/cmdline", "rb") as fh:
        assert fh.read() == b"sleep\x001000\x00"
    with open(f"/proc/{sleep_ref.pid}/environ", "rb") as fh:
        env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if item)
    assert env[b"HOSTNAME"] == b"web-1"
    assert env[b"GREETING"] == b"hello from env"
    assert b"PODNET_SANDBOX" not in env  # nothing of podnet's own environment leaks in
    # The responder takes EPIPE as an error (SIGPIPE ignored); an exec'd command gets the default.
    pipe_bit = 1 << (signal.SIGPIPE - 1)
    assert int(_status(host, "SigIgn"), 16) & pipe_bit
    assert not int(_status(http_ref.pid, "SigIgn"), 16) & pipe_bit
    assert not int(_status(sleep_ref.pid, "SigIgn"), 16) & pipe_bit
    log = f"{web.logs}/http.log"
    assert os.stat(log).st_mode & 0o777 == 0o600
    with open(log) as fh:
        assert "listening on 0.0.0.0:80" in fh.read()
    with open(f"/proc/{http_ref.pid}/fd/0") as fh:
        assert fh.read() == ""  # stdin is /dev/null


def test_exec_sees_the_pods_hostname_hosts_file_network_and_sysfs(web: Pod) -> None:
    assert exec_in(web, "hostname").stdout == "web-1\n"
    hosts = exec_in(web, "cat", "/etc/hosts")
    assert hosts.returncode == 0
    assert hosts.stdout == render_hosts("10.244.1.5", "web-1", [SERVICE_ALIAS])
    assert hosts.stdout.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    link = exec_in(web, "readlink", "/proc/self/ns/net").stdout.strip()
    assert link == f"net:[{os.stat(web.netns).st_ino}]"
    # /sys was mounted again inside the pod: it lists the pod's devices, not the sandbox's.
    assert exec_in(web, "ls", "/sys/class/net").stdout.split() == ["lo"]
    # Nothing leaked back: the host's hostname and /etc/hosts are untouched.
    assert socket.gethostname() != "web-1"
    with open("/etc/hosts") as fh:
        assert "Kubernetes-managed" not in fh.read()


def test_curl_in_the_pod_gets_the_page_naming_the_pod(web: Pod, started: list[ProcessRef]) -> None:
    with Spawner() as spawner:
        started.append(spawner.spawn(web.request("web", ports=(80, 8080))))
        spawner.keep()
    page = exec_in(web, "curl", "-s", "http://localhost:80")
    assert page.returncode == 0, page.stderr
    for fact in ("dev/web-1", "kind-worker", "10.244.1.5", "<b>web</b>", "<b>80</b>"):
        assert fact in page.stdout
    assert page.stdout.startswith("<!DOCTYPE html>")
    plain = exec_in(web, "curl", "-s", "-H", "Accept: text/plain", "http://localhost:8080/x")
    assert plain.stdout.splitlines()[0] == "podnet: pod dev/web-1 answered"
    assert "port:      8080" in plain.stdout
    assert exec_in(web, "curl", "-s", "http://[::1]:80/healthz").stdout == "ok\n"
    # The hosts file resolves the Service alias and the pod's own name.
    aliases = exec_in(web, "getent", "hosts", "web.dev.svc.cluster.local", "web-1").stdout
    assert aliases.split() == ["10.96.0.10", "web.dev.svc.cluster.local", "web",
                               "10.244.1.5", "web-1"]


def _listening(pod: Pod, port: int) -> bool:
    """Whether anything listens on TCP `port` in the pod's namespace (/proc/net/tcp there)."""
    with netns.entered(pod.netns), open("/proc/thread-self/net/tcp") as fh:
        rows = [line.split() for line in fh.readlines()[1:]]
    return any(row[1].endswith(f":{port:04X}") and row[3] == "0A" for row in rows)


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_pods_sockets_close_when_its_container_ends_and_its_neighbours_still_answer(
    make_pod: Callable[[str, str], Pod], started: list[ProcessRef]
) -> None:
    one, two = make_pod("web-1", "10.244.1.5"), make_pod("web-2", "10.244.1.6")
    with Spawner() as spawner:
        refs = spawner.spawn_many([one.request("web", ports=(80,)),
                                   two.request("web", ports=(80,))])
        started.extend(refs)
        spawner.keep()
    host = identify(int(_status(refs[0].pid, "PPid")))
    assert host is not None
    assert int(_status(refs[1].pid, "PPid")) == host.pid  # one podhost for the node's pods
    assert _listening(one, 80) and _listening(two, 80)
    stop([refs[0]])
    # The podhost closes the pod's sockets as soon as its container ends: nothing of podnet's
    # keeps the pod's namespace (and its veth) alive after `down` or `delete`.
    assert _wait_until(lambda: not _listening(one, 80)), "the ended pod still listens"
    assert b"pod dev/web-2 answered" in http(
        two, b"GET / HTTP/1.1\r\nAccept: text/plain\r\nConnection: close\r\n\r\n")
    stop([refs[1]])
    assert _wait_until(lambda: not is_alive(host)), "the podhost outlived its last pod"


def test_a_killed_podhost_takes_its_containers_with_it(
    web: Pod, started: list[ProcessRef]
) -> None:
    with Spawner() as spawner:
        ref = spawner.spawn(web.request("web", ports=(80,)))
        started.append(ref)
        spawner.keep()
    host = identify(int(_status(ref.pid, "PPid")))
    assert host is not None
    os.kill(host.pid, signal.SIGKILL)
    # The parent-death signal ends the container, so `up` sees it gone and starts it again,
    # instead of a pod whose process runs while nothing answers for it.
    assert _wait_until(lambda: not is_alive(ref)), "the container outlived its podhost"
    assert _wait_until(lambda: not _listening(web, 80))


def test_responder_survives_bad_requests(web: Pod, started: list[ProcessRef]) -> None:
    with Spawner() as spawner:
        ref = spawner.spawn(web.request("web", ports=(80,)))
        started.append(ref)
        spawner.keep()
    assert http(web, b"\x00\xffgarbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert http(web, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert http(web, b"GET / HTTP/1.1\r\nX: " + b"a" * 20000).startswith(b"HTTP/1.1 431 ")
    post = http(web, b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert post.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD" in post
    assert http(web, b"GET / HTTP/1.1\r\nHost: x") == b""  # half a request, then EOF: no answer
    # Two pipelined requests on one keep-alive connection, the second closing it.
    two = http(web, b"GET /healthz HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2
    assert two.endswith(b"Connection: close\r\n\r\n")  # HEAD: headers only
    assert http(web, b"GET / HTTP/1.0\n\n").startswith(b"HTTP/1.1 200 OK")  # bare LF accepted
    assert http(web, b"GET /healthz HTTP/1.0\r\n\r\n", host="::1").endswith(b"\r\n\r\nok\n")
    # Clients that reset the connection right after asking: the answer meets ECONNRESET.
    for _ in range(50):
        with netns.entered(web.netns):
            rude = socket.create_connection(("127.0.0.1", 80), timeout=10)
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.sendall(b"GET / HTTP/1.1\r\n\r\n" * 200)
        rude.close()
    assert http(web, b"GET /healthz HTTP/1.0\r\n\r\n").endswith(b"ok\n")
    assert is_alive(ref)


def test_exec_passes_exit_codes_stdin_and_pipes_between_pods(
    make_pod: Callable[[str, str], Pod],
) -> None:
    a, b = make_pod("pod-a", "10.244.1.10"), make_pod("pod-b", "10.244.1.11")
    assert exec_in(a, "sh", "-c", "exit 7").returncode == 7
    assert exec_in(a, "cat", stdin="hi\n").stdout == "hi\n"
    # podnet exec a -- sh -c 'echo ...' | podnet exec b -- sh -c 'read l; echo "$l -> $(hostname)"'
    code = (
        "import sys\nfrom podnet.runtime.enter import exec_in_pod\n"
        "exec_in_pod(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    first = subprocess.Popen(
        [sys.executable, "-c", code, a.netns, a.uts, a.hosts, "sh", "-c", "echo from $(hostname)"],
        stdout=subprocess.PIPE,
        env=env,
    )
    second = subprocess.run(
        [sys.executable, "-c", code, b.netns, b.uts, b.hosts,
         "sh", "-c", 'read line; echo "$line, to $(hostname)"'],
        stdin=first.stdout,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert first.stdout is not None
    first.stdout.close()
    assert first.wait(timeout=60) == 0
    assert second.stdout == "from pod-a, to pod-b\n"
    # SIGPIPE is back at its default for the command: `yes | head` ends quietly.
    piped = exec_in(a, "sh", "-c", "yes | head -n 2")
    assert (piped.stdout, piped.stderr) == ("y\ny\n", "")


def test_missing_command_exits_127_naming_it(web: Pod) -> None:
    result = exec_in(web, "no-such-command-4b1d")
    assert result.returncode == 127
    assert "no-such-command-4b1d: command not found" in result.stderr
    assert exec_in(web, "/etc/hosts").returncode == 126  # not executable


def test_enter_pod_fails_cleanly_when_the_pod_is_gone() -> None:
    before = ns_inode("self", "net")
    with pytest.raises(ObjectMissingError, match="does-not-exist"):
        enter_pod("/run/netns/does-not-exist", None, None)
    assert ns_inode("self", "net") == before


# --- stopping ----------------------------------------------------------------------------------


def test_stop_checks_start_time_and_ends_the_whole_group(
    web: Pod, started: list[ProcessRef]
) -> None:
    with Spawner() as spawner:
        ref = spawner.spawn(web.request("shell", ["sh", "-c", "sleep 1000 & sleep 1000"]))
        started.append(ref)
        spawner.keep()
    deadline = time.monotonic() + 10
    while len(pids_in(web.netns)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # the shell forks its two sleeps
    members = [identify(pid) for pid in pids_in(web.netns)]
    assert len(members) == 3 and all(m is not None for m in members)
    # A ref whose start time differs names another process that got the PID: never signalled.
    stop([ProcessRef(ref.pid, ref.starttime + 1)])
    assert is_alive(ref)
    stop([ref])
    assert not is_alive(ref)
    assert not any(m is not None and is_alive(m) for m in members)
    stop([ref])  # twice: nothing left, nothing raised


def test_stop_kills_what_ignores_sigterm(web: Pod, started: list[ProcessRef]) -> None:
    with Spawner() as spawner:
        ref = spawner.spawn(
            web.request("stubborn", ["sh", "-c", "trap '' TERM; echo ready; sleep 1000 & wait"])
        )
        started.append(ref)
        spawner.keep()
    log = f"{web.logs}/stubborn.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # SIGTERM must come after the trap is set
        with open(log) as fh:
            if "ready" in fh.read():
                break
        time.sleep(0.01)
    begun = time.monotonic()
    stop([ref], timeout=0.3)
    assert not is_alive(ref)
    assert time.monotonic() - begun < 5


# --- failures ----------------------------------------------------------------------------------


def test_a_batch_is_all_or_nothing(web: Pod) -> None:
    with Spawner() as spawner, pytest.raises(SpawnError) as failed:
        spawner.spawn_many(
            [web.request("good", ports=(80,)), web.request("bad", ["no-such-command-4b1d"])]
        )
    assert "container bad of pod dev/web-1: no-such-command-4b1d: command not found" in str(
        failed.value
    )
    assert pids_in(web.netns) == []  # the good one was stopped with the batch


def test_containers_never_collected_are_stopped_on_close(web: Pod) -> None:
    spawner = Spawner()
    spawner.submit(web.request("orphan", ["sleep", "1000"]))
    spawner.close()  # e.g. the caller failed between submit and collect: no record names it
    assert pids_in(web.netns) == []


def test_a_dead_spawner_process_is_an_error_not_a_hang(web: Pod) -> None:
    spawner = Spawner()
    spawner.start()
    zygote = spawner._proc
    assert zygote is not None
    zygote.kill()
    zygote.wait()
    with pytest.raises(SpawnError, match="container x of pod dev/web-1: the spawner process exit"):
        spawner.spawn(web.request("x", ["sleep", "1000"]))
    spawner.close()
    assert pids_in(web.netns) == []


def test_spawn_errors_name_the_container_and_the_cause(web: Pod) -> None:
    with Spawner() as spawner:
        first = spawner.spawn(web.request("a", ports=(80,)))
        try:
            with pytest.raises(SpawnError, match=r"container b of pod dev/web-1: .*port 80"):
                spawner.spawn(web.request("b", ports=(80,)))
            gone = Pod(web.name, web.ip, "/run/netns/gone", web.uts, web.hosts, web.logs)
            with pytest.raises(SpawnError, match="gone"):
                spawner.spawn(gone.request("c", ["true"]))
            # The spawner still works after failures.
            assert is_alive(spawner.spawn(web.request("d", ["sleep", "1000"])))
        finally:
            stop([first, *(r for p in pids_in(web.netns) if (r := identify(p)))])


# --- the sandbox files -------------------------------------------------------------------------


def test_uts_files_are_exclusive_and_deleting_is_idempotent(state_dir: str) -> None:
    path = f"{state_dir}/solo.uts"
    create_pod_uts(path, "solo")
    assert os.stat(path).st_mode & 0o777 == 0o444
    with pytest.raises(ObjectExistsError):
        create_pod_uts(path, "solo")
    assert delete_pod_uts(path) is True
    assert not os.path.exists(path)
    assert delete_pod_uts(path) is False


def test_hosts_file_is_atomic_0644_and_never_written_through_a_symlink(state_dir: str) -> None:
    path = f"{state_dir}/p.hosts"
    write_hosts_file(path, "10.244.0.9", "p")
    write_hosts_file(path, "10.244.0.9", "p")  # replaced, not appended
    assert os.stat(path).st_mode & 0o777 == 0o644
    with open(path) as fh:
        assert fh.read() == render_hosts("10.244.0.9", "p")
    assert [n for n in os.listdir(state_dir) if n.endswith(".tmp")] == []
    os.symlink("/etc", f"{state_dir}/link")
    with pytest.raises(StateError, match="it is a symlink"):
        write_hosts_file(f"{state_dir}/link/hosts", "10.244.0.9", "p")
    victim = f"{state_dir}/victim"
    with open(victim, "w") as fh:
        fh.write("keep me\n")
    os.symlink(victim, f"{state_dir}/q.hosts")
    write_hosts_file(f"{state_dir}/q.hosts", "10.244.0.9", "q")  # the link is replaced
    with open(victim) as fh:
        assert fh.read() == "keep me\n"


# --- measured ----------------------------------------------------------------------------------


def test_200_responders_in_200_pods(
    netns_factory: Callable[[str], str], state_dir: str, started: list[ProcessRef]
) -> None:
    count = 200
    pods = []
    for i in range(count):
        path = netns.path_of(netns_factory("b"))
        name = f"bench-{i}"
        pod = Pod(name, f"10.244.{i // 250}.{i % 250 + 2}", path, f"{state_dir}/{name}.uts",
                  f"{state_dir}/{name}.hosts", f"{state_dir}/logs")
        create_pod_uts(pod.uts, name)
        write_hosts_file(pod.hosts, pod.ip, name)
        pods.append(pod)
    requests = [pod.request("web", ports=(80,)) for pod in pods]
    begun = time.perf_counter()
    with Spawner() as spawner:  # start-up of the zygote included
        refs = spawner.spawn_many(requests)
        elapsed = time.perf_counter() - begun
        spawner.keep()
    started.extend(refs)
    assert all(is_alive(ref) for ref in refs)
    assert [ns_inode(ref.pid, "net") for ref in refs] == [os.stat(p.netns).st_ino for p in pods]
    for i in (0, count // 2, count - 1):
        assert f"pod dev/bench-{i} answered".encode() in http(
            pods[i], b"GET / HTTP/1.1\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        )
    rss = statistics.median(_status_kb(ref.pid, "VmRSS") for ref in refs)
    private = statistics.median(_private_kb(ref.pid) for ref in refs)
    begun = time.perf_counter()
    stop(refs)
    stopped = time.perf_counter() - begun
    print(
        f"\n{count} responder containers in {count} pods: spawn {elapsed * 1000:.0f} ms "
        f"({elapsed * 1000 / count:.2f} ms each, zygote start-up included); "
        f"VmRSS {rss:.0f} kB, private {private:.0f} kB each (median); stop {stopped * 1000:.0f} ms"
    )
    # How fast is for bench/ (bench/scale.py): a timed assertion fails on a busy machine.


def _status(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status") as fh:
        return next(line.split()[1] for line in fh if line.startswith(key + ":"))


def _status_kb(pid: int, key: str) -> int:
    return int(_status(pid, key))


def _private_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        return sum(int(line.split()[1]) for line in fh if line.startswith("Private_"))


def test_containers_nobody_recorded_end_with_the_zygote(
    netns_factory: Callable[[str], str], state_dir: str
) -> None:
    """A crash of podnet mid-`up` (the caller SIGKILLed) must not leave containers running
    that no record names: the zygote stops everything started since the last keep()."""
    path = netns.path_of(netns_factory("crash"))
    pod = Pod("crash-1", "10.244.9.2", path, f"{state_dir}/crash.uts", f"{state_dir}/crash.hosts",
              f"{state_dir}/logs")
    create_pod_uts(pod.uts, pod.name)
    write_hosts_file(pod.hosts, pod.ip, pod.name)
    spawner = Spawner()
    ref = spawner.spawn(pod.request("web", ports=(80,)))
    assert is_alive(ref)
    spawner._shutdown()  # what a SIGKILLed podnet leaves: stdin closed, no keep, no stop
    deadline = time.monotonic() + 10
    while is_alive(ref) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(ref)
