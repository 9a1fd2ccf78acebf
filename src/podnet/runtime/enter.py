"""Put the current process inside a pod, as `ip netns exec` and a container runtime would.

The process joins the pod's network and UTS namespaces and gets a mount namespace of its own in
which the pod's hosts file covers /etc/hosts and /sys describes the pod's network devices. Mounts
made here never propagate back (the root is a slave), while unmounts of /run/netns/* on the host
still reach it, so a container never keeps a deleted pod's namespace alive.

The mount namespace part needs a single-threaded process: unshare(CLONE_NEWNS) refuses a process
whose threads share its filesystem information.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Mapping, Sequence
from typing import NoReturn

from podnet.errors import KernelError, NotPermittedError, ObjectMissingError, ProcessError
from podnet.kernel import syscalls

__all__ = ["ExecError", "enter_pod", "exec_command", "exec_in_pod", "reset_signals"]

# Signals Python ignores or handles that a new program expects at their defaults: an ignored
# SIGPIPE survives exec and turns `cmd | head` into "Broken pipe" errors.
_RESET = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGCHLD,
)


class ExecError(ProcessError):
    """The command could not be started; `exit_status` is what a shell would exit with."""

    def __init__(self, message: str, *, exit_status: int, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.exit_status = exit_status


def enter_pod(netns_path: str, uts_path: str | None, hosts_file: str | None) -> None:
    """Move the calling (single-threaded) process into a pod; None skips that part.

    Every file is opened before anything changes, so a missing pod fails with ObjectMissingError
    while the process is still where it was.
    """
    fds: list[int] = []
    try:
        net = _open_ns(netns_path, "network", fds)
        uts = _open_ns(uts_path, "UTS", fds) if uts_path else None
        hosts = None
        if hosts_file:
            try:
                # O_PATH|O_NOFOLLOW: the file we mount is the file we opened, never a symlink's.
                hosts = os.open(hosts_file, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise ObjectMissingError(
                    f"pod hosts file {hosts_file}: {exc.strerror}",
                    errno=exc.errno,
                    hint="`podnet up` writes it again",
                ) from None
            fds.append(hosts)
        _setns(net, syscalls.CLONE_NEWNET, netns_path)
        if uts is not None:
            _setns(uts, syscalls.CLONE_NEWUTS, uts_path or "")
        try:
            syscalls.unshare(syscalls.CLONE_NEWNS)
            syscalls.make_slave("/")
        except OSError as exc:
            raise _kernel_error(exc, "a private mount namespace for the pod") from None
        _mount_sysfs()
        if hosts is not None:
            try:
                syscalls.bind_mount(f"/proc/self/fd/{hosts}", "/etc/hosts")
            except OSError as exc:
                raise _kernel_error(exc, f"bind-mounting {hosts_file} over /etc/hosts") from None
    finally:
        for fd in fds:
            os.close(fd)


def exec_in_pod(
    netns_path: str,
    uts_path: str | None,
    hosts_file: str | None,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> NoReturn:
    """Replace this process with `argv` running inside the pod (`kubectl exec` without the API).

    stdin, stdout, stderr and the exit status are the command's own. `env` None keeps ours. Raises
    ExecError (exit_status 127 for a missing command, 126 for one that cannot run) instead of
    returning; the caller prints it and exits with that status, as a shell would.
    """
    if not argv:
        raise ValueError("exec_in_pod needs a command")
    enter_pod(netns_path, uts_path, hosts_file)
    exec_command(argv, env)


def exec_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> NoReturn:
    """execvp `argv` with default signal dispositions; raise ExecError if it cannot start."""
    reset_signals()
    try:
        if env is None:
            os.execvp(argv[0], list(argv))  # noqa: S606  # an argument list, never a shell
        os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606
    except FileNotFoundError:
        raise ExecError(
            f"{argv[0]}: command not found",
            exit_status=127,
            hint="pods share this machine's files and PATH: install it, or give its full path",
        ) from None
    except OSError as exc:
        raise ExecError(f"{argv[0]}: {exc.strerror}", exit_status=126) from None


def reset_signals() -> None:
    for sig in _RESET:
        signal.signal(sig, signal.SIG_DFL)


def _open_ns(path: str, kind: str, fds: list[int]) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ObjectMissingError(
            f"pod {kind} namespace {path}: {exc.strerror}",
            errno=exc.errno,
            hint="is the lab up? `podnet up` creates it",
        ) from None
    fds.append(fd)
    return fd


def _setns(fd: int, nstype: int, path: str) -> None:
    try:
        syscalls.setns(fd, nstype)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            # The file is there but nothing is mounted on it: a crash between the steps of `down`.
            raise ObjectMissingError(
                f"{path} is not a namespace (nothing is mounted on it)",
                errno=exc.errno,
                hint="a stale file: `podnet down` then `podnet up` rebuild the pod",
            ) from None
        raise _kernel_error(exc, f"entering {path}") from None


def _mount_sysfs() -> None:
    """A new /sys shows the devices of the namespace it is mounted in (as `ip netns exec` does)."""
    flags = 0
    try:
        syscalls.umount("/sys", syscalls.MNT_DETACH)
    except OSError:
        # Nothing to unmount, or not allowed: lay the new sysfs over it, read-only if it was.
        with contextlib.suppress(OSError):
            if os.statvfs("/sys").f_flag & os.ST_RDONLY:
                flags = syscalls.MS_RDONLY
    try:
        syscalls.mount("sysfs", "/sys", "sysfs", flags)
    except OSError as exc:
        raise _kernel_error(exc, "mounting the pod's /sys") from None


def _kernel_error(exc: OSError, what: str) -> KernelError:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return NotPermittedError(f"{what}: {exc.strerror}", errno=exc.errno)
    return KernelError(f"{what}: {exc.strerror}", errno=exc.errno)
