"""What `podnet trace SOURCE DESTINATION` names: a namespace to send from, an address to reach;
and what `podnet capture` and `podnet netem` name: a link (an interface in a namespace).

A source is anything inspect can find (a pod as NAMESPACE/NAME or NAME, a lab node, a netns
name, host, pid:N). A destination is an address, or a name resolved the way the source would
see it: a pod or a node of the lab, a Service of the lab, or a name in the source pod's
/etc/hosts. Reads the lab's state.json leniently (keys other faces add are welcome).
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from podnet.errors import ObjectMissingError, StateError
from podnet.inspect.model import Host, Namespace
from podnet.trace.dns import NameLookup

__all__ = [
    "Destination",
    "LabView",
    "LinkTarget",
    "check_source_family",
    "read_lab",
    "resolve_destination",
    "resolve_link",
    "resolve_source",
]

STATE_DIR = "/run/podnet"


@dataclass(frozen=True)
class Destination:
    ip: str
    text: str  # for people: "pod default/jumpbox 10.244.1.2"
    port: int | None = None  # a Service's port when the user gave none
    namespace: Namespace | None = None  # the namespace that owns the address, when known
    lookup: tuple[str, ...] = ()  # a name resolved through the source pod's DNS: what was asked


@dataclass
class LabView:
    cluster: str = ""
    pods: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def pod(self, key: str) -> dict[str, Any] | None:
        return self._pods_by_key.get(key)

    @cached_property
    def _pods_by_key(self) -> dict[str, dict[str, Any]]:
        """Built once: a trace over every pod looks each one up (a scan each is quadratic)."""
        out: dict[str, dict[str, Any]] = {}
        for p in self.pods:
            out.setdefault(f"{p.get('namespace')}/{p.get('name')}", p)
        return out


def read_lab(cluster: str | None = None, state_dir: str = STATE_DIR) -> LabView:
    """The lab's record (an empty view when no lab is up: trace works on any host)."""
    labs = _labs(state_dir)
    if cluster is None:
        if len(labs) > 1:
            raise StateError(f"{len(labs)} labs are up ({', '.join(labs)})",
                             hint="choose one with --cluster NAME")
        cluster = labs[0] if labs else None
    if cluster is None or cluster not in labs:
        return LabView()
    try:
        with open(os.path.join(state_dir, cluster, "state.json")) as fh:
            raw = json.load(fh)
    except (OSError, ValueError):
        return LabView()
    if not isinstance(raw, dict):
        return LabView()

    def items(key: str) -> list[dict[str, Any]]:
        value = raw.get(key)
        return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []

    return LabView(str(raw.get("cluster", cluster)), items("pods"), items("nodes"),
                   items("services"), raw)


def _pod_matches(ns: Namespace, name: str, namespace: str | None) -> bool:
    if ns.pod is None:
        return False
    pod_ns, _, pod_name = ns.pod.partition("/")
    return pod_name == name and (namespace is None or pod_ns == namespace)


def _find(host: Host, selector: str, namespace: str | None) -> list[Namespace]:
    """Pods in `namespace` first (as kubectl's -n), then anything inspect can find by name."""
    if namespace is not None and "/" not in selector:
        found = [ns for ns in host.namespaces if _pod_matches(ns, selector, namespace)]
        if found:
            return found
    found = host.find(selector)
    if found:
        return found
    if selector.startswith("pid:") and selector[4:].isdigit():  # a named one is labelled by name
        try:
            inode = os.stat(f"/proc/{selector[4:]}/ns/net").st_ino
        except OSError:
            return []
        return [ns for ns in host.namespaces if ns.inode == inode]
    found = [ns for ns in host.namespaces if _pod_matches(ns, selector, None)]
    return found or _host_network_pod(host, selector, namespace)


def _host_network_pod(host: Host, selector: str, namespace: str | None) -> list[Namespace]:
    """A lab's hostNetwork pod runs in its node's namespace (which inspect names after the
    node): the node's namespace, found through the lab's records."""
    pod_ns, _, name = selector.rpartition("/")
    wanted = pod_ns or namespace
    nodes = []
    for cluster in _labs():
        for pod in read_lab(cluster).pods:
            if (pod.get("hostNetwork") and pod.get("name") == name
                    and wanted in (None, pod.get("namespace", "default"))):
                nodes.append(str(pod.get("netns")))
    return [ns for ns in host.namespaces if ns.name in nodes]


def _labs(state_dir: str = STATE_DIR) -> list[str]:
    try:
        return sorted(d for d in os.listdir(state_dir)
                      if os.path.isfile(os.path.join(state_dir, d, "state.json")))
    except OSError:
        return []


def resolve_source(host: Host, selector: str, namespace: str | None = None) -> Namespace:
    found = _find(host, selector, namespace)
    if len(found) > 1 and len({ns.pod for ns in found}) > 1:
        raise StateError(f"{selector!r} names several pods: "
                         + ", ".join(sorted(str(ns.pod) for ns in found)),
                         hint="name it as NAMESPACE/NAME or with -n NAMESPACE")
    if not found:
        pods = sorted(str(ns.pod) for ns in host.namespaces if ns.pod)
        known = ", ".join(pods[:6]) + (", ..." if len(pods) > 6 else "")
        raise ObjectMissingError(
            f"no pod, node or network namespace matches {selector!r}",
            hint=f"pods here: {known}" if pods else
            "name a network namespace (ip netns list), host, or pid:N",
        )
    return found[0]


@dataclass(frozen=True)
class LinkTarget:
    """One interface of one namespace: what a capture listens on, or a shaping changes."""

    namespace: Namespace
    ifname: str

    @property
    def text(self) -> str:
        """For people: "eth0 of pod dev/demo-x", "veth1a2b of node kind-worker"."""
        return f"{self.ifname} of {_describe(self.namespace)}"


def default_interface(ns: Namespace) -> str | None:
    """The interface a namespace's default route leaves by, else its eth0, else None."""
    for route in ns.routes:
        if route.dst == "default" and route.dev and ns.interface(route.dev) is not None:
            return route.dev
    return "eth0" if ns.interface("eth0") is not None else None


def resolve_link(host: Host, selector: str, namespace: str | None = None,
                 interface: str | None = None, *, fallback: str | None = None) -> LinkTarget:
    """The namespace `selector` names (as a trace source: a pod, a node, a netns name, pid:N,
    an inode) and its interface `interface`, by default the one its default route uses (a
    pod's eth0, a node's uplink), else `fallback` ("any" for a capture)."""
    ns = resolve_source(host, selector, namespace)
    names = [i.ifname for i in ns.interfaces]
    if interface is None:
        interface = default_interface(ns) or fallback
        if interface is None:
            raise ObjectMissingError(f"{_describe(ns)} has no default route to pick an interface",
                                     hint="name one with --interface: " + ", ".join(names))
    elif interface not in names and interface != fallback:
        raise ObjectMissingError(f"{_describe(ns)} has no interface {interface!r}",
                                 hint="its interfaces: " + ", ".join(names))
    return LinkTarget(ns, interface)


def _own_addresses(ns: Namespace) -> list[str]:
    """The namespace's own addresses, eth0's first: global ones of either family, not on lo,
    not a /32 or /128 (a gateway many veths share), not link-local."""
    ordered = sorted(ns.interfaces, key=lambda i: (i.ifname != "eth0", i.ifindex))
    out = []
    for iface in ordered:
        if iface.kind == "loopback":
            continue
        for cidr in iface.addresses:
            addr = ipaddress.ip_interface(cidr)
            if addr.network.prefixlen != addr.max_prefixlen and not addr.is_link_local:
                out.append(str(addr.ip))
    return out


def _recorded(entry: dict[str, Any] | None, plural: str, singular: str) -> list[str]:
    """Addresses a record entry holds, one per family (`ips`), else its one (`ip`)."""
    if not entry:
        return []
    values = entry.get(plural)
    if not isinstance(values, list) or not values:
        values = [entry.get(singular)] if entry.get(singular) else []
    # "None": a headless Service's clusterIP, as the API (and the record) says it
    return [str(v).split("/")[0] for v in values if isinstance(v, str) and v and v != "None"]


def _version(addr: str) -> int:
    return 6 if ":" in addr else 4


def _families(found: list[str]) -> str:
    return " and ".join(f"IPv{v}" for v in dict.fromkeys(_version(a) for a in found)) or "none"


def _of_family(found: list[str], family: int | None, what: str, hint: str) -> str:
    """The first of `found` (the first family's, as kubectl's podIP), or the one of `family`."""
    if not found:
        raise ObjectMissingError(f"{what} has no address to trace to", hint=hint)
    if family is None:
        return found[0]
    mine = [a for a in found if _version(a) == family]
    if not mine:
        raise ObjectMissingError(f"{what} has no IPv{family} address (only {_families(found)})",
                                 hint=hint)
    return mine[0]


def _service_ips(svc: dict[str, Any]) -> list[str]:
    for plural, singular in (("cluster_ips", "cluster_ip"), ("clusterIPs", "clusterIP")):
        found = _recorded(svc, plural, singular)
        if found:
            return found
    return _recorded(svc, "ips", "ip") or _recorded(svc, "vips", "vip")


def _dual_hint(lab: LabView, family: int | None) -> str:
    """Why a Service has no ClusterIP of `family`, and what gives it one."""
    subnets = lab.raw.get("pod_subnets")
    lab_families = {_version(str(n)) for n in subnets} if isinstance(subnets, list) else set()
    if family is not None and lab_families and family not in lab_families:
        return f"the lab has no IPv{family} (ipFamily: dual gives it both families)"
    return ("a SingleStack Service has one ClusterIP: give it ipFamilyPolicy: PreferDualStack "
            "(or RequireDualStack) in the lab's file for one per family")


def _service_port(svc: dict[str, Any]) -> int | None:
    ports = svc.get("ports")
    if isinstance(ports, list) and ports:
        first = ports[0]
        if isinstance(first, dict):
            port = first.get("port")
            return port if isinstance(port, int) else None
        if isinstance(first, int):
            return first
    return None


def _service(lab: LabView, selector: str, default_ns: str) -> dict[str, Any] | None:
    name, namespace = selector, default_ns
    if "/" in selector:
        namespace, name = selector.split("/", 1)
    elif "." in selector:
        parts = selector.split(".")
        name, namespace = parts[0], parts[1]
    return next((s for s in lab.services if s.get("name") == name
                 and s.get("namespace", "default") == namespace), None)


def _hosts_lookup(path: str, name: str) -> list[str]:
    """Every address a hosts file gives `name` (a dual-stack Service has a line per family)."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and name in fields[1:]:
            try:
                found.append(str(ipaddress.ip_address(fields[0])))
            except ValueError:
                continue
    return found


def _literal(selector: str) -> str | None:
    try:
        return str(ipaddress.ip_address(selector))
    except ValueError:
        return None


def resolve_destination(host: Host, lab: LabView, selector: str, namespace: str | None,
                        source: Namespace, family: int | None = None) -> Destination:
    """What `selector` names, as an address of `family` (4 or 6; None: the address given, or
    the first family of what is named: a dual-stack pod's first address, as kubectl's
    podIP)."""
    owners: dict[str, Namespace] = {}
    for each in host.namespaces:
        for a in _own_addresses(each):
            owners.setdefault(a, each)
    switch = f"trace -{4 if family == 6 else 6}, or name an address" if family else ""
    ip = _literal(selector)
    if ip:
        if family is not None and _version(ip) != family:
            raise StateError(f"{ip} is an IPv{_version(ip)} address, not IPv{family}",
                             hint=f"drop -{family}, or give an IPv{family} address")
        mine = owners.get(ip)
        return Destination(ip, f"{ip} ({_describe(mine)})" if mine else ip, None, mine)
    found = _find(host, selector, namespace)
    if found:
        ns = found[0]
        record = (lab.pod(ns.pod) if ns.pod else
                  next((n for n in lab.nodes if n.get("name") == ns.node), None))
        addrs = _recorded(record, "ips", "ip") or _own_addresses(ns)
        addr = _of_family(addrs, family, _describe(ns),
                          switch or "`podnet inspect --netns` shows its interfaces")
        return Destination(addr, f"{_describe(ns)} {addr}", None, ns)
    outside = lab.raw.get("internet")
    if selector in ("internet", "outside") and isinstance(outside, dict):
        addr = _of_family(_recorded(outside, "addresses", "address"), family, "the internet",
                          switch)
        port = outside.get("port")
        world = owners.get(addr)
        return Destination(addr, f"the internet ({addr}, {_describe(world)})",
                           port if isinstance(port, int) else None, world)
    asked = _dns_lookup(lab, selector, source, family)
    if asked is not None and asked.address is not None:
        addr = asked.address
        by_ip = next((s for s in lab.services if addr in _service_ips(s)), None)
        what = (f"service {by_ip.get('namespace', 'default')}/{by_ip.get('name')}"
                if by_ip else _describe(owners.get(addr)))
        return Destination(addr, f"{what} {addr} ({selector} in {source.pod}'s DNS)",
                           _service_port(by_ip) if by_ip else None, owners.get(addr),
                           asked.lines())
    source_pod_ns = (source.pod or "default/").split("/")[0]
    svc = _service(lab, selector, namespace or source_pod_ns)
    if svc is not None and _service_ips(svc):
        key = f"{svc.get('namespace', 'default')}/{svc.get('name')}"
        vip = _of_family(_service_ips(svc), family, f"Service {key}", _dual_hint(lab, family))
        return Destination(vip, f"service {key} {vip}", _service_port(svc))
    pod = lab.pod(source.pod) if source.pod else None
    if pod and isinstance(pod.get("hosts_file"), str):
        named = _hosts_lookup(pod["hosts_file"], selector)
        if named:
            addr = _of_family(named, family, f"{selector} in {source.pod}'s /etc/hosts", switch)
            return Destination(addr, f"{selector} {addr} (from {source.pod}'s /etc/hosts)",
                               None, owners.get(addr))
    said = "; ".join(asked.lines()) if asked is not None else ""
    raise ObjectMissingError(
        f"cannot resolve {selector!r} to an address" + (f" ({said})" if said else ""),
        hint="give an IPv4 or IPv6 address, a pod (NAMESPACE/NAME), a node, or a Service of the "
             "lab (by its DNS name, such as demo.dev.svc.cluster.local)",
    )


def _dns_lookup(lab: LabView, selector: str, source: Namespace,
                family: int | None) -> NameLookup | None:
    """`selector` asked of the source pod's nameserver, through its resolv.conf (None: not a
    DNS name, or the source has no resolv.conf of the lab's)."""
    from podnet.dns.resolv import parse_resolv_conf
    from podnet.runtime.hosts import resolv_path
    from podnet.trace.dns import lookup
    from podnet.trace.world import namespace_path

    pod = lab.pod(source.pod) if source.pod else None
    if pod is None or "/" in selector or not isinstance(pod.get("hosts_file"), str) \
            or pod.get("hostNetwork"):
        return None
    try:
        with open(resolv_path(pod["hosts_file"])) as fh:
            conf = parse_resolv_conf(fh.read())
    except OSError:
        return None
    path = namespace_path(source)
    if path is None:
        return None
    if family is None:
        family = 4 if any(_version(a) == 4 for a in _own_addresses(source)) else 6
    return lookup(path, conf, selector, family)


def check_source_family(source: Namespace, dst: Destination) -> None:
    """A pod sends a family only if it has an address of it: say so before any walk does."""
    if not source.pod:
        return
    version = _version(dst.ip)
    if not any(_version(a) == version for a in _own_addresses(source)):
        other = 6 if version == 4 else 4
        raise StateError(f"pod {source.pod} has no IPv{version} address: it cannot reach "
                         f"{dst.ip}", hint=f"trace over IPv{other} (-{other}), or give the lab "
                         "ipFamily: dual for both")


def _describe(ns: Namespace | None) -> str:
    if ns is None:
        return "?"
    if ns.pod:
        return f"pod {ns.pod}"
    if ns.node:
        return f"node {ns.node}"
    return ns.label
