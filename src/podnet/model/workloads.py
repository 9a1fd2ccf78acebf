"""Reading the namespaced documents (Pod, Deployment, Service manifests) into a `ClusterDraft`.

Deployments are kept aside as `Deployment`s until every document is read, then become their
replicas (`add_replicas`), named as Kubernetes names them (see `naming`), around the names that
the Pods of the file already took.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

from podnet.model import naming, unmodelled
from podnet.model.addresses import Family, IPAddress
from podnet.model.containers import ONLY_TCP_UDP, PROTOCOLS, PodSpecParts, read_pod_spec
from podnet.model.drafts import ClusterDraft, Origin, PodDraft, PortDraft, ServiceDraft
from podnet.model.fields import Reader, describe, read_target_port
from podnet.model.impairment import BANDWIDTH, PREFIX, read_pod_annotations
from podnet.model.pod_dns import read_pod_dns
from podnet.model.types import Impairment, PodSpec

__all__ = [
    "DOCUMENT_KEYS",
    "NAMESPACED",
    "SERVICE_TYPES",
    "Deployment",
    "add_replicas",
    "read_annotations",
    "read_deployment",
    "read_metadata",
    "read_pod",
    "read_service",
]

NAMESPACED = ("Pod", "Deployment", "Service", "NetworkPolicy")
SERVICE_TYPES = ("ClusterIP", "NodePort")
DOCUMENT_KEYS = ("apiVersion", "kind", "metadata", "spec")  # a Namespace has no spec here
METADATA_KEYS = ("name", "namespace", "labels", "annotations")
TEMPLATE_METADATA_KEYS = ("labels", "annotations")
DEPLOYMENT_KEYS = ("replicas", "selector", "template")
SELECTOR_KEYS = ("matchLabels", "matchExpressions")
TEMPLATE_KEYS = ("metadata", "spec")
SERVICE_KEYS = ("type", "selector", "ports", "clusterIP", "clusterIPs", "ipFamilies",
                "ipFamilyPolicy")
SERVICE_PORT_KEYS = ("name", "protocol", "port", "targetPort", "nodePort")

NEED_SELECTOR = "apps/v1 needs selector.matchLabels: the labels of spec.template.metadata.labels"
WHY_POD_NAME = "a pod's name is its hostname: lowercase letters, digits and '-', at most 63"


@dataclass
class Deployment:
    """A Deployment read, waiting for its replicas to be named."""

    name: str
    namespace: str
    replicas: int
    template_hash: str
    template: PodSpec
    origin: Origin
    port_names: dict[str, int] = field(default_factory=dict)
    host_port_fields: dict[tuple[int, str], str] = field(default_factory=dict)


def add_replicas(draft: ClusterDraft, deployments: list[Deployment]) -> None:
    """Append each Deployment's replicas to `draft.pods`, clear of the names already taken."""
    taken: dict[str, set[str]] = {}
    for pod in draft.pods:
        taken.setdefault(pod.spec.namespace, set()).add(pod.spec.name)
    for dep in deployments:
        used = taken.setdefault(dep.namespace, set())
        for name in naming.replica_pod_names(dep.name, dep.template_hash, dep.replicas, used):
            used.add(name)
            replica = replace(dep.template, name=name, owner=dep.name)
            draft.pods.append(PodDraft(replica, dep.origin, dep.port_names,
                                       dep.host_port_fields))


# Pods -----------------------------------------------------------------------------------------


def read_metadata(
    r: Reader, m: dict[Any, Any], kind: str
) -> tuple[str | None, str, tuple[tuple[str, str], ...], Impairment]:
    """metadata.name (None if missing), .namespace, .labels and (a Pod's) the shaping its
    annotations ask for; for a Pod, Deployment or Service also checks the document's own
    keys."""
    if kind in NAMESPACED:
        r.known(m, "", DOCUMENT_KEYS, refused=unmodelled.DOCUMENT)
    meta = r.mapping(m.get("metadata"), "metadata", required="add metadata: {name: ...}")
    r.known(meta, "metadata", METADATA_KEYS)
    shaping = read_annotations(r, meta.get("annotations"), "metadata.annotations",
                               pod=kind == "Pod")
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
    return name, namespace, r.labels(meta.get("labels"), "metadata.labels"), shaping


def read_annotations(r: Reader, value: object, path: str, *, pod: bool) -> Impairment:
    """Annotations are notes, accepted as written, except those that shape a pod's link
    (`podnet.model.impairment`): read on a pod or pod template, refused elsewhere (a
    Deployment's own annotations never reach its pods)."""
    annotations = r.mapping(value, path)
    for key, val in annotations.items():
        where = f"{path}.{key}"
        if not isinstance(key, str) or not isinstance(val, str):
            what = describe(key) if not isinstance(key, str) else describe(val)
            r.add(where, f"must map a string to a string, not {what}", "quote it")
        elif not pod and (key in BANDWIDTH or key.startswith(PREFIX)):
            r.add(where, "shapes a pod's link, and this is not a pod",
                  "kubelet reads it from a pod: in a Deployment, put it under "
                  "spec.template.metadata.annotations")
    return read_pod_annotations(r, annotations, path) if pod else Impairment()


def _no_link_to_shape(r: Reader, parts: PodSpecParts, shaping: Impairment, path: str) -> None:
    if parts.host_network and not shaping.empty:
        r.add(path, "shapes the pod's link, and a hostNetwork pod has none (it uses its node's)",
              "shape the node's uplink with nodes[].netem in the Cluster document, or remove "
              "hostNetwork")


def read_pod(r: Reader, m: dict[Any, Any], draft: ClusterDraft) -> None:
    """A Pod manifest: append it to `draft.pods`."""
    name, namespace, labels, shaping = read_metadata(r, m, "Pod")
    spec = r.mapping(m.get("spec"), "spec", required="a Pod needs spec.containers")
    given = isinstance(m.get("spec"), dict)  # else only "spec is missing" is reported
    parts = read_pod_spec(r, spec, "spec", given)
    _no_link_to_shape(r, parts, shaping, "metadata.annotations")
    dns = read_pod_dns(r, spec, "spec")
    if name is None:
        return
    pod = PodSpec(
        name, namespace, labels, parts.containers, parts.node, None,
        dns.hostname, dns.subdomain, dns.policy, dns.config, shaping, parts.host_network,
    )
    draft.pods.append(PodDraft(pod, r.origin, parts.port_names, parts.host_port_fields))


def read_deployment(
    r: Reader, m: dict[Any, Any], draft: ClusterDraft, pending: list[Deployment]
) -> None:
    """A Deployment manifest: note it in `draft.deployments` and in `pending`, whose replicas
    `add_replicas` names once every document is read."""
    name, namespace, _, _ = read_metadata(r, m, "Deployment")
    spec = r.mapping(
        m.get("spec"), "spec", required="a Deployment needs spec.selector and spec.template"
    )
    given = isinstance(m.get("spec"), dict)  # else only "spec is missing" is reported
    r.known(spec, "spec", DEPLOYMENT_KEYS, refused=unmodelled.DEPLOYMENT_SPEC)
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
    r.known(selector, "spec.selector", SELECTOR_KEYS)
    if "matchExpressions" in selector:
        r.add("spec.selector.matchExpressions", "is not supported", "select pods with matchLabels")
    wanted = r.labels(selector.get("matchLabels"), "spec.selector.matchLabels")
    template = r.mapping(
        spec.get("template"),
        "spec.template",
        required="give the pods' metadata.labels and spec" if given else "",
    )
    r.known(template, "spec.template", TEMPLATE_KEYS)
    template_meta = r.mapping(template.get("metadata"), "spec.template.metadata")
    r.known(template_meta, "spec.template.metadata", TEMPLATE_METADATA_KEYS)
    shaping = read_annotations(r, template_meta.get("annotations"),
                               "spec.template.metadata.annotations", pod=True)
    labels = r.labels(template_meta.get("labels"), "spec.template.metadata.labels")
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
    parts = read_pod_spec(
        r, pod_spec, "spec.template.spec", isinstance(template.get("spec"), dict)
    )
    _no_link_to_shape(r, parts, shaping, "spec.template.metadata.annotations")
    dns = read_pod_dns(r, pod_spec, "spec.template.spec")
    if name is None:
        return
    draft.deployments.append((f"{namespace}/{name}", r.origin))
    pending.append(
        Deployment(
            name,
            namespace,
            replicas,
            naming.pod_template_hash(template),
            PodSpec(
                "", namespace, labels, parts.containers, parts.node, name,
                dns.hostname, dns.subdomain, dns.policy, dns.config, shaping, parts.host_network,
            ),
            Origin(r.origin.doc, r.origin.where, "spec.template"),
            parts.port_names,
            parts.host_port_fields,
        )
    )


# Services -------------------------------------------------------------------------------------


def read_service(r: Reader, m: dict[Any, Any], draft: ClusterDraft) -> None:
    """A Service manifest: append it to `draft.services`."""
    name, namespace, _, _ = read_metadata(r, m, "Service")
    spec = r.mapping(m.get("spec"), "spec", required="a Service needs spec.selector and spec.ports")
    r.known(spec, "spec", SERVICE_KEYS, refused=unmodelled.SERVICE_SPEC)
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
    cluster_ips, headless = _cluster_ips(r, spec)
    if headless and svc_type != "ClusterIP":
        r.add("spec.clusterIP", f"None (headless) with type {svc_type}",
              "a headless Service has no address for node ports: use type ClusterIP")
    families = _ip_families(r, spec)
    policy = r.choice(spec.get("ipFamilyPolicy"), "spec.ipFamilyPolicy", FAMILY_POLICIES,
                      "SingleStack (the default), PreferDualStack or RequireDualStack") or ""
    ports = _service_ports(r, spec, svc_type) if isinstance(m.get("spec"), dict) else []
    if name is not None:
        draft.services.append(
            ServiceDraft(name, namespace, r.origin, svc_type, selector, ports, cluster_ips,
                         families, policy, headless)
        )


FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")


def _cluster_ips(r: Reader, spec: dict[Any, Any]) -> tuple[tuple[IPAddress, ...], bool]:
    """spec.clusterIPs (or its first, spec.clusterIP): the addresses the file pins, and whether
    it says None (a headless Service)."""
    key = "clusterIPs" if "clusterIPs" in spec else "clusterIP"
    raw = spec.get(key)
    if raw is None:
        return (), False
    texts = [r.text(v, f"spec.{key}[{i}]") for i, v in enumerate(r.items(raw, f"spec.{key}"))] \
        if key == "clusterIPs" else [r.text(raw, "spec.clusterIP")]
    out = []
    headless = "None" in texts
    if headless and len(texts) > 1:
        r.add(f"spec.{key}", "None (headless) beside an address",
              "a headless Service has no address: give None alone")
        return (), True
    for text in texts:
        if text == "None":
            continue
        if text:
            try:
                out.append(ipaddress.ip_address(text))
            except ValueError:
                r.add(f"spec.{key}", f"'{text}' is not an IP address",
                      "give an address in serviceSubnet, or leave clusterIP out")
    if len({ip.version for ip in out}) != len(out):
        r.add(f"spec.{key}", "two addresses of one family", "give at most one per family")
        return (), headless
    return tuple(out), headless


def _ip_families(r: Reader, spec: dict[Any, Any]) -> tuple[Family, ...]:
    out: list[Family] = []
    for i, value in enumerate(r.items(spec.get("ipFamilies"), "spec.ipFamilies")):
        name = r.choice(value, f"spec.ipFamilies[{i}]", ("IPv4", "IPv6"), "IPv4 or IPv6")
        if name is not None:
            out.append(4 if name == "IPv4" else 6)
    if len(set(out)) != len(out):
        r.add("spec.ipFamilies", "a family twice", "list each family once")
        return ()
    return tuple(out)


def _service_ports(r: Reader, spec: dict[Any, Any], svc_type: str) -> list[PortDraft]:
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
        r.known(p, path, SERVICE_PORT_KEYS, unmodelled.IGNORED["service port"],
                unmodelled.SERVICE_PORT)
        port = r.integer(p.get("port"), f"{path}.port", 1, 65535, "a port number is 1..65535")
        if p.get("port") is None:
            r.add(f"{path}.port", "is missing", "give the port the Service listens on")
        protocol = r.choice(p.get("protocol"), f"{path}.protocol", PROTOCOLS, ONLY_TCP_UDP) or "TCP"
        target = read_target_port(r, p.get("targetPort"), f"{path}.targetPort")
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
