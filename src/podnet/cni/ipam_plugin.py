"""The `podnet-ipam` plugin's commands: host-local's config and static addresses, with GC, STATUS
and reservations that survive a reboot (podnet.ipam.store).

podnet-cni calls these functions in-process when its ipam type is podnet-ipam (saving the start
of another process); the `podnet-ipam` executable reaches the same functions through dispatch.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from podnet.cni.result import DNS, IPConfig, Result, Route
from podnet.cni.spec import Request
from podnet.errors import CNI_INVALID_CONFIG, CNI_PLUGIN_NOT_AVAILABLE, CniError
from podnet.ipam.pool import Address
from podnet.ipam.ranges import LEGACY_DATA_DIR, IpamConfig, parse_ipam_config, requested_ips
from podnet.ipam.store import Store

__all__ = ["held_addresses", "ipam_add", "ipam_check", "ipam_del", "ipam_gc", "ipam_status",
           "owned_by_valid", "valid_attachments"]


def _setup(conf: dict[str, Any]) -> tuple[IpamConfig, Store]:
    cfg = parse_ipam_config(conf.get("ipam"))
    legacy = None if cfg.data_dir_given else LEGACY_DATA_DIR  # state of an older podnet
    return cfg, Store(cfg.data_dir, str(conf["name"]), legacy)


def _routes(cfg: IpamConfig) -> tuple[Route, ...]:
    out = []
    for raw in cfg.routes:
        try:
            dst = ipaddress.ip_network(str(raw["dst"]), strict=False)
            gw = ipaddress.ip_address(str(raw["gw"])) if raw.get("gw") else None
        except ValueError:
            raise CniError(CNI_INVALID_CONFIG, f"podnet-ipam config: route {raw!r} is not valid",
                           details='write routes as {"dst": "0.0.0.0/0", "gw": "10.244.1.1"}') \
                from None
        out.append(Route(dst, gw))
    return tuple(out)


def _dns(path: str) -> DNS:
    """host-local's resolvConf: the file's nameservers, domain, search and options."""
    if not path:
        return DNS()
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    domain = ""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise CniError(CNI_INVALID_CONFIG, f"podnet-ipam: cannot read resolvConf {path}: "
                       f"{exc.strerror}") from None
    for line in lines:
        words = line.split()
        if len(words) < 2 or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver":
            servers.append(words[1])
        elif words[0] == "domain":
            domain = words[1]
        elif words[0] == "search":
            search.extend(words[1:])
        elif words[0] == "options":
            options.extend(words[1:])
    return DNS(tuple(servers), domain, tuple(search), tuple(options))


def ipam_add(conf: dict[str, Any], req: Request) -> Result:
    cfg, store = _setup(conf)
    routes = _routes(cfg)
    dns = _dns(cfg.resolv_conf)
    wanted = requested_ips(req.args, conf)
    ips = []
    for a in store.allocate(req.container_id, req.ifname, cfg.range_sets, wanted):
        pool = a.pool
        if pool is None:  # pragma: no cover - allocate always knows the range
            raise CniError(CNI_INVALID_CONFIG, f"{a.ip} is in none of the configured ranges")
        ips.append(IPConfig(ipaddress.ip_interface(f"{a.ip}/{pool.subnet.prefixlen}"),
                            pool.gateway_address))
    return Result(ips=tuple(ips), routes=routes, dns=dns)


def ipam_del(conf: dict[str, Any], req: Request) -> None:
    _, store = _setup(conf)
    store.release(req.container_id, req.ifname)


def ipam_check(conf: dict[str, Any], req: Request) -> None:
    _, store = _setup(conf)
    if not store.held_by(req.container_id, req.ifname):
        raise CniError(
            999, f"podnet-ipam holds no address for container {req.container_id} "
            f"interface {req.ifname} in network {conf['name']}",
            details="the reservation was released or never made: delete and re-add the pod",
        )


def held_addresses(conf: dict[str, Any], container_id: str, ifname: str) -> list[Address]:
    """What podnet-ipam holds for one attachment (podnet-cni's DEL: what it may unmasquerade)."""
    _, store = _setup(conf)
    return [a.ip for a in store.held_by(container_id, ifname)]


def owned_by_valid(conf: dict[str, Any], valid: set[tuple[str, str]]) -> list[Address]:
    """Every address podnet-ipam holds for an attachment in `valid` (GC's reconciliation)."""
    _, store = _setup(conf)
    return [a.ip for a in store.all() if (a.container_id, a.ifname) in valid]


def valid_attachments(conf: dict[str, Any]) -> set[tuple[str, str]]:
    # SPEC 1.1 names the key cni.dev/valid-attachments; libcni before 1.2.3 sent
    # cni.dev/attachments, so read both.
    raw = conf.get("cni.dev/valid-attachments")
    if raw is None:
        raw = conf.get("cni.dev/attachments")
    if not isinstance(raw, list):
        raise CniError(CNI_INVALID_CONFIG, "GC needs cni.dev/valid-attachments: a list of "
                       '{"containerID": ..., "ifname": ...} objects')
    out = set()
    for item in raw:
        if not isinstance(item, dict):
            raise CniError(CNI_INVALID_CONFIG, f"cni.dev/valid-attachments: {item!r} "
                           "is not an object")
        out.add((str(item.get("containerID", "")), str(item.get("ifname", ""))))
    return out


def ipam_gc(conf: dict[str, Any]) -> int:
    """Release every reservation not in the runtime's list; returns how many were released."""
    _, store = _setup(conf)
    return len(store.gc(valid_attachments(conf)))


def ipam_status(conf: dict[str, Any]) -> None:
    cfg, store = _setup(conf)
    for index, free in enumerate(store.free(cfg.range_sets)):
        if free == 0:
            subnets = cfg.range_sets[index].describe()
            raise CniError(
                CNI_PLUGIN_NOT_AVAILABLE,
                f"podnet-ipam: range set {index} ({subnets}) of network {conf['name']} "
                "has no free address",
                details="ADD will fail until pods are deleted; GC releases leaked reservations",
            )
