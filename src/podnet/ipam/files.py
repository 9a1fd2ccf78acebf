"""Files that a crash cannot corrupt and a planted symlink cannot redirect.

Every state file podnet keeps (podnet-ipam's reservations, podnet-cni's attachment records) is
opened relative to a directory descriptor with O_NOFOLLOW, written to a new 0600 file and renamed
(or hard-linked) into place: a reader or a crash sees the old state or the new one, never half.
Directories on the way to a state directory may be symlinks only when root owns them and their
parent is writable by root alone (/var/run -> /run).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from podnet.errors import StateError

__all__ = ["NOFOLLOW_DIR", "TMP_PREFIX", "link_new", "open_child_dir", "open_dir_safely",
           "read_small", "write_atomically"]

NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
TMP_PREFIX = ".tmp."


def _trusted_link(parent_fd: int, name: str) -> bool:
    parent = os.fstat(parent_fd)
    link = os.lstat(name, dir_fd=parent_fd)
    return parent.st_uid == 0 and not parent.st_mode & 0o022 and link.st_uid == 0


def open_dir_safely(path: str, create_mode: int = 0o700) -> int:
    """Open (creating what is missing) the directory `path` without following untrusted links."""
    if not path.startswith("/"):
        raise StateError(f"state directory {path!r} is not an absolute path")
    fd = os.open("/", NOFOLLOW_DIR)
    try:
        for part in [p for p in path.split("/") if p]:
            if part in (".", ".."):
                raise StateError(f"state directory {path!r} must not contain '.' or '..'")
            try:
                nxt = os.open(part, NOFOLLOW_DIR, dir_fd=fd)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, create_mode, dir_fd=fd)
                nxt = os.open(part, NOFOLLOW_DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not _trusted_link(fd, part):
                    raise StateError(
                        f"refusing to follow {part!r} in state directory {path}: "
                        "it is a symlink or not a directory",
                        hint="remove it; podnet creates its state directories itself",
                    ) from None
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    _check_private(fd, path)
    return fd


def _check_private(fd: int, path: str) -> None:
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise StateError(
            f"state directory {path} is not private to this user (owner {st.st_uid}, "
            f"mode {stat.filemode(st.st_mode)})",
            hint=f"chown it to uid {os.geteuid()} and chmod 0700",
        )


def open_child_dir(parent_fd: int, name: str, where: str) -> int:
    """Open (creating) the directory `name` under `parent_fd`; a symlink there is refused."""
    if not name or "/" in name or name in (".", ".."):
        raise StateError(f"{name!r} cannot name a state directory")
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    try:
        fd = os.open(name, NOFOLLOW_DIR, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StateError(f"refusing to follow {where}: it is a symlink or not a directory",
                             hint="remove it; podnet creates its state directories itself") \
                from None
        raise StateError(f"cannot open {where}: {exc.strerror}") from None
    _check_private(fd, where)
    return fd


def _temporary(dir_fd: int, data: bytes, sync: bool) -> str:
    tmp = f"{TMP_PREFIX}{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, _NEW_FILE, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    return tmp


def write_atomically(dir_fd: int, name: str, data: bytes, *, sync: bool = False) -> None:
    """Replace `name` (in `dir_fd`) with a new 0600 file holding `data`, in one rename."""
    tmp = _temporary(dir_fd, data, sync)
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def link_new(dir_fd: int, name: str, data: bytes, *, sync: bool = False) -> bool:
    """Create `name` holding `data` only if nothing has that name: False when something does.

    The file is complete before it appears (written aside, then hard-linked: link(2) fails with
    EEXIST on any existing name, a symlink included, and never follows one).
    """
    tmp = _temporary(dir_fd, data, sync)
    try:
        os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
    return True


def read_small(dir_fd: int, name: str, limit: int = 1 << 16) -> bytes | None:
    """The contents of the regular file `name`, None if it does not exist; a symlink or anything
    else there is refused."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"refusing to follow {name}: it is a symlink",
                             hint="remove it; podnet writes its state files itself") from None
        raise StateError(f"cannot read {name}: {exc.strerror}",
                         hint="it must be a regular file; remove it if it is a symlink") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise StateError(f"{name} is not a regular file", hint="remove it")
        return fh.read(limit)
