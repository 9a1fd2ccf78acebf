"""A running lab as the topology that would build it, and kubectl's ways of changing it. Pure.

`podnet up -f FILE` on a running lab works as `kubectl apply`: the file's objects are created or
updated, what the lab has and the file does not name stays (unless `--prune`), and a file with
no Cluster document (a NetworkPolicy alone, a Pod) applies to the running lab as it is. `podnet
delete` removes objects the same way round. All of it is a `ClusterSpec` handed to the planner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from podnet.errors import InputError
from podnet.model.addresses import Family, IPFamily
from podnet.model.types import (
    DEFAULT_POD_SUBNETS,
    Attachment,
    ClusterSpec,
    NodeSpec,
    PodSpec,
    Routing,
    ServicePort,
    ServiceSpec,
)
from podnet.plan.addons import DNS_DEPLOYMENT, DNS_NAMESPACE, DNS_SERVICE
from podnet.plan.layout import Layout
from podnet.plan.services import ServiceLayout

__all__ = ["Named", "applied", "removed", "running_spec"]

_FAMILY: dict[tuple[Family, ...], IPFamily] = {(4,): "ipv4", (6,): "ipv6", (4, 6): "dual",
                                               (6, 4): "dual"}


@dataclass(frozen=True)
class Named:
    """The objects a file (or a command line) names, by kind: `namespace/name` keys, and the
    namespaces themselves."""

    pods: frozenset[str] = frozenset()
    deployments: frozenset[str] = frozenset()  # namespace/name of Deployments (their replicas)
    services: frozenset[str] = frozenset()
    policies: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()

    @classmethod
    def in_spec(cls, spec: ClusterSpec, *, nodes: bool = True) -> Named:
        return cls(
            pods=frozenset(p.key for p in spec.pods if not p.owner),
            deployments=frozenset(f"{p.namespace}/{p.owner}" for p in spec.pods if p.owner),
            services=frozenset(s.key for s in spec.services),
            policies=frozenset(p.key for p in spec.policies),
            namespaces=frozenset(n.name for n in spec.namespaces if n.declared),
            nodes=frozenset(n.name for n in spec.nodes) if nodes else frozenset(),
        )

    def has_pod(self, pod: PodSpec) -> bool:
        """Whether the pod is named: itself (a Deployment's replica too, as `kubectl delete pod`
        names one), by its Deployment, or by its namespace."""
        if pod.key in self.pods or pod.namespace in self.namespaces:
            return True
        return bool(pod.owner) and f"{pod.namespace}/{pod.owner}" in self.deployments


def running_spec(lay: Layout) -> ClusterSpec:
    """The topology a running lab was built from, as far as its record says."""
    prefix = next((c.prefixlen for n in lay.nodes for c in n.pod_cidrs if c.version == 4), 24)
    prefix6 = next((c.prefixlen for n in lay.nodes for c in n.pod_cidrs if c.version == 6), 64)
    node_subnets = tuple(gw.network for gw in lay.fabric_gateways)
    # A vpc lab's pods take the node network's addresses: its pod ranges are the defaults.
    pods = (tuple(DEFAULT_POD_SUBNETS[f] for f in lay.families) if lay.attachment == "vpc"
            else lay.pod_subnets)
    return ClusterSpec(
        name=lay.cluster,
        nodes=tuple(NodeSpec(n.name, "worker" if n.role == "worker" else "control-plane",
                             n.impairment)
                    for n in lay.nodes),
        ip_family=_FAMILY[lay.families],
        pod_subnets=pods,
        service_subnets=lay.service_subnets,
        node_subnets=node_subnets,
        node_cidr_prefix=prefix,
        node_cidr_prefix6=prefix6,
        attachment=_attachment(lay.attachment),
        routing=_routing(lay.routing),
        mtu=lay.mtu,
        vxlan_vni=lay.vxlan_vni,
        vxlan_port=lay.vxlan_port,
        pods=tuple(PodSpec(p.name, p.namespace, p.labels, p.containers, node=p.node,
                           owner=p.owner, hostname=p.hostname, subdomain=p.subdomain,
                           dns_policy=p.dns_policy, dns_config=p.dns_config,
                           impairment=p.impairment, host_network=p.host_network)
                   for p in lay.pods),
        services=tuple(_service(s) for s in lay.services),
        namespaces=lay.namespaces,
        policies=lay.policies,
        dns_domain=lay.dns_domain,
    )


def _attachment(name: str) -> Attachment:
    return "bridge" if name == "bridge" else "vpc" if name == "vpc" else "ptp"


def _routing(name: str) -> Routing:
    return "vxlan" if name == "vxlan" else "host-gw" if name == "host-gw" else "static"


def _service(s: ServiceLayout) -> ServiceSpec:
    return ServiceSpec(
        s.name, s.namespace, "NodePort" if s.type == "NodePort" else "ClusterIP", s.selector,
        tuple(ServicePort(p.port, p.target_port, "UDP" if p.protocol == "UDP" else "TCP",
                          p.node_port, p.name) for p in s.ports),
        ip_families=tuple(4 if ip.version == 4 else 6 for ip in s.cluster_ips),
        cluster_ips=tuple(str(ip) for ip in s.cluster_ips),
        headless=s.headless,
    )


def applied(spec: ClusterSpec, running: Layout, *, prune: bool = False
            ) -> tuple[ClusterSpec, list[str]]:
    """`spec` applied to the running lab: the file's objects, plus (unless `prune`) what the lab
    has that the file does not name (returned in words, for people). A file without a Cluster
    document keeps the running lab's cluster as it is (its nodes, ranges and shape)."""
    current = running_spec(running)
    named = Named.in_spec(spec, nodes=spec.cluster_given)
    base = spec if spec.cluster_given else replace(current, pods=spec.pods,
                                                    services=spec.services,
                                                    namespaces=spec.namespaces,
                                                    policies=spec.policies)
    if prune:
        return base, []
    kept_nodes = [n for n in current.nodes if n.name not in named.nodes
                  and base.node(n.name) is None]
    kept_pods = [p for p in current.pods if not named.has_pod(p)
                 and p.key not in {q.key for q in base.pods}]
    kept_services = [s for s in current.services if s.key not in named.services]
    kept_policies = [p for p in current.policies if p.key not in named.policies]
    kept_namespaces = [n for n in current.namespaces if n.name not in named.namespaces]
    words = ([f"node {n.name}" for n in kept_nodes] + [f"pod {p.key}" for p in kept_pods]
             + [f"service {s.key}" for s in kept_services]
             + [f"networkpolicy {p.key}" for p in kept_policies])
    merged = replace(
        base,
        nodes=base.nodes + tuple(kept_nodes),
        pods=base.pods + tuple(kept_pods),
        services=base.services + tuple(kept_services),
        policies=base.policies + tuple(kept_policies),
        namespaces=base.namespaces + tuple(kept_namespaces),
    )
    return merged, (words if spec.cluster_given else [])


def _refuse_addons(named: Named) -> None:
    """The cluster DNS is the lab's, as kubeadm's add-ons are the cluster's: not for delete."""
    hits = sorted(
        [f"namespace {DNS_NAMESPACE}"] * (DNS_NAMESPACE in named.namespaces)
        + [f"service {k}" for k in named.services if k == f"{DNS_NAMESPACE}/{DNS_SERVICE}"]
        + [f"deployment {k}" for k in named.deployments
           if k == f"{DNS_NAMESPACE}/{DNS_DEPLOYMENT}"]
        + [f"pod {k}" for k in named.pods
           if k.startswith(f"{DNS_NAMESPACE}/{DNS_DEPLOYMENT}-")]
    )
    if hits:
        raise InputError(
            f"{', '.join(hits)}: the lab's cluster DNS (the kube-dns Service and its coredns "
            "pods, which every lab has, as kubeadm installs them on kind) cannot be deleted",
            hint="delete your own objects only; `podnet down` removes the whole lab, DNS too",
        )


def removed(running: Layout, named: Named) -> tuple[ClusterSpec, list[str]]:
    """The running lab without the objects `named` (a namespace takes everything in it), and
    what goes, in words."""
    _refuse_addons(named)
    current = running_spec(running)

    def gone(objects: Iterable[str], what: str) -> list[str]:
        return [f"{what} {key}" for key in objects]

    pods = [p for p in current.pods if named.has_pod(p)]
    services = [s for s in current.services if s.key in named.services
                or s.namespace in named.namespaces]
    policies = [p for p in current.policies if p.key in named.policies
                or p.namespace in named.namespaces]
    words = (gone((p.key for p in pods), "pod") + gone((s.key for s in services), "service")
             + gone((p.key for p in policies), "networkpolicy"))
    return replace(
        current,
        pods=tuple(p for p in current.pods if p not in pods),
        services=tuple(s for s in current.services if s not in services),
        policies=tuple(p for p in current.policies if p not in policies),
        namespaces=tuple(n for n in current.namespaces if n.name not in named.namespaces),
    ), words
