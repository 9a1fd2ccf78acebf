"""The records of Kubernetes DNS-based service discovery, from the lab's Services and pods. Pure.

What coredns's kubernetes plugin answers in a kind cluster (Corefile: `kubernetes cluster.local
in-addr.arpa ip6.arpa { pods insecure; ttl 30 }`), after the specification in kubernetes/dns
(docs/specification.md, schema 1.1.0):

    dns-version.<zone>                     TXT   "1.1.0"
    <svc>.<ns>.svc.<zone>                  A/AAAA  each ClusterIP; headless: each ready endpoint
    <host>.<svc>.<ns>.svc.<zone>           A/AAAA  each ready endpoint (host: the pod's hostname
                                                   when its subdomain is <svc>, else a-b-c-d)
    _<port>._<proto>.<svc>.<ns>.svc.<zone> SRV   per named port: to <svc>.<ns>.svc.<zone>;
                                                 headless: to each ready endpoint's <host>
    <a-b-c-d>.<ns>.pod.<zone>              A/AAAA  each pod address (IPv6: ':' written '-')
    reverse of a ClusterIP                 PTR   <svc>.<ns>.svc.<zone>
    reverse of a ready endpoint's address  PTR   <host>.<svc>.<ns>.svc.<zone>, per Service
    reverse of any other pod address       PTR   <a-b-c-d>.<ns>.pod.<zone> (podnet's addition)

plus an SOA (and NS, given the DNS Service's addresses) at the apex of every zone the server is
authoritative for: the cluster domain and the reverse zones of the given networks. The server
answers NXDOMAIN for a missing name inside those zones and REFUSED outside them.

Inputs are plain dataclasses (`DnsService`, `DnsPod`), so this module does not depend on the
shape of the lab's layout; `RecordSet` is what podnet writes for the server to read.
"""

from __future__ import annotations

import ipaddress
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TTL",
    "FORMAT_VERSION",
    "SCHEMA_VERSION",
    "DnsPod",
    "DnsPort",
    "DnsService",
    "PodMode",
    "Record",
    "RecordSet",
    "RecordsFileError",
    "cluster_records",
    "dashed",
    "normalize_domain",
    "reverse_name",
    "reverse_zone",
    "undashed",
]

DEFAULT_DOMAIN = "cluster.local"
DEFAULT_TTL = 30  # kubeadm's (and so kind's) Corefile: `ttl 30`
SCHEMA_VERSION = "1.1.0"  # of the specification; coredns answers dns-version with it
FORMAT_VERSION = 1  # of the records file

# insecure: any <a-b-c-d>.<ns>.pod.<zone> answers its address, as kind's Corefile has it;
# verified: only the addresses of pods that exist, in their own namespace.
PodMode = Literal["insecure", "verified"]
_POD_MODES = ("insecure", "verified")
_TYPES = ("A", "AAAA", "NS", "PTR", "SOA", "SRV", "TXT")


class RecordsFileError(ValueError):
    """A records file that cannot be read: the server keeps its previous records."""


@dataclass(frozen=True)
class DnsPort:
    name: str  # "" for an unnamed port: no SRV record
    port: int
    protocol: str  # TCP, UDP (SCTP would do too: SRV names take any protocol)


@dataclass(frozen=True)
class DnsService:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...] = ()  # one per family; empty: headless (clusterIP: None)
    ports: tuple[DnsPort, ...] = ()
    endpoints: tuple[str, ...] = ()  # `namespace/name` of the pods its selector matches


@dataclass(frozen=True)
class DnsPod:
    namespace: str
    name: str
    ips: tuple[str, ...] = ()  # one per family
    hostname: str | None = None  # spec.hostname
    subdomain: str | None = None  # spec.subdomain
    ready: bool = True  # only ready pods are a Service's endpoints in DNS

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Record:
    name: str  # absolute and lowercase, with the final dot
    type: str  # A, AAAA, NS, PTR, SOA, SRV, TXT
    data: str  # in presentation (zone file) format

    def sort_key(self) -> tuple[tuple[str, ...], str, str]:
        """DNS's canonical order (RFC 4034): by labels from the root, so a zone reads together."""
        return tuple(reversed(self.name.split("."))), self.type, self.data

    def text(self, ttl: int) -> str:
        """The record as a zone file line."""
        return f"{self.name}\t{ttl}\tIN\t{self.type}\t{self.data}"


@dataclass(frozen=True)
class RecordSet:
    """Everything the server answers: written by podnet, read by the server on every change."""

    domain: str  # the cluster domain, without the final dot: cluster.local
    zones: tuple[str, ...]  # authoritative zones, absolute: cluster.local., 96.10.in-addr.arpa.
    records: tuple[Record, ...] = ()
    ttl: int = DEFAULT_TTL
    pods: PodMode = "insecure"

    def to_json(self) -> str:
        body = {
            "version": FORMAT_VERSION,
            "domain": self.domain,
            "ttl": self.ttl,
            "pods": self.pods,
            "zones": list(self.zones),
        }
        # One record a line, so the file (and `podnet explain`, which prints it) reads as a zone.
        rows = ",\n  ".join(json.dumps([r.name, r.type, r.data]) for r in self.records)
        head = json.dumps(body, indent=1)[:-2]  # without the closing "\n}"
        return f'{head},\n "records": [\n  {rows}\n ]\n}}\n' if rows else \
            f'{head},\n "records": []\n}}\n'

    @classmethod
    def from_json(cls, text: str) -> RecordSet:
        """Parse a records file; raise RecordsFileError saying what is wrong with it."""
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise RecordsFileError(f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RecordsFileError("not a JSON object")
        if body.get("version") != FORMAT_VERSION:
            raise RecordsFileError(
                f"format version {body.get('version')!r}, this server reads {FORMAT_VERSION}"
            )
        domain, ttl, pods = body.get("domain"), body.get("ttl"), body.get("pods", "insecure")
        zones, rows = body.get("zones"), body.get("records")
        if not isinstance(domain, str) or not domain:
            raise RecordsFileError("'domain' must be a non-empty string")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= 2**31 - 1:
            raise RecordsFileError("'ttl' must be an integer of seconds")
        if pods not in _POD_MODES:
            raise RecordsFileError(f"'pods' must be one of {', '.join(_POD_MODES)}")
        if not isinstance(zones, list) or not all(_absolute(z) for z in zones):
            raise RecordsFileError("'zones' must be a list of absolute names (ending with '.')")
        if not isinstance(rows, list):
            raise RecordsFileError("'records' must be a list")
        return cls(
            domain=domain,
            zones=tuple(zones),
            records=tuple(_record(i, row) for i, row in enumerate(rows)),
            ttl=ttl,
            pods=pods,
        )

    def zone_text(self) -> str:
        """The records as zone file lines: what `cat` of a real zone would show."""
        return "".join(r.text(self.ttl) + "\n" for r in self.records)


def _absolute(name: object) -> bool:
    return isinstance(name, str) and name.endswith(".")


def _record(index: int, row: object) -> Record:
    if not (
        isinstance(row, list) and len(row) == 3 and all(isinstance(x, str) for x in row)
    ):
        raise RecordsFileError(f"record {index}: must be [name, type, data], three strings")
    name, rtype, data = row
    if not _absolute(name):
        raise RecordsFileError(f"record {index}: {name!r} is not absolute (no final '.')")
    if rtype not in _TYPES:
        raise RecordsFileError(f"record {index}: type {rtype!r} is not one of {_TYPES}")
    return Record(name.lower(), rtype, data)


# Names --------------------------------------------------------------------------------------


def normalize_domain(domain: str) -> str:
    """`Cluster.Local.` -> `cluster.local`; ValueError for a name DNS cannot carry."""
    text = domain.strip().rstrip(".").lower()
    labels = text.split(".")
    if not text or any(not 0 < len(label) <= 63 for label in labels) or len(text) > 253:
        raise ValueError(f"{domain!r} is not a domain name")
    return text


def dashed(ip: str) -> str:
    """The label naming an address: 10.244.1.5 -> 10-244-1-5, fd00::5 -> fd00--5 (coredns)."""
    addr = ipaddress.ip_address(ip)
    sep = "." if addr.version == 4 else ":"
    return str(addr).replace(sep, "-")


def undashed(label: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a pod-record label names, or None: the inverse of `dashed`."""
    text = label.replace("-", ":")
    if text.count(":") == 3 and "::" not in text:
        text = text.replace(":", ".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def reverse_name(ip: str) -> str:
    """5.1.244.10.in-addr.arpa. (or the nibbles under ip6.arpa.)"""
    return ipaddress.ip_address(ip).reverse_pointer + "."


def reverse_zone(network: str) -> str:
    """The reverse zone covering `network`, cut at an octet (nibble) boundary: 10.96.0.0/12 ->
    10.in-addr.arpa., as a delegation can only cut there."""
    net = ipaddress.ip_network(network, strict=False)
    width = 8 if net.version == 4 else 4
    keep = net.prefixlen // width
    labels = net.network_address.reverse_pointer.split(".")
    head = labels[: len(labels) - 2]  # the address part, least significant first
    kept = head[len(head) - keep :] if keep else []
    return ".".join([*kept, *labels[len(labels) - 2 :]]) + "."


# The record set -----------------------------------------------------------------------------


@dataclass
class _Builder:
    domain: str
    out: set[Record] = field(default_factory=set)

    def add(self, name: str, rtype: str, data: str) -> None:
        self.out.add(Record(name.lower(), rtype, data))

    def address(self, name: str, ip: str) -> None:
        rtype = "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"
        self.add(name, rtype, str(ipaddress.ip_address(ip)))

    def svc(self, svc: DnsService) -> str:
        return f"{svc.name}.{svc.namespace}.svc.{self.domain}."


def cluster_records(
    services: Iterable[DnsService],
    pods: Iterable[DnsPod],
    *,
    domain: str = DEFAULT_DOMAIN,
    networks: Sequence[str] = (),
    nameservers: Sequence[str] = (),
    ttl: int = DEFAULT_TTL,
    pod_mode: PodMode = "insecure",
) -> RecordSet:
    """The record set of a cluster.

    `networks`: the service and pod subnets of every family: their reverse zones are the
    server's, and only addresses inside them get PTR records; `nameservers`: the DNS Service's
    ClusterIPs, for the NS records (ns.dns.<zone>, as coredns names itself). Sorted, so the same
    cluster always gives the same file.
    """
    domain = normalize_domain(domain)
    b = _Builder(domain)
    pods_by_key = {p.key: p for p in pods}
    b.add(f"dns-version.{domain}.", "TXT", f'"{SCHEMA_VERSION}"')
    ptr_done: set[str] = set()
    for svc in services:
        _service(b, svc, pods_by_key, ptr_done)
    for pod in pods_by_key.values():
        for ip in pod.ips:
            name = f"{dashed(ip)}.{pod.namespace}.pod.{domain}."
            b.address(name, ip)
            if ip not in ptr_done:  # endpoints are named by their Services already
                b.add(reverse_name(ip), "PTR", name)
    zones = _zones(domain, networks)
    b.out = {r for r in b.out if r.type != "PTR" or _inside(r.name, zones)}
    ns_name = f"ns.dns.{domain}."
    for ip in nameservers:
        b.address(ns_name, ip)
    serial = zlib.crc32("\n".join(r.text(ttl) for r in sorted(b.out, key=Record.sort_key)).encode())
    for zone in zones:
        b.add(zone, "SOA", f"{ns_name} hostmaster.{domain}. {serial} 7200 1800 86400 {ttl}")
        if nameservers:
            b.add(zone, "NS", ns_name)
    return RecordSet(domain, zones, tuple(sorted(b.out, key=Record.sort_key)), ttl, pod_mode)


def _service(
    b: _Builder, svc: DnsService, pods: dict[str, DnsPod], ptr_done: set[str]
) -> None:
    fqdn = b.svc(svc)
    ready = [p for p in (pods.get(k) for k in svc.endpoints) if p is not None and p.ready]
    # Endpoint names: the pod's hostname when its subdomain names this Service, else one name
    # per address (coredns's `endpointHostname`), so each endpoint is reachable on its own.
    hosts: list[tuple[str, str]] = []  # (host label, ip)
    for pod in ready:
        own = pod.hostname if pod.hostname and pod.subdomain == svc.name else None
        hosts.extend((own or dashed(ip), ip) for ip in pod.ips)
    for host, ip in hosts:
        b.address(f"{host}.{fqdn}", ip)
        b.add(reverse_name(ip), "PTR", f"{host}.{fqdn}")
        ptr_done.add(ip)
    headless = not svc.cluster_ips
    for ip in svc.cluster_ips:
        b.address(fqdn, ip)
        b.add(reverse_name(ip), "PTR", fqdn)
    if headless:
        for _, ip in hosts:
            b.address(fqdn, ip)
    targets = sorted({f"{host}.{fqdn}" for host, _ in hosts}) if headless else [fqdn]
    if not targets:
        return
    weight = max(1, 100 // len(targets))
    for port in svc.ports:
        if not port.name:
            continue  # the specification: unnamed ports have no SRV record
        name = f"_{port.name}._{port.protocol.lower()}.{fqdn}"
        for target in targets:
            b.add(name, "SRV", f"0 {weight} {port.port} {target}")


def _inside(name: str, zones: Sequence[str]) -> bool:
    return any(name == zone or name.endswith("." + zone) for zone in zones)


def _zones(domain: str, networks: Sequence[str]) -> tuple[str, ...]:
    reverse = {reverse_zone(n) for n in networks}
    return (f"{domain}.", *sorted(reverse))
