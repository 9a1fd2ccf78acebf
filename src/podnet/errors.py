"""Every error podnet raises, as one tree.

    PodnetError
    ├── TopologyError            bad input, reported all at once (CNI code 7)
    ├── StateError               /run/podnet is missing, unreadable or not ours
    ├── KernelError              a netlink or namespace call failed
    │   ├── ObjectExistsError    the kernel object is already there (FileExistsError)
    │   ├── ObjectMissingError   the kernel object is not there (FileNotFoundError)
    │   └── NotPermittedError    the kernel said EPERM/EACCES (PermissionError)
    │       └── NeedsRootError   a command that needs root ran without it (one line)
    ├── InputError               a file or value given to a command cannot be used
    ├── ProcessError             a container process could not start, be found or stopped
    ├── ApplyError               a step of `up` failed; what ran was rolled back
    └── CniError                 a CNI request failed with a spec error code

Each error knows a hint for people and the CNI error code the plugin reports for it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BUG_REPORT",
    "ApplyError",
    "CniError",
    "InputError",
    "KernelError",
    "NeedsRootError",
    "NotPermittedError",
    "ObjectExistsError",
    "ObjectMissingError",
    "PodnetError",
    "Problem",
    "ProcessError",
    "StateError",
    "TopologyError",
    "kernel_error",
    "os_error",
]

# CNI spec error codes (SPEC.md, "Error").
CNI_GENERIC = 999
CNI_INCOMPATIBLE_VERSION = 1
CNI_UNSUPPORTED_FIELD = 2
CNI_UNKNOWN_CONTAINER = 3
CNI_INVALID_ENV = 4
CNI_IO_ERROR = 5
CNI_DECODE_ERROR = 6
CNI_INVALID_CONFIG = 7
CNI_TRY_AGAIN = 11
CNI_PLUGIN_NOT_AVAILABLE = 50

# Where a person sends what an unexpected exception printed (the one place that says it).
BUG_REPORT = (
    "please report it to the podnet project's issue tracker with the command you ran and the "
    "traceback above"
)


class PodnetError(Exception):
    """Base of every podnet error: a message, a hint for people and a CNI code."""

    cni_code: int = CNI_GENERIC
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint

    def __str__(self) -> str:
        return self.message

    def for_people(self) -> str:
        """The message and, on the next line, what to do about it."""
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located precisely enough to fix."""

    where: str  # e.g. "document 2 (Deployment dev/demo)"
    field: str  # e.g. "spec.replicas"
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.field}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class TopologyError(PodnetError, ValueError):
    """The topology file (or CNI config) is invalid; lists every problem found."""

    cni_code = CNI_INVALID_CONFIG

    def __init__(self, problems: list[Problem], *, source: str = "topology") -> None:
        self.problems = problems
        count = len(problems)
        head = f"{source}: {count} problem{'s' if count != 1 else ''}, nothing was created"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


class StateError(PodnetError):
    cni_code = CNI_IO_ERROR


class KernelError(PodnetError, OSError):
    """A kernel call failed; `errno` is the kernel's answer when there was one."""

    cni_code = CNI_GENERIC

    def __init__(self, message: str, *, errno: int | None = None, hint: str = "") -> None:
        PodnetError.__init__(self, message, hint=hint)
        self.errno = errno
        self.failed_at = 0  # in a batch of requests: the first the kernel refused

    def __str__(self) -> str:
        return self.message


class ObjectExistsError(KernelError, FileExistsError):
    default_hint = "something else created it: pick another name, or remove it if it is stale"


class ObjectMissingError(KernelError, FileNotFoundError):
    default_hint = "it was removed outside podnet; `podnet up` recreates what the lab needs"


class NotPermittedError(KernelError, PermissionError):
    default_hint = "podnet changes kernel network state: run it as root (or with CAP_NET_ADMIN)"


class NeedsRootError(NotPermittedError):
    """Said before anything is read or changed; the message says what to do, so no hint."""

    default_hint = ""


class InputError(PodnetError, ValueError):
    """A file or value given on the command line is not what the command needs (a topology
    has its own, `TopologyError`, listing every problem)."""

    cni_code = CNI_INVALID_CONFIG


class ProcessError(PodnetError):
    pass


class ApplyError(PodnetError):
    """A step failed; `rolled_back` lists what this run undid."""

    def __init__(self, message: str, *, hint: str = "", rolled_back: int = 0) -> None:
        super().__init__(message, hint=hint)
        self.rolled_back = rolled_back


class CniError(PodnetError):
    def __init__(self, code: int, message: str, *, details: str = "") -> None:
        super().__init__(message, hint=details)
        self.cni_code = code
        self.details = details


def kernel_error(code: int | None, message: str, *, hint: str = "") -> KernelError:
    """The error for an errno the kernel answered: the one mapping for netlink answers, system
    calls and files alike (EEXIST, ENOENT/ENODEV/ESRCH, EPERM/EACCES, the rest)."""
    import errno as errnos

    if code == errnos.EEXIST:
        return ObjectExistsError(message, errno=code, hint=hint)
    if code in (errnos.ENODEV, errnos.ENOENT, errnos.ESRCH):
        return ObjectMissingError(message, errno=code, hint=hint)
    if code in (errnos.EPERM, errnos.EACCES):
        return NotPermittedError(message, errno=code, hint=hint)
    return KernelError(message, errno=code, hint=hint)


def os_error(exc: OSError, what: str, *, hint: str = "") -> KernelError:
    """`kernel_error` for a failed system call on `what`."""
    return kernel_error(exc.errno, f"{what}: {exc.strerror or exc}", hint=hint)
