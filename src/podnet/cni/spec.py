"""The CNI protocol's fixed parts: versions, the CNI_* environment, error output.

Everything here is checked before any file or kernel object is touched: a bad CNI_CONTAINERID or
CNI_IFNAME is refused with code 4 naming the variable, an unsupported cniVersion with code 1.
Stdlib only: the thin client and the agent both import it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import (
    CNI_INCOMPATIBLE_VERSION,
    CNI_INVALID_CONFIG,
    CNI_INVALID_ENV,
    CniError,
    PodnetError,
)

__all__ = [
    "COMMANDS",
    "LATEST",
    "MAX_CONFIG",
    "SUPPORTED_VERSIONS",
    "Request",
    "check_version",
    "error_output",
    "parse_cni_args",
    "parse_request",
    "parse_version",
    "version_at_least",
]

# Spec versions whose configs and results podnet speaks (issue 4: 0.4.0 to 1.1.0).
SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
# The most a plugin reads from stdin (the C client's cap too; far above any real configuration).
MAX_CONFIG = 16 << 20

# SPEC.md, Parameters: a container ID starts with an alphanumeric character, then alphanumerics,
# '_', '.' or '-'; so it never holds '/', and cannot climb out of a state directory.
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
_MAX_CONTAINER_ID = 200  # file names built from it stay under NAME_MAX (255)
_IFNAMSIZ = 16  # the kernel's limit, terminating NUL included: at most 15 bytes
_CNI_ARG = re.compile(r"[A-Za-z0-9_\-]+\Z")


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise CniError(
            CNI_INCOMPATIBLE_VERSION,
            f"cniVersion {text!r} is not a version",
            details=f"use one of {', '.join(SUPPORTED_VERSIONS)}",
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


def version_at_least(version: str, minimum: str) -> bool:
    return parse_version(version) >= parse_version(minimum)


def check_version(version: object) -> str:
    """The config's cniVersion if podnet speaks it; otherwise error code 1."""
    if version is None or version == "":
        # libcni treats a config without cniVersion as 0.1.0, which podnet does not speak.
        version = "0.1.0"
    if not isinstance(version, str):
        raise CniError(CNI_INVALID_CONFIG, f"cniVersion must be a string, not {version!r}")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            CNI_INCOMPATIBLE_VERSION,
            f"incompatible CNI version {version}: podnet supports {', '.join(SUPPORTED_VERSIONS)}",
            details='set "cniVersion" in the network configuration to one of those',
        )
    return version


@dataclass(frozen=True)
class Request:
    """One plugin invocation: the CNI_* environment, already validated for its command."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # everything, passed on to delegates


def _env_error(variable: str, problem: str, hint: str = "") -> CniError:
    return CniError(CNI_INVALID_ENV, f"{variable} {problem}", details=hint)


def _check_container_id(value: str) -> str:
    if not value:
        raise _env_error("CNI_CONTAINERID", "is missing or empty")
    if len(value.encode()) > _MAX_CONTAINER_ID or not _CONTAINER_ID.match(value):
        raise _env_error(
            "CNI_CONTAINERID",
            f"{value[:80]!r} is not a valid container ID",
            "it must start with a letter or digit, then letters, digits, '_', '.' or '-' "
            f"(at most {_MAX_CONTAINER_ID} bytes)",
        )
    return value


def _check_ifname(value: str) -> str:
    if not value:
        raise _env_error("CNI_IFNAME", "is missing or empty")
    raw = value.encode()
    bad = (
        len(raw) >= _IFNAMSIZ
        or value in (".", "..")
        or any(c in "/:" or c.isspace() for c in value)
        or "\0" in value
    )
    if bad:
        raise _env_error(
            "CNI_IFNAME",
            f"{value[:40]!r} is not a valid interface name",
            "at most 15 bytes, not '.' or '..', without '/', ':' or whitespace",
        )
    return value


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS: 'K=V;K2=V2' (SPEC.md); an empty string means no arguments."""
    out: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not _CNI_ARG.match(key):
            raise _env_error("CNI_ARGS", f"has a malformed item {item[:60]!r}",
                             "write it as KEY=VALUE pairs separated by ';'")
        out[key] = value
    return out


def parse_request(env: Mapping[str, str]) -> Request:
    """Validate the environment for its command; raises CniError code 4 naming the variable."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise _env_error(
            "CNI_COMMAND",
            f"{command!r} is not a CNI command" if command else "is missing",
            f"use one of {', '.join(COMMANDS)}",
        )
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    if command in ("VERSION", "STATUS", "GC"):
        return Request(command=command, path=path, env=env)
    container_id = _check_container_id(env.get("CNI_CONTAINERID", ""))
    ifname = _check_ifname(env.get("CNI_IFNAME", ""))
    netns = env.get("CNI_NETNS", "")
    if command in ("ADD", "CHECK") and not netns:
        raise _env_error("CNI_NETNS", f"is missing: {command} needs the container's namespace")
    if netns and not netns.startswith("/"):
        raise _env_error("CNI_NETNS", f"{netns[:80]!r} is not an absolute path")
    args = parse_cni_args(env.get("CNI_ARGS", ""))
    return Request(command, container_id, netns, ifname, args, path, env)


def error_output(err: BaseException, version: str = LATEST) -> bytes:
    """The spec's error object (SPEC.md, Errors), as written to stdout before a non-zero exit."""
    if isinstance(err, PodnetError):
        code = err.cni_code
        msg = err.message
        details = getattr(err, "details", "") or err.hint
    else:
        code, msg, details = 999, f"internal error: {err}", "this is a bug in podnet"
    doc: dict[str, Any] = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        doc["details"] = details
    return json.dumps(doc).encode() + b"\n"
