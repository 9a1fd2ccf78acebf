"""`podnet exec -t`: a command in a pod on a terminal of its own, as `kubectl exec -it` gives one.

The command runs in a child on a new pseudo-terminal (it leads its own session, the terminal is
its controlling one, so job control, Ctrl-C and curses work inside); this process puts the
caller's terminal in raw mode, copies bytes both ways, passes window-size changes on (SIGWINCH),
restores the terminal, and returns the command's exit status (128+N for a signal, as shells say).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pty
import select
import signal
import sys
import termios
import tty
from collections.abc import Callable, Sequence

__all__ = ["run_on_tty"]

_CHUNK = 65536


def _copy(src: int, dst: int) -> bool:
    """Copy what is there; False at end of file (or when the terminal side is gone)."""
    try:
        data = os.read(src, _CHUNK)
    except OSError as exc:
        if exc.errno == errno.EIO:  # the pty's last holder closed it: the command ended
            return False
        raise
    if not data:
        return False
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(dst, view):]
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EPIPE):
                return False
            raise
    return True


def _exit_status(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run_on_tty(enter: Callable[[], None], argv: Sequence[str],
               run: Callable[[Sequence[str]], object]) -> int:
    """Run `argv` in a child on a new pty, after `enter()` put the child where it belongs
    (a pod's namespaces); `run` replaces the child with the command (it must not return). The
    child reports a failure to start on the terminal and exits 126/127 as a shell would."""
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    local_tty = os.isatty(stdin)
    size = termios.tcgetwinsize(stdin) if local_tty else None
    sys.stdout.flush()
    pid, master = pty.fork()
    if pid == 0:  # the child: on the new terminal, in its own session
        code = 1
        try:
            if size is not None:
                termios.tcsetwinsize(0, size)
            enter()
            run(argv)
        except BaseException as exc:  # reported on the terminal, then the child ends
            code = int(getattr(exc, "exit_status", 1))
            with contextlib.suppress(OSError):
                message = getattr(exc, "message", None) or str(exc)
                os.write(2, f"podnet: {message}\r\n".encode(errors="replace"))
        finally:
            os._exit(code)

    def resize(_signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            termios.tcsetwinsize(master, termios.tcgetwinsize(stdin))

    saved = termios.tcgetattr(stdin) if local_tty else None
    previous = signal.signal(signal.SIGWINCH, resize) if local_tty else None
    try:
        if local_tty:
            tty.setraw(stdin)
        _relay(stdin, stdout, master)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSAFLUSH, saved)
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        os.close(master)
    _, status = os.waitpid(pid, 0)
    return _exit_status(status)


def _relay(stdin: int, stdout: int, master: int) -> None:
    """Copy stdin to the command and its terminal to stdout until the command's side closes."""
    inputs = [master, stdin]
    while True:
        try:
            ready, _, _ = select.select(inputs, [], [])
        except InterruptedError:  # SIGWINCH
            continue
        if master in ready and not _copy(master, stdout):
            return
        if stdin in ready and not _copy(stdin, master):
            inputs.remove(stdin)  # end of our input: the command may still be writing
            with contextlib.suppress(OSError):
                os.write(master, b"\x04")  # EOF, as Ctrl-D on a terminal in canonical mode
