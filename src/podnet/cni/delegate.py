"""IPAM delegation, as the reference plugins do it: find the plugin named by ipam.type in
CNI_PATH, run it with our environment (CNI_COMMAND set) and the same configuration on stdin.

podnet-ipam itself is called in-process: same code, same files, one process start saved.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from podnet.cni import ipam_plugin
from podnet.cni.commands import run_command
from podnet.cni.result import Result
from podnet.cni.spec import Request
from podnet.errors import CNI_INCOMPATIBLE_VERSION, CNI_INVALID_CONFIG, CniError

__all__ = ["IN_PROCESS", "find_plugin", "in_process", "ipam"]

IN_PROCESS = "podnet-ipam"


def find_plugin(kind: str, path: tuple[str, ...]) -> str:
    if "/" in kind or kind in ("", ".", ".."):
        raise CniError(CNI_INVALID_CONFIG, f"plugin type {kind!r} must be a plain name")
    for directory in path:
        candidate = os.path.join(directory, kind)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(
        CNI_INVALID_CONFIG,
        f"IPAM plugin {kind} was not found in CNI_PATH ({':'.join(path) or 'empty'})",
        details=f"install it there, or set ipam.type to {IN_PROCESS}",
    )


def _run(kind: str, command: str, conf: dict[str, Any], req: Request) -> dict[str, Any] | None:
    exe = find_plugin(kind, req.path)
    env = dict(req.env)
    env["CNI_COMMAND"] = command
    proc = subprocess.run([exe], input=json.dumps(conf).encode(), env=env,
                          capture_output=True, check=False)
    out = proc.stdout.strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            code, msg, details = int(err["code"]), str(err["msg"]), str(err.get("details", ""))
        except (ValueError, KeyError, TypeError):
            code, msg = 999, (proc.stderr or out).decode(errors="replace").strip()[:400]
            details = ""
        raise CniError(code, f"IPAM plugin {kind} {command} failed: {msg}", details=details)
    if not out:
        return None
    try:
        doc = json.loads(out)
    except ValueError:
        raise CniError(999, f"IPAM plugin {kind} {command} printed something that is not JSON: "
                       f"{out[:200]!r}") from None
    return doc if isinstance(doc, dict) else None


def in_process(command: str, conf: dict[str, Any], req: Request) -> Result | None:
    """Run podnet-ipam's own functions for `command`; ADD returns its result."""
    return run_command(
        command,
        lambda: ipam_plugin.ipam_add(conf, req),
        {
            "DEL": lambda: ipam_plugin.ipam_del(conf, req),
            "CHECK": lambda: ipam_plugin.ipam_check(conf, req),
            "GC": lambda: ipam_plugin.ipam_gc(conf),
            "STATUS": lambda: ipam_plugin.ipam_status(conf),
        },
    )


def _speaks_1_1(kind: str, req: Request) -> bool:
    doc = _run(kind, "VERSION", {"cniVersion": "1.1.0"}, req) or {}
    return "1.1.0" in (doc.get("supportedVersions") or ())


def ipam(command: str, conf: dict[str, Any], req: Request) -> Result | None:
    """Run the IPAM plugin of `conf` for `command`; ADD returns its result."""
    kind = str(conf["ipam"]["type"])
    if kind == IN_PROCESS:
        return in_process(command, conf, req)
    if command in ("STATUS", "GC") and not _speaks_1_1(kind, req):
        return None  # a delegate older than spec 1.1 knows no STATUS or GC: nothing to ask
    try:
        doc = _run(kind, command, conf, req)
    except CniError as exc:
        if command in ("STATUS", "GC") and exc.cni_code == CNI_INCOMPATIBLE_VERSION:
            return None
        raise
    if command == "ADD":
        if doc is None:
            raise CniError(999, f"IPAM plugin {kind} ADD printed no result")
        return Result.from_json(doc, f"the result of IPAM plugin {kind}")
    return None
