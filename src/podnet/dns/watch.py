"""Tell when a file is replaced or rewritten: inotify on its directory, through libc.

podnet writes the records file atomically (a temporary file renamed over it), which inotify
reports on the directory as IN_MOVED_TO; an editor writing in place shows as IN_CLOSE_WRITE.
Watching the directory, not the file, survives the rename (a watch on the file would stay on
the old inode). The descriptor goes into the server's selector: no thread, no polling.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

__all__ = ["FileWatch"]

_IN_CLOEXEC = os.O_CLOEXEC
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
_MASK = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE_SELF | _IN_MOVE_SELF

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class FileWatch:
    """An inotify descriptor watching the directory of `path` for changes to `path`."""

    def __init__(self, path: str) -> None:
        directory, name = os.path.split(os.path.abspath(path))
        self.name = os.fsencode(name)
        self.directory = directory
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd: int = fd
        wd = _libc.inotify_add_watch(fd, os.fsencode(directory), _MASK)
        if wd < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify on {directory}: {os.strerror(err)}", directory)

    def fileno(self) -> int:
        return self.fd

    def changed(self) -> bool:
        """Drain the pending events: True if one concerns the file (or some were lost)."""
        hit = False
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return hit
            if not data:
                return hit
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, mask, _, size = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + size]
                offset += _EVENT.size + size
                if mask & (_IN_Q_OVERFLOW | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED):
                    hit = True  # events lost, or the directory itself went: look again
                elif raw.rstrip(b"\0") == self.name:
                    hit = True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
