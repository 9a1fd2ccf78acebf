"""One process per node that answers HTTP for every pod there: the built-in responder, shared.

A container that declares ports and runs no command gets podnet's HTTP responder. A Python process
forked per pod cost 1.5 to 1.8 MB of memory each (the pages the zygote and the child write after
the fork become the child's own). Instead, the zygote hands such containers to a host process for
their node (`serve`), which:

- creates the pod's listening sockets inside the pod's network namespace (a socket stays in the
  namespace it was created in: setns in, socket/bind/listen, setns back) and answers them all in
  one selector loop, each page and log line naming its own pod;
- forks the container's process, which joins the pod's network, UTS and mount namespaces as any
  container does and execs `sleep infinity` under the container's title: the pause process that
  `get pods -o wide` shows, that `exec` and `nsenter -t PID` join, and that `down` stops.

Each pause process is the host's child with a parent-death signal (SIGKILL): if the host dies,
its pods' containers end with it and `up` starts them again. When a pause process ends (`down`,
`delete`, a kill), the host closes that pod's sockets first, so the pod's namespace can go. The
host ends once it has no pod left and the zygote has closed the control socket.

Control: the zygote sends one request per datagram on a SOCK_SEQPACKET socket, a SpawnRequest as
JSON with the write end of its status pipe attached (SCM_RIGHTS); the pipe carries the container
protocol of container.py (P, R, E) from the pause process.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import socket
from typing import NoReturn, TextIO

from podnet.errors import PodnetError
from podnet.kernel import netns
from podnet.runtime.container import (
    SpawnRequest,
    close_fds_except,
    describe_error,
    open_log,
    run,
    set_title,
)
from podnet.runtime.enter import MountTemplate
from podnet.runtime.procs import identify
from podnet.runtime.responder import Identity, Responder, Site, announce

__all__ = ["serve"]


class _Host:
    def __init__(self, control: socket.socket, template: MountTemplate | None,
                 caller: int) -> None:
        self.control = control
        self.template = template
        self.caller: int | None = None  # a pidfd, readable once the zygote's caller has ended
        self.caller_ended = False
        try:
            self.caller = os.pidfd_open(caller)
        except ProcessLookupError:
            self.caller_ended = True
        except OSError:
            pass  # no pidfds here: the zygote's closing the control socket is the only sign
        self.server = Responder()
        self.pods: dict[int, tuple[Site, TextIO]] = {}  # by pause PID
        self.listening = True  # the zygote may still send requests
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake = r
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.server.watch(control.fileno(), self._request)
        self.server.watch(r, self._children)

    def loop(self) -> None:
        while self.listening or self.pods:
            self.server.serve_once(5.0)

    def _request(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.control, 65536, 1, socket.MSG_CMSG_CLOEXEC)
        except OSError:
            data, fds = b"", []
        if not data:  # the zygote is done (or gone): serve what we have, take nothing more
            self.listening = False
            self.server.unwatch(self.control.fileno())
            self.control.close()
            return
        if not fds:
            return
        status = fds[0]
        try:
            request = SpawnRequest.from_wire(json.loads(data))
        except (ValueError, TypeError, KeyError) as exc:
            _send(status, f"E bad spawn request: {exc!r}\n")
            os.close(status)
            return
        try:
            if self._caller_gone():
                # Sent before podnet died, read after: nobody would record it, and the zygote
                # is stopping what was started; starting more would only race that.
                _send(status, "E not started: the podnet that asked for it has ended\n")
            else:
                self._start(request, status)
        finally:
            os.close(status)

    def _caller_gone(self) -> bool:
        if not self.caller_ended and self.caller is not None:
            self.caller_ended = bool(select.select([self.caller], [], [], 0)[0])
        return self.caller_ended

    def _start(self, request: SpawnRequest, status: int) -> None:
        try:
            log = os.fdopen(open_log(request.log_path), "w", encoding="utf-8", errors="replace")
        except OSError as exc:
            _send(status, f"E {describe_error(exc)}\n")
            return
        who = Identity(f"{request.pod_namespace}/{request.pod_name}", request.node_name,
                       request.pod_ip, request.container_name)
        try:
            with netns.entered(request.netns_path):
                site, addresses = self.server.add(who, request.ports, log)
        except (PodnetError, OSError, ValueError) as exc:
            _send(status, f"E {describe_error(exc)}\n")
            log.close()
            return
        announce(site, addresses)
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                run(request, status, self.template, parent=me)
            finally:
                os._exit(1)
        self.pods[pid] = (site, log)
        # Named at once, before the child gets far: if the zygote's caller dies now, the
        # zygote still knows what to stop.
        child = identify(pid)
        _send(status, f"P {pid} {child.starttime if child else 0}\n")

    def _children(self) -> None:
        """Close the sockets of pods whose pause process ended, then reap it."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake, 4096):
                pass
        while True:
            try:
                # WNOWAIT: the zombie stays until its sockets are closed, so whoever waits for
                # the pause process to be reaped knows the pod's namespace is free.
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            entry = self.pods.pop(info.si_pid, None)
            if entry is not None:
                site, log = entry
                self.server.drop(site)
                with contextlib.suppress(OSError):
                    log.close()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.si_pid, 0)


def _send(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, text.encode("utf-8", "replace"))


def serve(control: socket.socket, template: MountTemplate | None, node: str,
          caller: int) -> NoReturn:
    """Run the host of `node`'s responders until its work is done; never returns. Call it in a
    fresh child of the zygote, with the ending signals at their defaults; `caller` is the PID of
    the podnet the zygote serves (requests that arrive after it ended are refused)."""
    try:
        # Nothing of the zygote's: its pipes to podnet must end when the zygote does.
        close_fds_except(control.fileno(), *(template.fds() if template else ()))
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.setsid()  # not in podnet's process group: Ctrl-C on `up` is not for it
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # EPIPE is an error, not death
        # Three descriptors per pod at most (two listeners and a log): raise the soft limit.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        del soft
        set_title("podnet-http", f"podnet-http node {node}")
        _Host(control, template, caller).loop()
    finally:
        os._exit(0)
