"""Start containers fast: requests go to a zygote process that forks one process per container.

    with Spawner() as spawner:          # start it first: it warms up while netlink work runs
        ...                             # build namespaces, veths, routes
        refs = spawner.spawn_many(requests)

`submit` and `collect` split the exchange so the zygote can fork while the caller does other work:
requests stream to the zygote as they are submitted. A batch is all or nothing: if one container
fails to start, those of the batch that did start are stopped and SpawnError says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterable
from types import TracebackType
from typing import IO, Any, NoReturn

import podnet
from podnet.errors import ProcessError
from podnet.runtime.container import SpawnRequest
from podnet.runtime.procs import ProcessRef, stop

__all__ = ["SpawnError", "SpawnRequest", "Spawner"]


_TITLE_ROOM = 100
# How long the zygote may take to end: `procs.stop` gives containers 2 s after SIGTERM and 2 s
# after SIGKILL, and the zygote stops those nobody recorded before it exits.
_STOP_WAIT = 6.0


class SpawnError(ProcessError):
    """Containers did not start; `failures` holds (request, reason) for each."""

    def __init__(self, failures: list[tuple[SpawnRequest, str]]) -> None:
        self.failures = failures
        first = failures[0][1]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(
            f"{first}{more}",
            hint="the container's log under /run/podnet/<cluster>/logs may say more",
        )


class Spawner:
    """A client of one zygote process, usable as a context manager. Containers outlive it: once
    `collect` has returned them they belong to nobody, and the caller records them."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout  # seconds without any progress before we give up on the zygote
        self._proc: subprocess.Popen[bytes] | None = None
        self._out = bytearray()  # requests not yet written
        self._in = bytearray()  # answer bytes not yet split into lines
        self._submitted: list[SpawnRequest] = []  # since the last collect; ids follow on
        self._first_id = 0  # id of self._submitted[0]
        self._answers: dict[int, dict[str, Any]] = {}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Launch the zygote (a few milliseconds here; it warms up on its own)."""
        if self._proc is not None:
            return
        root = os.path.dirname(os.path.dirname(os.path.abspath(podnet.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p
        )
        # -S: no site-packages scan; podnet is found through PYTHONPATH, the rest is stdlib.
        # Our PID tells the zygote who its caller is (it ends with us, see zygote). The blank
        # argument is room in the argv area, where containers write the command line `ps`
        # shows for them ("podnet-http dev/web-1 web :80").
        self._proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "podnet.runtime.zygote", str(os.getpid()),
             " " * _TITLE_ROOM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env=env,
        )
        assert self._proc.stdin is not None
        os.set_blocking(self._proc.stdin.fileno(), False)

    def close(self) -> None:
        """Stop the zygote (end of its stdin). Containers `collect` handed out keep running;
        any submitted but never collected are stopped: nobody recorded them."""
        if self._proc is not None and self._submitted:
            with contextlib.suppress(SpawnError):
                stop(self.collect())
        self._shutdown()

    def _shutdown(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        try:
            proc.wait(timeout=_STOP_WAIT)  # it may be stopping containers nobody recorded
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Spawner:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- spawning ---------------------------------------------------------------------------

    def spawn(self, request: SpawnRequest) -> ProcessRef:
        return self.spawn_many([request])[0]

    def spawn_many(self, requests: Iterable[SpawnRequest]) -> list[ProcessRef]:
        """Start every container, pipelined; their refs in request order (all or nothing)."""
        for request in requests:
            self.submit(request)
        return self.collect()

    def keep(self) -> None:
        """Tell the zygote that every container collected so far is recorded. Without this, the
        zygote stops them when it ends: after a crash, nothing else knows they exist."""
        if self._proc is None:
            return
        self._out += b'{"keep": true}\n'
        while self._out:
            if not self._pump(self.timeout):
                self._abandon(f"the spawner process made no progress for {self.timeout:.0f} s")

    def submit(self, request: SpawnRequest) -> None:
        """Queue one container; it starts while the caller goes on. `collect` gets the result."""
        self.start()
        ident = self._first_id + len(self._submitted)
        self._out += (json.dumps({"id": ident, "request": request.to_wire()}) + "\n").encode()
        self._submitted.append(request)
        self._pump(0.0)

    def collect(self) -> list[ProcessRef]:
        """Wait for everything submitted since the last collect; refs in submission order.

        Raises SpawnError if any failed, after stopping the ones of this batch that started.
        """
        submitted, first = self._submitted, self._first_id
        while len(self._answers) < len(submitted):
            if not self._pump(self.timeout):
                self._abandon(f"the spawner process made no progress for {self.timeout:.0f} s")
        answers = [self._answers.pop(first + i) for i in range(len(submitted))]
        self._submitted, self._first_id = [], first + len(submitted)
        refs: list[ProcessRef] = []
        failures: list[tuple[SpawnRequest, str]] = []
        for request, answer in zip(submitted, answers, strict=True):
            if "error" in answer:
                failures.append((request, str(answer["error"])))
            else:
                refs.append(ProcessRef(int(answer["pid"]), int(answer["starttime"])))
        if failures:
            stop(refs)
            raise SpawnError(failures)
        return refs

    # -- the pipe exchange ------------------------------------------------------------------

    def _pump(self, timeout: float) -> bool:
        """Write what the pipe takes and read what is there, waiting up to `timeout` seconds for
        either. Returns False if nothing moved."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        wfd, rfd = proc.stdin.fileno(), proc.stdout.fileno()
        poller = select.poll()  # not select(): the caller may hold more than 1024 descriptors
        poller.register(rfd, select.POLLIN)
        if self._out:
            poller.register(wfd, select.POLLOUT)
        ready = dict(poller.poll(timeout * 1000))
        if not ready:
            return False
        if wfd in ready:
            try:
                del self._out[: os.write(wfd, self._out)]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                self._abandon("the spawner process exited")
        if rfd in ready:
            data = os.read(rfd, 65536)
            if not data:
                self._abandon("the spawner process exited")
            self._in += data
            *lines, rest = self._in.split(b"\n")
            self._in = bytearray(rest)
            for line in lines:
                answer = json.loads(line)
                self._answers[int(answer["id"])] = answer
        return True

    def _abandon(self, why: str) -> NoReturn:
        """The zygote is gone or stuck: stop it and what this batch started, then raise."""
        proc = self._proc
        detail = ""
        if proc is not None:
            # SIGTERM, not SIGKILL: the zygote then stops what it started and we never saw.
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=_STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            detail = _tail(proc.stderr)
        self._shutdown()
        first = self._first_id
        pending = [r for i, r in enumerate(self._submitted) if first + i not in self._answers]
        answers = self._answers.values()
        stop([ProcessRef(int(a["pid"]), int(a["starttime"])) for a in answers if "pid" in a])
        self._first_id += len(self._submitted)
        self._submitted, self._answers, self._out = [], {}, bytearray()
        what = f"{why}{': ' + detail if detail else ''}"
        raise SpawnError([(r, f"{r.label}: {what}") for r in pending] or [(_NO_REQUEST, what)])


_NO_REQUEST = SpawnRequest("", None, None, None, (), "", "", "", "", "", "")


def _tail(stream: IO[bytes] | None) -> str:
    if stream is None:
        return ""
    with contextlib.suppress(OSError, ValueError):
        text = stream.read().decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else ""
    return ""
