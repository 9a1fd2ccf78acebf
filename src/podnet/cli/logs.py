"""`podnet logs`: a container's output, as kubectl logs prints it. `up` sends each container's
stdout and stderr to a file under the lab's state directory; this reads it (and follows it)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import Any, BinaryIO

import click

from podnet.cli.context import (
    cluster_option,
    complete_namespaces,
    complete_pods,
    find_pod,
    require_lab,
)
from podnet.errors import StateError

__all__ = ["FOLLOW_INTERVAL", "logs_command", "tail_lines"]

FOLLOW_INTERVAL = 0.2  # seconds between looks at the file with -f
_BLOCK = 65536


def tail_lines(fh: BinaryIO, count: int) -> int:
    """The offset where the last `count` lines of the file begin (read backwards in blocks)."""
    end = fh.seek(0, os.SEEK_END)
    if count <= 0:
        return end
    pos, found = end, 0
    last_byte = b""
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        fh.seek(pos)
        block = fh.read(step)
        if not last_byte:
            last_byte = block[-1:]
            if last_byte == b"\n":
                found -= 1  # the final newline ends the last line, it does not start one
        for i in range(len(block) - 1, -1, -1):
            if block[i] == 0x0A:
                found += 1
                if found == count:
                    return pos + i + 1
    return 0


def _container(pod: Any, name: str | None) -> str:
    names = [c.name for c in pod.containers]
    if name is None:
        if len(names) > 1:
            click.echo(f'Defaulted container "{names[0]}" out of: {", ".join(names)}', err=True)
        return str(names[0])
    if name not in names:
        raise StateError(f"container {name} is not valid for pod {pod.key}",
                         hint=f"its containers: {', '.join(names)}")
    return str(name)


def _open(path: str) -> BinaryIO | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read the log {path}: {exc.strerror}") from None
    return os.fdopen(fd, "rb")


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@click.command("logs")
@click.argument("pod", shell_complete=complete_pods)
@click.option("-c", "--container", default=None, help="Container (default: the first).")
@click.option("-n", "--namespace", default=None, shell_complete=complete_namespaces,
              help="Kubernetes namespace of the pod.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing what the container writes (Ctrl-C ends).")
@click.option("--tail", type=int, default=-1, show_default=True,
              help="Only the last N lines (-1: all).")
@cluster_option
def logs_command(pod: str, container: str | None, namespace: str | None, follow: bool,
                 tail: int, cluster: str | None) -> None:
    """Print what a container of POD wrote to stdout and stderr.

    \b
      podnet logs jumpbox
      podnet logs -n dev demo-697f9549fc-mj562 --tail 5 -f
    """
    from podnet.objects.pods import container_log

    record = require_lab(cluster)
    found = find_pod(record, pod, namespace)
    name = _container(found, container)
    path = container_log(record, found, name)
    fh = _open(path)
    if fh is None:
        raise StateError(f"container {name} of pod {found.key} has no log yet ({path})",
                         hint="`podnet up` starts the container and creates it")
    with fh:
        fh.seek(tail_lines(fh, tail) if tail >= 0 else 0)
        _write(fh.read())
        if follow:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            signal.signal(signal.SIGINT, signal.default_int_handler)  # even if inherited ignored
            with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
                _follow(fh, path)


def _follow(fh: BinaryIO, path: str) -> None:
    """Print what is appended; when `up` recreates the file (a rebuilt pod), go on in the new
    one; end when the file is removed (the pod was deleted)."""
    inode = os.fstat(fh.fileno()).st_ino
    while True:
        data = fh.read()
        if data:
            _write(data)
            continue
        time.sleep(FOLLOW_INTERVAL)
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            _write(fh.read())
            return
        if now.st_ino != inode or now.st_size < fh.tell():
            _write(fh.read())
            fresh = _open(path)
            if fresh is None:
                return
            fh.close()
            fh = fresh
            inode = os.fstat(fh.fileno()).st_ino
