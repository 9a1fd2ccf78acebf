"""The resident agent: runs plugin requests with pyroute2 already loaded.

A runtime starts a plugin process per ADD, DEL or CHECK. Python plus pyroute2 would cost 130 to
210 ms of every call before any work; the agent pays it once. The installed executable (shim.c,
or client.py) forwards the environment and stdin here and prints the answer.

It serves only root (or its own user), over a 0600 socket in a 0700 directory, and only clients
in its own network and mount namespaces: CNI_NETNS paths and host links mean something only
there. Anyone else is told to run the request itself (kind FALLBACK), which the client does.
Each connection gets a thread; namespace switches are per thread (setns), so requests for
different containers run in parallel as the spec allows.

Started by the installed client on first use (`start_detached`: its own session, stdio on
/dev/null, so neither the runtime's restarts nor its pipes reach it), or as a service with
`podnet cni agent`. One agent per socket: it holds `<socket>.lock` while it listens, and a second
one started in a race exits quietly. It binds before it loads pyroute2, so clients that connect
while it starts wait in the listen queue instead of falling back. SIGTERM (a service stop)
closes the socket at once (new callers run in-process or start a new agent) and drains: every
request already accepted is answered before the process exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence

from podnet.cni.dispatch import handle
from podnet.cni.wire import (
    DONE,
    FALLBACK,
    MAX_FIELD,
    REQUEST_MAGIC,
    decode_env,
    encode_response,
)
from podnet.errors import StateError

__all__ = ["DRAIN_SECONDS", "Agent", "main", "serve"]

DRAIN_SECONDS = 60.0  # at most this long for in-flight requests after SIGTERM

_UCRED = struct.Struct("3i")  # pid, uid, gid


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = conn.recv(min(size - len(buf), 1 << 16))
        if not chunk:
            raise ConnectionError("client closed the connection")
        buf += chunk
    return bytes(buf)


def _recv_field(conn: socket.socket) -> bytes:
    size = int.from_bytes(_recv_exact(conn, 4), "big")
    if size > MAX_FIELD:
        raise ConnectionError(f"request field of {size} bytes is too large")
    return _recv_exact(conn, size)


def _ns_id(pid: int | str, kind: str) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/{kind}")
    return st.st_dev, st.st_ino


class Agent:
    """Serve plugin requests on `socket_path` until `stop()`."""

    def __init__(self, socket_path: str,
                 on_request: Callable[[str, int, float], None] | None = None) -> None:
        self.socket_path = socket_path
        self._on_request = on_request  # (command, exit code, seconds): for the CLI's log
        self._sock: socket.socket | None = None
        self._lock_fd: int | None = None
        self._stopping = threading.Event()
        self._own = {kind: _ns_id("self", kind) for kind in ("net", "mnt")}
        self._busy = threading.Condition()
        self._in_flight = 0

    @staticmethod
    def preload() -> None:
        """Load the link layer (pyroute2), open one netlink socket and libnftables' context now,
        not on the first ADD."""
        from podnet.cni import plugin  # noqa: F401  # the point is the import
        from podnet.kernel import libnft
        from podnet.kernel.netlink import Netlink

        Netlink.open().close()
        libnft.available()  # libnftables' context, made here: in the agent's own namespace

    def claim(self) -> bool:
        """Take `<socket>.lock`; False when another agent holds it (it serves this socket)."""
        directory = os.path.dirname(self.socket_path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(f"{self.socket_path}.lock",
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who serves: `podnet cni install` stops it
        self._lock_fd = fd
        return True

    def bind(self) -> None:
        if self._lock_fd is None and not self.claim():
            raise StateError(f"another podnet agent is serving {self.socket_path}",
                             hint="stop it first, or give this one another --socket")
        self._remove_stale_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            sock.bind(self.socket_path)
        finally:
            os.umask(old)
        sock.listen(128)
        self._sock = sock

    def _remove_stale_socket(self) -> None:
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise StateError(f"{self.socket_path} exists and is not a socket",
                             hint="move it away; the agent creates its socket itself")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket_path)
        except OSError:
            os.unlink(self.socket_path)  # left by an agent that died
            return
        finally:
            probe.close()
        raise StateError(f"another podnet agent is serving {self.socket_path}",
                         hint="stop it first, or give this one another --socket")

    def serve_forever(self) -> None:
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        try:
            while not self._stopping.is_set():
                try:
                    conn, _ = self._sock.accept()
                except OSError:
                    if self._stopping.is_set():
                        break
                    raise
                with self._busy:
                    self._in_flight += 1
                threading.Thread(target=self._serve_counted, args=(conn,), daemon=True).start()
        finally:
            self.close()
            self.drain(DRAIN_SECONDS)

    def stop(self) -> None:
        """Stop accepting (safe from a signal handler); serve_forever then drains and returns."""
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def drain(self, timeout: float) -> bool:
        """Wait until every accepted request is answered; False if some still run at timeout."""
        deadline = time.monotonic() + timeout
        with self._busy:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._busy.wait(left)
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        if self._lock_fd is not None:  # a new agent may start while this one drains
            os.close(self._lock_fd)
            self._lock_fd = None

    def _serve_counted(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        finally:
            with self._busy:
                self._in_flight -= 1
                self._busy.notify_all()

    def _may_serve(self, conn: socket.socket) -> bool:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid, uid, _ = _UCRED.unpack(raw)
        if uid not in (0, os.geteuid()) or pid <= 0:
            return False
        try:
            return all(_ns_id(pid, kind) == ident for kind, ident in self._own.items())
        except OSError:
            return False  # the client is gone or hidden from us: let it run the request

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                if _recv_exact(conn, 4) != REQUEST_MAGIC:
                    return
                plugin = _recv_field(conn).decode()
                env = decode_env(_recv_field(conn))
                stdin = _recv_field(conn)
                if not self._may_serve(conn):
                    conn.sendall(encode_response(FALLBACK))
                    return
                start = time.perf_counter()
                outcome = handle(plugin, env, stdin)
                conn.sendall(encode_response(DONE, outcome.code, outcome.stdout, outcome.stderr))
                if self._on_request is not None:
                    self._on_request(env.get("CNI_COMMAND", "?"), outcome.code,
                                     time.perf_counter() - start)
            except (ConnectionError, OSError, UnicodeDecodeError):
                return


def serve(socket_path: str, log: Callable[[str, int, float], None] | None = None,
          ready: Callable[[], None] | None = None, *, detached: bool = False) -> int:
    """Run an agent on `socket_path` until SIGTERM or SIGINT, then drain. Returns 0, or 3 when
    another agent already serves the socket (a lost start-up race: nothing to do)."""
    agent = Agent(socket_path, on_request=log)
    if not agent.claim():
        return 3
    if detached:  # started by a client: what goes wrong lands beside the socket
        _log_to(f"{socket_path}.log")
    agent.bind()  # before the slow imports: early callers wait in the listen queue

    def stop(*_: object) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.preload()
    if ready is not None:
        ready()
    server = threading.Thread(target=agent.serve_forever, daemon=True)
    server.start()
    while server.is_alive():  # the main thread stays free for signals
        server.join(0.5)
    return 0


def _log_to(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stderr.write(f"podnet cni agent {os.getpid()} serving {path[:-4]}\n")
        sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """What the installed client starts on first use: `main([SOCKET, "--detached"])`."""
    args = list(sys.argv[1:] if argv is None else argv)
    positional = [a for a in args if not a.startswith("--")]
    return serve(positional[0] if positional else "/run/podnet/cni.sock",
                 detached="--detached" in args)
