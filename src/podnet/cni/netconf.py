"""The network configuration on stdin: decoded, version-checked and validated before any work.

    {"cniVersion": "1.0.0", "name": "podnet", "type": "podnet-cni",
     "mode": "ptp" | "bridge" | "vpc", "bridge": "podnet0", "isGateway": true,
     "hairpinMode": false, "uplink": "eth0", "mtu": 1500, "ipMasq": false,
     "stateDir": "/run/podnet/cni",
     "ipam": {"type": "podnet-ipam" | "host-local" | ..., ...}}

The modes are the lab's attachment shapes (`podnet.plan.attachments`): a mode is valid when the
registry has it. ptp and bridge attach every family the IPAM's range sets give (one address per
family); vpc is IPv4 only, as the lab's.

Decoding fails with code 6, a bad value with code 7, a field podnet does not know with code 2
naming the field and its value, an unsupported cniVersion with code 1.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

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
                "stateDir", "uplink"}


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
    mode: str  # a name in podnet.plan.attachments.ATTACHMENTS
    bridge: str
    is_gateway: bool
    hairpin: bool
    mtu: int
    ip_masq: bool
    ipam: dict[str, Any]
    state_dir: str
    uplink: str = ""  # vpc: the node network's link ("": the interface of the default route)


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


def _set_families(ipam: dict[str, Any]) -> list[int]:
    """The family of each range set of the ipam section (host-local's shape, flat or `ranges`):
    each set gives the pod one address."""
    ranges = ipam.get("ranges")
    if not isinstance(ranges, list):
        ranges = [[{"subnet": ipam.get("subnet")}]]
    families = []
    for rs in ranges:
        subnets = [r.get("subnet") for r in rs if isinstance(r, dict)] if isinstance(rs, list) \
            else []
        first = next((s for s in subnets if isinstance(s, str)), None)
        if first is not None:
            families.append(6 if ":" in first else 4)
    return families


def _check_families(mode: str, ipam: dict[str, Any]) -> None:
    """One address per family (the attachments' shape), and vpc IPv4 only: refused up front,
    before an address is reserved."""
    families = _set_families(ipam)
    for family in (4, 6):
        if families.count(family) > 1:
            raise CniError(CNI_UNSUPPORTED_FIELD, f'podnet-cni does not support field "ranges": '
                           f"{families.count(family)} IPv{family} range sets",
                           details="give one range set per family (a pod gets one address "
                           "of each); several ranges may share one set")
    if mode == "vpc" and 6 in families:
        raise CniError(CNI_UNSUPPORTED_FIELD, 'podnet-cni does not support field "ranges": '
                       "an IPv6 range set in mode vpc",
                       details="mode vpc puts IPv4 pods on the node network (as aws-node); use "
                       "mode ptp or bridge for IPv6 and dual-stack")


def parse_podnet(net: NetConf) -> PodnetConf:
    doc = net.raw
    unknown = [k for k in doc if k not in _RUNTIME_KEYS and k not in _PODNET_KEYS]
    if unknown:
        key = unknown[0]
        raise CniError(CNI_UNSUPPORTED_FIELD,
                       f'podnet-cni does not support field "{key}": {json.dumps(doc[key])[:80]}',
                       details="remove it; podnet-cni's fields are " + ", ".join(
                           sorted(_PODNET_KEYS)))
    from podnet.plan.attachments import ATTACHMENTS  # the shapes the lab builds

    problems: list[str] = []
    mode = doc.get("mode", "ptp")
    if not isinstance(mode, str) or mode not in ATTACHMENTS:
        raise CniError(CNI_UNSUPPORTED_FIELD,
                       f'podnet-cni does not support field "mode": {json.dumps(mode)[:40]}',
                       details='use "ptp" (a host route per pod), "bridge" or "vpc" (pods on '
                       "the node network, as AWS's VPC CNI)")
    bridge = doc.get("bridge", "podnet0")
    if not _ifname_ok(bridge):
        problems.append(f'"bridge" {bridge!r} is not an interface name (at most 15 bytes)')
    uplink = doc.get("uplink", "")
    if uplink != "" and not _ifname_ok(uplink):
        problems.append(f'"uplink" {uplink!r} is not an interface name (at most 15 bytes)')
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
        _check_families(mode, ipam)
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
                      dict(ipam), str(state_dir), str(uplink))


def _ifname_ok(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name.encode()) <= 15 and "/" not in name \
        and name not in (".", "..") and not any(c.isspace() or c == ":" for c in name)
