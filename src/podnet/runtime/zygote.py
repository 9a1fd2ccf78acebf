"""The zygote: a small, already-warm Python that forks a container per request.

Started once per `podnet up` (`python -S -m podnet.runtime.zygote`, by `Spawner`), with nothing but
the stdlib and the runtime loaded, so a container costs a fork (about 0.5 ms here), not a new
interpreter (about 30 ms of CPU).

Protocol: one JSON object per line each way. In: {"id": N, "request": SpawnRequest.to_wire()},
or {"keep": true} once the caller has recorded every container answered so far. Out, in
completion order: {"id": N, "pid": P, "starttime": T} or {"id": N, "error": "text"}.

Crash safety: when stdin ends, containers started since the last "keep" are stopped. If podnet
dies mid-`up` (even by SIGKILL), nothing recorded them, so `down` could never find them: they go
with the zygote instead of running on, each holding a deleted pod's namespace and veth.

Several containers set themselves up at once (the zygote forks the next while the last one joins
its pod), so both cores work. Containers are the zygote's children while it lives (it reaps those
that exit); when the spawner closes it, they pass to init, or the nearest subreaper, and outlive
podnet. Each copies a mount namespace template made once here (see `enter.mount_template`).
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import PodnetError
from podnet.runtime.container import SpawnRequest, run, set_process_title
from podnet.runtime.enter import mount_template
from podnet.runtime.procs import ProcessRef, stop

__all__ = ["main"]

_IN_FLIGHT = 16  # containers setting up at once


@dataclass
class _Child:
    ident: int
    request: SpawnRequest
    fd: int
    report: bytearray = field(default_factory=bytearray)


class _Zygote:
    def __init__(self, template: int | None) -> None:
        self.template = template
        self.sel = selectors.DefaultSelector()
        self.sel.register(0, selectors.EVENT_READ, None)
        self.reading = True
        self.inbuf = bytearray()
        self.queue: deque[tuple[int, SpawnRequest]] = deque()
        self.children = 0
        self.unkept: list[ProcessRef] = []  # started, not yet recorded by the caller

    def serve(self) -> None:
        while self.reading or self.queue or self.children:
            while self.queue and self.children < _IN_FLIGHT:
                self._fork(*self.queue.popleft())
            for key, _ in self.sel.select():
                if key.data is None:
                    self._read_requests()
                else:
                    self._read_child(key.data)
            _reap()

    def _read_requests(self) -> None:
        data = os.read(0, 65536)
        if not data:
            self.reading = False
            self.sel.unregister(0)
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
                _answer({"id": ident, "error": f"bad spawn request: {exc!r}"})

    def _fork(self, ident: int, request: SpawnRequest) -> None:
        try:
            r, w = os.pipe2(os.O_CLOEXEC)
        except OSError as exc:
            _answer({"id": ident, "error": f"{request.label}: cannot start: {exc.strerror}"})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(r)
            os.close(w)
            _answer({"id": ident, "error": f"{request.label}: cannot fork: {exc.strerror}"})
            return
        if pid == 0:
            try:
                run(request, w, self.template)
            finally:
                os._exit(1)  # run never returns; this is the belt to its braces
        os.close(w)
        self.children += 1
        self.sel.register(r, selectors.EVENT_READ, _Child(ident, request, r))

    def _read_child(self, child: _Child) -> None:
        data = os.read(child.fd, 65536)
        if data:
            child.report += data
            return
        self.sel.unregister(child.fd)
        os.close(child.fd)
        self.children -= 1
        report = child.report.decode("utf-8", "replace")
        outcome = _outcome(child.request, report)
        if "pid" in outcome:
            self.unkept.append(ProcessRef(outcome["pid"], outcome["starttime"]))
        _answer({"id": child.ident, **outcome})


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


def _answer(answer: dict[str, Any]) -> None:
    out = (json.dumps(answer) + "\n").encode()
    while out:
        out = out[os.write(1, out) :]


def _reap() -> None:
    """Collect containers that already exited (only ours: every child here is a container)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> int:
    # Ctrl-C reaches the whole foreground group: podnet handles it and closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_process_title("podnet-zygote")
    try:
        template: int | None = mount_template()
    except PodnetError:
        template = None  # containers then copy our mount namespace, as `ip netns exec` does
    gc.freeze()  # what is loaded now stays shared with every container: the GC never touches it
    zygote = _Zygote(template)
    zygote.serve()
    if zygote.unkept:
        stop(zygote.unkept)  # never recorded: podnet crashed or gave up before it could
    return 0


if __name__ == "__main__":
    sys.exit(main())
