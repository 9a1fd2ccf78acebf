"""The installed plugin's Python form: forward the request to the agent, or run it here.

Started as `python3 -I -S` by the script `podnet cni install` writes where no C compiler is
available (shim.c is the faster form of the same client). It imports only what the interpreter
already holds (`_socket` is a built-in module; `socket.py` would cost 10 ms), so a forwarded
request costs about 8 ms of start-up. When no agent answers, it turns on site-packages and runs
the plugin in this process: slower (pyroute2 loads), never broken.
"""

from __future__ import annotations

import os
import sys

from podnet.cni.wire import DONE, MAX_FIELD, RESPONSE_MAGIC, encode_request

__all__ = ["DEFAULT_SOCKET", "ask_agent", "main", "run_here", "start_agent"]

DEFAULT_SOCKET = "/run/podnet/cni.sock"
_START_WAIT = 3.0  # seconds for a starting agent to accept
_NO_LISTENER = (2, 111)  # ENOENT, ECONNREFUSED: nothing listens, so start the agent


def _recv_exact(sock: object, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 16))  # type: ignore[attr-defined]
        if not chunk:
            raise OSError("the agent closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv_field(sock: object) -> bytes:
    size = int.from_bytes(_recv_exact(sock, 4), "big")
    if size > MAX_FIELD:
        raise OSError("oversized answer")
    return _recv_exact(sock, size)


def _connect(socket_path: str) -> object:
    import _socket  # built in: socket.py would cost 10 ms of start-up

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError:
        sock.close()
        raise
    return sock


def start_agent(socket_path: str) -> int:
    """Start `podnet.cni.agent` for `socket_path` in a session of its own; returns its PID."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: nothing of the caller's (its stdout is the runtime's pipe) may leak in
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 65536)
        path = next((p for p in sys.path if os.path.isdir(os.path.join(p, "podnet"))), "")
        code = ("import sys\nif sys.argv[1]: sys.path.insert(0, sys.argv[1])\n"
                "from podnet.cni.agent import main\nsys.exit(main([sys.argv[2], '--detached']))")
        os.execve(sys.executable, [sys.executable, "-I", "-c", code, path, socket_path],
                  {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})  # not the caller's CNI_* variables
    finally:
        os._exit(127)


def _agent_socket(socket_path: str, autostart: bool) -> object | None:
    import time

    try:
        return _connect(socket_path)
    except OSError as exc:
        if not autostart or exc.errno not in _NO_LISTENER:
            return None
    pid, alive = start_agent(socket_path), True
    deadline = time.monotonic() + _START_WAIT
    while time.monotonic() < deadline:
        time.sleep(0.005)
        try:
            return _connect(socket_path)
        except OSError:
            pass
        if alive:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                alive = False  # exit 3: another agent won the race and is starting: wait on
                if os.waitstatus_to_exitcode(status) != 3:
                    return None
    return None


def ask_agent(plugin: str, socket_path: str, env: dict[str, str],
              stdin: bytes, *, autostart: bool = False) -> tuple[int, bytes, bytes] | None:
    """The agent's answer, or None when it is absent, refuses (another namespace) or fails."""
    sock = _agent_socket(socket_path, autostart)
    if sock is None:
        return None
    try:
        sock.sendall(encode_request(plugin, env, stdin))  # type: ignore[attr-defined]
        if _recv_exact(sock, 4) != RESPONSE_MAGIC:
            return None
        kind = int.from_bytes(_recv_exact(sock, 4), "big")
        code = int.from_bytes(_recv_exact(sock, 4), "big")
        out = _recv_field(sock)
        err = _recv_field(sock)
    except OSError:
        return None
    finally:
        sock.close()  # type: ignore[attr-defined]
    return (code, out, err) if kind == DONE else None


def run_here(plugin: str, env: dict[str, str], stdin: bytes) -> tuple[int, bytes, bytes]:
    if sys.flags.no_site:
        import site  # started with -S for speed: site-packages hold pyroute2

        site.main()
    from podnet.cni.dispatch import handle  # only when no agent answered

    outcome = handle(plugin, env, stdin)
    return outcome.code, outcome.stdout, outcome.stderr


def main(plugin: str, socket_path: str = DEFAULT_SOCKET, *, use_agent: bool = True,
         autostart: bool = True) -> int:
    stdin = sys.stdin.buffer.read(MAX_FIELD + 1)
    env = dict(os.environ)
    too_large = len(stdin) > MAX_FIELD
    answer = ask_agent(plugin, socket_path, env, stdin, autostart=autostart) \
        if use_agent and not too_large else None
    code, out, err = answer if answer is not None else run_here(plugin, env, stdin)
    if out:
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
    if err:
        sys.stderr.buffer.write(err)
        sys.stderr.buffer.flush()
    return code
