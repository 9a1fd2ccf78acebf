"""podnet-cni's commands: ADD, DEL, CHECK, STATUS and GC, on the lab's attachment code.

ADD reads as its steps: refuse a bad namespace, refuse an existing CNI_IFNAME, reserve addresses
(IPAM), attach the pod (`kernel.attach.attach_pod`), masquerade, record; any failure after the
reservation undoes all of it, so a failed ADD leaves no veth, no reservation and no rule.

DEL removes the host end of the veth (which takes the pod end with it) only when it is the one
podnet named and marked, so it never needs the pod's namespace: it succeeds twice, without ADD,
with the namespace gone and with an empty CNI_NETNS.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
from collections.abc import Iterator

from podnet.cni import delegate
from podnet.cni.ipam_plugin import valid_attachments
from podnet.cni.netconf import PodnetConf
from podnet.cni.records import (
    Record,
    all_records,
    read_record,
    remove_record,
    write_record,
)
from podnet.cni.result import Interface, IPConfig, Result, Route
from podnet.cni.spec import Request
from podnet.errors import (
    CNI_INVALID_CONFIG,
    CNI_INVALID_ENV,
    CNI_UNKNOWN_CONTAINER,
    CniError,
    ObjectMissingError,
)
from podnet.kernel import nft, sysctl
from podnet.kernel.attach import PodAttachment, attach_pod, ensure_bridge
from podnet.kernel.netlink import OWNER_ALIAS, Netlink

__all__ = ["cmd_add", "cmd_check", "cmd_del", "cmd_gc", "host_veth_name"]

_DEFAULT = ipaddress.IPv4Network("0.0.0.0/0")


def host_veth_name(network: str, container_id: str, ifname: str) -> str:
    """The host end's name, derived from the attachment: DEL and GC find it without state."""
    digest = hashlib.sha256(f"{network}/{container_id}/{ifname}".encode()).hexdigest()
    return f"veth{digest[:8]}"


@contextlib.contextmanager
def pod_namespace(path: str) -> Iterator[str]:
    """Open CNI_NETNS once and hand out /proc/self/fd/N, so every later step acts on the
    namespace checked here (never a path that changed since). Refuses anything that is not a
    network namespace other than our own: checked before anything is touched."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CniError(CNI_UNKNOWN_CONTAINER, f"CNI_NETNS {path} does not exist",
                       details="the container's network namespace is gone") from None
    except OSError as exc:
        raise CniError(CNI_INVALID_ENV, f"CNI_NETNS {path} cannot be opened: {exc.strerror}") \
            from None
    try:
        st = os.fstat(fd)
        own = os.stat("/proc/thread-self/ns/net")
        if st.st_dev != own.st_dev:
            raise CniError(CNI_INVALID_ENV, f"CNI_NETNS {path} is not a namespace file",
                           details="pass /proc/PID/ns/net or a bind mount of it (/run/netns/X)")
        if st.st_ino == own.st_ino:
            raise CniError(
                CNI_INVALID_ENV,
                f"CNI_NETNS {path} is the plugin's own network namespace",
                details="refusing to configure the host as if it were a container",
            )
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _refuse_own_namespace(path: str) -> None:
    """DEL: the same refusal as ADD, for a namespace that still exists."""
    if not path:
        return
    try:
        with pod_namespace(path):
            pass
    except CniError as exc:
        if "own network namespace" in exc.message:
            raise
        # Gone, or not a namespace: DEL cleans up what it can without it.


def _first_ipv4(result: Result, kind: str) -> IPConfig:
    for ip in result.ips:
        if isinstance(ip.address, ipaddress.IPv4Interface):
            return ip
    raise CniError(CNI_INVALID_CONFIG, f"IPAM plugin {kind} returned no IPv4 address",
                   details="podnet-cni attaches one IPv4 address per pod")


def _gateway(ip: IPConfig) -> ipaddress.IPv4Address:
    if isinstance(ip.gateway, ipaddress.IPv4Address):
        return ip.gateway
    # host-local always reports one; other IPAMs: the subnet's first address, as host-local does.
    return ip.address.network.network_address + 1  # type: ignore[return-value]


def _enable_forwarding() -> None:
    with open("/proc/sys/net/ipv4/ip_forward") as fh:
        if fh.read().strip() == "1":
            return
    sysctl.write(None, {"net.ipv4.ip_forward": "1"})


def _remove_host_end(host: Netlink, name: str) -> bool:
    """Delete the host end if it is podnet's: our derived name and our ifalias."""
    try:
        link = host.link(name)
    except ObjectMissingError:
        return False
    if link["kind"] != "veth" or link["alias"] not in (OWNER_ALIAS, None):
        return False  # not ours: never delete what podnet did not make
    return host.delete_link(name)


# --- ADD -------------------------------------------------------------------------------------

def cmd_add(req: Request, conf: PodnetConf) -> Result:
    net = conf.net
    host_name = host_veth_name(net.name, req.container_id, req.ifname)
    with pod_namespace(req.netns) as ns, Netlink.open(ns, label=req.netns) as pod, \
            Netlink.open() as host:
        with contextlib.suppress(ObjectMissingError):
            pod.link(req.ifname)
            raise CniError(999, f"interface {req.ifname} already exists in {req.netns}",
                           details="CNI_IFNAME must name an interface the container lacks")
        _clear_stale_host_end(host, host_name)
        ipam_result = delegate.ipam("ADD", net.raw, req)
        assert ipam_result is not None  # ADD always returns a result or raises
        try:
            result = _attach(req, conf, host=host, pod=pod, ns=ns, host_name=host_name,
                             ipam_result=ipam_result)
        except BaseException:
            _undo_add(req, conf, host, host_name, ipam_result)
            raise
    return result.merged_after(net.prev_result)


def _clear_stale_host_end(host: Netlink, name: str) -> None:
    # A derived name already in use is a leftover of this very attachment (an ADD that died
    # half-way, then no DEL); anything else by that name is not ours and stops the ADD.
    try:
        link = host.link(name)
    except ObjectMissingError:
        return
    if not _remove_host_end(host, name):
        raise CniError(999, f"host interface {name} exists and is not podnet's ({link['kind']})",
                       details="rename or remove it; podnet derives this name from the pod")


def _attach(req: Request, conf: PodnetConf, *, host: Netlink, pod: Netlink, ns: str,
            host_name: str, ipam_result: Result) -> Result:
    ip = _first_ipv4(ipam_result, str(conf.ipam["type"]))
    gateway = _gateway(ip)
    pod_ip = ipaddress.IPv4Interface(str(ip.address))
    if conf.mode == "bridge":
        if conf.is_gateway:
            gw_iface = ipaddress.IPv4Interface(f"{gateway}/{pod_ip.network.prefixlen}")
            ensure_bridge(host, conf.bridge, gw_iface, conf.mtu)
        else:
            with contextlib.suppress(FileExistsError):
                host.add_bridge(conf.bridge, mtu=conf.mtu)
            host.set_link(conf.bridge, up=True, owned=True)
    attachment = PodAttachment(
        host_ifname=host_name, pod_ip=pod_ip, gateway=gateway, mode=conf.mode,
        pod_ifname=req.ifname, mtu=conf.mtu,
        bridge=conf.bridge if conf.mode == "bridge" else None, hairpin=conf.hairpin,
    )
    pod_index = attach_pod(host, pod, ns, attachment)
    routes = _extra_routes(pod, pod_index, ipam_result, gateway)
    _enable_forwarding()
    if conf.ip_masq:
        nft.masq_add(conf.net.name, pod_ip.ip, pod_ip.network)
    write_record(conf.state_dir, conf.net.name, Record(
        containerID=req.container_id, ifname=req.ifname, netns=req.netns, hostIfname=host_name,
        mode=conf.mode, ips=(str(pod_ip),), masq=conf.ip_masq,
    ))
    pod_link = pod.link(pod_index)
    host_link = host.link(host_name)
    interfaces = [Interface(host_name, str(host_link["mac"])),
                  Interface(req.ifname, str(pod_link["mac"]), req.netns, conf.mtu)]
    if conf.mode == "bridge":
        interfaces.insert(0, Interface(conf.bridge, str(host.link(conf.bridge)["mac"])))
    sandbox_index = len(interfaces) - 1
    ips = (IPConfig(pod_ip, gateway, sandbox_index),)
    return Result(tuple(interfaces), ips, routes, ipam_result.dns)


def _extra_routes(pod: Netlink, index: int, ipam_result: Result,
                  gateway: ipaddress.IPv4Address) -> tuple[Route, ...]:
    """The IPAM's routes: attach_pod already made the default one; add the others."""
    routes: list[Route] = []
    has_default = False
    for route in ipam_result.routes:
        if route.dst.version != 4:
            continue
        if route.dst == _DEFAULT:
            has_default = True
            routes.append(Route(route.dst, route.gw or gateway, route.extra))
            continue
        via = str(route.gw or gateway)
        pod.add_route(str(route.dst), gateway=via, dev=index, exist_ok=True)
        routes.append(route)
    if not has_default:
        routes.insert(0, Route(_DEFAULT, gateway))
    return tuple(routes)


def _undo_add(req: Request, conf: PodnetConf, host: Netlink, host_name: str,
              ipam_result: Result) -> None:
    """Roll back a failed ADD: each step is tried, so one failure does not strand the rest."""
    with contextlib.suppress(Exception):
        _remove_host_end(host, host_name)
    if conf.ip_masq:
        with contextlib.suppress(Exception):
            nft.masq_remove(conf.net.name, [ipaddress.IPv4Address(str(ip.address.ip))
                                            for ip in ipam_result.ips if ip.address.version == 4])
    with contextlib.suppress(Exception):
        remove_record(conf.state_dir, conf.net.name, req.container_id, req.ifname)
    with contextlib.suppress(Exception):
        delegate.ipam("DEL", conf.net.raw, req)


# --- DEL -------------------------------------------------------------------------------------

def cmd_del(req: Request, conf: PodnetConf) -> None:
    _refuse_own_namespace(req.netns)
    net = conf.net
    record = read_record(conf.state_dir, net.name, req.container_id, req.ifname)
    names = {host_veth_name(net.name, req.container_id, req.ifname)}
    if record is not None:
        names.add(record.hostIfname)
    with Netlink.open() as host:
        for name in names:
            _remove_host_end(host, name)
    if conf.ip_masq or (record is not None and record.masq):
        ips = _known_ips(conf, record)
        nft.masq_remove(net.name, ips)
    delegate.ipam("DEL", net.raw, req)
    remove_record(conf.state_dir, net.name, req.container_id, req.ifname)


def _known_ips(conf: PodnetConf, record: Record | None) -> list[ipaddress.IPv4Address]:
    found: set[ipaddress.IPv4Address] = set()
    if record is not None:
        found |= {ipaddress.IPv4Interface(ip).ip for ip in record.ips}
    if conf.net.prev_result is not None:
        found |= {ipaddress.IPv4Address(str(ip.address.ip)) for ip in conf.net.prev_result.ips
                  if ip.address.version == 4}
    return sorted(found)


# --- CHECK -----------------------------------------------------------------------------------

def _check_fail(message: str) -> CniError:
    return CniError(999, f"CHECK: {message}",
                    details="the attachment differs from what ADD made: delete and re-add the pod")


def cmd_check(req: Request, conf: PodnetConf) -> None:
    prev = conf.net.prev_result
    if prev is None:
        raise CniError(CNI_INVALID_CONFIG, "CHECK needs the prevResult of the ADD",
                       details="the runtime must pass the cached ADD result as prevResult")
    sandbox = [i for i, iface in enumerate(prev.interfaces)
               if iface.sandbox and iface.name == req.ifname]
    if not sandbox:
        raise _check_fail(f"prevResult lists no interface {req.ifname} in a sandbox")
    index = sandbox[0]
    expected = prev.interfaces[index]
    ips = [ip for ip in prev.ips if ip.interface == index]
    host_name = host_veth_name(conf.net.name, req.container_id, req.ifname)
    with pod_namespace(req.netns) as ns:
        delegate.ipam("CHECK", conf.net.raw, req)
        with Netlink.open(ns, label=req.netns) as pod, Netlink.open() as host:
            _check_pod(pod, req, expected, ips, prev)
            _check_host(host, conf, host_name, ips)
    if conf.ip_masq:
        for ip in ips:
            if not nft.masq_contains(conf.net.name, ipaddress.IPv4Address(str(ip.address.ip))):
                raise _check_fail(f"{ip.address.ip} is missing from the ipMasq set")


def _check_pod(pod: Netlink, req: Request, expected: Interface, ips: list[IPConfig],
               prev: Result) -> None:
    try:
        link = pod.link(req.ifname)
    except ObjectMissingError:
        raise _check_fail(f"interface {req.ifname} is missing from {req.netns}") from None
    if expected.mac and str(link["mac"]).lower() != expected.mac.lower():
        raise _check_fail(f"{req.ifname} has MAC {link['mac']}, ADD reported {expected.mac}")
    if not link["up"]:
        raise _check_fail(f"{req.ifname} in {req.netns} is down")
    have = {a["address"] for a in pod.addresses() if a["index"] == link["index"]}
    for ip in ips:
        if str(ip.address) not in have:
            raise _check_fail(f"{req.ifname} lacks address {ip.address}")
    routes = {r["dst"] for r in pod.routes()}
    for route in prev.routes:
        if route.dst.version == 4 and (str(route.dst) if route.dst != _DEFAULT else "default") \
                not in routes:
            raise _check_fail(f"route to {route.dst} is missing in {req.netns}")


def _check_host(host: Netlink, conf: PodnetConf, host_name: str, ips: list[IPConfig]) -> None:
    try:
        link = host.link(host_name)
    except ObjectMissingError:
        raise _check_fail(f"host end {host_name} of the veth is missing") from None
    if not link["up"]:
        raise _check_fail(f"host end {host_name} is down")
    if conf.mode == "bridge":
        try:
            bridge = host.index(conf.bridge)
        except ObjectMissingError:
            raise _check_fail(f"bridge {conf.bridge} is missing") from None
        if link["master"] != bridge:
            raise _check_fail(f"{host_name} is not a port of bridge {conf.bridge}")
    else:
        for ip in ips:
            # The kernel's own answer (one request), not a dump of every pod's host route.
            if host.route_get(str(ip.address.ip)).get("oif") != link["index"]:
                raise _check_fail(f"host route to {ip.address.ip} via {host_name} is missing")


# --- GC -----------------------------------------------------------------------------

def cmd_gc(req: Request, conf: PodnetConf) -> None:
    """Undo every attachment of this network that the runtime no longer lists, then let the IPAM
    release its leaked reservations."""
    valid = valid_attachments(conf.net.raw)
    stale = [r for r in all_records(conf.state_dir, conf.net.name)
             if (r.containerID, r.ifname) not in valid]
    if stale:
        with Netlink.open() as host:
            for record in stale:
                with contextlib.suppress(Exception):
                    _remove_host_end(host, record.hostIfname)
        masq = [ipaddress.IPv4Interface(ip).ip for r in stale if r.masq for ip in r.ips]
        if masq:
            nft.masq_remove(conf.net.name, masq)
        for record in stale:
            remove_record(conf.state_dir, conf.net.name, record.containerID, record.ifname)
    delegate.ipam("GC", conf.net.raw, req)
