"""What the loader read, before the checks across documents: each object as a draft of the
model's object plus where it was written (`Origin`), so a problem names its document and field;
and the words that suggest what was meant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from podnet.errors import Problem
from podnet.model.addresses import FAMILIES, Family, IPAddress, IPFamily, IPNetwork
from podnet.model.types import (
    DEFAULT_NODE_SUBNETS,
    DEFAULT_POD_SUBNETS,
    DEFAULT_SERVICE_SUBNETS,
    Attachment,
    NodeSpec,
    PodSpec,
    Routing,
)

__all__ = [
    "KIND_SUBNETS",
    "SUBNET_KEYS",
    "ClusterDraft",
    "NodeDraft",
    "Origin",
    "PodDraft",
    "PortDraft",
    "ServiceDraft",
    "did_you_mean",
    "nearest",
]

SUBNET_KEYS = ("podSubnet", "serviceSubnet", "nodeSubnet")
KIND_SUBNETS = (
    "kind uses podSubnet 10.244.0.0/16, serviceSubnet 10.96.0.0/16, nodeSubnet 172.18.0.0/16"
)


@dataclass(frozen=True)
class Origin:
    """Where an object was written: `doc` is "document 2", `where` adds what it is, and `path`
    is the object's own field path inside the document ("" for a whole document)."""

    doc: str
    where: str
    path: str = ""

    def at(self, rel: str) -> str:
        if not self.path:
            return rel
        return f"{self.path}{rel}" if rel.startswith("[") else f"{self.path}.{rel}"

    def problem(self, rel: str, message: str, hint: str = "") -> Problem:
        return Problem(self.where, self.at(rel), message, hint)


@dataclass
class NodeDraft:
    spec: NodeSpec
    origin: Origin  # path "nodes[i]"
    named: bool  # the file set `name:`; otherwise kind's numbering chose it


@dataclass
class PodDraft:
    spec: PodSpec
    origin: Origin  # path "" for a Pod, "spec.template" for a Deployment's replicas
    port_names: dict[str, int] = field(default_factory=dict)  # ports[].name -> containerPort
    # (port, protocol) it takes on its node (hostPort, hostNetwork) -> the field asking for it,
    # from the document's top (spec.template.spec... for a Deployment's replicas)
    host_port_fields: dict[tuple[int, str], str] = field(default_factory=dict)


@dataclass
class PortDraft:
    port: int
    target: int | str  # a number, or the name of a container port
    field: str  # "spec.ports[0]"
    protocol: str = "TCP"
    node_port: int | None = None
    name: str = ""


@dataclass
class ServiceDraft:
    name: str
    namespace: str
    origin: Origin
    type: str = "ClusterIP"
    selector: tuple[tuple[str, str], ...] = ()
    ports: list[PortDraft] = field(default_factory=list)
    cluster_ips: tuple[IPAddress, ...] = ()  # spec.clusterIPs (or clusterIP) as written
    ip_families: tuple[Family, ...] = ()  # spec.ipFamilies as written
    ip_family_policy: str = ""  # spec.ipFamilyPolicy as written ("": SingleStack)
    headless: bool = False  # clusterIP: None


@dataclass
class ClusterDraft:
    """The Cluster document as read; a setting that was invalid is None here (and reported), so
    that checks built on it are skipped instead of piling up consequences of one mistake."""

    origin: Origin
    name: str = "kind"
    nodes: list[NodeDraft] = field(default_factory=list)
    ip_family: IPFamily = "ipv4"
    # One network per family, first family first; None: invalid (and reported).
    subnets: dict[str, tuple[IPNetwork, ...] | None] = field(
        default_factory=lambda: {
            "podSubnet": (DEFAULT_POD_SUBNETS[4],),
            "serviceSubnet": (DEFAULT_SERVICE_SUBNETS[4],),
            "nodeSubnet": (DEFAULT_NODE_SUBNETS[4],),
        }
    )
    explicit: set[str] = field(default_factory=set)  # networking keys the file set
    node_cidr_prefix: int | None = 24
    attachment: Attachment = "ptp"
    routing: Routing = "static"
    mtu: int = 1500
    vxlan_vni: int = 1
    vxlan_port: int = 8472
    dns_domain: str = "cluster.local"
    pods: list[PodDraft] = field(default_factory=list)
    services: list[ServiceDraft] = field(default_factory=list)
    deployments: list[tuple[str, Origin]] = field(default_factory=list)  # (ns/name, origin)

    def net_field(self, key: str) -> str:
        return f"networking.{key}"

    @property
    def families(self) -> tuple[Family, ...]:
        pods = self.subnets["podSubnet"]
        return tuple(4 if n.version == 4 else 6 for n in pods) if pods else FAMILIES[self.ip_family]


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `word` (case aside), or None when nothing is close."""
    import difflib  # only on the error path

    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def did_you_mean(word: str, choices: Iterable[str], otherwise: str) -> str:
    guess = nearest(word, choices)
    return f"did you mean '{guess}'?" if guess else otherwise
