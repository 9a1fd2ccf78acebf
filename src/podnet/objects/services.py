"""Services: a virtual address (and node ports) in front of the pods their selector picks, listed
and described as kubectl shows them, with each endpoint's pod and node."""

from __future__ import annotations

import ipaddress
from typing import Any

from podnet.objects.common import each_family
from podnet.objects.kinds import Column, Kind, Obj, register
from podnet.objects.reads import KernelReads
from podnet.plan.services import ServiceLayout
from podnet.state import LabState

__all__ = ["SERVICES"]


def _family(ip: Any) -> str:
    return f"IPv{ipaddress.ip_address(str(ip)).version}"


def _collect(record: LabState, reads: KernelReads) -> list[Obj]:
    out = []
    for s in record.layout.services:
        ips = [str(ip) for ip in each_family(s, "cluster_ips", "cluster_ip")]
        out.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": s.name, "namespace": s.namespace, "labels": {}},
            "spec": {
                "type": s.type,
                "clusterIP": ips[0] if ips else "None",  # headless, as the API shows it
                "clusterIPs": ips or ["None"],
                "ipFamilies": [_family(ip) for ip in ips],
                "ipFamilyPolicy": s.ip_family_policy,
                "selector": dict(s.selector),
                "ports": [{"name": p.name, "protocol": p.protocol, "port": p.port,
                           "targetPort": p.target_port, "nodePort": p.node_port}
                          for p in s.ports],
            },
            "endpoints": list(s.endpoints),
        })
    return out


def _ports(o: Obj) -> str:
    return ",".join(
        f"{p['port']}{':' + str(p['nodePort']) if p['nodePort'] else ''}/{p['protocol']}"
        for p in o["spec"]["ports"]
    )


def _endpoints(record: LabState, svc: ServiceLayout) -> list[tuple[str, list[str], str]]:
    """(pod key, its addresses, its node) for each endpoint."""
    out = []
    for key in svc.endpoints:
        pod = record.layout.pod(key)
        if pod is not None:
            out.append((key, [str(i.ip) for i in each_family(pod, "ips", "ip")], pod.node))
    return out


def describe_service(record: LabState, obj: Obj, reads: KernelReads) -> dict[str, Any]:
    key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
    svc = next((s for s in record.layout.services if s.key == key), None)
    if svc is None:
        return {"Name": obj["metadata"]["name"], "Status": "gone from the lab's record"}
    spec = obj["spec"]
    ends = _endpoints(record, svc)
    ports: dict[str, Any] = {}
    for p in svc.ports:
        addresses = [f"{ip}:{p.target_port}" for _key, ips, _node in ends for ip in ips]
        entry = {"Port": f"{p.port}/{p.protocol}", "TargetPort": f"{p.target_port}/{p.protocol}"}
        if p.node_port:
            entry["NodePort"] = f"{p.node_port}/{p.protocol}"
        entry["Endpoints"] = ",".join(addresses) or "<none>"
        ports[p.name or str(p.port)] = entry
    return {
        "Name": svc.name,
        "Namespace": svc.namespace,
        "Labels": [],
        "Selector": ",".join(f"{k}={v}" for k, v in svc.selector) or "<none>",
        "Type": svc.type,
        "IP Family Policy": spec["ipFamilyPolicy"],
        "IP Families": ",".join(spec["ipFamilies"]),
        "IP": spec["clusterIP"],
        "IPs": ",".join(spec["clusterIPs"]),
        "Ports": ports,
        "Endpoint pods": [f"{key} {','.join(ips)} on {node}" for key, ips, node in ends],
        "Names": list(svc.hostnames(svc.namespace, record.layout.dns_domain)),
    }


SERVICES = register(Kind(
    name="services", singular="service", kind="Service", aliases=("svc",), namespaced=True,
    columns=(
        Column("NAME", lambda o: o["metadata"]["name"]),
        Column("TYPE", lambda o: o["spec"]["type"]),
        # As kubectl: the first ClusterIP; -o wide shows every family's, and the policy.
        Column("CLUSTER-IP", lambda o: o["spec"]["clusterIP"],
               wide_value=lambda o: ",".join(o["spec"]["clusterIPs"])),
        Column("PORT(S)", _ports),
        Column("ENDPOINTS", lambda o: len(o["endpoints"])),
        Column("SELECTOR", lambda o: ",".join(f"{k}={v}" for k, v in o["spec"]["selector"]
                                              .items()) or "<none>", wide=True),
        Column("IP-FAMILY-POLICY", lambda o: o["spec"]["ipFamilyPolicy"], wide=True),
    ),
    collect=_collect,
    describe=describe_service,
    help="the lab's Services: a virtual address DNATed to the pods the selector picks",
))
