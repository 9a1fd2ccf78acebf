"""The topology loader: multi-document YAML in shapes people know -> `ClusterSpec`.

A file holds a kind cluster config (`kind: Cluster`, with podnet's own keys under `networking`
for what kind lacks), then Kubernetes `Namespace`, `Pod`, `Deployment`, `Service` and
`NetworkPolicy` manifests (the last two families in `policy_docs`).
Deployments become their replicas, named as Kubernetes names them (see `workloads`). Every problem
in the file is collected, then raised together as one `TopologyError`, each with a hint.

PyYAML is imported on first use, not with this module: it costs 11-15 ms.
"""

from __future__ import annotations

import errno
import functools
import pkgutil
from collections.abc import Callable
from typing import Any, cast

from podnet.errors import Problem, TopologyError
from podnet.inputs import MAX_TOPOLOGY, read_bounded
from podnet.model import naming, unmodelled
from podnet.model.addresses import FAMILIES, Family, IPFamily, IPNetwork
from podnet.model.drafts import SUBNET_KEYS, ClusterDraft, NodeDraft, Origin, did_you_mean, nearest
from podnet.model.fields import Reader, describe, read_cidrs
from podnet.model.impairment import read_node_netem
from podnet.model.policy_docs import PolicyBook
from podnet.model.types import (
    DEFAULT_NODE_SUBNETS,
    DEFAULT_POD_SUBNETS,
    DEFAULT_SERVICE_SUBNETS,
    Attachment,
    ClusterSpec,
    Impairment,
    NodeSpec,
    Routing,
)
from podnet.model.validate import check, service_specs
from podnet.model.workloads import (
    DOCUMENT_KEYS,
    NAMESPACED,
    Deployment,
    add_replicas,
    read_deployment,
    read_pod,
    read_service,
)
from podnet.model.yaml_docs import Document, parse_documents

__all__ = ["DEFAULT_TOPOLOGY_TEXT", "default_topology", "load_file", "load_topology"]

# pkgutil reads package data from a directory or a zip alike, as importlib.resources does,
# but without the 8 ms that importing importlib.resources (pathlib, tempfile, ...) costs.
DEFAULT_TOPOLOGY_TEXT: str = (pkgutil.get_data(__name__, "default.yaml") or b"").decode()

API_VERSIONS = {
    "Cluster": "kind.x-k8s.io/v1alpha4",
    "Namespace": "v1",
    "Pod": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "NetworkPolicy": "networking.k8s.io/v1",
}
KINDS_HINT = (
    "podnet reads kind's Cluster (kind.x-k8s.io/v1alpha4), Namespace, Pod and Service (v1), "
    "Deployment (apps/v1), NetworkPolicy (networking.k8s.io/v1)"
)

# Keys podnet uses, then keys kind knows that podnet accepts and ignores (they configure
# kubeadm, images, the API server: things a lab without Kubernetes does not run).
CLUSTER_KEYS = ("kind", "apiVersion", "name", "nodes", "networking")
CLUSTER_KIND_KEYS = (
    "featureGates",
    "runtimeConfig",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
    "containerdConfigPatches",
    "containerdConfigPatchesJSON6902",
)
NETWORKING_KEYS = (
    *SUBNET_KEYS, "ipFamily", "attachment", "routing", "mtu", "vxlan", "nodeCIDRPrefix",
    "dnsDomain",
)
NETWORKING_KIND_KEYS = (
    "apiServerAddress",
    "apiServerPort",
    "disableDefaultCNI",
    "kubeProxyMode",
    "dnsSearch",
)
NODE_KEYS = ("role", "name", "netem")  # netem: podnet's, shapes the node's uplink
NODE_KIND_KEYS = (
    "image",
    "labels",
    "extraMounts",
    "extraPortMappings",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
)
VXLAN_KEYS = ("vni", "port")
ROLES = ("control-plane", "worker")
ATTACHMENTS: tuple[Attachment, ...] = ("ptp", "bridge", "vpc")
IP_FAMILIES: tuple[IPFamily, ...] = ("ipv4", "ipv6", "dual")
_DEFAULTS: dict[str, dict[Family, IPNetwork]] = {
    "podSubnet": DEFAULT_POD_SUBNETS,
    "serviceSubnet": DEFAULT_SERVICE_SUBNETS,
    "nodeSubnet": DEFAULT_NODE_SUBNETS,
}
ROUTINGS: tuple[Routing, ...] = ("static", "host-gw", "vxlan")

WHY_NODE_NAME = "a node's name is its hostname: lowercase letters, digits and '-', at most 63"


def load_topology(text: str, source: str = "topology") -> ClusterSpec:
    """Parse and validate a topology; raise `TopologyError` listing every problem found."""
    problems: list[Problem] = []
    documents = parse_documents(text, problems)
    if problems:  # a syntax error: what follows it cannot be read
        raise TopologyError(problems, source=source)
    if all(doc.data is None for doc in documents):
        raise TopologyError([Problem(
            "file", source, "is empty: it holds no document, only blank lines or comments",
            "`up` converges the lab on the file, so an empty one would remove every pod and "
            "node: give a kind Cluster document and manifests (see `podnet explain`), or take "
            "the lab down with `podnet down`",
        )], source=source)
    loader = _Loader(problems)
    for doc in documents:
        loader.read(doc)
    spec = loader.finish()
    if spec is None:
        # Checks across documents ran last: put their problems with their documents.
        problems.sort(key=_document_number)
        raise TopologyError(problems, source=source)
    return spec


def _document_number(problem: Problem) -> int:
    head, _, rest = problem.where.partition(" ")
    number = rest.split(" ", 1)[0]
    return int(number) if head == "document" and number.isdigit() else 0


def load_file(path: str) -> ClusterSpec:
    """Load the topology in `path` ("-": standard input, as kubectl's `-f -`); an unreadable,
    oversized or binary file is a `TopologyError` too, found before any parser runs."""
    source = "standard input" if path == "-" else path
    try:
        text = read_bounded(path, MAX_TOPOLOGY).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        hint = "check the path"
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            hint = "a topology of 5,000 pods is about 1.3 MB: is this the file you meant?"
        problem = Problem("file", source, f"cannot be read: {reason}", hint)
        raise TopologyError([problem], source=source) from None
    return load_topology(text, source=source)


@functools.cache
def default_topology() -> ClusterSpec:
    """The lesson's cluster (kind, two workers, a jumpbox Pod, the demo Deployment and
    Service). Cached: a ClusterSpec is immutable."""
    return load_topology(DEFAULT_TOPOLOGY_TEXT, source="default topology")


# --- documents --------------------------------------------------------------------------------


def _where(number: int, data: dict[Any, Any]) -> str:
    kind = data.get("kind")
    if not isinstance(kind, str):
        return f"document {number}"
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else data.get("name")
    if kind == "Cluster" and not isinstance(name, str):
        name = "kind"
    if not isinstance(name, str):
        return f"document {number} ({kind})"
    if kind in NAMESPACED:
        ns = meta.get("namespace") if isinstance(meta, dict) else None
        name = f"{ns if isinstance(ns, str) else 'default'}/{name}"
    return f"document {number} ({kind} {name})"


class _Loader:
    """Reads documents in order into a `ClusterDraft`, then checks and builds the spec.

    The Cluster document is read here; Pod, Deployment and Service ones in `workloads`."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        # Without a Cluster document, kind's defaults: one control-plane node named "kind".
        self.draft = ClusterDraft(Origin("cluster", "cluster kind (no Cluster document)"))
        self.draft.nodes = [
            NodeDraft(NodeSpec("kind-control-plane", "control-plane"), self.draft.origin, False)
        ]
        self.cluster_doc: str | None = None
        self.deployments: list[Deployment] = []
        self.policies = PolicyBook()
        # One reader per kind of API_VERSIONS.
        self.readers: dict[str, Callable[[Reader, dict[Any, Any]], None]] = {
            "Cluster": self.cluster,
            "Namespace": self.policies.read_namespace,
            "NetworkPolicy": self.policies.read_policy,
            "Pod": lambda r, m: read_pod(r, m, self.draft),
            "Deployment": lambda r, m: read_deployment(r, m, self.draft, self.deployments),
            "Service": lambda r, m: read_service(r, m, self.draft),
        }

    def read(self, doc: Document) -> None:
        if doc.data is None:  # an empty document, as between two '---' lines
            return
        data = doc.data
        if not isinstance(data, dict):
            where = f"document {doc.number}"
            self.problems.append(
                Problem(
                    where,
                    "(document)",
                    f"must be a mapping, not {describe(data)}",
                    "a document (between '---' lines) is a mapping with apiVersion and kind",
                )
            )
            return
        origin = Origin(f"document {doc.number}", _where(doc.number, data))
        r = Reader(origin, self.problems)
        for key, first, line in doc.duplicates:
            r.add(
                f"line {line}",
                f"key '{key}' repeats the one on line {first}",
                "YAML keeps only the last: merge the two",
            )
        kind = r.text(data.get("kind"), "kind")
        if kind is None:
            if data.get("kind") is None:
                r.add("kind", "is missing", KINDS_HINT)
            return
        if kind not in API_VERSIONS:
            r.add("kind", f"unknown kind '{kind}'", did_you_mean(kind, API_VERSIONS, KINDS_HINT))
            return
        expected = API_VERSIONS[kind]
        version = r.text(
            data.get("apiVersion"), "apiVersion", required=f"add apiVersion: {expected}"
        )
        if version is not None and version != expected:
            r.add(
                "apiVersion",
                f"'{version}' is not an apiVersion of {kind}",
                f"use apiVersion: {expected}",
            )
        if kind == "Namespace":  # the other kinds check their own keys (read_metadata)
            r.known(data, "", DOCUMENT_KEYS[:3], refused=unmodelled.DOCUMENT)
        self.readers[kind](r, data)

    # Cluster ------------------------------------------------------------------------------

    def cluster(self, r: Reader, m: dict[Any, Any]) -> None:
        if self.cluster_doc is not None:
            r.add(
                "kind",
                f"a second Cluster: {self.cluster_doc} already describes the cluster",
                "one file describes one cluster: merge the two",
            )
            return
        self.cluster_doc = r.origin.doc
        draft = self.draft
        draft.origin = r.origin
        r.known(m, "", CLUSTER_KEYS, CLUSTER_KIND_KEYS)
        if "name" in m:
            rule = naming.CLUSTER_NAME_RULE
            draft.name = r.name(m["name"], "name", naming.bad_cluster_name, rule) or "kind"
        self.networking(r, r.mapping(m.get("networking"), "networking"))
        self.nodes(r, m)

    def networking(self, r: Reader, net: dict[Any, Any]) -> None:
        draft = self.draft
        r.known(net, "networking", NETWORKING_KEYS, NETWORKING_KIND_KEYS)
        draft.explicit = {k for k in net if isinstance(k, str)}
        family = r.choice(
            net.get("ipFamily"), "networking.ipFamily", IP_FAMILIES,
            "ipv4, ipv6 or dual (both), as kind's networking.ipFamily",
        )
        draft.ip_family = cast(IPFamily, family or draft.ip_family)
        read = {key: read_cidrs(r, net[key], f"networking.{key}") for key in SUBNET_KEYS
                if key in net}
        self.subnets(r, read)
        if net.get("nodeCIDRPrefix") is not None:
            draft.node_cidr_prefix = r.integer(
                net["nodeCIDRPrefix"],
                "networking.nodeCIDRPrefix",
                1,
                30,
                "each node's pod range is podSubnet cut to this prefix length: 24 gives 253 pods",
            )
        attachment = r.choice(
            net.get("attachment"),
            "networking.attachment",
            ATTACHMENTS,
            "ptp: a /32 route per veth, as kindnet; bridge: a cni0 bridge per node",
        )
        routing = r.choice(
            net.get("routing"),
            "networking.routing",
            ROUTINGS,
            "static and host-gw route node to node; vxlan tunnels",
        )
        draft.attachment = cast(Attachment, attachment or draft.attachment)
        draft.routing = cast(Routing, routing or draft.routing)
        draft.mtu = (
            r.integer(
                net.get("mtu"),
                "networking.mtu",
                1280,
                65535,
                "1500 is Ethernet's; below 1280 the kernel turns IPv6 off on a link",
            )
            or draft.mtu
        )
        if net.get("dnsDomain") is not None:
            self.dns_domain(r, net["dnsDomain"])
        vxlan = r.mapping(net.get("vxlan"), "networking.vxlan")
        r.known(vxlan, "networking.vxlan", VXLAN_KEYS)
        draft.vxlan_vni = (
            r.integer(
                vxlan.get("vni"),
                "networking.vxlan.vni",
                1,
                16777215,
                "a VXLAN network identifier has 24 bits: 1..16777215",
            )
            or draft.vxlan_vni
        )
        draft.vxlan_port = (
            r.integer(
                vxlan.get("port"),
                "networking.vxlan.port",
                1,
                65535,
                "8472 is Linux's and flannel's; 4789 is IANA's",
            )
            or draft.vxlan_port
        )

    def dns_domain(self, r: Reader, value: object) -> None:
        """networking.dnsDomain: kubeadm's, the zone the cluster DNS answers (cluster.local)."""
        from podnet.dns.records import normalize_domain

        text = r.text(value, "networking.dnsDomain")
        if text is None:
            return
        try:
            self.draft.dns_domain = normalize_domain(text)
        except ValueError:
            r.add("networking.dnsDomain", f"'{text}' is not a domain name",
                  "labels of 1 to 63 characters joined by dots, such as cluster.local")

    def subnets(self, r: Reader, read: dict[str, tuple[IPNetwork, ...] | None]) -> None:
        """Each range as written, or kind's default for each family of `ipFamily`; a dual-stack
        cluster's first family is podSubnet's first (IPv4 unless it says otherwise)."""
        draft = self.draft
        wanted = FAMILIES[draft.ip_family]
        pods = read.get("podSubnet")
        if pods and len(pods) == len(wanted):
            wanted = tuple(4 if n.version == 4 else 6 for n in pods)
        for key in SUBNET_KEYS:
            if key not in read:
                draft.subnets[key] = tuple(_DEFAULTS[key][f] for f in wanted)
                continue
            nets = read[key]
            if nets is None:
                draft.subnets[key] = None
            elif sorted(n.version for n in nets) != sorted(wanted):
                have = " and ".join(f"IPv{n.version}" for n in nets)
                need = " and ".join(f"IPv{f}" for f in sorted(wanted))
                example = ",".join(str(_DEFAULTS[key][f]) for f in wanted)
                written = ",".join(map(str, nets))
                r.add(f"networking.{key}",
                      f"{written} is {have}: ipFamily {draft.ip_family} needs {need}",
                      f"such as {example}, or set ipFamily to match")
                draft.subnets[key] = None
            else:
                draft.subnets[key] = tuple(sorted(nets, key=lambda n: wanted.index(n.version)))

    def nodes(self, r: Reader, m: dict[Any, Any]) -> None:
        draft = self.draft
        if m.get("nodes") is None:  # kind's default: one control-plane node
            only = NodeSpec(f"{draft.name}-control-plane", "control-plane")
            draft.nodes = [NodeDraft(only, Origin(r.origin.doc, r.origin.where, "nodes"), False)]
            return
        items = r.items(m["nodes"], "nodes")
        if isinstance(m["nodes"], list) and not items:
            r.add(
                "nodes", "is empty: a cluster needs at least one node", "add - role: control-plane"
            )
        roles: list[tuple[str, str | None]] = []
        shaping: list[Impairment] = []
        for i, item in enumerate(items):
            path = f"nodes[{i}]"
            fields = r.mapping(item, path)
            r.known(fields, path, NODE_KEYS, NODE_KIND_KEYS)
            raw_role = fields.get("role", "control-plane")  # kind's default role
            role = r.choice(raw_role, f"{path}.role", ROLES, "kubeadm's master is control-plane")
            if role is None:  # reported; name the node as the likely intent, so names stay put
                role = nearest(str(raw_role), ROLES) or "worker"
            explicit = None
            if "name" in fields:
                raw = fields["name"]
                explicit = r.name(raw, f"{path}.name", naming.bad_dns1123_label, WHY_NODE_NAME)
                if explicit is None:  # reported: not a string
                    explicit = f"{path}.name"
            roles.append((role, explicit))
            shaping.append(read_node_netem(r, fields["netem"], f"{path}.netem")
                           if "netem" in fields else Impairment())
        names = naming.kind_node_names(draft.name, roles)
        draft.nodes = [
            NodeDraft(
                NodeSpec(name, "worker" if role == "worker" else "control-plane", netem),
                Origin(r.origin.doc, r.origin.where, f"nodes[{i}]"),
                explicit is not None,
            )
            for i, (name, (role, explicit), netem) in enumerate(
                zip(names, roles, shaping, strict=True))
        ]

    # Finish -------------------------------------------------------------------------------

    def finish(self) -> ClusterSpec | None:
        """The spec, or None when a problem was found (they are all in `self.problems`)."""
        draft = self.draft
        add_replicas(draft, self.deployments)
        self.problems.extend(check(draft))
        services, problems = service_specs(draft)
        self.problems.extend(problems)
        used = [p.spec.namespace for p in draft.pods] + [s.namespace for s in draft.services]
        namespaces, policies, problems = self.policies.finish(draft.pods, used)
        self.problems.extend(problems)
        nets = draft.subnets
        pod_nets, svc_nets, node_nets = (nets["podSubnet"], nets["serviceSubnet"],
                                         nets["nodeSubnet"])
        prefix = draft.node_cidr_prefix
        if self.problems or not pod_nets or not svc_nets or not node_nets or not prefix:
            return None
        return ClusterSpec(
            name=draft.name,
            nodes=tuple(n.spec for n in draft.nodes),
            ip_family=draft.ip_family,
            pod_subnets=pod_nets,
            service_subnets=svc_nets,
            node_subnets=node_nets,
            node_cidr_prefix=prefix,
            attachment=draft.attachment,
            routing=draft.routing,
            mtu=draft.mtu,
            vxlan_vni=draft.vxlan_vni,
            vxlan_port=draft.vxlan_port,
            pods=tuple(p.spec for p in draft.pods),
            services=services,
            namespaces=namespaces,
            policies=policies,
            warnings=tuple(sorted(self.policies.warnings, key=_document_number)),
            cluster_given=self.cluster_doc is not None,
            dns_domain=draft.dns_domain,
        )
