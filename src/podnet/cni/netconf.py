"""The network configuration on stdin: decoded, version-checked and validated before any work.

    {"cniVersion": "1.0.0", "name": "podnet", "type": "podnet-cni",
     "mode": "ptp" | "bridge", "bridge": "podnet0", "isGateway": true, "hairpinMode": false,
     "mtu": 1500, "ipMasq": false, "stateDir": "/run/podnet/cni",
     "ipam": {"type": "podnet-ipam" | "host-local" | ..., ...}}

Decoding fails with code 6, a bad value with code 7, a field podnet does not know with code 2
naming the field and its value, an unsupported cniVersion with code 1.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from podnet.cni.result import Result
from podnet.cni.spec import MAX_CONFIG, check_version
from podnet.errors import CNI_DECODE_ERROR, CNI_INVALID_CONFIG, CNI_UNSUPPORTED_FIELD, CniError

__all__ = ["DEFAULT_STATE_DIR", "NetConf", "PodnetConf", "decode", "parse_netconf", "parse_podnet"]

DEFAULT_STATE_DIR = "/run/podnet/cni"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
# Keys a runtime may add to any plugin's configuration (SPEC.md, Section 3; GC in 1.1).
_RUNTIME_KEYS = {"cniVersion", "name", "type", "args", "runtimeConfig", "capabilities",
                 "prevResult", "cni.dev/valid-attachments", "cni.dev/attachments", "dns"}
_PODNET_KEYS = {"mode", "bridge", "isGateway", "hairpinMode", "mtu", "ipMasq", "ipam",
                "stateDir"}


@dataclass(frozen=True)
class NetConf:
    """What every podnet plugin reads: version, network name and the raw object."""

    version: str
    name: str
    type: str
    raw: dict[str, Any]
    prev_result: Result | None


@dataclass(frozen=True)
class PodnetConf:
    net: NetConf
    mode: Literal["ptp", "bridge"]
    bridge: str
    is_gateway: bool
    hairpin: bool
    mtu: int
    ip_masq: bool
    ipam: dict[str, Any]
    state_dir: str


def decode(stdin: bytes) -> dict[str, Any]:
    if len(stdin) > MAX_CONFIG:
        raise CniError(CNI_DECODE_ERROR, f"the network configuration on stdin is too large "
                       f"({len(stdin)} bytes; podnet reads at most {MAX_CONFIG})",
                       details="a CNI configuration with its prevResult is a few kilobytes")
    try:
        doc = json.loads(stdin or b"null")
    except RecursionError:
        raise CniError(CNI_DECODE_ERROR, "the network configuration on stdin nests too deeply"
                       f"{_deep_field(stdin)}", details="no CNI configuration nests more than a "
                       "few levels: check what wrote it") from None
    except ValueError as exc:
        raise CniError(CNI_DECODE_ERROR, f"the network configuration on stdin is not JSON: {exc}",
                       details="the runtime must write the plugin's configuration to stdin") \
            from None
    if not isinstance(doc, dict):
        raise CniError(CNI_INVALID_CONFIG, "the network configuration must be a JSON object")
    return doc


def _deep_field(raw: bytes, limit: int = 200) -> str:
    """` in field "K"`: the top-level key under which the nesting passes `limit` (found by a scan
    that counts brackets outside strings; no recursion)."""
    depth, key, last, in_string, escaped, start = 0, "", "", False, False, 0
    for i, byte in enumerate(raw):
        char = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
                last = raw[start:i].decode(errors="replace")[:60]
            continue
        if char == '"':
            in_string, start = True, i + 1
        elif char == ":" and depth == 1:
            key = last
        elif char in "[{":
            depth += 1
            if depth > limit:
                return f' in field "{key}"' if key else ""
        elif char in "]}":
            depth -= 1
    return ""


def parse_netconf(stdin: bytes) -> NetConf:
    doc = decode(stdin)
    version = check_version(doc.get("cniVersion"))
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise CniError(CNI_INVALID_CONFIG, f"network name {name!r} is not valid",
                       details="a name starts with a letter or digit, then letters, digits, "
                       "'_', '.' or '-'")
    kind = doc.get("type")
    if not isinstance(kind, str) or not kind:
        raise CniError(CNI_INVALID_CONFIG, 'the configuration has no "type"')
    prev = doc.get("prevResult")
    return NetConf(version, name, kind, doc, Result.from_json(prev) if prev is not None else None)


def _bool(doc: dict[str, Any], key: str, default: bool, problems: list[str]) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        problems.append(f'"{key}" must be true or false, not {value!r}')
        return default
    return value


def _refuse_ipv6(ipam: dict[str, Any]) -> None:
    """podnet-ipam (and host-local) hand out IPv6 too; podnet-cni's attachment is IPv4 for now,
    so it refuses an IPv6 range up front rather than leave the address unconfigured."""
    ranges = ipam.get("ranges")
    subnets = [ipam.get("subnet")]
    if isinstance(ranges, list):
        subnets += [r.get("subnet") for rs in ranges if isinstance(rs, list)
                    for r in rs if isinstance(r, dict)]
    for subnet in subnets:
        if isinstance(subnet, str) and ":" in subnet:
            raise CniError(CNI_UNSUPPORTED_FIELD,
                           f'podnet-cni does not support field "subnet": {subnet!r} (IPv6)',
                           details="podnet-cni attaches IPv4 for now; podnet-ipam itself hands "
                           "out IPv6 to other plugins")


def parse_podnet(net: NetConf) -> PodnetConf:
    doc = net.raw
    unknown = [k for k in doc if k not in _RUNTIME_KEYS and k not in _PODNET_KEYS]
    if unknown:
        key = unknown[0]
        raise CniError(CNI_UNSUPPORTED_FIELD,
                       f'podnet-cni does not support field "{key}": {json.dumps(doc[key])[:80]}',
                       details="remove it; podnet-cni's fields are " + ", ".join(
                           sorted(_PODNET_KEYS)))
    problems: list[str] = []
    mode = doc.get("mode", "ptp")
    if mode not in ("ptp", "bridge"):
        raise CniError(CNI_UNSUPPORTED_FIELD,
                       f'podnet-cni does not support field "mode": {mode!r}',
                       details='use "ptp" (a host route per pod) or "bridge"')
    bridge = doc.get("bridge", "podnet0")
    if not isinstance(bridge, str) or not 0 < len(bridge.encode()) <= 15 or "/" in bridge \
            or any(c.isspace() or c == ":" for c in bridge):
        problems.append(f'"bridge" {bridge!r} is not an interface name (at most 15 bytes)')
    mtu = doc.get("mtu", 1500)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
        problems.append(f'"mtu" {mtu!r} must be a number from 68 to 65535')
        mtu = 1500
    ipam = doc.get("ipam")
    if not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str) or not ipam["type"]:
        problems.append('"ipam" must be an object with a "type" (podnet-ipam or host-local)')
        ipam = {}
    elif "/" in ipam["type"]:
        problems.append(f'ipam type {ipam["type"]!r} must be a plugin name, not a path')
    else:
        _refuse_ipv6(ipam)
    state_dir = doc.get("stateDir", DEFAULT_STATE_DIR)
    if not isinstance(state_dir, str) or not state_dir.startswith("/"):
        problems.append(f'"stateDir" {state_dir!r} must be an absolute path')
    is_gateway = _bool(doc, "isGateway", True, problems)
    hairpin = _bool(doc, "hairpinMode", False, problems)
    ip_masq = _bool(doc, "ipMasq", False, problems)
    if problems:
        raise CniError(CNI_INVALID_CONFIG, f"network {net.name}: " + "; ".join(problems),
                       details="fix the podnet-cni entry of the network configuration")
    return PodnetConf(net, mode, str(bridge), is_gateway, hairpin, int(mtu), ip_masq,
                      dict(ipam), str(state_dir))
