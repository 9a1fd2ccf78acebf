"""A small pod network built by hand (no planner), for NetworkPolicy tests and the benchmark.

Two node namespaces on one link, pods on veths (ptp: /32 routes per veth as kindnet does; or a
cni0 bridge, whose bridged packets br_netfilter shows to the IP hooks), nodes routed to each
other directly (host-gw) or through VXLAN, and an `outside` namespace behind the first node.
Every pod, node and the outside have an IPv4 and an IPv6 address. Servers are sockets made
inside each namespace and answered by one thread; probes are sockets too, so a probe costs no
process. Only for a sandbox: it creates namespaces, and removes every one it made in `close`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from podnet.kernel import netns, nftables
from podnet.kernel.nftables import Table, Transaction
from podnet.model.types import ClusterSpec
from podnet.policy.nft import policy_chains
from podnet.policy.world import Host, Member, World

__all__ = ["OUTSIDE", "HandNet", "PodPlace"]

TCP_PORTS = (80, 81, 82)
UDP_PORTS = (80, 81)
OUTSIDE = ("198.51.100.100", "198.51.100.200", "2001:db8:100::100", "2001:db8:100::200")
TABLE = Table("inet", "podnet")


@dataclass(frozen=True)
class PodPlace:
    key: str  # namespace/name
    node: int  # 1 or 2
    host: int  # the last part of its addresses: 10.244.<node>.<host>


@dataclass
class _Pod:
    key: str
    node: str
    netns: str
    ips: tuple[str, ...]


def _ip(*argv: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def _sysctl(ns: str, *settings: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings], check=True)


@dataclass
class HandNet:
    attachment: str  # ptp or bridge
    routing: str  # host-gw or vxlan
    places: Sequence[PodPlace]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    nodes: dict[str, str] = field(default_factory=dict)  # node name -> netns
    pods: dict[str, _Pod] = field(default_factory=dict)
    outside: str = ""
    made: list[str] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # --- building ---------------------------------------------------------------------------

    def _netns(self, name: str) -> str:
        full = f"{name}-{self.tag}"
        netns.create(full)
        self.made.append(full)
        # No duplicate address detection: the addresses here are unique by construction, and
        # a tentative link-local address loses the first packets a fresh node forwards.
        _sysctl(full, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        _ip("link", "set", "lo", "up", ns=full)
        return full

    def build(self) -> HandNet:
        for i in (1, 2):
            ns = self._netns(f"n{i}")
            self.nodes[f"n{i}"] = ns
            _sysctl(ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                    "net.bridge.bridge-nf-call-iptables=1",
                    "net.bridge.bridge-nf-call-ip6tables=1")
        n1, n2 = self.nodes["n1"], self.nodes["n2"]
        _ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", n2, ns=n1)
        for i, ns in ((1, n1), (2, n2)):
            _ip("addr", "add", f"172.18.0.{i + 1}/24", "dev", "eth0", ns=ns)
            _ip("-6", "addr", "add", f"fd00:18::{i + 1}/64", "dev", "eth0", "nodad", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
            if self.attachment == "bridge":
                _ip("link", "add", "cni0", "type", "bridge", ns=ns)
                _ip("addr", "add", f"10.244.{i}.1/24", "dev", "cni0", ns=ns)
                _ip("-6", "addr", "add", f"fd00:10:244:{i}::1/64", "dev", "cni0", "nodad", ns=ns)
                _ip("link", "set", "cni0", "up", ns=ns)
        self._route_nodes(n1, n2)
        self._outside(n1, n2)
        for place in self.places:
            self._pod(place)
        self._serve()
        self._check_connected()
        return self

    def _check_connected(self) -> None:
        """Before any policy: every pod reaches every other over both families (the first
        packets also fill the neighbour tables)."""
        probes = [(a, self.ip_of(b, v), 80, "TCP", 5.0)
                  for a in self.pods for b in self.pods for v in (4, 6)]
        results = self.probe_all(probes)
        broken = [p[:2] for p, ok in zip(probes, results, strict=True) if not ok]
        if broken:
            raise RuntimeError(f"the hand-built network does not connect: {broken}")

    def _route_nodes(self, n1: str, n2: str) -> None:
        for i, ns, peer in ((1, n1, 2), (2, n2, 1)):
            if self.routing == "vxlan":
                _ip("link", "add", "vx0", "type", "vxlan", "id", "1", "local",
                    f"172.18.0.{i + 1}", "remote", f"172.18.0.{peer + 1}", "dstport", "8472",
                    "dev", "eth0", ns=ns)
                _ip("addr", "add", f"10.255.0.{i}/24", "dev", "vx0", ns=ns)
                _ip("-6", "addr", "add", f"fd00:255::{i}/64", "dev", "vx0", "nodad", ns=ns)
                _ip("link", "set", "vx0", "up", ns=ns)
                via4, via6 = f"10.255.0.{peer}", f"fd00:255::{peer}"
            else:
                via4, via6 = f"172.18.0.{peer + 1}", f"fd00:18::{peer + 1}"
            _ip("route", "add", f"10.244.{peer}.0/24", "via", via4, ns=ns)
            _ip("-6", "route", "add", f"fd00:10:244:{peer}::/64", "via", via6, ns=ns)

    def _outside(self, n1: str, n2: str) -> None:
        """The world outside the cluster, behind n1: TEST-NET-2 and 2001:db8::/32."""
        out = self.outside = self._netns("out")
        _ip("link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", out, ns=n1)
        _ip("addr", "add", "198.51.100.1/24", "dev", "ext0", ns=n1)
        _ip("-6", "addr", "add", "2001:db8:100::1/64", "dev", "ext0", "nodad", ns=n1)
        _ip("link", "set", "ext0", "up", ns=n1)
        for addr in OUTSIDE:
            ver = "-6" if ":" in addr else "-4"
            plen = "64" if ":" in addr else "24"
            _ip(ver, "addr", "add", f"{addr}/{plen}", "dev", "eth0", *(["nodad"] if ":" in addr
                                                                     else []), ns=out)
        _ip("link", "set", "eth0", "up", ns=out)
        _ip("route", "add", "default", "via", "198.51.100.1", ns=out)
        _ip("-6", "route", "add", "default", "via", "2001:db8:100::1", ns=out)
        via4, via6 = (("10.255.0.1", "fd00:255::1") if self.routing == "vxlan"
                      else ("172.18.0.2", "fd00:18::2"))
        _ip("route", "add", "198.51.100.0/24", "via", via4, ns=n2)
        _ip("-6", "route", "add", "2001:db8:100::/64", "via", via6, ns=n2)

    def _pod(self, place: PodPlace) -> None:
        node = f"n{place.node}"
        host_ns = self.nodes[node]
        ns = self._netns("p" + place.key.replace("/", "-"))
        v4, v6 = f"10.244.{place.node}.{place.host}", f"fd00:10:244:{place.node}::{place.host}"
        veth = "veth" + uuid.uuid4().hex[:8]
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns, ns=host_ns)
        _ip("link", "set", "eth0", "up", ns=ns)
        if self.attachment == "bridge":
            _ip("link", "set", veth, "master", "cni0", "up", ns=host_ns)
            _ip("addr", "add", f"{v4}/24", "dev", "eth0", ns=ns)
            _ip("-6", "addr", "add", f"{v6}/64", "dev", "eth0", "nodad", ns=ns)
            _ip("route", "add", "default", "via", f"10.244.{place.node}.1", ns=ns)
            _ip("-6", "route", "add", "default", "via", f"fd00:10:244:{place.node}::1", ns=ns)
        else:  # ptp: a /32 on the pod, the gateway address and a host route on the node's veth
            _ip("link", "set", veth, "up", ns=host_ns)
            _ip("addr", "add", f"10.244.{place.node}.1/32", "dev", veth, ns=host_ns)
            _ip("-6", "addr", "add", "fe80::1/64", "dev", veth, "nodad", ns=host_ns)
            _ip("route", "add", f"{v4}/32", "dev", veth, ns=host_ns)
            _ip("-6", "route", "add", f"{v6}/128", "dev", veth, ns=host_ns)
            _ip("addr", "add", f"{v4}/32", "dev", "eth0", ns=ns)
            _ip("-6", "addr", "add", f"{v6}/128", "dev", "eth0", "nodad", ns=ns)
            _ip("route", "add", f"10.244.{place.node}.1", "dev", "eth0", "scope", "link", ns=ns)
            _ip("route", "add", "default", "via", f"10.244.{place.node}.1", "dev", "eth0", ns=ns)
            _ip("-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0", ns=ns)
        self.pods[place.key] = _Pod(place.key, node, ns, (v4, v6))

    # --- servers ----------------------------------------------------------------------------

    def _listen(self, ns: str, addresses: Iterable[str], tcp: Iterable[int],
                udp: Iterable[int]) -> None:
        with netns.entered(netns.path_of(ns)):
            for addr in addresses:
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                for port in tcp:
                    s = socket.socket(family, socket.SOCK_STREAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((addr, port))
                    s.listen(64)
                    s.setblocking(False)
                    self.sockets.append(s)
                for port in udp:
                    s = socket.socket(family, socket.SOCK_DGRAM)
                    s.bind((addr, port))
                    s.setblocking(False)
                    self.sockets.append(s)

    def _serve(self) -> None:
        for pod in self.pods.values():
            self._listen(pod.netns, pod.ips, TCP_PORTS, UDP_PORTS)
        self._listen(self.outside, OUTSIDE, (80,), (80,))
        for i, ns in ((1, self.nodes["n1"]), (2, self.nodes["n2"])):
            self._listen(ns, (f"172.18.0.{i + 1}", f"fd00:18::{i + 1}"), (80,), ())
        self._thread = threading.Thread(target=self._answer, daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        sel = selectors.DefaultSelector()
        for sock in self.sockets:
            sel.register(sock, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                with contextlib.suppress(OSError):
                    if s.type == socket.SOCK_STREAM:
                        conn, _ = s.accept()
                        conn.sendall(b"ok")
                        conn.close()
                    else:
                        _, peer = s.recvfrom(64)
                        s.sendto(b"ok", peer)
        sel.close()

    # --- policies and probes ----------------------------------------------------------------

    def world(self, spec: ClusterSpec) -> World:
        """The policy world: the spec's pods (labels, named ports) where this network put
        them, the nodes with every address they own."""
        members = []
        for pod in spec.pods:
            placed = self.pods[pod.key]
            members.append(Member(
                pod.namespace, pod.name, placed.node,
                tuple(ipaddress.ip_address(a) for a in placed.ips), pod.labels,
                tuple(n for c in pod.containers for n in c.named_ports)))
        hosts = []
        for i in (1, 2):
            addrs = [f"172.18.0.{i + 1}", f"fd00:18::{i + 1}", f"10.244.{i}.1"]
            addrs += [f"fd00:10:244:{i}::1"] if self.attachment == "bridge" else []
            addrs += [f"10.255.0.{i}", f"fd00:255::{i}"] if self.routing == "vxlan" else []
            hosts.append(Host(f"n{i}", tuple(ipaddress.ip_address(a) for a in addrs)))
        policies = tuple(sorted(spec.policies, key=lambda p: (p.namespace, p.name)))
        return World(tuple(members), tuple(hosts), spec.namespaces, policies)

    def load(self, world: World, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Each node's table becomes its policy chains (and `extra` text), atomically; returns
        the bodies loaded."""
        bodies = {}
        jobs = []
        for node, ns in self.nodes.items():
            body = policy_chains(world, node) + (extra or {}).get(node, "")
            bodies[node] = body
            tx = Transaction(TABLE, f"policies of {node}")
            jobs.append((tx.replace(body) if body else tx.delete(), netns.path_of(ns)))
        nftables.run_many(jobs)
        return bodies

    def ruleset(self, node: str) -> list[dict[str, object]]:
        import json

        out = subprocess.run(["ip", "netns", "exec", self.nodes[node], "nft", "-j", "list",
                              "ruleset"], capture_output=True, text=True, check=True).stdout
        objects: list[dict[str, object]] = json.loads(out)["nftables"]
        return objects

    def where(self, end: str) -> str:
        """The namespace of a pod key, a node name or `outside`."""
        if end in self.pods:
            return self.pods[end].netns
        return self.nodes.get(end) or self.outside

    def probe(self, src: str, dst_ip: str, port: int, protocol: str = "TCP",
              timeout: float | None = None) -> bool:
        """Whether a new connection (TCP: the handshake, which the kernels complete by
        themselves) or a request and its answer (UDP: the answering thread may wait for the
        CPU on a busy machine, hence the longer wait) gets through. `src` is a pod key, a node
        name, or an address of the outside namespace."""
        if timeout is None:
            timeout = 0.5 if protocol == "TCP" else 1.5
        family = socket.AF_INET6 if ":" in dst_ip else socket.AF_INET
        kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
        with netns.entered(netns.path_of(self.where(src))):
            s = socket.socket(family, kind)
        try:
            if src in OUTSIDE:
                s.bind((src, 0))
            s.settimeout(timeout)
            if protocol == "TCP":
                s.connect((dst_ip, port))
                return True
            s.sendto(b"hi", (dst_ip, port))
            return s.recvfrom(64)[0] == b"ok"
        except OSError:
            return False
        finally:
            s.close()

    def probe_all(self, probes: Sequence[tuple[str, str, int, str] | tuple[str, str, int, str,
                                                                         float]]) -> list[bool]:
        """Many probes at once: (source, destination address, port, protocol[, timeout])."""
        with ThreadPoolExecutor(max_workers=min(48, max(1, len(probes)))) as pool:
            return list(pool.map(lambda p: self.probe(*p), probes))

    def forget_neighbours(self) -> None:
        """Empty every pod's and node's neighbour table, so the next packets resolve afresh
        (on a bridge, pods resolve each other: IPv6 does it with ICMPv6 through the hooks)."""
        for ns in [*(p.netns for p in self.pods.values()), *self.nodes.values()]:
            for family in ("-4", "-6"):
                _ip(family, "neigh", "flush", "all", ns=ns)

    def ip_of(self, key: str, version: int) -> str:
        return self.pods[key].ips[0 if version == 4 else 1]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for s in self.sockets:
            s.close()
        for name in reversed(self.made):
            netns.delete(name)
