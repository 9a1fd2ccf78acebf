"""Namespace system calls that Python 3.11 lacks (os.setns and os.unshare arrived in 3.12)."""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWUTS",
    "MNT_DETACH",
    "MS_BIND",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_SHARED",
    "MS_SLAVE",
    "UMOUNT_NOFOLLOW",
    "bind_mount",
    "detached_mount",
    "make_private",
    "make_shared",
    "make_slave",
    "mount",
    "mount_tmpfs",
    "set_parent_death_signal",
    "sethostname",
    "setns",
    "umount",
    "unshare",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str, target: str = "") -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", target or None)


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace behind `fd`."""
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    """Give the calling thread new namespaces of the kinds in `flags`."""
    _check(_libc.unshare(flags), "unshare")


def bind_mount(source: str, target: str) -> None:
    _check(_libc.mount(source.encode(), target.encode(), None, MS_BIND, None), "mount", target)


def mount(source: str, target: str, fstype: str, flags: int = 0) -> None:
    """Mount a filesystem, e.g. a sysfs that shows the current network namespace's devices."""
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, None), "mount", target
    )


def mount_tmpfs(target: str) -> None:
    _check(_libc.mount(b"tmpfs", target.encode(), b"tmpfs", 0, b"mode=755"), "mount", target)


# fsopen(2), fsconfig(2), fsmount(2): the same numbers on every architecture (Linux 5.2).
_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432
_FSCONFIG_CMD_CREATE = 6
_FS_CLOEXEC = 1  # FSOPEN_CLOEXEC and FSMOUNT_CLOEXEC


def detached_mount(fstype: str) -> int:
    """A new instance of filesystem `fstype` (no source, no options), as a mount attached to
    no mount namespace: nobody else sees it, and closing the returned fd unmounts it."""
    fs = _libc.syscall(_SYS_FSOPEN, fstype.encode(), _FS_CLOEXEC)
    if fs < 0:
        _check(fs, "fsopen", fstype)
    try:
        _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0),
               "fsconfig", fstype)
        mnt = _libc.syscall(_SYS_FSMOUNT, fs, _FS_CLOEXEC, 0)
        if mnt < 0:
            _check(mnt, "fsmount", fstype)
        return int(mnt)
    finally:
        os.close(fs)


def make_private(path: str = "/") -> None:
    """Stop mounts below `path` from propagating back to the namespace we came from."""
    _check(_libc.mount(b"none", path.encode(), None, MS_REC | MS_PRIVATE, None), "mount", path)


def make_shared(path: str) -> None:
    _check(_libc.mount(b"none", path.encode(), None, MS_SHARED, None), "mount", path)


def make_slave(path: str = "/") -> None:
    """Receive unmounts from the namespace we came from, send nothing back (`ip netns exec`)."""
    _check(_libc.mount(b"none", path.encode(), None, MS_REC | MS_SLAVE, None), "mount", path)


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), flags), "umount", target)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send `signum` to this process when its parent dies (prctl(2))."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
