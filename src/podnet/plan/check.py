"""`podnet check`: which paths of a lab to probe, and what answer proves each one works. Pure.

Every pod is a source. From each, the paths a pod network must carry:

    self        the pod's own port through `lo` (127.0.0.1)
    same-node   other pods on its node
    other-node  pods on other nodes
    node        every node's address
    service     each Service port, by the name /etc/hosts gives it (demo.dev)
    outside     the web server in the lab's `internet` namespace, which must see the node's
                address (egress masquerade), not the pod's

and from the node network (the docker host of kind), every NodePort on every node. With --mtu,
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

from podnet.plan.layout import Layout, PodLayout

__all__ = [
    "COLUMNS",
    "FULL_SIZE",
    "KINDS",
    "NODE_NETWORK",
    "Cell",
    "Expect",
    "Probe",
    "Result",
    "probes",
    "summarize",
]

KINDS = ("self", "same-node", "other-node", "node", "service", "nodeport", "outside")
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
    name: str = ""  # the hosts-file name the source must resolve to the target address
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


@dataclass(frozen=True)
class Result:
    probe: Probe
    ok: bool
    detail: str  # "answered by dev/demo-x", "refused (reset by the target)", "timed out"...
    ms: float
    full: bool | None = None  # the full-size probe passed (None: not sent)
    full_detail: str = ""

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


def _pod_probe(kind: str, src: PodLayout, dst: PodLayout, address: str, mtu: int) -> Probe:
    port = _http_port(dst)
    expect = Expect(pods=(dst.key,)) if port is not None else Expect()
    return Probe(kind, src.key, src.netns, src.hosts_file, dst.key, address,
                 port if port is not None else _any_port(dst), expect, mtu)


def probes(lay: Layout, *, targets: int = 3, node_network_netns: str = "") -> list[Probe]:
    """Every probe of the check. `targets` caps the pods probed per source and kind (0: all),
    so a 200-pod lab is checked in linear, not quadratic, time."""
    return list(_probes(lay, targets, node_network_netns or lay.fabric_netns))


def _probes(lay: Layout, limit: int, fabric: str) -> Iterator[Probe]:
    by_key = {p.key: p for p in lay.pods}
    node_ip = {n.name: str(n.ip.ip) for n in lay.nodes}
    mtu = lay.pod_mtu
    for index, src in enumerate(lay.pods):
        yield (_pod_probe("self", src, src, "127.0.0.1", 0)
               if _http_port(src) is not None
               else Probe("self", src.key, src.netns, src.hosts_file, src.key, "127.0.0.1",
                          CLOSED_PORT, Expect()))
        same = [p for p in lay.pods if p.node == src.node and p.key != src.key]
        other = [p for p in lay.pods if p.node != src.node]
        for dst in _pick(same, limit, index):
            yield _pod_probe("same-node", src, dst, str(dst.ip.ip), mtu)
        for dst in _pick(other, limit, index):
            yield _pod_probe("other-node", src, dst, str(dst.ip.ip), mtu)
        for node in lay.nodes:
            yield Probe("node", src.key, src.netns, src.hosts_file, node.name, node_ip[node.name],
                        NODE_PORT, Expect(), mtu)
        for svc in lay.services:
            backends = [by_key[k] for k in svc.endpoints if k in by_key]
            for port in svc.ports:
                if port.protocol != "TCP" or not backends:
                    continue
                http = all(_http_port(b, port.target_port) is not None for b in backends)
                pods = tuple(b.key for b in backends) if http else ()
                yield Probe("service", src.key, src.netns, src.hosts_file,
                            f"{svc.key}:{port.port}", str(svc.cluster_ip), port.port,
                            Expect(pods=pods, name=f"{svc.name}.{svc.namespace}"), mtu)
        if lay.internet is not None:
            yield Probe("outside", src.key, src.netns, src.hosts_file, "internet",
                        str(lay.internet.address.ip), lay.internet.port,
                        Expect(client=node_ip[src.node]), mtu)
    for svc in lay.services:
        backends = [by_key[k] for k in svc.endpoints if k in by_key]
        for port in svc.ports:
            if port.node_port is None or port.protocol != "TCP" or not backends:
                continue
            http = all(_http_port(b, port.target_port) is not None for b in backends)
            pods = tuple(b.key for b in backends) if http else ()
            for node in lay.nodes:
                yield Probe("nodeport", NODE_NETWORK, fabric, "",
                            f"{svc.key}:{port.node_port} on {node.name}", node_ip[node.name],
                            port.node_port, Expect(pods=pods), lay.mtu)


@dataclass(frozen=True)
class Cell:
    ok: int
    total: int

    def __str__(self) -> str:
        if not self.total:
            return "-"
        word = "ok" if self.ok == self.total else "FAIL"
        return f"{word} {self.ok}/{self.total}"


def summarize(results: Sequence[Result]) -> dict[str, dict[str, Cell]]:
    """source -> kind (and full-size) -> how many of its probes of that kind worked, sources in
    probe order."""
    table: dict[str, dict[str, list[int]]] = {}
    for r in results:
        row = table.setdefault(r.probe.source, {})
        counts = row.setdefault(r.probe.kind, [0, 0])
        counts[0] += r.ok
        counts[1] += 1
        if r.full is not None:
            full = row.setdefault(FULL_SIZE, [0, 0])
            full[0] += r.full
            full[1] += 1
    return {src: {k: Cell(*row.get(k, [0, 0])) for k in COLUMNS} for src, row in table.items()}
