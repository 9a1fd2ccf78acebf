"""Pods: listed from the lab's record (containers checked alive by PID and start time), described
with their namespace's interfaces and routes, the veth pair to their node, and their Services."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from podnet.inspect.model import Host, Interface, Namespace
from podnet.kernel.netns import path_of
from podnet.model.types import ContainerSpec
from podnet.objects.common import each_family, interface_line, namespace, route_lines
from podnet.objects.kinds import Column, Kind, Obj, register
from podnet.objects.reads import KernelReads
from podnet.plan.layout import PodLayout
from podnet.state import ContainerRecord, LabState

__all__ = ["PODS", "container_log", "pod_object"]


def container_log(record: LabState, pod: PodLayout, container: str) -> str:
    """Where `up` sends the container's stdout and stderr."""
    from podnet.plan.builds import log_path  # the one place that names it

    return log_path(record.layout, pod, container)


def _latest(records: list[ContainerRecord]) -> dict[str, ContainerRecord]:
    """The newest record of each container (a restarted one may leave its old entry behind)."""
    return {r.name: r for r in records}


def pod_object(record: LabState, pod: PodLayout, reads: KernelReads) -> Obj:
    refs = _latest(record.containers_of(pod.key))
    alive = {name: reads.running(r.pid, r.starttime) for name, r in refs.items()}
    ready = sum(alive.values())
    node = record.layout.node(pod.node)
    pod_ips = [str(i.ip) for i in each_family(pod, "ips", "ip")]
    host_ips = [str(i.ip) for i in each_family(node, "ips", "ip")]
    spec: dict[str, Any] = {
        "nodeName": pod.node,
        "hostname": pod.name,
        "containers": [{"name": c.name,
                        "command": list(c.command) if c.command is not None else None,
                        "ports": _ports(c)}
                       for c in pod.containers],
    }
    if pod.host_network:
        spec["hostNetwork"] = True
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
        "spec": spec,
        "status": {
            "phase": "Running" if ready == len(pod.containers) else "Failed",
            "podIP": pod_ips[0],
            "podIPs": [{"ip": ip} for ip in pod_ips],
            "hostIP": host_ips[0],
            "hostIPs": [{"ip": ip} for ip in host_ips],
            "ready": f"{ready}/{len(pod.containers)}",
            "containerStatuses": [
                {"name": name, "pid": r.pid, "running": alive[name],
                 "restartCount": r.restarts}
                for name, r in refs.items()
            ],
        },
        "podnet": {"netns": pod.netns, "veth": pod.veth, "hostsFile": pod.hosts_file},
    }


def _ports(c: ContainerSpec) -> list[dict[str, Any]]:
    published = {hp.container_port: hp for hp in c.host_ports}
    out: list[dict[str, Any]] = []
    for number in c.ports:
        hp = published.get(number)
        port: dict[str, Any] = {"containerPort": number,
                                "protocol": hp.protocol if hp else "TCP"}
        if hp is not None:
            port["hostPort"] = hp.host_port
        out.append(port)
    return out


def _collect(record: LabState, reads: KernelReads) -> list[Obj]:
    return [pod_object(record, p, reads) for p in record.layout.pods]


def _pids(o: Obj) -> str:
    return ",".join(str(c["pid"]) for c in o["status"]["containerStatuses"]) or "-"


def _restarts(o: Obj) -> int:
    return sum(int(c.get("restartCount", 0)) for c in o["status"]["containerStatuses"])


# --- describe ------------------------------------------------------------------------------------


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "<unknown>"
    return time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime(seconds))


def _containers(record: LabState, pod: PodLayout, reads: KernelReads) -> dict[str, Any]:
    refs = _latest(record.containers_of(pod.key))
    out: dict[str, Any] = {}
    for spec in pod.containers:
        ref = refs.get(spec.name)
        entry: dict[str, Any] = {}
        if ref is None:
            entry["State"] = "Waiting (never started: `podnet up` starts it)"
        else:
            running = reads.running(ref.pid, ref.starttime)
            entry["PID"] = str(ref.pid)
            entry["State"] = "Running" if running else "Terminated (the process is gone)"
            if running:
                entry["Started"] = _when(reads.started(ref.starttime))
            entry["Restart Count"] = str(ref.restarts)
        entry["Command"] = (" ".join(spec.command) if spec.command
                            else "podnet's HTTP responder" if spec.ports else "pause")
        entry["Ports"] = ", ".join(f"{p['containerPort']}/{p['protocol']}"
                                   + (f" (host port {p['hostPort']})" if "hostPort" in p else "")
                                   for p in _ports(spec)) or "<none>"
        entry["Log"] = container_log(record, pod, spec.name)
        out[spec.name] = entry
    return out


def _pod_end(pod_ns: Namespace | None) -> Interface | None:
    if pod_ns is None:
        return None
    return next((i for i in pod_ns.interfaces if i.kind == "veth"), None)


def _veth_pair(pod: PodLayout, host: Host) -> dict[str, str]:
    pod_ns = namespace(host, pod.netns)
    node_ns = namespace(host, pod.node)
    inner = _pod_end(pod_ns)
    outer = node_ns.interface(pod.veth) if node_ns else None
    out = {
        "Pod end": (f"{inner.ifname} (ifindex {inner.ifindex}) in {pod.netns}" if inner
                    else f"missing: no veth in {pod.netns}"),
        "Node end": (f"{outer.ifname} (ifindex {outer.ifindex}) in {pod.node}"
                     + (f", port of {outer.master}" if outer.master else "")
                     + (f", {' '.join(outer.addresses)}" if outer.addresses else "")
                     if outer else f"missing: no {pod.veth} on node {pod.node}"),
    }
    if inner and outer:
        joined = (inner.peer is not None and inner.peer.ifindex == outer.ifindex
                  and inner.peer.netns == (node_ns.label if node_ns else None))
        out["Joined"] = (f"yes: {inner.ifname}@if{outer.ifindex} and {outer.ifname}@if"
                         f"{inner.ifindex} name each other" if joined
                         else "NO: the two ends are not each other's peer")
    return out


_PARSED: dict[int, tuple[object, list[tuple[Any, Any]]]] = {}


def _networks(node_ns: Namespace) -> list[tuple[Any, Any]]:
    """The node's routes with their destinations parsed, once per reading of the node (the
    dashboard describes every pod of a node from the same reading)."""
    hit = _PARSED.get(id(node_ns.routes))
    if hit is not None and hit[0] is node_ns.routes:
        return hit[1]
    parsed = [(ipaddress.ip_network(r.dst, strict=False), r) for r in node_ns.routes
              if r.dst != "default"]
    if len(_PARSED) > 64:
        _PARSED.clear()
    _PARSED[id(node_ns.routes)] = (node_ns.routes, parsed)
    return parsed


def _routes_towards(node_ns: Namespace, ip: str) -> list[str]:
    """The node's routes whose destination holds the pod's address, most specific first."""
    from podnet.render.inspect_text import route_text

    addr = ipaddress.ip_address(ip)
    found = [(net.prefixlen, r) for net, r in _networks(node_ns)
             if net.version == addr.version and addr in net]
    found.sort(key=lambda item: -item[0])
    return [route_text(r) for _, r in found]


def describe_pod(record: LabState, obj: Obj, reads: KernelReads) -> dict[str, Any]:
    lay = record.layout
    pod = lay.pod(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")
    if pod is None:
        return {"Name": obj["metadata"]["name"], "Status": "gone from the lab's record"}
    node = lay.node(pod.node)
    host = reads.host([pod.netns, node.netns])
    pod_ns, node_ns = namespace(host, pod.netns), namespace(host, node.netns)
    ips = [str(i.ip) for i in each_family(pod, "ips", "ip")]
    services = [f"{s.namespace}/{s.name} ({s.cluster_ip if s.cluster_ips else 'headless'})"
                for s in lay.services
                if pod.key in s.endpoints]
    out: dict[str, Any] = {
        "Name": pod.name,
        "Namespace": pod.namespace,
        "Node": f"{node.name}/{each_family(node, 'ips', 'ip')[0].ip}",
        "Labels": [f"{k}={v}" for k, v in pod.labels],
        "Status": obj["status"]["phase"],
        "IP": ips[0],
        "IPs": ips,
        "Network namespace": f"{pod.netns} ({path_of(pod.netns)})"
        + (", its node's: hostNetwork" if pod.host_network else ""),
        "Containers": _containers(record, pod, reads),
    }
    if pod.host_network:
        out["Interfaces"] = f"node {node.name}'s (`podnet describe node {node.name}`)"
    elif pod_ns is None:
        out["Interfaces"] = f"the namespace {pod.netns} is gone: `podnet up` rebuilds the pod"
    else:
        out["Interfaces"] = [interface_line(i) for i in pod_ns.interfaces]
        out["Veth pair"] = _veth_pair(pod, host)
        out["Routes"] = route_lines(pod_ns)
    if node_ns is not None:
        out["Node routes"] = [line for ip in ips
                                               for line in _routes_towards(node_ns, ip)]
    out["Services"] = services
    return out


PODS = register(Kind(
    name="pods", singular="pod", kind="Pod", aliases=("po",), namespaced=True,
    columns=(
        Column("NAME", lambda o: o["metadata"]["name"]),
        Column("READY", lambda o: o["status"]["ready"]),
        Column("STATUS", lambda o: o["status"]["phase"]),
        Column("RESTARTS", _restarts),
        # kubectl's IP is status.podIP, the first family's; -o wide shows every one (podIPs).
        Column("IP", lambda o: o["status"]["podIP"],
               wide_value=lambda o: ",".join(i["ip"] for i in o["status"]["podIPs"])),
        Column("NODE", lambda o: o["spec"]["nodeName"]),
        Column("NETNS", lambda o: o["podnet"]["netns"], wide=True),
        Column("VETH", lambda o: o["podnet"]["veth"], wide=True),
        Column("PIDS", _pids, wide=True),
    ),
    collect=_collect,
    describe=describe_pod,
    help="the lab's pods: network namespaces with containers inside",
))
