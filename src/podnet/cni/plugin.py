"""podnet-cni's commands: ADD, DEL, CHECK, STATUS and GC, on the lab's attachment code.

ADD reads as its steps: refuse a bad namespace, refuse an existing CNI_IFNAME, reserve addresses
(IPAM), attach the pod (`kernel.attach.attach_pod`), masquerade, record; any failure after the
reservation undoes all of it, so a failed ADD leaves no veth, no reservation and no rule.

An ADD that died half-way (the agent killed mid-request, the runtime's timeout) and is run again
converges: a CNI_IFNAME that already exists is taken back only when it is the peer of the host
end podnet derives for this very attachment; anything else is refused.

DEL removes the host end of the veth (which takes the pod end with it) only when it is the one
podnet named and marked, so it never needs the pod's namespace: it succeeds twice, without ADD,
with the namespace gone and with an empty CNI_NETNS. It removes from the ipMasq set only the
addresses this attachment owns (its record, its podnet-ipam reservation), never those a cached
prevResult names: after the address moved to another pod, a repeated DEL must not cut that pod's
egress. GC reconciles the ipMasq set against what the valid attachments own.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress

from podnet.cni import delegate
from podnet.cni.ipam_plugin import held_addresses, owned_by_valid, valid_attachments
from podnet.cni.netconf import PodnetConf
from podnet.cni.podns import checked_for_del, pod_namespace
from podnet.cni.records import (
    Record,
    all_records,
    read_record,
    remove_record,
    write_record,
)
from podnet.cni.result import Interface, IPConfig, Result, Route
from podnet.cni.spec import Request
from podnet.errors import CNI_INVALID_CONFIG, CniError, ObjectMissingError
from podnet.kernel import nft, sysctl
from podnet.kernel.attach import PodAttachment, attach_pod, ensure_bridge
from podnet.kernel.netlink import OWNER_ALIAS, Netlink

__all__ = ["cmd_add", "cmd_check", "cmd_del", "cmd_gc", "host_veth_name"]

_DEFAULT = ipaddress.IPv4Network("0.0.0.0/0")
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_veth_name(network: str, container_id: str, ifname: str) -> str:
    """The host end's name, derived from the attachment: DEL and GC find it without state."""
    digest = hashlib.sha256(f"{network}/{container_id}/{ifname}".encode()).hexdigest()
    return f"veth{digest[:8]}"


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
    """Delete the host end if it is podnet's: our derived name AND our ifalias."""
    try:
        link = host.link(name)
    except ObjectMissingError:
        return False
    if link["kind"] != "veth" or link["alias"] != OWNER_ALIAS:
        return False  # not ours: never delete what podnet did not make
    return host.delete_link(name)


def _half_made_by_us(host: Netlink, pod: Netlink, host_name: str, ifname: str) -> bool:
    """Whether CNI_IFNAME in the pod and the host link with this attachment's derived name are
    the two ends of one veth: what an ADD that died before marking it leaves behind."""
    try:
        pod_end = pod.link(ifname)
        host_end = host.link(host_name)
    except ObjectMissingError:
        return False
    return bool(pod_end["kind"] == host_end["kind"] == "veth"
                and pod_end["link"] == host_end["index"] and host_end["link"] == pod_end["index"])


# --- ADD -------------------------------------------------------------------------------------

def cmd_add(req: Request, conf: PodnetConf) -> Result:
    net = conf.net
    host_name = host_veth_name(net.name, req.container_id, req.ifname)
    with pod_namespace(req.netns) as ns, Netlink.open(ns, label=req.netns) as pod, \
            Netlink.open() as host:
        if _half_made_by_us(host, pod, host_name, req.ifname):
            host.delete_link(host_name)  # an earlier ADD of this attachment died: start over
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
    # The record first: from here DEL and GC know what this attachment owns, ipMasq entry too.
    write_record(conf.state_dir, conf.net.name, Record(
        containerID=req.container_id, ifname=req.ifname, netns=req.netns, hostIfname=host_name,
        mode=conf.mode, ips=(str(pod_ip),), masq=conf.ip_masq,
    ))
    if conf.ip_masq:
        nft.masq_add(conf.net.name, pod_ip.ip, pod_ip.network)
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
    if conf.ip_masq:  # the addresses this ADD reserved: still ours until the IPAM DEL below
        with contextlib.suppress(Exception):
            nft.masq_remove(conf.net.name, [ip.address.ip for ip in ipam_result.ips])
    with contextlib.suppress(Exception):
        remove_record(conf.state_dir, conf.net.name, req.container_id, req.ifname)
    with contextlib.suppress(Exception):
        delegate.ipam("DEL", conf.net.raw, req)


# --- DEL -------------------------------------------------------------------------------------

def cmd_del(req: Request, conf: PodnetConf) -> None:
    """In the reverse order of ADD, so that while the record exists the reservation does too:
    the addresses it names are this attachment's and no other pod's."""
    checked_for_del(req.netns)
    net = conf.net
    record = read_record(conf.state_dir, net.name, req.container_id, req.ifname)
    names = {host_veth_name(net.name, req.container_id, req.ifname)}
    if record is not None:
        names.add(record.hostIfname)
    with Netlink.open() as host:
        for name in names:
            _remove_host_end(host, name)
    owned = _owned_ips(conf, req, record)
    if owned and (conf.ip_masq or (record is not None and record.masq)):
        nft.masq_remove(net.name, owned)
    remove_record(conf.state_dir, net.name, req.container_id, req.ifname)
    delegate.ipam("DEL", net.raw, req)


def _owned_ips(conf: PodnetConf, req: Request, record: Record | None) -> list[IP]:
    """The addresses this attachment owns: its record's, and what podnet-ipam holds for it.
    Never a prevResult's: a cached result may name an address that has moved to another pod."""
    found: set[IP] = set()
    if record is not None:
        found |= {ipaddress.ip_interface(ip).ip for ip in record.ips}
    if conf.ipam.get("type") == delegate.IN_PROCESS:
        found |= set(held_addresses(conf.net.raw, req.container_id, req.ifname))
    return sorted(found, key=lambda ip: (ip.version, int(ip)))


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
            if not nft.masq_contains(conf.net.name, ip.address.ip):
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


# --- GC ------------------------------------------------------------------------------------

def cmd_gc(req: Request, conf: PodnetConf) -> None:
    """Undo every attachment of this network that the runtime no longer lists, drop ipMasq
    entries that no valid attachment owns, then let the IPAM release its leaked reservations."""
    name = conf.net.name
    valid = valid_attachments(conf.net.raw)
    records = all_records(conf.state_dir, name)
    stale = [r for r in records if (r.containerID, r.ifname) not in valid]
    if stale:
        with Netlink.open() as host:
            for record in stale:
                with contextlib.suppress(Exception):
                    _remove_host_end(host, record.hostIfname)
    owned = {ipaddress.ip_interface(ip).ip for r in records
             if (r.containerID, r.ifname) in valid for ip in r.ips}
    if conf.ipam.get("type") == delegate.IN_PROCESS:
        owned |= set(owned_by_valid(conf.net.raw, valid))
    orphans = [ip for ip in nft.masq_members(name) if ip not in owned]
    if orphans:
        nft.masq_remove(name, orphans)
    for record in stale:
        remove_record(conf.state_dir, name, record.containerID, record.ifname)
    delegate.ipam("GC", conf.net.raw, req)
