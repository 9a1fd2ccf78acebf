"""One plugin invocation in, one answer out: what the runtime reads (stdout, exit code).

The agent and the in-process fallback both call `handle`, so the runtime gets the same bytes
whichever ran the request. Nothing here reads os.environ or prints: the environment is a
parameter and the answer is a value.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass

from podnet.cni import delegate
from podnet.cni.commands import run_command
from podnet.cni.netconf import NetConf, parse_netconf, parse_podnet
from podnet.cni.result import Result
from podnet.cni.spec import (
    LATEST,
    SUPPORTED_VERSIONS,
    Request,
    error_output,
    parse_request,
    version_at_least,
)
from podnet.errors import CNI_INCOMPATIBLE_VERSION, CniError, PodnetError

__all__ = ["IPAM_PLUGIN", "MAIN_PLUGIN", "Outcome", "handle"]

MAIN_PLUGIN = "podnet-cni"
IPAM_PLUGIN = "podnet-ipam"


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: bytes = b""
    stderr: bytes = b""


def _version_output() -> bytes:
    doc = {"cniVersion": LATEST, "supportedVersions": list(SUPPORTED_VERSIONS)}
    return json.dumps(doc).encode() + b"\n"


def handle(plugin: str, env: Mapping[str, str], stdin: bytes) -> Outcome:
    """Run `plugin` (podnet-cni or podnet-ipam) for the request in `env` and `stdin`."""
    version = LATEST
    try:
        req = parse_request(env)
        if req.command == "VERSION":
            return Outcome(0, _version_output())
        net = parse_netconf(stdin)
        version = net.version
        if req.command in ("STATUS", "GC") and not version_at_least(version, "1.1.0"):
            raise CniError(CNI_INCOMPATIBLE_VERSION,
                           f"config version {version} does not allow {req.command}",
                           details="STATUS and GC arrived with spec 1.1.0")
        if plugin == IPAM_PLUGIN:
            out = delegate.in_process(req.command, net.raw, req)
        else:
            out = _main(req.command, net, req)
        if out is None:
            return Outcome(0)
        return Outcome(0, json.dumps(out.to_json(version)).encode() + b"\n")
    except PodnetError as err:
        return Outcome(1, error_output(err, version))
    except Exception as err:  # the runtime must get an error object, never a trace
        return Outcome(1, error_output(err, version), traceback.format_exc().encode())


def _main(command: str, net: NetConf, req: Request) -> Result | None:
    conf = parse_podnet(net)
    if command == "STATUS":
        # Ready when the IPAM can hand out an address (podnet-ipam: code 50 when exhausted).
        delegate.ipam("STATUS", net.raw, req)
        return None
    from podnet.cni import plugin  # loads pyroute2: only for link work

    return run_command(
        command,
        lambda: plugin.cmd_add(req, conf),
        {
            "DEL": lambda: plugin.cmd_del(req, conf),
            "CHECK": lambda: plugin.cmd_check(req, conf),
            "GC": lambda: plugin.cmd_gc(req, conf),
        },
    )
