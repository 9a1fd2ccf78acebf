"""podnet-ipam's configuration, read as host-local reads its own.

    "ipam": {
      "type": "podnet-ipam",
      "ranges": [[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.10",
                   "rangeEnd": "10.244.1.200", "gateway": "10.244.1.1"}],
                 [{"subnet": "fd00:10:244:1::/64"}]],   # a second family: one address each
      "reserved": ["10.244.1.53"],          # podnet's addition: never handed out
      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
      "dataDir": "/var/lib/cni/networks",   # host-local's default: survives a reboot
      "resolvConf": "/etc/resolv.conf"
    }

The older flat form ("subnet", "rangeStart", "rangeEnd", "gateway" beside "type") is accepted as
one range. Each range set yields one address per attachment, from its first range with room; the
ranges of one set share a family (host-local's rule). Every problem is collected and reported at
once (CNI code 7; code 2 for what podnet does not do).

Static addresses, as host-local takes them: `IP=10.244.1.77[,fd00::77]` in CNI_ARGS,
`"args": {"cni": {"ips": [...]}}` in the configuration, or `"runtimeConfig": {"ips": [...]}` (the
`ips` capability). Each may carry a prefix length, which must then be its range's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podnet.errors import CNI_INVALID_CONFIG, CNI_UNSUPPORTED_FIELD, CniError
from podnet.ipam.pool import Address, Pool

__all__ = ["DEFAULT_DATA_DIR", "LEGACY_DATA_DIR", "IpamConfig", "RangeSet", "parse_ipam_config",
           "requested_ips"]

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LEGACY_DATA_DIR = "/run/podnet/ipam"  # the default before reservations had to survive a reboot
_KNOWN = {
    "type", "ranges", "routes", "dataDir", "resolvConf", "reserved",
    "subnet", "rangeStart", "rangeEnd", "gateway",
}
_RANGE_KEYS = {"subnet", "rangeStart", "rangeEnd", "gateway"}
AnyPool = Pool[ipaddress.IPv4Network] | Pool[ipaddress.IPv6Network]


@dataclass(frozen=True)
class RangeSet:
    pools: tuple[AnyPool, ...]

    @property
    def family(self) -> int:
        return self.pools[0].subnet.version if self.pools else 4

    def pool_of(self, address: Address) -> AnyPool | None:
        return next((p for p in self.pools if p.contains(address)), None)

    def describe(self) -> str:
        return ", ".join(str(p.subnet) for p in self.pools)


@dataclass(frozen=True)
class IpamConfig:
    range_sets: tuple[RangeSet, ...]
    routes: tuple[dict[str, Any], ...]
    data_dir: str
    resolv_conf: str = ""
    data_dir_given: bool = True  # False: the default, so the old default is looked at too


def _fail(code: int, problems: list[str]) -> CniError:
    head = "podnet-ipam config: " + "; ".join(problems)
    return CniError(code, head, details="see the ipam section of the network configuration")


def _address(raw: object, where: str, problems: list[str]) -> Address | None:
    if raw is None:
        return None
    try:
        return ipaddress.ip_address(str(raw))
    except ValueError:
        problems.append(f"{where} {raw!r} is not an IP address")
        return None


def _pool(raw: object, where: str, reserved: frozenset[Address],
          problems: list[str], unsupported: list[str]) -> AnyPool | None:
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
    if subnet.max_prefixlen - subnet.prefixlen < 2:
        problems.append(f"{where}.subnet {subnet} is too small: it needs room for a gateway and "
                        "an address (/30 or larger, /126 for IPv6)")
        return None
    start = _address(raw.get("rangeStart"), f"{where}.rangeStart", problems)
    end = _address(raw.get("rangeEnd"), f"{where}.rangeEnd", problems)
    gateway = _address(raw.get("gateway"), f"{where}.gateway", problems)
    outside = [f"{where}.{name} {addr} is outside {subnet}"
               for name, addr in (("rangeStart", start), ("rangeEnd", end), ("gateway", gateway))
               if addr is not None and (addr.version != subnet.version or addr not in subnet)]
    if start is not None and end is not None and int(start) > int(end):
        outside.append(f"{where}: rangeStart {start} is after rangeEnd {end}")
    if outside:
        problems.extend(outside)
        return None
    mine = frozenset(a for a in reserved if a.version == subnet.version and a in subnet)
    if isinstance(subnet, ipaddress.IPv4Network):
        return Pool(subnet, gateway, start, end, mine)
    return Pool(subnet, gateway, start, end, mine)


def _range_sets(ipam: dict[str, Any], reserved: frozenset[Address],
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
        if len({p.subnet.version for p in found}) > 1:
            problems.append(f"ranges[{i}] mixes IPv4 and IPv6: give each family a range set "
                            "of its own")
            continue
        for a in range(len(found)):
            for b in range(a + 1, len(found)):
                if _overlap(found[a], found[b]):
                    problems.append(f"ranges[{i}]: ranges {a} and {b} overlap")
        sets.append(RangeSet(tuple(found)))
    for a in range(len(sets)):
        for b in range(a + 1, len(sets)):
            if any(_overlap(p, q) for p in sets[a].pools for q in sets[b].pools):
                problems.append(f"range sets {a} and {b} overlap")
    return sets


def parse_ipam_config(ipam: object) -> IpamConfig:
    if not isinstance(ipam, dict):
        raise _fail(CNI_INVALID_CONFIG, ["the ipam section must be an object"])
    problems: list[str] = []
    unsupported = [f'unsupported field "{k}": {ipam[k]!r}' for k in ipam if k not in _KNOWN]
    raw_reserved = ipam.get("reserved") or []
    if not isinstance(raw_reserved, list):
        problems.append('"reserved" must be a list of addresses')
        raw_reserved = []
    reserved = {_address(raw, f"reserved[{i}]", problems) for i, raw in enumerate(raw_reserved)}
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
    return IpamConfig(tuple(sets), tuple(routes), str(data_dir), resolv,
                      data_dir_given=bool(ipam.get("dataDir")))


def _span(p: AnyPool) -> tuple[int, int, int]:
    lo = p.range_start or p.subnet.network_address
    hi = p.range_end or p.subnet.broadcast_address
    return p.subnet.version, int(lo), int(hi)


def _overlap(a: AnyPool, b: AnyPool) -> bool:
    (fa, a_lo, a_hi), (fb, b_lo, b_hi) = _span(a), _span(b)
    return fa == fb and a_lo <= b_hi and b_lo <= a_hi


# --- static addresses ---------------------------------------------------------------------------

def _one_request(raw: object, source: str) -> tuple[Address, int | None]:
    text = raw.strip() if isinstance(raw, str) else None
    try:
        if text is None:
            raise ValueError
        if "/" in text:
            iface = ipaddress.ip_interface(text)
            return iface.ip, iface.network.prefixlen
        return ipaddress.ip_address(text), None
    except ValueError:
        raise CniError(CNI_INVALID_CONFIG, f"{source}: {raw!r} is not an IP address",
                       details="give addresses such as 10.244.1.77 or 10.244.1.77/24") from None


def requested_ips(cni_args: Mapping[str, str], conf: Mapping[str, Any]) -> list[
        tuple[Address, int | None, str]]:
    """Static addresses asked for: (address, prefix length or None, where it came from).

    Read from CNI_ARGS `IP`, the configuration's `args.cni.ips` and `runtimeConfig.ips`, in that
    order, as host-local reads them; one address named twice counts once.
    """
    found: list[tuple[Address, int | None, str]] = []
    if cni_args.get("IP"):
        for item in cni_args["IP"].split(","):
            if item.strip():
                found.append((*_one_request(item, "CNI_ARGS IP"), "CNI_ARGS IP"))
    args = conf.get("args")
    sources = (("args.cni.ips", args.get("cni") if isinstance(args, dict) else None),
               ("runtimeConfig.ips", conf.get("runtimeConfig")))
    for name, holder in sources:
        if holder is None:
            continue
        raw = holder.get("ips") if isinstance(holder, dict) else holder
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise CniError(CNI_INVALID_CONFIG, f"{name} must be a list of addresses, not "
                           f"{type(raw).__name__}")
        found.extend((*_one_request(item, name), name) for item in raw)
    seen: set[Address] = set()
    unique = []
    for address, prefix, source in found:
        if address not in seen:
            seen.add(address)
            unique.append((address, prefix, source))
    return unique
