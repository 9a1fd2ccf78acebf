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

__all__ = ["DEFAULT_SOCKET", "ask_agent", "main", "run_here"]

DEFAULT_SOCKET = "/run/podnet/cni.sock"


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


def ask_agent(plugin: str, socket_path: str, env: dict[str, str],
              stdin: bytes) -> tuple[int, bytes, bytes] | None:
    """The agent's answer, or None when it is absent, refuses (another namespace) or fails."""
    import _socket  # built in: socket.py would cost 10 ms of start-up

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
        sock.sendall(encode_request(plugin, env, stdin))
        if _recv_exact(sock, 4) != RESPONSE_MAGIC:
            return None
        kind = int.from_bytes(_recv_exact(sock, 4), "big")
        code = int.from_bytes(_recv_exact(sock, 4), "big")
        out = _recv_field(sock)
        err = _recv_field(sock)
    except OSError:
        return None
    finally:
        sock.close()
    return (code, out, err) if kind == DONE else None


def run_here(plugin: str, env: dict[str, str], stdin: bytes) -> tuple[int, bytes, bytes]:
    if sys.flags.no_site:
        import site  # started with -S for speed: site-packages hold pyroute2

        site.main()
    from podnet.cni.dispatch import handle  # only when no agent answered

    outcome = handle(plugin, env, stdin)
    return outcome.code, outcome.stdout, outcome.stderr


def main(plugin: str, socket_path: str = DEFAULT_SOCKET, *, use_agent: bool = True) -> int:
    stdin = sys.stdin.buffer.read()
    env = dict(os.environ)
    answer = ask_agent(plugin, socket_path, env, stdin) if use_agent else None
    code, out, err = answer if answer is not None else run_here(plugin, env, stdin)
    if out:
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
    if err:
        sys.stderr.buffer.write(err)
        sys.stderr.buffer.flush()
    return code
