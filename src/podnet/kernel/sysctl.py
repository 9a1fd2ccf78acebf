"""Per-namespace sysctls (ip_forward, accept_ra, ...), written from inside the namespace.

/proc/sys/net answers for the network namespace of the thread that opens the file, so entering
the namespace in this thread is enough; no `ip netns exec sysctl` process is needed.

The files are opened in a proc instance of podnet's own, mounted nowhere (`_Proc`): the first
lookup of /proc/sys/net/ipv4 (or ipv6) from a namespace walks a kernel dentry hash chain that
holds that directory of every namespace looked up before in the same proc instance (they share
their parent, /proc/sys/net). In the machine's /proc, each new pod's first sysctl took time in
proportion to the pods before it: a quadratic `up`. A private instance, renewed every `_RENEW`
namespaces, keeps that chain short.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection

from podnet.errors import os_error
from podnet.kernel import netns, syscalls

__all__ = ["read", "write"]

_RENEW = 128  # namespaces served by one proc instance


class _Proc:
    """podnet's own proc instance (a detached mount), or the machine's /proc where the kernel
    cannot make one (before Linux 5.2, or without the right to mount). Hold `lock` while using
    the fd `root()` returns: the next call may close it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.uses = 0
        self.usable = True

    def root(self) -> int | None:
        """The instance's root for one more namespace (None: use /proc)."""
        if self.fd is not None and self.uses >= _RENEW:
            os.close(self.fd)
            self.fd = None
        if self.fd is None and self.usable:
            try:
                self.fd, self.uses = syscalls.detached_mount("proc"), 0
            except OSError:
                self.usable = False
        self.uses += 1
        return self.fd


_PROC = _Proc()


def _file(key: str, root: int | None) -> str:
    return ("sys/" if root is not None else "/proc/sys/") + key.replace(".", "/")


def write(
    netns_path: str | None, settings: dict[str, str], *, optional: Collection[str] = ()
) -> None:
    """Apply `settings` ({"net.ipv4.ip_forward": "1", ...}) inside the namespace at `netns_path`
    (None: this thread's), entering it once. Keys in `optional` are skipped where the kernel has
    no such file (IPv6 turned off, an interface without IPv6 configuration)."""
    if netns_path is None:
        _write_here(settings, optional)
        return
    with netns.entered(netns_path):
        _write_here(settings, optional)


def _write_here(settings: dict[str, str], optional: Collection[str]) -> None:
    with _PROC.lock:
        root = _PROC.root()
        for key, value in settings.items():
            try:
                fd = os.open(_file(key, root), os.O_WRONLY | os.O_CLOEXEC, dir_fd=root)
            except FileNotFoundError as exc:
                if key in optional:
                    continue
                raise _error(exc, key, value) from None
            except OSError as exc:
                raise _error(exc, key, value) from None
            try:
                os.write(fd, value.encode())
            except OSError as exc:
                raise _error(exc, key, value) from None
            finally:
                os.close(fd)


def _error(exc: OSError, key: str, value: str) -> Exception:
    hint = ""
    if key.startswith("net.bridge.") and isinstance(exc, FileNotFoundError):
        hint = ("these settings come with the br_netfilter module: load it "
                "(`modprobe br_netfilter`; it applies to this machine's bridges too)")
    return os_error(exc, f"setting {key}={value}", hint=hint)


def read(netns_path: str | None, key: str) -> str:
    """One setting, read inside the namespace at `netns_path` (None: this thread's)."""
    if netns_path is None:
        return _read_here(key)
    with netns.entered(netns_path):
        return _read_here(key)


def _read_here(key: str) -> str:
    with _PROC.lock:
        root = _PROC.root()
        fd = os.open(_file(key, root), os.O_RDONLY | os.O_CLOEXEC, dir_fd=root)
    with os.fdopen(fd) as fh:
        return fh.read().strip()
