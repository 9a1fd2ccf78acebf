"""One container: the request that describes it, and the code its process runs after the fork.

`run` executes in a freshly forked child of the zygote (or of a node's `podhost`). It leads its
own session and process group, joins the pod, sends stdin to /dev/null and stdout/stderr to the
container's log, then becomes the container: the command (execvp), or a pause process (`sleep
infinity` under the container's title: about 130 kB, where a forked Python took 1.5 MB). A
container with ports and no command is a pause process whose pod's sockets the node's podhost
holds and answers (podnet's HTTP responder). It tells its parent how it went through a status
pipe:

    P <pid> <starttime>     first, always
    R                       ready (about to become the pause process)
    E <message>             could not start; the process then exits

An exec'd command sends nothing after P: the pipe is close-on-exec, so end of file without an E
means exec succeeded.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from podnet.kernel.syscalls import set_parent_death_signal
from podnet.runtime.enter import (
    ExecError,
    MountTemplate,
    enter_pod,
    exec_command,
    reset_signals,
)
from podnet.runtime.hosts import pod_hostname
from podnet.runtime.procs import identify

__all__ = [
    "DEFAULT_PATH",
    "SpawnRequest",
    "close_fds_except",
    "container_env",
    "describe_error",
    "open_log",
    "pause_title",
    "run",
    "set_process_title",
    "set_title",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class SpawnRequest:
    """Everything needed to start one container of one pod."""

    netns_path: str
    uts_path: str | None
    hosts_file: str | None
    argv: Sequence[str] | None  # None: the responder if `ports`, else a pause process
    ports: Sequence[int]
    log_path: str  # created 0600 if missing, appended to
    pod_name: str
    pod_namespace: str
    node_name: str
    pod_ip: str
    container_name: str
    env: Sequence[tuple[str, str]] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return f"container {self.container_name} of pod {self.pod_namespace}/{self.pod_name}"

    def to_wire(self) -> dict[str, Any]:
        return {
            "netns_path": self.netns_path,
            "uts_path": self.uts_path,
            "hosts_file": self.hosts_file,
            "argv": list(self.argv) if self.argv is not None else None,
            "ports": [int(p) for p in self.ports],
            "log_path": self.log_path,
            "pod_name": self.pod_name,
            "pod_namespace": self.pod_namespace,
            "node_name": self.node_name,
            "pod_ip": self.pod_ip,
            "container_name": self.container_name,
            "env": [[str(k), str(v)] for k, v in self.env],
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> SpawnRequest:
        argv = data["argv"]
        return cls(
            netns_path=str(data["netns_path"]),
            uts_path=data["uts_path"],
            hosts_file=data["hosts_file"],
            argv=[str(a) for a in argv] if argv is not None else None,
            ports=[int(p) for p in data["ports"]],
            log_path=str(data["log_path"]),
            pod_name=str(data["pod_name"]),
            pod_namespace=str(data["pod_namespace"]),
            node_name=str(data["node_name"]),
            pod_ip=str(data["pod_ip"]),
            container_name=str(data["container_name"]),
            env=[(str(k), str(v)) for k, v in data["env"]],
        )


def container_env(request: SpawnRequest, path: str | None = None) -> dict[str, str]:
    """A container's environment: PATH, HOSTNAME and HOME, then the container's own variables.

    Nothing else of podnet's environment leaks in, as nothing of kubelet's does into a pod.
    """
    env = {
        "PATH": path or os.environ.get("PATH") or DEFAULT_PATH,
        "HOSTNAME": pod_hostname(request.pod_name),
        "HOME": "/root",
    }
    env.update(request.env)
    return env


class _Status:
    """The write end of the status pipe; never written after it is closed (its number is reused)."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def send(self, text: str) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.fd, text.encode("utf-8", "replace"))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def run(
    request: SpawnRequest, status_fd: int, mount_template: MountTemplate | None = None, *,
    parent: int | None = None,
) -> NoReturn:
    """Become the container. Never returns, whatever happens: it ends in exec or os._exit.

    Call it in a fresh child of a single-threaded process. `mount_template`: see
    `enter.mount_template`; None copies the caller's mount namespace as `ip netns exec` does.
    `parent`: the PID of the caller, whose death then kills the container (a podhost's pods).
    """
    status = _Status(status_fd)
    code = 1
    try:
        close_fds_except(status_fd, *(mount_template.fds() if mount_template else ()))
        os.setsid()  # leads its own session and group: `stop` signals the group
        if parent is not None:
            set_parent_death_signal(signal.SIGKILL)
            if os.getppid() != parent:
                raise OSError(f"its parent {parent} ended before it started")
        me = identify(os.getpid())
        status.send(f"P {os.getpid()} {me.starttime if me else 0}\n")
        reset_signals()
        _redirect(request.log_path)
        enter_pod(
            request.netns_path,
            request.uts_path,
            request.hosts_file,
            mount_template=mount_template,
            sysfs=bool(request.argv),  # a pause process never reads /sys
        )
        if mount_template is not None:
            mount_template.close()
        os.chdir("/")
        os.umask(0o022)
        module = _in_process(request.argv)
        if module is not None:
            _run_module(request, module, status)
        if request.argv:
            exec_command(request.argv, container_env(request))
        _pause(request, status)
    except ExecError as exc:
        code = exc.exit_status
        status.send(f"E {exc.message}\n")
    except BaseException as exc:  # reported to the zygote, then this process ends
        status.send(f"E {describe_error(exc)}\n")
    finally:
        os._exit(code)


# podnet's own servers a container may run as `python3 -m MODULE ...`: run in this process (the
# zygote's interpreter, with podnet and its dependencies), as the responder is, so they need no
# Python on the machine's PATH and skip an interpreter's start.
_MODULES = ("podnet.dns.server",)


def _in_process(argv: Sequence[str] | None) -> str | None:
    if argv and len(argv) >= 3 and argv[0] == "python3" and argv[1] == "-m" \
            and argv[2] in _MODULES:
        return argv[2]
    return None


def _run_module(request: SpawnRequest, module: str, status: _Status) -> NoReturn:
    """`python3 -m MODULE ARGS` in this process: MODULE's `main(ARGS, ready=...)` is the
    container; it calls `ready` once it serves (so `up` returns with the server answering), and
    a start that fails before it is reported as any container's."""
    import importlib
    import sys

    os.environ.clear()
    os.environ.update(container_env(request))
    # As a Python started for the module would have it: a client gone mid-answer is EPIPE, an
    # error the server handles, not a signal that kills it.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    sys.argv = [module, *request.argv[3:]] if request.argv else [module]
    pod = f"{request.pod_namespace}/{request.pod_name}"
    set_title(module.rsplit(".", 1)[-1], f"{module} {pod} {request.container_name}")

    def ready() -> None:
        status.send("R\n")
        status.close()

    code: object = 1
    try:
        import site

        site.main()  # the zygote runs without site-packages (-S); the module's dependencies need it
        code = importlib.import_module(module).main(sys.argv[1:], ready=ready)
    except BaseException as exc:
        status.send(f"E {module}: {describe_error(exc)}\n")
        print(f"{module}: {describe_error(exc)}", file=sys.stderr)
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
    status.send(f"E {module} ended with status {code} before it served: see the container's log\n")
    os._exit(code if isinstance(code, int) else 1)


def pause_title(request: SpawnRequest) -> str:
    """What `ps` shows for a container without a command: the responder's, or a pause's."""
    pod = f"{request.pod_namespace}/{request.pod_name}"
    if request.ports:
        ports = ",".join(str(p) for p in request.ports)
        return f"podnet-http {pod} {request.container_name} :{ports}"
    return f"pause {pod} {request.container_name}"


def _pause(request: SpawnRequest, status: _Status) -> NoReturn:
    """Become the pause process: `sleep infinity` (coreutils, on every Debian), titled for `ps`;
    where it cannot run, this Python process idles instead."""
    title = pause_title(request)
    status.send("R\n")
    status.close()
    with contextlib.suppress(OSError):
        os.execvpe("sleep", [title, "infinity"], container_env(request))
    set_title(title.split(" ", 1)[0], title)
    while True:
        signal.pause()


def close_fds_except(*keep: int | None) -> None:
    """Drop every descriptor inherited from the zygote but stdio and `keep`: a responder never
    execs, so close-on-exec would not clean up for it."""
    low = 3
    for fd in sorted(k for k in keep if k is not None and k >= low):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def open_log(log_path: str) -> int:
    """A container's log, for appending: created 0600, a regular file (never a FIFO that would
    block us), never followed through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        log = os.open(log_path, flags, 0o600)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open log {log_path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(log).st_mode):
        os.close(log)
        raise OSError(f"log {log_path} is not a regular file")
    os.set_blocking(log, True)
    return log


def _redirect(log_path: str) -> None:
    """stdin from /dev/null; stdout and stderr appended to the log (see `open_log`)."""
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    log = open_log(log_path)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def set_title(comm: str, title: str) -> None:
    """Name the process for `ps`: it runs the zygote's Python, not a program of its own.

    `comm` (top, `ps -o comm`) goes through /proc/self/comm; the command line is rewritten in
    place, in the argv area the kernel shows as /proc/PID/cmdline (the zygote's argv reserves
    room for it), as setproctitle does. Python keeps its own copy of argv, so nothing reads it.
    """
    set_process_title(title)
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as fh:
        fh.write(comm[:15])


def set_process_title(title: str) -> None:
    """Overwrite this process's command line as `ps` shows it, cut to the room there is."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            raw = fh.read()
        fields = raw[raw.rindex(b")") + 1 :].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start and arg_end: fields 48 and 49
    except (OSError, ValueError, IndexError):
        return
    size = end - start
    if start <= 0 or size <= 1:
        return
    data = title.encode()[: size - 1]
    ctypes.memmove(start, data + b"\0" * (size - len(data)), size)


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not hasattr(exc, "message"):
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())  # one line: the status protocol is line-based
