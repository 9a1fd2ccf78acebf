"""Named network namespaces, as `ip netns` keeps them: a bind mount of an nsfs file in /run/netns.

Creation happens in the calling thread (unshare, bind mount, setns back): it costs well under a
millisecond, where starting `ip netns add` costs 1.3 ms and pyroute2's helper process 16 ms.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator

from podnet.errors import ObjectMissingError, os_error
from podnet.kernel import nsfile, syscalls

__all__ = [
    "NETNS_DIR",
    "create",
    "delete",
    "entered",
    "exists",
    "inode",
    "is_own_namespace",
    "list_named",
    "path_of",
]

NETNS_DIR = "/run/netns"


def path_of(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def exists(name: str) -> bool:
    return os.path.ismount(path_of(name))


def inode(path: str) -> int:
    """The namespace's identity: two paths name the same namespace when their inodes match."""
    return os.stat(path).st_ino


def is_own_namespace(path: str) -> bool:
    """True when `path` is the namespace this thread runs in (never configure that by mistake)."""
    return inode(path) == inode("/proc/thread-self/ns/net")


def list_named() -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if os.path.ismount(path_of(n)))
    except FileNotFoundError:
        return []


def _ensure_netns_dir() -> None:
    """Make /run/netns a shared mount, as `ip netns add` does.

    Shared propagation matters: a container's private mount namespace starts with copies of these
    bind mounts, and a copy would keep a deleted pod's namespace (and its veth) alive. As a slave of
    this shared mount, the copy is unmounted when we unmount ours.
    """
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    try:
        syscalls.make_shared(NETNS_DIR)
        return
    except OSError as exc:
        # Not a mount point (mountinfo may list one at this path that a newer mount of /run
        # hides, so it cannot tell): make it one, then try again.
        if exc.errno != errno.EINVAL:
            raise os_error(exc, f"making {NETNS_DIR} a shared mount") from None
    try:
        syscalls.bind_mount(NETNS_DIR, NETNS_DIR)
        syscalls.make_shared(NETNS_DIR)
    except OSError as exc:
        raise os_error(exc, f"making {NETNS_DIR} a shared mount") from None


_dir_ready = False


def create(name: str, prepare: Callable[[], None] | None = None) -> str:
    """Create the named namespace `name` and return its path; fails if the name is taken.
    `prepare` runs inside the new namespace before anything else is in it (sysctls)."""
    global _dir_ready  # noqa: PLW0603  # checked once per process: mountinfo is long on busy hosts
    path = path_of(name)
    if not _dir_ready:
        _ensure_netns_dir()
        _dir_ready = True
    nsfile.persist_new(
        path,
        "net",
        what=f"network namespace {name}",
        exists_hint=f"it is not podnet's: inspect it with `ip netns exec {name} ip address`, "
        f"then remove it with `ip netns del {name}` if it is stale",
        prepare=prepare,
    )
    return path


def delete(name: str) -> bool:
    """Remove the named namespace; the kernel frees it once no process or socket holds it.

    Returns False when there was nothing to delete (deleting twice succeeds).
    """
    return nsfile.remove(path_of(name), f"network namespace {name}")


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ObjectMissingError(f"namespace {path} does not exist", errno=errno.ENOENT) from None


@contextlib.contextmanager
def entered(target: str | int, nstype: int = syscalls.CLONE_NEWNET, *,
            hint: str = "") -> Iterator[None]:
    """Run the body with the calling thread inside a namespace, then come back: podnet's one
    way into a namespace and out again. `target` is a path, or an open file descriptor (left
    open: its owner checked the inode it names)."""
    kind = {syscalls.CLONE_NEWNET: "net", syscalls.CLONE_NEWUTS: "uts"}[nstype]
    where = target if isinstance(target, str) else f"fd {target}"
    home = os.open(f"/proc/thread-self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = _open(target) if isinstance(target, str) else target
        try:
            syscalls.setns(fd, nstype)
        except OSError as exc:
            raise os_error(exc, f"cannot enter namespace {where}", hint=hint) from None
        finally:
            if isinstance(target, str):
                os.close(fd)
        try:
            yield
        finally:
            syscalls.setns(home, nstype)
    finally:
        os.close(home)
