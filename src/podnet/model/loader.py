"""The topology loader: multi-document YAML in shapes people know -> `ClusterSpec`.

A file holds a kind cluster config (`kind: Cluster`, with podnet's own keys under `networking`
for what kind lacks), then Kubernetes `Namespace`, `Pod`, `Deployment` and `Service` manifests.
Deployments become their replicas, named as Kubernetes names them (see `naming`). Every problem in
the file is collected, then raised together as one `TopologyError`, each with a hint.

PyYAML is imported on first use, not with this module: it costs 11-15 ms.
"""

from __future__ import annotations

import functools
import ipaddress
import pkgutil
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from podnet.errors import Problem, TopologyError
from podnet.model import naming
from podnet.model.types import (
    Attachment,
    ClusterSpec,
    ContainerSpec,
    NodeSpec,
    PodSpec,
    Routing,
)
from podnet.model.validate import (
    SUBNET_KEYS,
    ClusterDraft,
    NodeDraft,
    Origin,
    PodDraft,
    PortDraft,
    ServiceDraft,
    check,
    did_you_mean,
    nearest,
    service_specs,
)

if TYPE_CHECKING:
    from yaml.nodes import Node

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
}
KINDS_HINT = (
    "podnet reads kind's Cluster (kind.x-k8s.io/v1alpha4), Namespace, Pod and Service (v1), "
    "Deployment (apps/v1)"
)
NAMESPACED = ("Pod", "Deployment", "Service")

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
NETWORKING_KEYS = (*SUBNET_KEYS, "attachment", "routing", "mtu", "vxlan", "nodeCIDRPrefix")
NETWORKING_KIND_KEYS = (
    "ipFamily",
    "apiServerAddress",
    "apiServerPort",
    "disableDefaultCNI",
    "kubeProxyMode",
    "dnsSearch",
)
NODE_KEYS = ("role", "name")
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
ATTACHMENTS: tuple[Attachment, ...] = ("ptp", "bridge")
ROUTINGS: tuple[Routing, ...] = ("static", "host-gw", "vxlan")
PROTOCOLS = ("TCP", "UDP")
SERVICE_TYPES = ("ClusterIP", "NodePort")

NEED_SELECTOR = "apps/v1 needs selector.matchLabels: the labels of spec.template.metadata.labels"
ONLY_TCP_UDP = "podnet carries TCP and UDP"
WHY_POD_NAME = "a pod's name is its hostname: lowercase letters, digits and '-', at most 63"
WHY_NODE_NAME = "a node's name is its hostname: lowercase letters, digits and '-', at most 63"
WHY_CLUSTER_NAME = (
    "at most 12 lowercase letters, digits and '-', so that the bridge br-<name> fits the "
    "kernel's 15-byte interface names"
)


def load_topology(text: str, source: str = "topology") -> ClusterSpec:
    """Parse and validate a topology; raise `TopologyError` listing every problem found."""
    problems: list[Problem] = []
    documents = _parse(text, problems)
    if problems:  # a syntax error: what follows it cannot be read
        raise TopologyError(problems, source=source)
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
    """Load the topology in `path`; an unreadable file is a `TopologyError` too."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        problem = Problem("file", path, f"cannot be read: {reason}", "check the path")
        raise TopologyError([problem], source=path) from None
    return load_topology(text, source=path)


@functools.cache
def default_topology() -> ClusterSpec:
    """The lesson's cluster (kind, two workers, a jumpbox Pod, the demo Deployment and
    Service). Cached: a ClusterSpec is immutable."""
    return load_topology(DEFAULT_TOPOLOGY_TEXT, source="default topology")


# --- YAML -------------------------------------------------------------------------------------


@dataclass
class _Document:
    number: int
    data: object
    duplicates: list[tuple[str, int, int]]  # (key, first line, repeated line)


class _Parser(Protocol):
    duplicates: list[tuple[str, int, int]]

    def check_node(self) -> bool: ...
    def get_node(self) -> Node | None: ...
    def construct_document(self, node: Node) -> Any: ...
    def dispose(self) -> None: ...


@functools.cache
def _parser_class() -> Callable[[str], _Parser]:
    """PyYAML's safe loader (libyaml's C parser when built with it) that also notes keys
    written twice in one mapping, which YAML would silently collapse to the last."""
    import yaml  # noqa: PLC0415  # 11-15 ms: paid by callers that load a topology, only

    class NoDuplicateKeys(yaml.constructor.SafeConstructor):
        duplicates: list[tuple[str, int, int]]

        def construct_mapping(
            self, node: yaml.MappingNode, deep: bool = False
        ) -> dict[Hashable, Any]:
            seen: dict[tuple[str, str], int] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if (key.tag, key.value) in seen:
                        self.duplicates.append((key.value, seen[key.tag, key.value], line))
                    else:
                        seen[key.tag, key.value] = line
            return super().construct_mapping(node, deep)

    if getattr(yaml, "__with_libyaml__", False):

        class Fast(NoDuplicateKeys, yaml.CSafeLoader):
            pass

        return Fast

    class Plain(NoDuplicateKeys, yaml.SafeLoader):
        pass

    return Plain


def _parse(text: str, problems: list[Problem]) -> list[_Document]:
    import yaml  # noqa: PLC0415  # see _parser_class

    parser = _parser_class()(text)
    parser.duplicates = []
    documents: list[_Document] = []
    try:
        while parser.check_node():
            node = parser.get_node()
            if node is None:
                break
            data = parser.construct_document(node)
            documents.append(_Document(len(documents) + 1, data, parser.duplicates))
            parser.duplicates = []
    except yaml.MarkedYAMLError as exc:
        problems.append(_syntax_problem(text, len(documents) + 1, exc))
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        position = int(getattr(exc, "position", 0))
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        problems.append(
            Problem(
                f"document {len(documents) + 1}",
                f"line {line}, column {column}",
                f"character {text[position : position + 1]!r} is not allowed in YAML",
                "remove it, or write it as an escape inside double quotes",
            )
        )
    finally:
        parser.dispose()
    return documents


def _syntax_problem(text: str, number: int, exc: Any) -> Problem:
    mark, context, context_mark = exc.problem_mark, exc.context, exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    message = str(exc.problem or "not valid YAML")
    # "while parsing a flow sequence" says where the unfinished thing began; "while scanning
    # for the next token" says nothing.
    what = str(context or "").removeprefix("while ").partition(" ")[2]
    if what.startswith(("a ", "an ")) and context_mark is not None:
        message += f" (in {what} that starts on line {context_mark.line + 1})"
    lines = text.splitlines()
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in here[: max(column, 1)]:
        hint = "YAML indents with spaces only: replace the tab"
    elif "mapping values are not allowed" in message:
        hint = "a value that contains ': ' needs quotes, or the indentation is off"
    elif "flow" in message and context_mark is not None:
        hint = f"close the bracket opened on line {context_mark.line + 1}; separate items with ','"
    elif "undefined alias" in message:
        hint = "define the &anchor before its *alias, in the same document"
    elif "constructor for the tag" in message:
        hint = "remove the '!' tag: podnet reads plain YAML"
    else:
        hint = "check the indentation (spaces only) and the quotes on or just before this line"
    return Problem(f"document {number}", f"line {line}, column {column}", message, hint)


# --- reading fields ---------------------------------------------------------------------------


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


class _Reader:
    """Reads the fields of one document; each wrong field adds a problem and reads as absent."""

    def __init__(self, origin: Origin, problems: list[Problem]) -> None:
        self.origin = origin
        self.problems = problems

    def add(self, path: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.origin.where, path, message, hint))

    def mapping(self, value: object, path: str, *, required: str = "") -> dict[Any, Any]:
        """The mapping at `path`; `required` is the hint for when it is missing."""
        if value is None:
            if required:
                self.add(path, "is missing", required)
            return {}
        if isinstance(value, dict):
            return value
        self.add(path, f"must be a mapping, not {_describe(value)}", "write key: value lines")
        return {}

    def items(self, value: object, path: str) -> list[Any]:
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.add(path, f"must be a list, not {_describe(value)}", "start each item with '- '")
        return []

    def text(self, value: object, path: str, *, required: str = "") -> str | None:
        if value is None:
            if required:
                self.add(path, "is missing", required)
            return None
        if isinstance(value, str):
            return value
        self.add(path, f"must be a string, not {_describe(value)}", "put the value in quotes")
        return None

    def integer(self, value: object, path: str, low: int, high: int, hint: str) -> int | None:
        """An integer in low..high, or None (absent, or wrong and reported)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            quoted = isinstance(value, str) and value.strip().isdigit()
            self.add(
                path,
                f"must be an integer, not {_describe(value)}",
                "write the number without quotes" if quoted else hint,
            )
            return None
        if not low <= value <= high:
            self.add(path, f"{value} is outside {low}..{high}", hint)
            return None
        return value

    def choice(
        self, value: object, path: str, choices: Collection[str], hint: str = ""
    ) -> str | None:
        text = self.text(value, path)
        if text is None or text in choices:
            return text
        listed = ", ".join(choices)
        self.add(path, f"'{text}' is not one of {listed}", did_you_mean(text, choices, hint))
        return None

    def known(
        self, m: dict[Any, Any], path: str, keys: Collection[str], ignored: Collection[str] = ()
    ) -> None:
        for key in m:
            if key in keys or key in ignored:
                continue
            where = f"{path}.{key}" if path else str(key)
            self.add(
                where,
                "unknown field",
                did_you_mean(str(key), keys, f"known fields: {', '.join(keys)}"),
            )

    def name(
        self,
        value: object,
        path: str,
        bad: Callable[[str], str | None],
        why: str,
        *,
        required: str = "",
        letter_first: bool = False,
    ) -> str | None:
        """The name at `path`, checked by `bad`. A bad name is reported and still returned,
        so that checks across objects (pinned pods, duplicates) see the name as written."""
        text = self.text(value, path, required=required)
        if text is None:
            return None
        problem = bad(text)
        if problem is not None:
            fixed = naming.suggest_label(text, letter_first=letter_first)
            self.add(path, problem, f"{why}: try '{fixed}'" if fixed and fixed != text else why)
        return text

    def labels(self, value: object, path: str) -> tuple[tuple[str, str], ...]:
        out = []
        for key, val in self.mapping(value, path).items():
            if not isinstance(key, str):
                self.add(path, f"label key {_describe(key)} is not a string", "quote the key")
                continue
            if not isinstance(val, str):
                self.add(
                    f"{path}.{key}",
                    f"must be a string, not {_describe(val)}",
                    f'label values are strings: write {key}: "{val}"',
                )
                continue
            bad = naming.bad_label_key(key) or naming.bad_label_value(val)
            if bad:
                self.add(
                    f"{path}.{key}",
                    bad,
                    "labels: at most 63 letters, digits, '-', '_' and '.', "
                    "starting and ending with a letter or digit",
                )
                continue
            out.append((key, val))
        return tuple(out)


# --- documents --------------------------------------------------------------------------------


@dataclass
class _Deployment:
    name: str
    namespace: str
    replicas: int
    template_hash: str
    template: PodSpec
    origin: Origin
    port_names: dict[str, int] = field(default_factory=dict)


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
    """Reads documents in order into a `ClusterDraft`, then checks and builds the spec."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        # Without a Cluster document, kind's defaults: one control-plane node named "kind".
        self.draft = ClusterDraft(Origin("cluster", "cluster kind (no Cluster document)"))
        self.draft.nodes = [
            NodeDraft(NodeSpec("kind-control-plane", "control-plane"), self.draft.origin, False)
        ]
        self.cluster_doc: str | None = None
        self.deployments: list[_Deployment] = []

    def read(self, doc: _Document) -> None:
        if doc.data is None:  # an empty document, as between two '---' lines
            return
        data = doc.data
        if not isinstance(data, dict):
            where = f"document {doc.number}"
            self.problems.append(
                Problem(
                    where,
                    "(document)",
                    f"must be a mapping, not {_describe(data)}",
                    "a document (between '---' lines) is a mapping with apiVersion and kind",
                )
            )
            return
        origin = Origin(f"document {doc.number}", _where(doc.number, data))
        r = _Reader(origin, self.problems)
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
        if kind == "Cluster":
            self.cluster(r, data)
        elif kind == "Namespace":
            self.metadata(r, data, kind)
        elif kind == "Pod":
            self.pod(r, data)
        elif kind == "Deployment":
            self.deployment(r, data)
        else:
            self.service(r, data)

    # Cluster ------------------------------------------------------------------------------

    def cluster(self, r: _Reader, m: dict[Any, Any]) -> None:
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
            draft.name = (
                r.name(m["name"], "name", naming.bad_cluster_name, WHY_CLUSTER_NAME) or "kind"
            )
        self.networking(r, r.mapping(m.get("networking"), "networking"))
        self.nodes(r, m)

    def networking(self, r: _Reader, net: dict[Any, Any]) -> None:
        draft = self.draft
        r.known(net, "networking", NETWORKING_KEYS, NETWORKING_KIND_KEYS)
        draft.explicit = {k for k in net if isinstance(k, str)}
        for key in SUBNET_KEYS:
            if key in net:
                draft.subnets[key] = _cidr(r, net[key], f"networking.{key}")
        family = net.get("ipFamily")
        if family is not None and family != "ipv4":
            r.add(
                "networking.ipFamily",
                f"'{family}' is not supported: podnet builds IPv4 networks",
                "remove ipFamily, or set it to ipv4",
            )
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

    def nodes(self, r: _Reader, m: dict[Any, Any]) -> None:
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
        names = naming.kind_node_names(draft.name, roles)
        draft.nodes = [
            NodeDraft(
                NodeSpec(name, "worker" if role == "worker" else "control-plane"),
                Origin(r.origin.doc, r.origin.where, f"nodes[{i}]"),
                explicit is not None,
            )
            for i, (name, (role, explicit)) in enumerate(zip(names, roles, strict=True))
        ]

    # Pods ---------------------------------------------------------------------------------

    def metadata(
        self, r: _Reader, m: dict[Any, Any], kind: str
    ) -> tuple[str | None, str, tuple[tuple[str, str], ...]]:
        """metadata.name (None if missing), .namespace and .labels."""
        meta = r.mapping(m.get("metadata"), "metadata", required="add metadata: {name: ...}")
        need = "add metadata.name" if isinstance(m.get("metadata"), dict) else ""
        if kind == "Service":
            name = r.name(
                meta.get("name"),
                "metadata.name",
                naming.bad_dns1035_label,
                "Service names are DNS-1035 labels: lowercase letters, digits and '-', "
                "starting with a letter",
                required=need,
                letter_first=True,
            )
        else:
            why = (
                WHY_POD_NAME
                if kind == "Pod"
                else f"{kind} names are DNS-1123 labels: lowercase letters, digits and '-'"
            )
            name = r.name(
                meta.get("name"), "metadata.name", naming.bad_dns1123_label, why, required=need
            )
        namespace = "default"
        if "namespace" in meta:
            namespace = (
                r.name(
                    meta["namespace"],
                    "metadata.namespace",
                    naming.bad_dns1123_label,
                    "namespace names are DNS-1123 labels",
                )
                or "default"
            )
        return name, namespace, r.labels(meta.get("labels"), "metadata.labels")

    def pod(self, r: _Reader, m: dict[Any, Any]) -> None:
        name, namespace, labels = self.metadata(r, m, "Pod")
        spec = r.mapping(m.get("spec"), "spec", required="a Pod needs spec.containers")
        given = isinstance(m.get("spec"), dict)  # else only "spec is missing" is reported
        containers, node, port_names = _pod_spec(r, spec, "spec", given)
        if name is None:
            return
        pod = PodSpec(name, namespace, labels, containers, node)
        self.draft.pods.append(PodDraft(pod, r.origin, port_names))

    def deployment(self, r: _Reader, m: dict[Any, Any]) -> None:
        name, namespace, _ = self.metadata(r, m, "Deployment")
        spec = r.mapping(
            m.get("spec"), "spec", required="a Deployment needs spec.selector and spec.template"
        )
        given = isinstance(m.get("spec"), dict)  # else only "spec is missing" is reported
        replicas = 1  # Kubernetes' default
        value = spec.get("replicas")
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            r.add("spec.replicas", f"{value} is negative", "replicas counts pods: 0 or more")
        elif value is not None:
            replicas = (
                r.integer(value, "spec.replicas", 0, 65536, "replicas counts pods: 0 or more") or 0
            )
        selector = r.mapping(
            spec.get("selector"), "spec.selector", required=NEED_SELECTOR if given else ""
        )
        if "matchExpressions" in selector:
            r.add(
                "spec.selector.matchExpressions", "is not supported", "select pods with matchLabels"
            )
        wanted = r.labels(selector.get("matchLabels"), "spec.selector.matchLabels")
        template = r.mapping(
            spec.get("template"),
            "spec.template",
            required="give the pods' metadata.labels and spec" if given else "",
        )
        labels = r.labels(
            r.mapping(template.get("metadata"), "spec.template.metadata").get("labels"),
            "spec.template.metadata.labels",
        )
        if "selector" in spec and not wanted and "matchExpressions" not in selector:
            r.add(
                "spec.selector.matchLabels",
                "is empty: it would select every pod",
                "give the labels of spec.template.metadata.labels",
            )
        missing = [f"{k}={v}" for k, v in wanted if (k, v) not in labels]
        if missing:
            r.add(
                "spec.selector.matchLabels",
                f"{', '.join(missing)} missing from spec.template.metadata.labels",
                "a Deployment's pods must carry every label of its selector",
            )
        pod_spec = r.mapping(
            template.get("spec"),
            "spec.template.spec",
            required="give the pods' containers" if "template" in spec else "",
        )
        containers, node, port_names = _pod_spec(
            r, pod_spec, "spec.template.spec", isinstance(template.get("spec"), dict)
        )
        if name is None:
            return
        self.draft.deployments.append((f"{namespace}/{name}", r.origin))
        self.deployments.append(
            _Deployment(
                name,
                namespace,
                replicas,
                naming.pod_template_hash(template),
                PodSpec("", namespace, labels, containers, node, owner=name),
                Origin(r.origin.doc, r.origin.where, "spec.template"),
                port_names,
            )
        )

    # Services -----------------------------------------------------------------------------

    def service(self, r: _Reader, m: dict[Any, Any]) -> None:
        name, namespace, _ = self.metadata(r, m, "Service")
        spec = r.mapping(
            m.get("spec"), "spec", required="a Service needs spec.selector and spec.ports"
        )
        svc_type = (
            r.choice(
                spec.get("type"),
                "spec.type",
                SERVICE_TYPES,
                "podnet has no cloud load balancer or DNS: use ClusterIP or NodePort",
            )
            or "ClusterIP"
        )
        selector = r.labels(spec.get("selector"), "spec.selector")
        cluster_ip = None
        ip_text = r.text(spec.get("clusterIP"), "spec.clusterIP")
        if ip_text == "None":
            r.add(
                "spec.clusterIP",
                "headless Services are not supported",
                "leave clusterIP out, or give an address in serviceSubnet",
            )
        elif ip_text:
            try:
                cluster_ip = ipaddress.IPv4Address(ip_text)
            except ValueError:
                r.add(
                    "spec.clusterIP",
                    f"'{ip_text}' is not an IPv4 address",
                    "give an address in serviceSubnet, or leave clusterIP out",
                )
        ports = self.service_ports(r, spec, svc_type) if isinstance(m.get("spec"), dict) else []
        if name is not None:
            self.draft.services.append(
                ServiceDraft(name, namespace, r.origin, svc_type, selector, ports, cluster_ip)
            )

    def service_ports(self, r: _Reader, spec: dict[Any, Any], svc_type: str) -> list[PortDraft]:
        raw = spec.get("ports")
        items = r.items(raw, "spec.ports")
        if raw is None or raw == []:
            r.add(
                "spec.ports",
                f"is {'missing' if raw is None else 'empty'}: a Service needs at least one port",
                "add ports: [{port: 80, targetPort: 80}]",
            )
        ports: list[PortDraft] = []
        seen: dict[tuple[int, str], str] = {}
        names: dict[str, str] = {}
        for i, item in enumerate(items):
            path = f"spec.ports[{i}]"
            p = r.mapping(item, path)
            port = r.integer(p.get("port"), f"{path}.port", 1, 65535, "a port number is 1..65535")
            if p.get("port") is None:
                r.add(f"{path}.port", "is missing", "give the port the Service listens on")
            protocol = (
                r.choice(p.get("protocol"), f"{path}.protocol", PROTOCOLS, ONLY_TCP_UDP) or "TCP"
            )
            target = _target_port(r, p.get("targetPort"), f"{path}.targetPort")
            node_port = None
            if "nodePort" in p and p["nodePort"] is not None:
                if svc_type != "NodePort":
                    r.add(
                        f"{path}.nodePort",
                        f"needs spec.type NodePort, not {svc_type}",
                        "set type: NodePort, or remove nodePort",
                    )
                else:
                    node_port = r.integer(
                        p["nodePort"],
                        f"{path}.nodePort",
                        30000,
                        32767,
                        "NodePorts are 30000..32767; leave nodePort out to get one",
                    )
            port_name = r.text(p.get("name"), f"{path}.name") or ""
            if port_name:
                bad = naming.bad_dns1123_label(port_name)
                if bad:
                    r.add(f"{path}.name", bad, "port names are lowercase letters, digits and '-'")
                elif port_name in names:
                    r.add(
                        f"{path}.name",
                        f"'{port_name}' is already the name of {names[port_name]}",
                        "give each port its own name",
                    )
                names.setdefault(port_name, path)
            elif len(items) > 1:
                r.add(
                    f"{path}.name",
                    "is missing: a Service with several ports names each",
                    "add name: http (or another name)",
                )
            if port is None:
                continue
            if (port, protocol) in seen:
                r.add(
                    f"{path}.port",
                    f"{port}/{protocol} is already used by {seen[port, protocol]}",
                    "give each port of a Service its own number",
                )
                continue
            seen[(port, protocol)] = path
            ports.append(
                PortDraft(
                    port, port if target is None else target, path, protocol, node_port, port_name
                )
            )
        return ports

    # Finish -------------------------------------------------------------------------------

    def finish(self) -> ClusterSpec | None:
        """The spec, or None when a problem was found (they are all in `self.problems`)."""
        draft = self.draft
        taken: dict[str, set[str]] = {}
        for pod in draft.pods:
            taken.setdefault(pod.spec.namespace, set()).add(pod.spec.name)
        for dep in self.deployments:
            used = taken.setdefault(dep.namespace, set())
            for name in naming.replica_pod_names(dep.name, dep.template_hash, dep.replicas, used):
                used.add(name)
                t = dep.template
                replica = PodSpec(name, t.namespace, t.labels, t.containers, t.node, dep.name)
                draft.pods.append(PodDraft(replica, dep.origin, dep.port_names))
        self.problems.extend(check(draft))
        services, problems = service_specs(draft)
        self.problems.extend(problems)
        nets = draft.subnets
        pod_net, svc_net, node_net = nets["podSubnet"], nets["serviceSubnet"], nets["nodeSubnet"]
        prefix = draft.node_cidr_prefix
        if self.problems or pod_net is None or svc_net is None or node_net is None or not prefix:
            return None
        return ClusterSpec(
            name=draft.name,
            nodes=tuple(n.spec for n in draft.nodes),
            pod_subnet=pod_net,
            service_subnet=svc_net,
            node_subnet=node_net,
            node_cidr_prefix=prefix,
            attachment=draft.attachment,
            routing=draft.routing,
            mtu=draft.mtu,
            vxlan_vni=draft.vxlan_vni,
            vxlan_port=draft.vxlan_port,
            pods=tuple(p.spec for p in draft.pods),
            services=services,
        )


def _cidr(r: _Reader, value: object, path: str) -> ipaddress.IPv4Network | None:
    text = r.text(value, path, required="write an IPv4 network, such as 10.244.0.0/16")
    if text is None:
        return None
    example = "write an IPv4 network and prefix length, such as 10.244.0.0/16"
    if ":" in text:
        r.add(path, f"{text} is IPv6 or dual-stack: podnet builds IPv4 networks", example)
        return None
    if "/" not in text:
        r.add(path, f"{text} has no prefix length", f"add one: {text}/16, for example")
        return None
    try:
        return ipaddress.IPv4Network(text)
    except ValueError as exc:
        if "host bits set" in str(exc):
            network = ipaddress.IPv4Network(text, strict=False)
            r.add(path, f"{text} has host bits set", f"write the network address: {network}")
        else:
            r.add(path, f"'{text}' is not an IPv4 CIDR: {exc}", example)
        return None


def _target_port(r: _Reader, value: object, path: str) -> int | str | None:
    if isinstance(value, str):
        bad = naming.bad_port_name(value)
        if bad:
            r.add(path, bad, "give a port number, or the name of a container port")
        return value
    return r.integer(value, path, 1, 65535, "a port number is 1..65535, or a container port's name")


def _pod_spec(
    r: _Reader, spec: dict[Any, Any], path: str, given: bool
) -> tuple[tuple[ContainerSpec, ...], str | None, dict[str, int]]:
    """containers, nodeName and named container ports of a Pod's (or a template's) spec;
    `given` is False when the spec itself is missing (and that was reported)."""
    node = r.text(spec.get("nodeName"), f"{path}.nodeName")
    raw = spec.get("containers")
    if given and (raw is None or raw == []):
        r.add(
            f"{path}.containers",
            f"is {'missing' if raw is None else 'empty'}: a pod needs at least one container",
            "add - name: app (with ports: or command:)",
        )
    pod = _PodScope()
    containers = []
    for i, item in enumerate(r.items(raw, f"{path}.containers")):
        container = _container(r, item, f"{path}.containers[{i}]", pod)
        if container is not None:
            containers.append(container)
    return tuple(containers), node, pod.port_names


@dataclass
class _PodScope:
    """What the containers of one pod share: names, and ports (one network namespace)."""

    names: dict[str, str] = field(default_factory=dict)  # container name -> its path
    listening: dict[tuple[int, str], str] = field(default_factory=dict)  # port -> its path
    port_names: dict[str, int] = field(default_factory=dict)


def _container(r: _Reader, item: object, path: str, pod: _PodScope) -> ContainerSpec | None:
    c = r.mapping(item, path)
    name = r.name(
        c.get("name"),
        f"{path}.name",
        naming.bad_dns1123_label,
        "container names are DNS-1123 labels: lowercase letters, digits and '-'",
    )
    if name is not None and name in pod.names:
        r.add(
            f"{path}.name",
            f"'{name}' is already the name of {pod.names[name]}",
            "give each container of a pod its own name",
        )
    elif name is not None:
        pod.names[name] = path
    # `image` is read and ignored: there are no images, a container is a process.
    words = [
        *_strings(r, c.get("command"), f"{path}.command"),
        *_strings(r, c.get("args"), f"{path}.args"),
    ]
    ports = _container_ports(r, c.get("ports"), f"{path}.ports", pod)
    env = _env(r, c.get("env"), f"{path}.env")
    if name is None:
        return None
    return ContainerSpec(name, tuple(words) or None, tuple(ports), tuple(env))


def _container_ports(r: _Reader, value: object, path: str, pod: _PodScope) -> list[int]:
    ports = []
    for j, entry in enumerate(r.items(value, path)):
        ppath = f"{path}[{j}]"
        pm = r.mapping(entry, ppath)
        if pm.get("containerPort") is None:
            r.add(f"{ppath}.containerPort", "is missing", "give the port the container listens on")
        number = r.integer(
            pm.get("containerPort"), f"{ppath}.containerPort", 1, 65535, "a port is 1..65535"
        )
        protocol = (
            r.choice(pm.get("protocol"), f"{ppath}.protocol", PROTOCOLS, ONLY_TCP_UDP) or "TCP"
        )
        port_name = r.text(pm.get("name"), f"{ppath}.name")
        if port_name is not None and (bad := naming.bad_port_name(port_name)):
            r.add(f"{ppath}.name", bad, "at most 15 lowercase letters, digits and '-'")
        if number is None:
            continue
        other = pod.listening.setdefault((number, protocol), ppath)
        if other != ppath:
            r.add(
                f"{ppath}.containerPort",
                f"{number}/{protocol} is already declared by {other}",
                "the containers of a pod share one network namespace: one port, one listener",
            )
            continue
        if port_name:
            pod.port_names[port_name] = number
        ports.append(number)
    return ports


def _env(r: _Reader, value: object, path: str) -> list[tuple[str, str]]:
    env = []
    for j, entry in enumerate(r.items(value, path)):
        epath = f"{path}[{j}]"
        em = r.mapping(entry, epath)
        name = r.text(em.get("name"), f"{epath}.name", required="give the variable's name")
        if "valueFrom" in em:
            r.add(
                f"{epath}.valueFrom",
                "is not supported: there is no API server to read from",
                "give value: instead",
            )
        text = r.text(em.get("value"), f"{epath}.value") or ""
        if name:
            env.append((name, text))
    return env


def _strings(r: _Reader, value: object, path: str) -> list[str]:
    if isinstance(value, str):
        key = path.rsplit(".", 1)[-1]
        # A command line with shell syntax needs a shell to mean what it says.
        shell = key == "command" and any(c in value for c in "|&;<>$`'\"*?")
        flow = f'[sh, -c, "{value}"]' if shell else f"[{', '.join(value.split())}]"
        r.add(path, "must be a list of strings, not a string", f"write {key}: {flow}")
        return []
    words = []
    for i, word in enumerate(r.items(value, path)):
        text = r.text(word, f"{path}[{i}]")
        if text is not None:
            words.append(text)
    return words
