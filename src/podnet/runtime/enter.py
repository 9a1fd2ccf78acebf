"""Put the current process inside a pod, as `ip netns exec` and a container runtime would.

The process joins the pod's network and UTS namespaces and gets a mount namespace of its own in
which the pod's hosts file covers /etc/hosts and /sys describes the pod's network devices.

`podnet exec` copies the caller's mount namespace with "/" a recursive slave, as `ip netns exec`
does: mounts made inside never propagate back, while unmounts of /run/netns/* on the host still
reach it, so it never keeps a deleted pod's namespace alive. Spawned containers copy a template
instead (`mount_template`): private and without any namespace file in it, for the same guarantee
at a fraction of the cost.

The mount namespace part needs a single-threaded process: unshare(CLONE_NEWNS) refuses a process
whose threads share its filesystem information.

setns(2) into a mount namespace resets the caller's root and working directory to that
namespace's root: from inside a chroot (a build chroot, a debootstrapped test root) that escapes
the chroot, and pods then saw the machine's whole filesystem. So wherever podnet enters a mount
namespace it keeps the caller's root, as `nsenter --root` does: a directory fd opened on "/" where
that root is valid, then fchdir + chroot(".") after the setns (`_Root`). A chroot whose root is
not a mount point cannot have a private mount namespace made for it (MS_PRIVATE needs a mount
point): containers then fail to start, with that error, rather than run outside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from podnet.errors import KernelError, ObjectMissingError, ProcessError, os_error
from podnet.kernel import syscalls
from podnet.kernel.netns import NETNS_DIR
from podnet.runtime.hosts import resolv_path

__all__ = [
    "ExecError",
    "MountTemplate",
    "enter_pod",
    "exec_command",
    "exec_in_pod",
    "mount_template",
    "reset_signals",
]

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


@dataclass(frozen=True)
class MountTemplate:
    """A mount namespace for containers to copy (see `mount_template`), as two fds."""

    ns: int  # the namespace
    root: int  # our root as seen inside it (O_PATH): a chroot stays a chroot in the copy

    def fds(self) -> tuple[int, int]:
        return (self.ns, self.root)

    def close(self) -> None:
        for fd in self.fds():
            os.close(fd)


def _open_dir(path: str) -> int:
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _chroot_to(root: int) -> None:
    """Make the directory behind `root` our root and working directory (`nsenter --root`)."""
    os.fchdir(root)
    os.chroot(".")


def enter_pod(
    netns_path: str,
    uts_path: str | None,
    hosts_file: str | None,
    *,
    mount_template: MountTemplate | None = None,
    sysfs: bool = True,
) -> None:
    """Move the calling (single-threaded) process into a pod; None skips that part.

    The new mount namespace is a copy of ours with "/" a recursive slave, as `ip netns exec` makes
    it, or, given `mount_template` (from `mount_template()`), a copy of that template, with our
    root kept (a chroot stays one). Every file is opened before anything changes, so a missing
    pod fails with ObjectMissingError while the process is still where it was.

    `sysfs` False keeps the copied /sys, for podnet's own processes that never read it: mounting
    a sysfs for a network namespace makes the kernel compare it with every sysfs mounted before
    (one per pod), so a lab's containers would cost time in proportion to the square of its pods.
    """
    fds: list[int] = []
    try:
        net = _open_ns(netns_path, "network", fds)
        uts = _open_ns(uts_path, "UTS", fds) if uts_path else None
        if hosts_file:
            os.close(_open_hosts(hosts_file))  # fail early, before anything changed
        _setns(net, syscalls.CLONE_NEWNET, netns_path)
        if uts is not None:
            _setns(uts, syscalls.CLONE_NEWUTS, uts_path or "")
        try:
            if mount_template is None:
                syscalls.unshare(syscalls.CLONE_NEWNS)
                syscalls.make_slave("/")
            else:
                syscalls.setns(mount_template.ns, syscalls.CLONE_NEWNS)
                # Before unshare, which carries root and cwd over into its copy.
                _chroot_to(mount_template.root)
                syscalls.unshare(syscalls.CLONE_NEWNS)  # private already: nothing to make slave
        except OSError as exc:
            what = "a private mount namespace for the pod"
            if exc.errno == errno.EINVAL and not _root_is_a_mount_point():
                what += f" ({_NOT_A_MOUNT_POINT})"  # in the message: it crosses the zygote's pipe
            raise _kernel_error(exc, what) from None
        if sysfs:
            _mount_sysfs()
        if hosts_file:
            # Opened again in the new mount namespace: mount(2) refuses a source from another one.
            hosts = _open_hosts(hosts_file)
            fds.append(hosts)
            try:
                syscalls.bind_mount(f"/proc/self/fd/{hosts}", "/etc/hosts")
            except OSError as exc:
                raise _kernel_error(exc, f"bind-mounting {hosts_file} over /etc/hosts") from None
            _mount_resolv(resolv_path(hosts_file), fds)
    finally:
        for fd in fds:
            os.close(fd)


_NOT_A_MOUNT_POINT = (
    "podnet runs in a chroot whose root is not a mount point, and a private mount namespace "
    "needs one: bind-mount the chroot's directory onto itself, `mount --bind DIR DIR`, then "
    "chroot into it"
)


def _root_is_a_mount_point() -> bool:
    try:
        with open("/proc/thread-self/mountinfo") as fh:
            return any(line.split()[4] == "/" for line in fh)
    except (OSError, IndexError):
        return True  # cannot tell: say nothing more


def mount_template() -> MountTemplate:
    """A mount namespace for containers to copy: ours, private, without any namespace files.

    Its fds keep it alive. In it, every nsfs bind mount (/run/netns/*, pods' UTS files) is
    detached, so a container copies a dozen mounts instead of two per pod (unshare then costs
    70 us instead of 1-2 ms), holds no other pod's namespace, and, being private, costs nothing
    when the host later adds or removes namespaces (no propagation to hundreds of slaves). Built
    in the calling thread, which then returns to its own mount namespace, root and directory.
    """
    home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    home_root, home_cwd = _open_dir("/"), _open_dir(".")
    try:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        try:
            syscalls.make_private("/")
            for _ in range(3):  # again for mounts stacked on the same point
                targets = _namespace_mounts()
                for target in targets:
                    with contextlib.suppress(OSError):  # gone already, with a parent we detached
                        syscalls.umount(target, syscalls.MNT_DETACH | syscalls.UMOUNT_NOFOLLOW)
                if not targets:
                    break
            ns = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            return MountTemplate(ns, _open_dir("/"))
        finally:
            syscalls.setns(home, syscalls.CLONE_NEWNS)  # root and cwd reset: put them back
            _chroot_to(home_root)
            os.fchdir(home_cwd)
    except OSError as exc:
        raise _kernel_error(exc, "a mount namespace template for containers") from None
    finally:
        for fd in (home, home_root, home_cwd):
            os.close(fd)


def _namespace_mounts() -> list[str]:
    """Mount points to detach: /run/netns as a whole when it is a mount (one call for every pod),
    then each nsfs mount outside it."""
    with open("/proc/thread-self/mountinfo") as fh:
        rows = [line.split(" - ") for line in fh]
    points = [(_unescape(head.split()[4]), tail.split()[0]) for head, tail in rows]
    found = [NETNS_DIR] if any(point == NETNS_DIR for point, _ in points) else []
    skip = NETNS_DIR + "/" if found else "\0"
    found += [p for p, fstype in points if fstype == "nsfs" and not p.startswith(skip)]
    return found


def _unescape(field: str) -> str:
    """mountinfo writes a space as \\040 (and tab, newline, backslash likewise)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


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
            os.execvp(argv[0], list(argv))  # an argument list, never a shell
        os.execvpe(argv[0], list(argv), dict(env))
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


def _mount_resolv(path: str, fds: list[int]) -> None:
    """The pod's resolv.conf over /etc/resolv.conf, when it has one (a node has none, nor has
    a pod of a lab recorded before the cluster DNS: they keep the machine's)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ObjectMissingError(f"pod resolv.conf {path}: {exc.strerror}", errno=exc.errno,
                                 hint="`podnet up` writes it again") from None
    fds.append(fd)
    try:
        syscalls.bind_mount(f"/proc/self/fd/{fd}", "/etc/resolv.conf")
    except OSError as exc:
        raise _kernel_error(exc, f"bind-mounting {path} over /etc/resolv.conf") from None


def _open_hosts(path: str) -> int:
    """O_PATH|O_NOFOLLOW: the file mounted is the one opened here, never a symlink's target."""
    try:
        return os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ObjectMissingError(
            f"pod hosts file {path}: {exc.strerror}",
            errno=exc.errno,
            hint="`podnet up` writes it again",
        ) from None


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
    return os_error(exc, what)
