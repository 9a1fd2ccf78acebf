"""The lab's add-ons, as kind's kubeadm installs them in every cluster: the cluster DNS. Pure.

kubeadm applies a `coredns` Deployment (2 replicas, label `k8s-app: kube-dns`, `dnsPolicy:
Default`, tolerating the control plane's taint, so kind schedules both replicas there) and the
`kube-dns` Service in `kube-system`, at the 10th address of the service subnet (10.96.0.10; in
an IPv6 cluster fd00:10:96::a; in a dual-stack one the first family's, kubeadm's DNS Service
being single-stack). podnet adds the same objects to every cluster before it is laid out, so
Services' DNAT, `check`, `trace`, `get`, `describe` and `graph` see them as any other object.
The replicas' containers run podnet's DNS server (`podnet.dns.server`) on the records the plan
writes to `records_path`.
"""

from __future__ import annotations

from dataclasses import replace

from podnet.model import naming
from podnet.model.addresses import nth_host
from podnet.model.cluster_dns import DNS_DEPLOYMENT, DNS_NAMESPACE, DNS_SERVICE, DNS_SERVICE_INDEX
from podnet.model.policies import NAMESPACE_NAME_LABEL, NamespaceSpec
from podnet.model.types import (
    ClusterSpec,
    ContainerSpec,
    NamedPort,
    PodSpec,
    ServicePort,
    ServiceSpec,
)

__all__ = [
    "DNS_DEPLOYMENT",
    "DNS_LABELS",
    "DNS_NAMESPACE",
    "DNS_REPLICAS",
    "DNS_SERVICE",
    "addon_objects",
    "dns_service_ip",
    "is_addon_pod",
    "records_path",
    "with_addons",
]

DNS_REPLICAS = 2
DNS_LABELS = (("k8s-app", "kube-dns"),)
_PORTS = (NamedPort("dns", 53, "UDP"), NamedPort("dns-tcp", 53, "TCP"),
          NamedPort("metrics", 9153, "TCP"))


def records_path(state_dir: str) -> str:
    """Where the plan writes the DNS records, and the coredns containers read them."""
    return f"{state_dir}/dns/records.json"


def dns_service_ip(spec: ClusterSpec) -> str:
    return str(nth_host(spec.service_subnets[0], DNS_SERVICE_INDEX))


def is_addon_pod(namespace: str, owner: str | None) -> bool:
    return namespace == DNS_NAMESPACE and owner == DNS_DEPLOYMENT


def addon_objects(namespace: str) -> tuple[str, ...]:
    """Keys (`namespace/name`) of the add-on objects `podnet delete` must leave alone."""
    return (f"{DNS_NAMESPACE}/{DNS_SERVICE}", f"{DNS_NAMESPACE}/{DNS_DEPLOYMENT}") \
        if namespace == DNS_NAMESPACE else ()


def _container(state_dir: str) -> ContainerSpec:
    # As the responder, rendered `python3 -m ...`: the container runs it in podnet's own
    # interpreter (runtime.container), so it needs nothing on the machine's PATH.
    argv = ("python3", "-m", "podnet.dns.server", "--records", records_path(state_dir))
    return ContainerSpec("coredns", command=argv, ports=(53, 9153), named_ports=_PORTS)


def _control_plane(spec: ClusterSpec) -> str | None:
    node = next((n for n in spec.nodes if n.role == "control-plane"), None) or \
        next(iter(spec.nodes), None)
    return node.name if node else None


def with_addons(spec: ClusterSpec, state_dir: str) -> ClusterSpec:
    """`spec` with the cluster DNS's objects in place of any it holds already (a running lab's
    record has them), so laying out a lab twice gives the same objects."""
    node = _control_plane(spec)
    if node is None:
        return spec
    container = _container(state_dir)
    template = {"labels": dict(DNS_LABELS), "node": node, "dnsPolicy": "Default",
                "containers": [{"name": container.name, "command": list(container.command or ()),
                                "ports": [[p.name, p.port, p.protocol] for p in _PORTS]}]}
    template_hash = naming.pod_template_hash(template)
    taken = {p.name for p in spec.pods if p.namespace == DNS_NAMESPACE
             and not is_addon_pod(p.namespace, p.owner)}
    names = naming.replica_pod_names(DNS_DEPLOYMENT, template_hash, DNS_REPLICAS, taken)
    pods = tuple(
        PodSpec(name, DNS_NAMESPACE, DNS_LABELS, (container,), node=node, owner=DNS_DEPLOYMENT,
                dns_policy="Default")
        for name in names
    )
    service = ServiceSpec(
        DNS_SERVICE, DNS_NAMESPACE, selector=DNS_LABELS,
        ports=(ServicePort(53, 53, "UDP", name="dns"), ServicePort(53, 53, "TCP", name="dns-tcp"),
               ServicePort(9153, 9153, "TCP", name="metrics")),
        ip_families=(spec.service_subnets[0].version,),
        cluster_ips=(dns_service_ip(spec),),
    )
    namespaces = spec.namespaces
    if all(n.name != DNS_NAMESPACE for n in namespaces):
        ns = NamespaceSpec(DNS_NAMESPACE, ((NAMESPACE_NAME_LABEL, DNS_NAMESPACE),),
                           declared=False)
        namespaces = tuple(sorted((*namespaces, ns), key=lambda n: n.name))
    return replace(
        spec,
        # Last: listed after the file's pods, as kubectl lists kube-system after default and
        # dev; their containers say ready only once they answer, so `up` waits for them.
        pods=tuple(p for p in spec.pods if not is_addon_pod(p.namespace, p.owner)) + pods,
        services=(*(s for s in spec.services if s.key != service.key), service),
        namespaces=namespaces,
    )
