"""CNI_NETNS, checked before anything is touched: it must be a network namespace, not our own.

The path is opened once and every later step uses /proc/self/fd/N, so it acts on the namespace
checked here, never on a path that changed since. "A network namespace" is asked of the kernel
(the NS_GET_NSTYPE ioctl of nsfs files), not guessed from the file's device number, which every
namespace file shares: /proc/1/ns/mnt is an nsfs file too, of the wrong kind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from podnet.errors import CNI_INVALID_ENV, CNI_UNKNOWN_CONTAINER, CniError

__all__ = ["checked_for_del", "pod_namespace"]

_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h
_KINDS = {0x00020000: "mount", 0x02000000: "cgroup", 0x04000000: "UTS", 0x08000000: "IPC",
          0x10000000: "user", 0x20000000: "PID", 0x40000000: "network", 0x00000080: "time"}
_CLONE_NEWNET = 0x40000000


def _refuse(path: str, problem: str, hint: str) -> CniError:
    return CniError(CNI_INVALID_ENV, f"CNI_NETNS {path} {problem}", details=hint)


def _check(fd: int, path: str) -> None:
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            raise _refuse(path, "is not a namespace file",
                          "pass /proc/PID/ns/net or a bind mount of it (/run/netns/X)") from None
        raise _refuse(path, f"cannot be examined: {exc.strerror}", "") from None
    if kind != _CLONE_NEWNET:
        raise _refuse(path, f"is a {_KINDS.get(kind, 'non-network')} namespace, not a network "
                      "namespace", "pass the container's network namespace (/proc/PID/ns/net)")
    own = os.stat("/proc/thread-self/ns/net")
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
        raise _refuse(path, "is the plugin's own network namespace",
                      "refusing to configure the host as if it were a container")


@contextlib.contextmanager
def pod_namespace(path: str) -> Iterator[str]:
    """Open and check CNI_NETNS; yields /proc/self/fd/N for every later step."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CniError(CNI_UNKNOWN_CONTAINER, f"CNI_NETNS {path} does not exist",
                       details="the container's network namespace is gone") from None
    except OSError as exc:
        raise _refuse(path, f"cannot be opened: {exc.strerror}", "") from None
    try:
        _check(fd, path)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def checked_for_del(path: str) -> None:
    """DEL: refuse our own namespace and namespaces of the wrong kind, as ADD does. A namespace
    that is gone (no file, an empty CNI_NETNS, or a mount point left behind with nothing mounted
    on it) is fine: DEL cleans up without it."""
    if not path:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        os.close(fd)
        return
    try:
        _check(fd, path)
    finally:
        os.close(fd)
