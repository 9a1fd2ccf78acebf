"""A pod's sandbox besides its network namespace: a UTS namespace (its hostname) and /etc/hosts.

The UTS namespace is kept the way `ip netns` keeps a network namespace: the nsfs file bind-mounted
onto a file of ours, so it lives without any process in it and every container can join it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Sequence

from podnet.errors import StateError
from podnet.kernel import nsfile, syscalls
from podnet.runtime.hosts import pod_hostname, render_hosts

__all__ = [
    "create_pod_uts",
    "delete_pod_uts",
    "make_dir",
    "sweep_leftovers",
    "write_file_atomic",
    "write_hosts_file",
]

_HOSTNAME_BYTES = 64  # HOST_NAME_MAX: sethostname(2) refuses longer names
_TOKEN_BYTES = 6
# write_file_atomic's temporary files: a kill between their creation and their rename leaves one.
_LEFTOVER = re.compile(rf"\..+\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.tmp")


def create_pod_uts(path: str, hostname: str) -> None:
    """Create a UTS namespace whose hostname is `hostname` and keep it at `path`.

    Runs in the calling thread (unshare, sethostname, bind mount, setns back), so it costs a few
    tens of microseconds. Fails with ObjectExistsError if `path` exists. A pod name longer than
    63 characters is cut as kubelet cuts it (`pod_hostname`), matching the pod's hosts file.
    """
    hostname = pod_hostname(hostname)
    raw = hostname.encode()
    if not raw or len(raw) > _HOSTNAME_BYTES:
        raise ValueError(f"hostname {hostname!r} must be 1 to {_HOSTNAME_BYTES} bytes")
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    nsfile.persist_new(
        path,
        "uts",
        what=f"UTS namespace file {path}",
        exists_hint="a pod of that name is up, or a crash left it: `podnet down` removes it",
        prepare=lambda: syscalls.sethostname(hostname),
    )


def delete_pod_uts(path: str) -> bool:
    """Unmount and remove a pod's UTS namespace file; False if there was nothing to remove.

    Unlinking also detaches the copies of this mount that containers' mount namespaces hold, so the
    namespace is freed once no process is in it.
    """
    return nsfile.remove(path, f"UTS namespace {path}")


def write_hosts_file(
    path: str,
    pod_ip: str | Sequence[str],
    pod_name: str,
    extra: Sequence[tuple[str, Sequence[str]]] = (),
) -> None:
    """Write the pod's /etc/hosts (kubelet's format) to `path`, atomically and mode 0644.

    Containers bind-mount the file when they start, so a running container keeps the version that
    existed then (kubelet also writes it once per pod): rewrite it before starting containers.
    """
    write_file_atomic(path, render_hosts(pod_ip, pod_hostname(pod_name), extra))


def write_file_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text`: a temporary file in the same directory renamed over it.

    Readers see the old file or the new one, never half of one; neither the directory nor the
    file is followed through a symlink.
    """
    data = text.encode()
    parent, name = os.path.split(path)
    parent = parent or "."
    os.makedirs(parent, mode=0o755, exist_ok=True)
    try:
        dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        why = "it is a symlink" if os.path.islink(parent) else exc.strerror
        raise StateError(
            f"cannot write {name} into {parent}: {why}",
            hint="podnet writes its state only into real directories, never through symlinks",
        ) from None
    tmp = f".{name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp"
    try:
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dir_fd,
        )
        try:
            os.fchmod(fd, mode)  # whatever the umask: every user in the pod reads /etc/hosts
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise StateError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)


def sweep_leftovers(directory: str) -> None:
    """Remove the temporary files `write_file_atomic` left in `directory` when it was killed
    between writing one and renaming it (only those: their names say they are podnet's)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if _LEFTOVER.fullmatch(name):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def make_dir(path: str, mode: int = 0o700) -> None:
    """`mkdir -p -m MODE`: a real directory (never a symlink, never a file in the way)."""
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
    except OSError as exc:
        why = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
        raise StateError(f"cannot make directory {path}: {why}",
                         hint="remove what is in the way; podnet keeps its state there") from None
    if os.path.islink(path) or not os.path.isdir(path):
        raise StateError(f"{path} is not a directory of podnet's",
                         hint="podnet writes its state only into real directories")
