"""`podnet check`: which paths of a lab to probe, and what answer proves each one works. Pure.

Every pod is a source. From each, the paths a pod network must carry:

    self        the pod's own port through `lo` (127.0.0.1)
    same-node   other pods on its node
    other-node  pods on other nodes
    node        every node's address
    service     each Service port, by its ClusterIP
    dns         a lookup of a Service's name (A, or AAAA over IPv6) over UDP to the pod's
                nameserver (the kube-dns ClusterIP, through the Service DNAT to a coredns pod),
                which must answer with the Service's addresses
    outside     the web server in the lab's `internet` namespace, which must see the node's
                address (egress masquerade), not the pod's

and from the node network (the docker host of kind), every NodePort on every node. A dual-stack
lab is probed once per family: each path over IPv4, then again over IPv6 (the pods', nodes' and
the internet's addresses of that family, each Service by its ClusterIP of that family, `::1`
for the pod itself). With --mtu,
each path that works is probed again with a full-size packet (`full-size`): a TCP segment that
fills the source's MTU (DF set) must be acknowledged with no hop answering 'fragmentation
needed', or, where the port is closed, an echo of that size must be answered. A pod that
serves HTTP (podnet's responder) must answer with a page naming itself; anything else counts as
reached when the TCP handshake completes or the target's kernel answers with a reset (connection
refused), since either proves the packets went there and back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from podnet.model.addresses import IPAddress
from podnet.plan.addons import DNS_NAMESPACE
from podnet.plan.dns import pod_resolv, service_fqdn
from podnet.plan.layout import Layout, PodLayout
from podnet.plan.services import ServiceLayout

__all__ = [
    "COLUMNS",
    "FULL_SIZE",
    "KINDS",
    "LOOPBACK",
    "NODE_NETWORK",
    "Cell",
    "Expect",
    "Probe",
    "Result",
    "Row",
    "probes",
    "summarize",
]

KINDS = ("self", "same-node", "other-node", "node", "service", "dns", "nodeport", "outside")
FULL_SIZE = "full-size"  # not a kind of path: the full-size probes of all of a source's paths
COLUMNS = (*KINDS, FULL_SIZE)
NODE_NETWORK = "node network"  # the source name of probes sent from the fabric namespace
CLOSED_PORT = 9  # discard: nothing listens there in the lab, so the target's kernel resets
NODE_PORT = 10250  # kubelet's port on a real node; closed here: a reset proves the path


@dataclass(frozen=True)
class Expect:
    """What answer proves a path: `pods` (an HTTP page naming one of them), `client` (the
    outside server saw this source address), or neither (handshake or reset)."""

    pods: tuple[str, ...] = ()
    client: str = ""
    name: str = ""  # a DNS probe's question: the name it asks
    answers: tuple[str, ...] = ()  # and the addresses that must answer it
    # NetworkPolicies deny this path (why, in words): it works when no answer comes back
    denied: str = ""

    @property
    def http(self) -> bool:
        return bool(self.pods or self.client)


@dataclass(frozen=True)
class Probe:
    kind: str  # one of KINDS
    source: str  # pod key, or NODE_NETWORK
    netns: str  # where the probe's socket lives
    hosts_file: str  # the source's /etc/hosts ("" for the node network)
    target: str  # for people: a pod key, node name, Service key:port or "internet"
    address: str
    port: int
    expect: Expect
    mtu: int = 0  # the source's first link's MTU: how large a full-size packet is
    family: int = 4  # the address family probed: 4 or 6


@dataclass(frozen=True)
class Result:
    probe: Probe
    ok: bool
    detail: str  # "answered by dev/demo-x", "refused (reset by the target)", "timed out"...
    ms: float
    full: bool | None = None  # the full-size probe passed (None: not sent)
    full_detail: str = ""
    answered_by: str = ""  # the pod whose responder answered (a Service's chosen backend)

    @property
    def passed(self) -> bool:
        return self.ok and self.full is not False


def _http_port(pod: PodLayout, port: int | None = None) -> int | None:
    """A port where podnet's responder answers for this pod (a container with ports and no
    command); with `port`, only that one."""
    for c in pod.containers:
        if c.command is None and c.ports and (port is None or port in c.ports):
            return port if port is not None else c.ports[0]
    return None


def _any_port(pod: PodLayout) -> int:
    declared = [p for c in pod.containers for p in c.ports]
    return declared[0] if declared else CLOSED_PORT


def _pick(targets: Sequence[PodLayout], limit: int, offset: int) -> list[PodLayout]:
    """Up to `limit` targets, rotated by the source's position so that, over all sources,
    every target is probed by someone."""
    if limit <= 0 or len(targets) <= limit:
        return list(targets)
    start = offset % len(targets)
    return [targets[(start + i) % len(targets)] for i in range(limit)]


LOOPBACK = {4: "127.0.0.1", 6: "::1"}


def _pod_probe(kind: str, src: PodLayout, dst: PodLayout, address: str, mtu: int,
               family: int) -> Probe:
    port = _http_port(dst)
    expect = Expect(pods=(dst.key,)) if port is not None else Expect()
    return Probe(kind, src.key, src.netns, src.hosts_file, dst.key, address,
                 port if port is not None else _any_port(dst), expect, mtu, family)


def probes(lay: Layout, *, targets: int = 3, node_network_netns: str = "",
           families: Sequence[int] | None = None) -> list[Probe]:
    """Every probe of the check, for each of `families` the lab has (default: all of them).
    `targets` caps the pods probed per source, family and kind (0: all), so a 200-pod lab is
    checked in linear, not quadratic, time."""
    wanted = [f for f in lay.families if families is None or f in families]
    return list(_probes(lay, targets, node_network_netns or lay.fabric_netns, wanted))


def _text(ip: IPAddress | None) -> str:
    return "" if ip is None else str(ip)


class _Targets:
    """Each source's candidate targets, from lists built once per node (a list per source would
    make planning quadratic in the pods)."""

    def __init__(self, lay: Layout) -> None:
        self.by_key = {p.key: p for p in lay.pods}
        self.on_node = {n.name: lay.pods_on(n.name) for n in lay.nodes}
        self.position = {p.key: i for pods in self.on_node.values() for i, p in enumerate(pods)}
        self.off_node = {n: [p for p in lay.pods if p.node != n] for n in self.on_node}

    def same(self, src: PodLayout) -> Sequence[PodLayout]:
        return _Without(self.on_node.get(src.node, []), self.position.get(src.key, -1))

    def other(self, src: PodLayout) -> Sequence[PodLayout]:
        return self.off_node.get(src.node, [])


class _Without(Sequence[PodLayout]):
    """`items` less the one at `skip` (-1: none), without copying."""

    def __init__(self, items: Sequence[PodLayout], skip: int) -> None:
        self.items, self.skip = items, skip

    def __len__(self) -> int:
        return len(self.items) - (self.skip >= 0)

    @overload
    def __getitem__(self, i: int) -> PodLayout: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[PodLayout]: ...

    def __getitem__(self, i: int | slice) -> PodLayout | Sequence[PodLayout]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        return self.items[i + 1 if 0 <= self.skip <= i else i]


def _probes(lay: Layout, limit: int, fabric: str, families: Sequence[int]) -> Iterator[Probe]:
    targets = _Targets(lay)
    for index, src in enumerate(lay.pods):
        for family in families:
            yield from _pod_probes(lay, targets, src, index, limit, family)
    for family in families:
        yield from _node_port_probes(lay, fabric, family)


def _pod_probes(lay: Layout, candidates: _Targets, src: PodLayout, index: int, limit: int,
                family: int) -> Iterator[Probe]:
    """What one pod probes over one family."""
    by_key = candidates.by_key
    mtu = lay.pod_mtu
    loopback = LOOPBACK[family]
    yield (_pod_probe("self", src, src, loopback, 0, family)
           if _http_port(src) is not None
           else Probe("self", src.key, src.netns, src.hosts_file, src.key, loopback,
                      CLOSED_PORT, Expect(), family=family))
    same, other = candidates.same(src), candidates.other(src)
    for kind, targets in (("same-node", same), ("other-node", other)):
        for dst in _pick(targets, limit, index):
            ip = dst.ip_of(family)
            if ip is not None:
                yield _pod_probe(kind, src, dst, str(ip.ip), mtu, family)
    for node in lay.nodes:
        ip = node.ip_of(family)
        if ip is not None:
            yield Probe("node", src.key, src.netns, src.hosts_file, node.name, str(ip.ip),
                        NODE_PORT, Expect(), mtu, family)
    for svc in lay.services:
        vip = next((ip for ip in svc.cluster_ips if ip.version == family), None)
        backends = [by_key[k] for k in svc.endpoints if k in by_key]
        for port in svc.ports:
            if vip is None or port.protocol != "TCP" or not backends:
                continue
            http = all(_http_port(b, port.target_port) is not None for b in backends)
            pods = tuple(b.key for b in backends) if http else ()
            yield Probe("service", src.key, src.netns, src.hosts_file,
                        f"{svc.key}:{port.port}", str(vip), port.port,
                        Expect(pods=pods), mtu, family)
    yield from _dns_probes(lay, src, index, family)
    world = next((a for a in lay.internet.addresses if a.version == family), None) \
        if lay.internet is not None else None
    node_ip = lay.node(src.node).ip_of(family)
    if world is not None and lay.internet is not None and node_ip is not None:
        yield Probe("outside", src.key, src.netns, src.hosts_file, "internet", str(world.ip),
                    lay.internet.port, Expect(client=_text(node_ip.ip)), mtu, family)


def _dns_probes(lay: Layout, src: PodLayout, index: int, family: int) -> Iterator[Probe]:
    """One lookup per source and family: a Service of that family (the sources take turns
    over the Services), asked of the first nameserver of the pod's resolv.conf. A pod without
    one (dnsPolicy Default, as the coredns pods; a hostNetwork pod, which has its node's)
    asks nothing."""
    nameservers = pod_resolv(lay, src).nameservers
    if src.host_network or not nameservers:
        return
    named = [s for s in lay.services if any(ip.version == family for ip in s.cluster_ips)]
    mine: list[ServiceLayout] = [s for s in named if s.namespace != DNS_NAMESPACE] or named
    if not mine:
        return
    svc = mine[index % len(mine)]
    name = service_fqdn(lay, svc)
    answers = tuple(str(ip) for ip in svc.cluster_ips if ip.version == family)
    qtype = "A" if family == 4 else "AAAA"
    yield Probe("dns", src.key, src.netns, src.hosts_file, f"{name} {qtype}", nameservers[0],
                53, Expect(name=name, answers=answers), 0, family)


def _node_port_probes(lay: Layout, fabric: str, family: int) -> Iterator[Probe]:
    """Every NodePort on every node's address of `family`, from the node network (as
    kube-proxy, only a Service of that family has its NodePorts on that family's addresses)."""
    by_key = {p.key: p for p in lay.pods}
    for svc in lay.services:
        if family not in svc.ip_families:
            continue
        backends = [by_key[k] for k in svc.endpoints if k in by_key]
        for port in svc.ports:
            if port.node_port is None or port.protocol != "TCP" or not backends:
                continue
            http = all(_http_port(b, port.target_port) is not None for b in backends)
            pods = tuple(b.key for b in backends) if http else ()
            for node in lay.nodes:
                ip = node.ip_of(family)
                if ip is not None:
                    yield Probe("nodeport", NODE_NETWORK, fabric, "",
                                f"{svc.key}:{port.node_port} on {node.name}", str(ip.ip),
                                port.node_port, Expect(pods=pods), lay.mtu, family)


@dataclass(frozen=True)
class Cell:
    ok: int
    total: int

    def __str__(self) -> str:
        if not self.total:
            return "-"
        word = "ok" if self.ok == self.total else "FAIL"
        return f"{word} {self.ok}/{self.total}"


Row = tuple[str, int]  # a source, and the family it probed


def summarize(results: Sequence[Result]) -> dict[Row, dict[str, Cell]]:
    """(source, family) -> kind (and full-size) -> how many of its probes of that kind worked,
    sources in probe order."""
    table: dict[Row, dict[str, list[int]]] = {}
    for r in results:
        row = table.setdefault((r.probe.source, r.probe.family), {})
        counts = row.setdefault(r.probe.kind, [0, 0])
        counts[0] += r.ok
        counts[1] += 1
        if r.full is not None:
            full = row.setdefault(FULL_SIZE, [0, 0])
            full[0] += r.full
            full[1] += 1
    return {src: {k: Cell(*row.get(k, [0, 0])) for k in COLUMNS} for src, row in table.items()}
