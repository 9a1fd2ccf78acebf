"""The resident agent: runs plugin requests with pyroute2 already loaded.

A runtime starts a plugin process per ADD, DEL or CHECK. Python plus pyroute2 would cost 130 to
210 ms of every call before any work; the agent pays it once. The installed executable (shim.c,
or client.py) forwards the environment and stdin here and prints the answer.

It serves only root (or its own user), over a 0600 socket in a 0700 directory, and only clients
in its own network and mount namespaces: CNI_NETNS paths and host links mean something only
there. Anyone else is told to run the request itself (kind FALLBACK), which the client does.
Each connection gets a thread; namespace switches are per thread (setns), so requests for
different containers run in parallel as the spec allows.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable

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

__all__ = ["Agent"]

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
        self._stopping = threading.Event()
        self._own = {kind: _ns_id("self", kind) for kind in ("net", "mnt")}

    @staticmethod
    def preload() -> None:
        """Load the link layer (pyroute2) and open one netlink socket now, not on the first ADD."""
        from podnet.cni import plugin  # noqa: F401  # the point is the import
        from podnet.kernel.netlink import Netlink

        Netlink.open().close()

    def bind(self) -> None:
        directory = os.path.dirname(self.socket_path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
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
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        finally:
            self.close()

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

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
