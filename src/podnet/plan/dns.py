"""The cluster DNS of a laid-out lab: the records its server answers and each pod's resolv.conf.
Pure: `podnet.dns` composes them, from the layout's Services and pods; the plan writes them.
"""

from __future__ import annotations

from podnet.dns.records import DnsPod, DnsPort, DnsService, RecordSet, cluster_records
from podnet.dns.resolv import ResolvConf, pod_resolv_conf
from podnet.plan.addons import DNS_NAMESPACE, DNS_SERVICE
from podnet.plan.layout import Layout, PodLayout
from podnet.plan.services import ServiceLayout

__all__ = ["cluster_dns", "dns_service", "lab_records", "pod_resolv", "resolv_text",
           "service_fqdn"]

_NO_RESOLVER = ("# dnsPolicy {policy}: the node's resolv.conf; the lab's nodes have no resolver "
                "(the lab has no upstream)\n")


def dns_service(lay: Layout) -> ServiceLayout | None:
    """The kube-dns Service, when the lab has it (a lab recorded before it did has not)."""
    return next((s for s in lay.services
                 if s.namespace == DNS_NAMESPACE and s.name == DNS_SERVICE), None)


def cluster_dns(lay: Layout) -> tuple[str, ...]:
    """kubelet's --cluster-dns: the kube-dns Service's addresses."""
    svc = dns_service(lay)
    return tuple(str(ip) for ip in svc.cluster_ips) if svc else ()


def service_fqdn(lay: Layout, svc: ServiceLayout) -> str:
    return f"{svc.name}.{svc.namespace}.svc.{lay.dns_domain}"


def lab_records(lay: Layout) -> RecordSet:
    """Every record of the lab: its Services (headless ones by their pods), its pods."""
    services = [
        DnsService(s.namespace, s.name, tuple(str(ip) for ip in s.cluster_ips),
                   tuple(DnsPort(p.name, p.port, p.protocol) for p in s.ports), s.endpoints)
        for s in lay.services
    ]
    pods = [DnsPod(p.namespace, p.name, tuple(str(ip.ip) for ip in p.ips), p.hostname,
                   p.subdomain) for p in lay.pods]
    networks = [str(n) for n in (*lay.service_subnets, *lay.pod_subnets)]
    return cluster_records(services, pods, domain=lay.dns_domain, networks=networks,
                           nameservers=cluster_dns(lay))


def pod_resolv(lay: Layout, pod: PodLayout) -> ResolvConf:
    """The pod's /etc/resolv.conf as kubelet composes it. The lab's nodes have no resolver of
    their own (no upstream): `dnsPolicy: Default` gives an empty file, as a node without one."""
    return pod_resolv_conf(pod.namespace, pod.dns_policy, pod.dns_config,
                           cluster_dns=cluster_dns(lay)[:1], domain=lay.dns_domain)


def resolv_text(lay: Layout, pod: PodLayout) -> str:
    """The file's text; one that names nothing says why, in a comment."""
    return pod_resolv(lay, pod).render() or _NO_RESOLVER.format(policy=pod.dns_policy)
