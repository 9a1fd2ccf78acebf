"""`podnet get`: the lab's pods, nodes, Services and veth links, as kubectl lists them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from podnet import state as lab_state
from podnet.cli.context import cluster_option, require_lab
from podnet.errors import StateError
from podnet.render.columns import columns
from podnet.render.jsonpath import jsonpath

__all__ = ["get"]


def _pod_objects(record: lab_state.LabState) -> list[dict[str, Any]]:
    from podnet.runtime.procs import ProcessRef, is_alive

    out = []
    for pod in record.layout.pods:
        refs = record.containers_of(pod.key)
        alive = {r.name: is_alive(ProcessRef(r.pid, r.starttime)) for r in refs}
        ready = sum(alive.values())
        node = record.layout.node(pod.node)
        out.append({
            "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace,
                         "labels": dict(pod.labels)},
            "spec": {"nodeName": pod.node,
                     "containers": [{"name": c.name, "command": c.command,
                                     "ports": [{"containerPort": p} for p in c.ports]}
                                    for c in pod.containers]},
            "status": {
                "phase": "Running" if ready == len(pod.containers) else "Failed",
                "podIP": str(pod.ip.ip),
                "hostIP": str(node.ip.ip),
                "ready": f"{ready}/{len(pod.containers)}",
                "containerStatuses": [{"name": r.name, "pid": r.pid, "running": alive[r.name]}
                                      for r in refs],
            },
            "podnet": {"netns": pod.netns, "veth": pod.veth, "hostsFile": pod.hosts_file},
        })
    return out


def _node_objects(record: lab_state.LabState) -> list[dict[str, Any]]:
    from podnet.kernel import netns

    return [
        {
            "kind": "Node",
            "metadata": {"name": n.name},
            "spec": {"podCIDR": str(n.pod_cidr), "role": n.role},
            "status": {"ready": netns.exists(n.netns), "internalIP": str(n.ip.ip)},
            "podnet": {"netns": n.netns, "uplink": n.uplink,
                       "pods": len(record.layout.pods_on(n.name))},
        }
        for n in record.layout.nodes
    ]


def _emit(objects: list[dict[str, Any]], output: str | None, table: Any) -> None:
    if output == "json":
        click.echo(json.dumps({"kind": "List", "items": objects}, indent=2))
    elif output == "name":
        for o in objects:
            click.echo(f"{o['kind'].lower()}/{o['metadata']['name']}")
    elif output and output.startswith("jsonpath="):
        doc: Any = {"kind": "List", "items": objects}
        if len(objects) == 1:
            doc = objects[0]
        click.echo(jsonpath(output.removeprefix("jsonpath="), doc))
    else:
        click.echo(table(objects, output == "wide"))


def _pods_table(pods: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NAMESPACE", "NAME", "READY", "STATUS", "IP", "NODE"]
    if wide:
        headers += ["NETNS", "VETH", "PIDS"]
    rows = []
    for p in pods:
        row = [p["metadata"]["namespace"], p["metadata"]["name"], p["status"]["ready"],
               p["status"]["phase"], p["status"]["podIP"], p["spec"]["nodeName"]]
        if wide:
            pids = ",".join(str(c["pid"]) for c in p["status"]["containerStatuses"]) or "-"
            row += [p["podnet"]["netns"], p["podnet"]["veth"], pids]
        rows.append(row)
    return columns(headers, rows)


def _nodes_table(nodes: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NAME", "STATUS", "ROLES", "INTERNAL-IP", "POD-CIDR", "PODS"]
    if wide:
        headers += ["NETNS", "UPLINK"]
    rows = []
    for n in nodes:
        row = [n["metadata"]["name"], "Ready" if n["status"]["ready"] else "NotReady",
               n["spec"]["role"], n["status"]["internalIP"], n["spec"]["podCIDR"],
               n["podnet"]["pods"]]
        if wide:
            row += [n["podnet"]["netns"], n["podnet"]["uplink"]]
        rows.append(row)
    return columns(headers, rows)


def _link_objects(record: lab_state.LabState) -> list[dict[str, Any]]:
    """Every veth pair of the lab, both ends, read from the kernel (not from the record)."""
    from podnet.kernel import netns
    from podnet.kernel.netlink import Netlink

    lay = record.layout
    pods_by_veth = {(p.node, p.veth): p for p in lay.pods}
    out = []
    for node in lay.nodes:
        if not netns.exists(node.netns):
            continue
        with Netlink.open(netns.path_of(node.netns), label=node.netns) as nl:
            addrs: dict[int, list[str]] = {}
            for a in nl.addresses():
                if a["family"] == 2:
                    addrs.setdefault(a["index"], []).append(a["address"])
            for link in nl.links():
                if link["kind"] != "veth":
                    continue
                pod = pods_by_veth.get((node.name, link["ifname"]))
                peer_ns = pod.netns if pod else lay.fabric_netns
                out.append({
                    "kind": "Link",
                    "metadata": {"name": link["ifname"]},
                    "node": node.name,
                    "ifindex": link["index"],
                    "mac": link["mac"],
                    "mtu": link["mtu"],
                    "state": link["state"],
                    "addresses": addrs.get(link["index"], []),
                    "peer": {"ifname": "eth0", "ifindex": link["link"], "netns": peer_ns,
                             "pod": pod.key if pod else None},
                })
    return out


def _links_table(links: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NODE", "NAME", "STATE", "ADDRESSES", "PEER", "POD"]
    if wide:
        headers += ["MAC", "MTU", "PEER-NETNS"]
    rows = []
    for lk in links:
        row = [lk["node"], f"{lk['metadata']['name']}@if{lk['peer']['ifindex']}", lk["state"],
               ",".join(lk["addresses"]) or "-", lk["peer"]["ifname"],
               lk["peer"]["pod"] or "(node uplink)"]
        if wide:
            row += [lk["mac"], lk["mtu"], lk["peer"]["netns"]]
        rows.append(row)
    return columns(headers, rows)


@click.command()
@click.argument("kind", type=click.Choice(["pods", "pod", "po", "nodes", "node", "no", "links",
                                           "link", "services", "service", "svc"]))
@click.argument("name", required=False)
@click.option("-n", "--namespace", help="Only pods in this Kubernetes namespace.")
@click.option("-o", "--output", help="wide | json | name | jsonpath=TEMPLATE")
@cluster_option
def get(kind: str, name: str | None, namespace: str | None, output: str | None,
        cluster: str | None) -> None:
    """List pods, nodes, services or veth links of the lab, like kubectl get."""
    record = require_lab(cluster)
    table: Callable[[list[dict[str, Any]], bool], str]
    if kind.startswith("po"):
        objects = _pod_objects(record)
        if namespace:
            objects = [o for o in objects if o["metadata"]["namespace"] == namespace]
        table = _pods_table
    elif kind.startswith("no"):
        objects, table = _node_objects(record), _nodes_table
    elif kind.startswith(("svc", "service")):
        objects = _service_objects(record)
        if namespace:
            objects = [o for o in objects if o["metadata"]["namespace"] == namespace]
        table = _services_table
    else:
        objects, table = _link_objects(record), _links_table
    if name:
        objects = [o for o in objects if o["metadata"]["name"] == name.split("/")[-1]]
        if not objects:
            raise StateError(f"{kind} {name} not found", hint=f"list them with `podnet get {kind}`")
    _emit(objects, output, table)


def _service_objects(record: lab_state.LabState) -> list[dict[str, Any]]:
    return [
        {
            "kind": "Service",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {
                "type": s.type,
                "clusterIP": str(s.cluster_ip),
                "selector": dict(s.selector),
                "ports": [{"name": p.name, "protocol": p.protocol, "port": p.port,
                           "targetPort": p.target_port, "nodePort": p.node_port}
                          for p in s.ports],
            },
            "endpoints": list(s.endpoints),
        }
        for s in record.layout.services
    ]


def _services_table(services: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "ENDPOINTS"]
    if wide:
        headers.append("SELECTOR")
    rows = []
    for s in services:
        spec = s["spec"]
        ports = ",".join(
            f"{p['port']}{':' + str(p['nodePort']) if p['nodePort'] else ''}/{p['protocol']}"
            for p in spec["ports"]
        )
        row = [s["metadata"]["namespace"], s["metadata"]["name"], spec["type"], spec["clusterIP"],
               ports, len(s["endpoints"])]
        if wide:
            row.append(",".join(f"{k}={v}" for k, v in spec["selector"].items()) or "-")
        rows.append(row)
    return columns(headers, rows)
