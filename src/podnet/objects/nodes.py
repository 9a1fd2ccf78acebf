"""Nodes: one network namespace each, joined to the node network by a veth whose peer is a port
of the node network's bridge; described with every interface, route and pod."""

from __future__ import annotations

from typing import Any

from podnet.inspect.model import Host
from podnet.kernel.netns import path_of
from podnet.objects.common import each_family, interface_line, namespace, route_lines
from podnet.objects.kinds import Column, Kind, Obj, register
from podnet.objects.reads import KernelReads
from podnet.plan.layout import NodeLayout
from podnet.state import LabState

__all__ = ["NODES", "node_labels"]


def node_labels(node: NodeLayout) -> dict[str, str]:
    """The labels kind's nodes carry, so `-l node-role.kubernetes.io/control-plane` works."""
    labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux"}
    if node.role == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
    return labels


def _collect(record: LabState, reads: KernelReads) -> list[Obj]:
    out = []
    for n in record.layout.nodes:
        ips = [str(i.ip) for i in each_family(n, "ips", "ip")]
        cidrs = [str(c) for c in each_family(n, "pod_cidrs", "pod_cidr")]
        out.append({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n.name, "labels": node_labels(n)},
            "spec": {"podCIDR": cidrs[0] if cidrs else None, "podCIDRs": cidrs,
                     "role": n.role},
            "status": {
                "ready": reads.exists(n.netns),
                "internalIP": ips[0],
                "addresses": [*({"type": "InternalIP", "address": ip} for ip in ips),
                              {"type": "Hostname", "address": n.name}],
            },
            "podnet": {"netns": n.netns, "uplink": n.uplink,
                       "pods": len(record.layout.pods_on(n.name))},
        })
    return out


def _internal_ips(o: Obj) -> str:
    return ",".join(a["address"] for a in o["status"]["addresses"] if a["type"] == "InternalIP")


def _uplink(record: LabState, node: NodeLayout, host: Host) -> dict[str, str]:
    fabric = record.layout.fabric_netns
    node_ns, fabric_ns = namespace(host, node.netns), namespace(host, fabric)
    outer = fabric_ns.interface(node.uplink) if fabric_ns else None
    inner = None
    if node_ns is not None:
        inner = next((i for i in node_ns.interfaces
                      if i.peer is not None and outer is not None
                      and i.peer.ifindex == outer.ifindex and i.peer.netns == fabric), None)
    out = {
        "Node end": (f"{inner.ifname} (ifindex {inner.ifindex}) {' '.join(inner.addresses)}"
                     if inner else "missing: no veth of the node leads to the node network"),
        "Peer": (f"{outer.ifname} (ifindex {outer.ifindex}) in {fabric}, the node network"
                 + (f", port of bridge {outer.master}" if outer.master else "")
                 if outer else f"missing: no {node.uplink} in {fabric}"),
    }
    return out


def describe_node(record: LabState, obj: Obj, reads: KernelReads) -> dict[str, Any]:
    lay = record.layout
    node = next((n for n in lay.nodes if n.name == obj["metadata"]["name"]), None)
    if node is None:
        return {"Name": obj["metadata"]["name"], "Status": "gone from the lab's record"}
    host = reads.host([node.netns, lay.fabric_netns])
    node_ns = namespace(host, node.netns)
    out: dict[str, Any] = {
        "Name": node.name,
        "Roles": node.role,
        "Labels": [f"{k}={v}" for k, v in node_labels(node).items()],
        "Addresses": [*(f"InternalIP: {i.ip}" for i in each_family(node, "ips", "ip")),
                      f"Hostname: {node.name}"],
        "PodCIDR": str(node.pod_cidr) if node.pod_cidr else "<none>: pods use the node network",
        "PodCIDRs": [str(c) for c in each_family(node, "pod_cidrs", "pod_cidr")],
        "Network namespace": f"{node.netns} ({path_of(node.netns)})",
        "Ready": "True" if node_ns is not None else "False (its namespace is gone)",
    }
    if node_ns is not None:
        out["Uplink"] = _uplink(record, node, host)
        out["Interfaces"] = [interface_line(i) for i in node_ns.interfaces]
        out["Routes"] = route_lines(node_ns)
    out["Pods"] = [f"{p.key} {', '.join(str(i.ip) for i in each_family(p, 'ips', 'ip'))} "
                   + ("(hostNetwork: the node's own)" if p.host_network else f"via {p.veth}")
                   for p in lay.pods_on(node.name)]
    return out


NODES = register(Kind(
    name="nodes", singular="node", kind="Node", aliases=("no",), namespaced=False,
    columns=(
        Column("NAME", lambda o: o["metadata"]["name"]),
        Column("STATUS", lambda o: "Ready" if o["status"]["ready"] else "NotReady"),
        Column("ROLES", lambda o: o["spec"]["role"]),
        # As kubectl: the first InternalIP (and pod CIDR); -o wide shows every family's.
        Column("INTERNAL-IP", lambda o: o["status"]["internalIP"], wide_value=_internal_ips),
        Column("POD-CIDR", lambda o: o["spec"]["podCIDR"],
               wide_value=lambda o: ",".join(o["spec"]["podCIDRs"])),
        Column("PODS", lambda o: o["podnet"]["pods"]),
        Column("NETNS", lambda o: o["podnet"]["netns"], wide=True),
        Column("UPLINK", lambda o: o["podnet"]["uplink"], wide=True),
    ),
    collect=_collect,
    describe=describe_node,
    help="the lab's nodes: network namespaces on the node network, holding their pods' veths",
))
