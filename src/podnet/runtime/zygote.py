"""The zygote: a small, already-warm Python that forks a container per request.

Started once per `podnet up` (`python -S -m podnet.runtime.zygote PARENT_PID`, by `Spawner`),
with nothing but the stdlib and the runtime loaded, so a container costs a fork (about 0.5 ms
here), not a new interpreter (about 30 ms of CPU).

Protocol: one JSON object per line each way. In: {"id": N, "request": SpawnRequest.to_wire()},
or {"keep": true} once the caller has recorded every container answered so far. Out, in
completion order: {"id": N, "pid": P, "starttime": T} or {"id": N, "error": "text"}.

Crash safety: containers started since the last "keep" are known to nobody but the zygote. So
the moment its caller is gone, the zygote forks nothing more, drops its queue, and stops every
container it started since the last "keep", those still setting up included, in a `finally`
that runs however the loop ended. The caller is gone when:

- its pipe ends: end of file on stdin, or EPIPE writing an answer;
- the kernel sends the parent-death signal (SIGHUP, asked for with PR_SET_PDEATHSIG), or
  getppid() stops being the PID the caller passed (checked on every turn of the loop, which
  also covers a caller that died before the prctl);
- SIGTERM: someone ends the zygote on purpose.

Without this, a `kill -9` of `podnet up` left the zygote forking its queue into pods that `down`
was deleting, each container then holding a namespace `ip netns` no longer lists.

Several containers set themselves up at once (the zygote forks the next while the last one joins
its pod), so both cores work. Containers are the zygote's children while it lives (it reaps those
that exit); when the spawner closes it, they pass to init, or the nearest subreaper, and outlive
podnet. Each copies a mount namespace template made once here (see `enter.mount_template`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import selectors
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import PodnetError
from podnet.kernel.syscalls import set_parent_death_signal
from podnet.runtime import podhost
from podnet.runtime.container import SpawnRequest, run, set_process_title
from podnet.runtime.enter import MountTemplate, mount_template
from podnet.runtime.procs import ProcessRef, identify, stop

__all__ = ["main"]

_IN_FLIGHT = 16  # containers setting up at once
_STOP_WAIT = 2.0  # seconds for podhosts to name the containers they were starting
_ENDING = (signal.SIGHUP, signal.SIGTERM)  # the parent-death signal, and a request to end
_WAKE = "wake"  # selector tag of the signal wake-up pipe


@dataclass
class _Child:
    ident: int
    request: SpawnRequest
    fd: int
    ref: ProcessRef | None  # None: it ended before the zygote could look at it
    report: bytearray = field(default_factory=bytearray)
    handed_over: bool = False  # to a podhost: `ref` comes from the report


class _Zygote:
    def __init__(self, template: MountTemplate | None, parent: int, wake_fd: int) -> None:
        self.template = template
        self.parent = parent  # the caller's PID: a new parent means the caller died
        self.sel = selectors.DefaultSelector()
        self.sel.register(0, selectors.EVENT_READ, None)
        self.sel.register(wake_fd, selectors.EVENT_READ, _WAKE)
        self.wake_fd = wake_fd
        self.terminated = False  # SIGTERM came
        self.children_ended = False  # SIGCHLD came: someone to reap
        self.caller_gone = False
        self.reading = True
        self.inbuf = bytearray()
        self.queue: deque[tuple[int, SpawnRequest]] = deque()
        self.setting_up: dict[int, _Child] = {}  # by status pipe fd: forked, not yet answered
        self.unkept: list[ProcessRef] = []  # started, not yet recorded by the caller
        self.podhosts: dict[str, socket.socket] = {}  # by node: control sockets of podhosts

    def serve(self) -> None:
        """Fork and answer until the caller is done (or gone) and nothing is in flight."""
        while self._caller_here() and (self.reading or self.queue or self.setting_up):
            while self.queue and len(self.setting_up) < _IN_FLIGHT and self._caller_here():
                self._fork(*self.queue.popleft())
            for key, _ in self.sel.select():
                if key.data is None:
                    self._read_requests()
                elif key.data == _WAKE:
                    self._read_signals()
                elif key.fd in self.setting_up:
                    self._read_child(key.data)
            if self.children_ended:
                # Only after a SIGCHLD: each waitpid walks every child the zygote has (one per
                # container it started), so reaping on every turn made a lab quadratic.
                self.children_ended = False
                _reap()

    def stop_unkept(self) -> None:
        """Stop what nobody recorded: containers since the last keep, and those setting up."""
        # Podhosts take no more requests; each reports (or refuses) those it already has.
        for sock in self.podhosts.values():
            sock.close()
        self.podhosts.clear()
        deadline = time.monotonic() + _STOP_WAIT
        for child in self.setting_up.values():
            if child.ref is None and child.handed_over:
                child.ref = _await_pid(child, deadline)
        refs = self.unkept + [c.ref for c in self.setting_up.values() if c.ref is not None]
        self.unkept = []
        if refs:
            stop(refs)

    # -- is the caller still there? ---------------------------------------------------------

    def _caller_here(self) -> bool:
        if not self.caller_gone and (self.terminated or os.getppid() != self.parent):
            self._caller_left()
        return not self.caller_gone

    def _caller_left(self) -> None:
        """From now on: fork nothing, answer nothing; `serve` returns at its next check."""
        self.caller_gone = True
        self.queue.clear()

    def _read_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            got = os.read(self.wake_fd, 4096)
            # A SIGHUP alone with the same parent: the caller's thread that started us ended,
            # not the caller (the parent-death signal follows the thread); getppid() decides.
            self.terminated = self.terminated or signal.SIGTERM in got
            self.children_ended = self.children_ended or signal.SIGCHLD in got

    # -- requests in, answers out -----------------------------------------------------------

    def _read_requests(self) -> None:
        data = os.read(0, 65536)
        if not data:
            # End of input: the caller closed us after collecting everything, or it died.
            self.reading = False
            self.sel.unregister(0)
            self._caller_left()
            return
        self.inbuf += data
        *lines, rest = self.inbuf.split(b"\n")
        self.inbuf = bytearray(rest)
        for line in lines:
            ident = -1
            try:
                message = json.loads(line)
                if message.get("keep") is True:
                    self.unkept.clear()
                    continue
                ident = int(message["id"])
                self.queue.append((ident, SpawnRequest.from_wire(message["request"])))
            except (ValueError, TypeError, KeyError) as exc:
                self._answer({"id": ident, "error": f"bad spawn request: {exc!r}"})

    def _answer(self, answer: dict[str, Any]) -> None:
        if self.caller_gone:
            return
        out = (json.dumps(answer) + "\n").encode()
        try:
            while out:
                out = out[os.write(1, out) :]
        except BrokenPipeError:
            self._caller_left()  # nobody reads our answers: nobody will record what we start

    # -- containers -------------------------------------------------------------------------

    def _fork(self, ident: int, request: SpawnRequest) -> None:
        if request.argv is None and request.ports:
            self._hand_over(ident, request)
            return
        try:
            r, w = os.pipe2(os.O_CLOEXEC)
        except OSError as exc:
            self._answer({"id": ident, "error": f"{request.label}: cannot start: {exc.strerror}"})
            return
        # The ending signals stay blocked across fork: the child must not run our handlers.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(r)
            os.close(w)
            self._answer({"id": ident, "error": f"{request.label}: cannot fork: {exc.strerror}"})
            return
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for signum in _ENDING:
                    signal.signal(signum, signal.SIG_DFL)  # a SIGTERM now ends it, as it should
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                run(request, w, self.template)
            finally:
                os._exit(1)  # run never returns; this is the belt to its braces
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(w)
        child = _Child(ident, request, r, identify(pid))
        self.setting_up[r] = child
        self.sel.register(r, selectors.EVENT_READ, child)

    def _hand_over(self, ident: int, request: SpawnRequest) -> None:
        """A container of podnet's responder: its node's podhost starts it and answers for it."""
        try:
            r, w = os.pipe2(os.O_CLOEXEC)
        except OSError as exc:
            self._answer({"id": ident, "error": f"{request.label}: cannot start: {exc.strerror}"})
            return
        try:
            message = json.dumps(request.to_wire()).encode()
            socket.send_fds(self._podhost(request.node_name), [message], [w])
        except OSError as exc:
            self.podhosts.pop(request.node_name, None)
            os.close(r)
            self._answer({"id": ident, "error": f"{request.label}: the responder of node "
                                                f"{request.node_name} is gone: {exc.strerror}"})
            return
        finally:
            os.close(w)
        child = _Child(ident, request, r, None, handed_over=True)  # its PID: in the report
        self.setting_up[r] = child
        self.sel.register(r, selectors.EVENT_READ, child)

    def _podhost(self, node: str) -> socket.socket:
        """The control socket of `node`'s podhost, started on first use."""
        found = self.podhosts.get(node)
        if found is not None:
            return found
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for signum in _ENDING:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                podhost.serve(theirs, self.template, node, self.parent)
            finally:
                os._exit(1)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        theirs.close()
        self.podhosts[node] = ours
        return ours

    def _read_child(self, child: _Child) -> None:
        data = os.read(child.fd, 65536)
        if data:
            child.report += data
            if child.ref is None:
                child.ref = _reported(child.report)  # a podhost's pause: stop it if we must
            return
        self.sel.unregister(child.fd)
        os.close(child.fd)
        del self.setting_up[child.fd]
        report = child.report.decode("utf-8", "replace")
        outcome = _outcome(child.request, report)
        if "pid" in outcome:
            self.unkept.append(ProcessRef(outcome["pid"], outcome["starttime"]))
        self._answer({"id": child.ident, **outcome})


def _await_pid(child: _Child, deadline: float) -> ProcessRef | None:
    """Read a podhost's report until it names the process (or says there is none)."""
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([child.fd], [], [], remaining)
        if not ready:
            break
        data = os.read(child.fd, 65536)
        if not data:
            break
        child.report += data
        if (ref := _reported(child.report)) is not None:
            return ref
    return None


def _reported(report: bytearray) -> ProcessRef | None:
    """The process named by a report's P line, once it has arrived whole."""
    for line in bytes(report).decode("utf-8", "replace").splitlines(keepends=True):
        tag, _, rest = line.partition(" ")
        if tag == "P" and line.endswith("\n"):
            with contextlib.suppress(ValueError):
                pid, starttime = (int(x) for x in rest.split())
                return ProcessRef(pid, starttime)
    return None


def _outcome(request: SpawnRequest, report: str) -> dict[str, Any]:
    pid = starttime = 0
    ready = False
    for line in report.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "P":
            pid, starttime = (int(x) for x in rest.split())
        elif tag == "E":
            return {"error": f"{request.label}: {rest}"}
        elif tag == "R":
            ready = True
    if not pid:
        return {"error": f"{request.label}: its process ended before reporting"}
    if not request.argv and not ready:
        return {"error": f"{request.label}: its process ended before it was ready"}
    return {"pid": pid, "starttime": starttime}


def _reap() -> None:
    """Collect containers that already exited (only ours: every child here is a container)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _wake_on_signals() -> int:
    """Route SIGHUP, SIGTERM and SIGCHLD to a pipe the loop watches (the handlers themselves
    do nothing: Python retries an interrupted select, so only the pipe wakes the loop)."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    for signum in (*_ENDING, signal.SIGCHLD):
        signal.signal(signum, lambda *_: None)
    return r


def main() -> int:
    # Ctrl-C reaches the whole foreground group: podnet handles it and closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else os.getppid()
    wake = _wake_on_signals()
    set_parent_death_signal(signal.SIGHUP)  # then getppid() catches a parent that died before
    set_process_title("podnet-zygote")
    zygote = _Zygote(None, parent, wake)
    try:
        # Without a template, containers copy our mount namespace, as `ip netns exec` does.
        with contextlib.suppress(PodnetError):
            zygote.template = mount_template()
        gc.freeze()  # what is loaded now stays shared with every container: the GC skips it
        zygote.serve()
    finally:
        zygote.stop_unkept()  # never recorded: podnet crashed, gave up, or was killed
    return 0


if __name__ == "__main__":
    sys.exit(main())
