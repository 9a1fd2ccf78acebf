"""podnet-ipam's configuration, read as host-local reads its own.

    "ipam": {
      "type": "podnet-ipam",
      "ranges": [[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.10",
                   "rangeEnd": "10.244.1.200", "gateway": "10.244.1.1"}]],
      "reserved": ["10.244.1.53"],          # podnet's addition: never handed out
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": "/run/podnet/ipam",
      "resolvConf": "/etc/resolv.conf"
    }

The older flat form ("subnet", "rangeStart", "rangeEnd", "gateway" beside "type") is accepted as
one range. Each range set yields one address per attachment, from its first range with room.
Every problem is collected and reported at once (CNI code 7; code 2 for what podnet does not do).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from podnet.errors import CNI_INVALID_CONFIG, CNI_UNSUPPORTED_FIELD, CniError
from podnet.ipam.pool import Pool
from podnet.model.addresses import IPAddress

__all__ = ["DEFAULT_DATA_DIR", "IpamConfig", "RangeSet", "parse_ipam_config"]

DEFAULT_DATA_DIR = "/run/podnet/ipam"
_KNOWN = {
    "type", "ranges", "routes", "dataDir", "resolvConf", "reserved",
    "subnet", "rangeStart", "rangeEnd", "gateway",
}
_RANGE_KEYS = {"subnet", "rangeStart", "rangeEnd", "gateway"}


@dataclass(frozen=True)
class RangeSet:
    pools: tuple[Pool, ...]


@dataclass(frozen=True)
class IpamConfig:
    range_sets: tuple[RangeSet, ...]
    routes: tuple[dict[str, Any], ...]
    data_dir: str
    resolv_conf: str = ""


def _fail(code: int, problems: list[str]) -> CniError:
    head = "podnet-ipam config: " + "; ".join(problems)
    return CniError(code, head, details="see the ipam section of the network configuration")


def _address(raw: object, where: str, problems: list[str]) -> ipaddress.IPv4Address | None:
    if raw is None:
        return None
    try:
        addr = ipaddress.ip_address(str(raw))
    except ValueError:
        problems.append(f"{where} {raw!r} is not an IP address")
        return None
    if not isinstance(addr, ipaddress.IPv4Address):
        problems.append(f"{where} {raw!r}: only IPv4 is supported")
        return None
    return addr


def _pool(raw: object, where: str, reserved: frozenset[ipaddress.IPv4Address],
          problems: list[str], unsupported: list[str]) -> Pool | None:
    if not isinstance(raw, dict):
        problems.append(f"{where} must be an object with a subnet")
        return None
    for key in raw:
        if key not in _RANGE_KEYS:
            unsupported.append(f'{where} has unsupported field "{key}": {raw[key]!r}')
    try:
        subnet = ipaddress.ip_network(str(raw.get("subnet")), strict=False)
    except ValueError:
        problems.append(f"{where}.subnet {raw.get('subnet')!r} is not a CIDR")
        return None
    if not isinstance(subnet, ipaddress.IPv4Network):
        unsupported.append(f'{where} has unsupported field "subnet": {str(subnet)!r} '
                           "(podnet-ipam allocates IPv4 only)")
        return None
    if subnet.prefixlen > 30:
        problems.append(f"{where}.subnet {subnet} is too small: use /30 or larger")
        return None
    start = _address(raw.get("rangeStart"), f"{where}.rangeStart", problems)
    end = _address(raw.get("rangeEnd"), f"{where}.rangeEnd", problems)
    gateway = _address(raw.get("gateway"), f"{where}.gateway", problems)
    outside = [f"{where}.{name} {addr} is outside {subnet}"
               for name, addr in (("rangeStart", start), ("rangeEnd", end), ("gateway", gateway))
               if addr is not None and addr not in subnet]
    if start is not None and end is not None and start > end:
        outside.append(f"{where}: rangeStart {start} is after rangeEnd {end}")
    if outside:
        problems.extend(outside)
        return None
    return Pool(subnet, gateway, start, end, frozenset(a for a in reserved if a in subnet))


def _range_sets(ipam: dict[str, Any], reserved: frozenset[ipaddress.IPv4Address],
                problems: list[str], unsupported: list[str]) -> list[RangeSet]:
    raw_sets = ipam.get("ranges")
    if raw_sets is None and "subnet" in ipam:
        raw_sets = [[{k: ipam[k] for k in _RANGE_KEYS if k in ipam}]]
    if not isinstance(raw_sets, list) or not raw_sets:
        problems.append('"ranges" must be a non-empty list of range sets, e.g. '
                        '[[{"subnet": "10.244.1.0/24"}]]')
        return []
    sets: list[RangeSet] = []
    for i, raw_set in enumerate(raw_sets):
        if not isinstance(raw_set, list) or not raw_set:
            problems.append(f"ranges[{i}] must be a non-empty list of ranges")
            continue
        pools = [_pool(r, f"ranges[{i}][{j}]", reserved, problems, unsupported)
                 for j, r in enumerate(raw_set)]
        found = [p for p in pools if p is not None]
        for a in range(len(found)):
            for b in range(a + 1, len(found)):
                if _overlap(found[a], found[b]):
                    problems.append(f"ranges[{i}]: ranges {a} and {b} overlap")
        sets.append(RangeSet(tuple(found)))
    return sets


def parse_ipam_config(ipam: object) -> IpamConfig:
    if not isinstance(ipam, dict):
        raise _fail(CNI_INVALID_CONFIG, ["the ipam section must be an object"])
    problems: list[str] = []
    unsupported = [f'unsupported field "{k}": {ipam[k]!r}' for k in ipam if k not in _KNOWN]
    reserved = {_address(raw, f"reserved[{i}]", problems)
                for i, raw in enumerate(ipam.get("reserved") or ())}
    sets = _range_sets(ipam, frozenset(a for a in reserved if a is not None), problems,
                       unsupported)
    routes = ipam.get("routes") or []
    if not isinstance(routes, list) or not all(isinstance(r, dict) and "dst" in r
                                               for r in routes):
        problems.append('"routes" must be a list of {"dst": CIDR, "gw": IP} objects')
        routes = []
    data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
    if not isinstance(data_dir, str) or not data_dir.startswith("/"):
        problems.append(f'"dataDir" {data_dir!r} must be an absolute path')
    resolv = ipam.get("resolvConf") or ""
    if not isinstance(resolv, str):
        problems.append('"resolvConf" must be a path')
        resolv = ""
    if problems:
        raise _fail(CNI_INVALID_CONFIG, problems)
    if unsupported:
        raise _fail(CNI_UNSUPPORTED_FIELD, unsupported)
    return IpamConfig(tuple(sets), tuple(routes), str(data_dir), resolv)


def _span(p: Pool) -> tuple[IPAddress, IPAddress]:
    return p.range_start or p.subnet.network_address, p.range_end or p.subnet.broadcast_address


def _overlap(a: Pool, b: Pool) -> bool:
    (a_lo, a_hi), (b_lo, b_hi) = _span(a), _span(b)
    if a_lo.version != b_lo.version:
        return False
    return int(a_lo) <= int(b_hi) and int(b_lo) <= int(a_hi)
