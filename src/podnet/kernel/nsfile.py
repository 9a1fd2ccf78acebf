"""A namespace kept alive by a file: the nsfs file bind-mounted onto a path, as `ip netns` does.

One mechanism for pods' network namespaces (/run/netns/cni-...) and their UTS namespaces (the
hostname): the calling thread unshares, prepares the new namespace, bind-mounts it onto the path
and returns to its own, in tens of microseconds and with no helper process.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from typing import Literal

from podnet.errors import ObjectExistsError, os_error
from podnet.kernel import syscalls

__all__ = ["persist_new", "remove"]

Kind = Literal["net", "uts"]
_FLAG = {"net": syscalls.CLONE_NEWNET, "uts": syscalls.CLONE_NEWUTS}


def persist_new(
    path: str,
    kind: Kind,
    *,
    what: str,
    exists_hint: str,
    prepare: Callable[[], None] | None = None,
) -> None:
    """Create a namespace of `kind`, run `prepare` inside it, and keep it at `path`.

    `path` must not exist (ObjectExistsError names `what` and says `exists_hint`); it is never
    followed through a symlink. On failure nothing is left behind.
    """
    try:
        flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(path, flags, 0o444))
    except FileExistsError:
        raise ObjectExistsError(f"{what} already exists", errno=errno.EEXIST,
                                hint=exists_hint) from None
    except OSError as exc:
        raise os_error(exc, f"creating {path}") from None
    home = os.open(f"/proc/thread-self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(_FLAG[kind])
        try:
            if prepare is not None:
                prepare()
            syscalls.bind_mount(f"/proc/thread-self/ns/{kind}", path)
        finally:
            syscalls.setns(home, _FLAG[kind])
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise os_error(exc, what) from None
    finally:
        os.close(home)


def remove(path: str, what: str) -> bool:
    """Unmount and unlink `path`; the kernel frees the namespace once nothing else holds it.

    False when there was nothing to remove (removing twice succeeds).
    """
    try:
        syscalls.umount(path, syscalls.MNT_DETACH | syscalls.UMOUNT_NOFOLLOW)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise os_error(exc, what) from None
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
