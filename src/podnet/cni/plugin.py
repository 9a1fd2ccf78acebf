"""podnet-cni's commands: ADD, DEL, CHECK and GC, on the lab's attachments and applier.

ADD reads as its steps: refuse a bad namespace, take back what an earlier try of this very
attachment left, refuse an existing CNI_IFNAME, reserve addresses (IPAM), record, run the
attachment's operations (`podnet.cni.podlink`: the lab's ptp, bridge and vpc shapes) through the
applier, masquerade. Any failure after the reservation undoes all of it (the applier's undo, the
host end, the masquerade entry, the record, the reservation), so a failed ADD leaves nothing.

The host end's name is derived from (network, container, interface), so DEL and GC find it
without state; when that name is taken by a link that is not this attachment's (someone's else,
or a hash collision), the next derived name is tried, as the reference plugins retry a random
name on EEXIST, and the record says which one was taken. An ADD that died half-way (the agent
killed mid-request, the runtime's timeout) and is run again converges: a host end its record
names, or whose peer is the pod's CNI_IFNAME, is removed and made again.

DEL removes the host end of the veth (which takes the pod end and its routes with it) only when
it is the one podnet named and marked, then what outlives it (vpc's rules), so it never needs the
pod's namespace: it succeeds twice, without ADD, with the namespace gone and with an empty
CNI_NETNS. It removes from the ipMasq sets only the addresses this attachment owns (its record,
its podnet-ipam reservation), never those a cached prevResult names: after the address moved to
another pod, a repeated DEL must not cut that pod's egress. CHECK rebuilds the operations from
the record and asks the kernel whether each is in effect. GC reconciles.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress

from podnet.apply.applier import Applier, FailedOpError
from podnet.cni import delegate
from podnet.cni.ipam_plugin import held_addresses, owned_by_valid, valid_attachments
from podnet.cni.netconf import PodnetConf
from podnet.cni.podlink import CniLink, build
from podnet.cni.podns import checked_for_del, pod_namespace
from podnet.cni.records import Record, all_records, read_record, remove_record, write_record
from podnet.cni.result import Result
from podnet.cni.spec import Request
from podnet.cni.verify import Verifier
from podnet.errors import CNI_INVALID_CONFIG, CniError, KernelError, ObjectMissingError
from podnet.kernel import nft
from podnet.kernel.netlink import OWNER_ALIAS, Netlink
from podnet.kernel.uplink import default_route_interface
from podnet.model.addresses import IPAddress, IPInterface
from podnet.plan.attachments import attachment
from podnet.plan.ops import AddVeth

__all__ = ["cmd_add", "cmd_check", "cmd_del", "cmd_gc", "host_veth_name"]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAME_TRIES = 8  # derived names tried before ADD gives up (each taken by another link)


def host_veth_name(network: str, container_id: str, ifname: str, attempt: int = 0) -> str:
    """The host end's name, derived from the attachment: DEL and GC find it without state.
    `attempt` > 0: the next name, when the first is taken by a link that is not ours."""
    salt = f"/{attempt}" if attempt else ""
    digest = hashlib.sha256(f"{network}/{container_id}/{ifname}{salt}".encode()).hexdigest()
    return f"veth{digest[:8]}"


def _remove_host_end(host: Netlink, name: str) -> bool:
    """Delete the host end if it is podnet's: our derived name AND our ifalias."""
    try:
        link = host.link(name)
    except ObjectMissingError:
        return False
    if link["kind"] != "veth" or link["alias"] != OWNER_ALIAS:
        return False  # not ours: never delete what podnet did not make
    return host.delete_link(name)


def _half_made_by_us(app: Applier, pod_ns: str, host_name: str, ifname: str) -> bool:
    """Whether CNI_IFNAME in the pod and the host link `host_name` are the two ends of one veth:
    what an ADD that died before recording or marking it leaves behind."""
    try:
        pod_end = app.nl(pod_ns).link(ifname)
        host_end = app.nl(None).link(host_name)
    except ObjectMissingError:
        return False
    return bool(pod_end["kind"] == host_end["kind"] == "veth"
                and pod_end["link"] == host_end["index"] and host_end["link"] == pod_end["index"])


# --- ADD -------------------------------------------------------------------------------------

def cmd_add(req: Request, conf: PodnetConf) -> Result:
    net = conf.net
    with pod_namespace(req.netns) as ns:
        app = Applier(shared=(None, ns))  # the host and the pod are the runtime's: no record
        try:
            earlier = read_record(conf.state_dir, net.name, req.container_id, req.ifname)
            attempt = _take_back(app, conf, req, ns, earlier)
            with contextlib.suppress(ObjectMissingError):
                app.nl(ns).link(req.ifname)
                raise CniError(999, f"interface {req.ifname} already exists in {req.netns}",
                               details="CNI_IFNAME must name an interface the container lacks")
            uplink = _uplink(app, conf)
            ipam_result = delegate.ipam("ADD", net.raw, req)
            assert ipam_result is not None  # ADD always returns a result or raises
            try:
                result = _attach(app, req, conf, ns, attempt, uplink, ipam_result)
            except BaseException:
                _undo_add(app, req, conf, ipam_result)
                raise
        finally:
            app.close()
    return result.merged_after(net.prev_result)


def _take_back(app: Applier, conf: PodnetConf, req: Request, pod_ns: str,
               earlier: Record | None) -> int:
    """The first derived name (its attempt number) that is free, after removing what an earlier
    try of this attachment left under it; names held by other links are passed over."""
    host = app.nl(None)
    for attempt in range(_NAME_TRIES):
        name = host_veth_name(conf.net.name, req.container_id, req.ifname, attempt)
        try:
            link = host.link(name)
        except ObjectMissingError:
            return attempt
        ours = (earlier is not None and earlier.hostIfname == name and link["kind"] == "veth") \
            or _half_made_by_us(app, pod_ns, name, req.ifname)
        if ours:
            host.delete_link(name)  # an earlier ADD of this attachment died: start over
            return attempt
    raise CniError(999, f"the host interface names podnet derives for {req.container_id}/"
                   f"{req.ifname} are all taken ({_NAME_TRIES} tried)",
                   details="remove the stale veth* links that carry no podnet mark")


def _uplink(app: Applier, conf: PodnetConf) -> str:
    """vpc: the link to the node network, which answers ARP for the pods (checked now, before
    an address is reserved); other shapes need none."""
    if not attachment(conf.mode).needs_uplink:
        return ""
    name = conf.uplink or default_route_interface()
    if not name:
        raise CniError(CNI_INVALID_CONFIG, f"mode {conf.mode}: this host has no default route, "
                       "so podnet cannot tell its link to the node network",
                       details='set "uplink" in the network configuration (e.g. "eth0")')
    try:
        app.nl(None).link(name)
    except ObjectMissingError:
        field = '"uplink"' if conf.uplink else "the default route's interface"
        raise CniError(CNI_INVALID_CONFIG, f"mode {conf.mode}: {field} {name} does not exist",
                       details='set "uplink" to the host\'s link to the node network') from None
    return name


def _link(req: Request, conf: PodnetConf, pod_ns: str, host_name: str, uplink: str,
          ipam_result: Result) -> CniLink:
    families = [ip.address.version for ip in ipam_result.ips]
    if len(set(families)) != len(families):
        raise CniError(CNI_INVALID_CONFIG, f"IPAM plugin {conf.ipam['type']} returned "
                       f"{len(families)} addresses with {len(set(families))} families",
                       details="podnet-cni attaches one address per family: give one range "
                       "set per family")
    if not families:
        raise CniError(CNI_INVALID_CONFIG, f"IPAM plugin {conf.ipam['type']} returned no address")
    return build(
        mode=conf.mode, network=conf.net.name, container_id=req.container_id,
        ifname=req.ifname, pod_ns=pod_ns, host_ifname=host_name,
        ips=[ip.address for ip in ipam_result.ips],
        gateways=[ip.gateway for ip in ipam_result.ips], mtu=conf.mtu, bridge=conf.bridge,
        is_gateway=conf.is_gateway, hairpin=conf.hairpin, uplink=uplink,
        routes=ipam_result.routes,
    )


def _attach(app: Applier, req: Request, conf: PodnetConf, pod_ns: str, attempt: int,
            uplink: str, ipam_result: Result) -> Result:
    while True:
        host_name = host_veth_name(conf.net.name, req.container_id, req.ifname, attempt)
        cni = _link(req, conf, pod_ns, host_name, uplink, ipam_result)
        ops = cni.ops()
        # The record first: from here DEL and GC know the host end and what is masqueraded.
        write_record(conf.state_dir, conf.net.name, Record(
            containerID=req.container_id, ifname=req.ifname, netns=req.netns,
            hostIfname=host_name, mode=conf.mode,
            ips=tuple(str(ip) for ip in cni.link.ips),
            masq=conf.ip_masq, gateways=tuple(str(gw.ip) for gw in cni.link.host.gateways),
        ))
        try:
            app.run(ops)
            break
        except FailedOpError as exc:
            taken = isinstance(exc.op, AddVeth) and exc.errno == errno.EEXIST
            if not taken or attempt + 1 >= _NAME_TRIES or not _host_link_exists(app, host_name):
                command = " && ".join(exc.op.render()).replace(pod_ns, req.netns)
                raise CniError(999, f"{exc.message} (`{command}`)", details=exc.hint) from None
            attempt += 1  # another link took the name since we looked: the next one
    if conf.ip_masq:
        nft.masq_add(conf.net.name, [(ip.ip, ip.network) for ip in cni.link.ips])

    def mac(ns: str | None, name: str) -> str:
        return str(app.nl(ns).link(name)["mac"])

    return cni.result(req.netns, mac, ipam_result.dns)


def _host_link_exists(app: Applier, name: str) -> bool:
    try:
        app.nl(None).link(name)
    except ObjectMissingError:
        return False
    return True


def _undo_add(app: Applier, req: Request, conf: PodnetConf, ipam_result: Result) -> None:
    """Roll back a failed ADD: each step is tried, so one failure does not strand the rest."""
    made = [op for op in app.done if isinstance(op, AddVeth)]
    with contextlib.suppress(Exception):
        app.undo()  # what outlives the veth (vpc's rules), newest first
    for veth in made:  # ours for certain, marked or not yet: made by this very ADD
        with contextlib.suppress(Exception):
            app.nl(None).delete_link(veth.name)
    if conf.ip_masq:  # the addresses this ADD reserved: still ours until the IPAM DEL below
        with contextlib.suppress(Exception):
            nft.masq_remove(conf.net.name, [ip.address.ip for ip in ipam_result.ips])
    with contextlib.suppress(Exception):
        remove_record(conf.state_dir, conf.net.name, req.container_id, req.ifname)
    with contextlib.suppress(Exception):
        delegate.ipam("DEL", conf.net.raw, req)


# --- the attachment again, from its record (CHECK, DEL, GC) -----------------------------------

def _from_record(conf: PodnetConf, record: Record, pod_ns: str,
                 gateways: dict[IPAddress, IPAddress] | None = None) -> CniLink:
    """The attachment as ADD built it. Records written before they held gateways: the
    prevResult's, else the subnet's first address (host-local's default)."""
    ips: list[IPInterface] = [ipaddress.ip_interface(ip) for ip in record.ips]
    if record.gateways:
        gws: list[IPAddress | None] = [ipaddress.ip_address(g) if g else None
                                       for g in record.gateways]
    else:
        gws = [(gateways or {}).get(ip.ip) for ip in ips]
    return build(
        mode=record.mode, network=conf.net.name, container_id=record.containerID,
        ifname=record.ifname, pod_ns=pod_ns, host_ifname=record.hostIfname, ips=ips,
        gateways=gws, mtu=conf.mtu, bridge=conf.bridge, is_gateway=conf.is_gateway,
        hairpin=conf.hairpin, uplink=conf.uplink or default_route_interface() or "",
    )


def _teardown(host: Netlink, conf: PodnetConf, record: Record) -> None:
    """The host end (its routes go with it), then what outlives it (vpc's rules)."""
    _remove_host_end(host, record.hostIfname)
    try:
        undo = _from_record(conf, record, "").undo_ops()
    except (KeyError, ValueError):  # a record podnet cannot read owns nothing more
        return
    if not undo:
        return
    app = Applier(shared=(None,))
    try:
        for op in undo:
            with contextlib.suppress(ObjectMissingError):  # DEL twice: gone already
                app.run([op])
    finally:
        app.close()


# --- DEL -------------------------------------------------------------------------------------

def cmd_del(req: Request, conf: PodnetConf) -> None:
    """In the reverse order of ADD, so that while the record exists the reservation does too:
    the addresses it names are this attachment's and no other pod's."""
    checked_for_del(req.netns)
    net = conf.net
    record = read_record(conf.state_dir, net.name, req.container_id, req.ifname)
    with Netlink.open() as host:
        if record is not None:
            _teardown(host, conf, record)
        else:  # no record (an ADD that never ran, or podnet's state lost): the derived name
            _remove_host_end(host, host_veth_name(net.name, req.container_id, req.ifname))
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
    expected = prev.interfaces[sandbox[0]]
    with pod_namespace(req.netns) as ns:
        record = read_record(conf.state_dir, conf.net.name, req.container_id, req.ifname) \
            or _record_from(prev, sandbox[0], req, conf)
        delegate.ipam("CHECK", conf.net.raw, req)
        gateways = {ip.address.ip: ip.gateway for ip in prev.ips if ip.gateway is not None}
        cni = _from_record(conf, record, ns, gateways)
        reported = {ip.address for ip in prev.ips if ip.interface == sandbox[0]}
        if reported != set(cni.pod_addresses()):
            shown = ", ".join(sorted(str(ip) for ip in reported))
            raise _check_fail(f"prevResult's addresses ({shown}) are not this attachment's")
        with Netlink.open(ns, label=req.netns) as pod, Netlink.open() as host:
            verifier = Verifier(lambda where: host if where is None else pod)
            link = verifier.link(ns, req.ifname)
            if link is not None and expected.mac and \
                    str(link["mac"]).lower() != expected.mac.lower():
                raise _check_fail(f"{req.ifname} has MAC {link['mac']}, ADD reported "
                                  f"{expected.mac}")
            problem = verifier.unmet(cni.ops())
    if problem:
        raise _check_fail(problem.replace(ns, req.netns))
    if record.masq:
        for ip in cni.link.ips:
            if not nft.masq_contains(conf.net.name, ip.ip):
                raise _check_fail(f"{ip.ip} is missing from the ipMasq set")


def _record_from(prev: Result, index: int, req: Request, conf: PodnetConf) -> Record:
    """What ADD recorded, told again by its result (podnet's records gone, as when /run was
    wiped while the pod lived): the host end is the host link the result lists last."""
    host = [i.name for i in prev.interfaces[:index] if not i.sandbox and i.name != conf.bridge]
    if not host:
        raise _check_fail(f"podnet has no record of {req.container_id}/{req.ifname}, and "
                          "prevResult names no host end")
    ips = [ip for ip in prev.ips if ip.interface == index]
    return Record(containerID=req.container_id, ifname=req.ifname, netns=req.netns,
                  hostIfname=host[-1], mode=conf.mode, ips=tuple(str(ip.address) for ip in ips),
                  masq=conf.ip_masq, gateways=tuple(str(ip.gateway or "") for ip in ips))


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
                with contextlib.suppress(KernelError, CniError):
                    _teardown(host, conf, record)
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
