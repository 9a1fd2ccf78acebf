"""Checks that need the whole file at once: overlapping subnets, names used twice, pods pinned to
nodes that do not exist, nodes whose pod CIDR cannot hold their pods, Service ports.

The loader reads each document into a draft (`podnet.model.drafts`: the model's objects plus
where each came from); `check` returns every problem it finds across drafts, and
`service_specs` resolves what Services need from pods (named target ports). Problems are
collected, never raised, so that a person sees all of them at once.
"""

from __future__ import annotations

import heapq
import ipaddress
import math

from podnet.errors import Problem
from podnet.model.addresses import Family, IPAddress, IPNetwork, nth_host
from podnet.model.cluster_dns import DNS_DEPLOYMENT, DNS_NAMESPACE, DNS_SERVICE, DNS_SERVICE_INDEX
from podnet.model.drafts import (
    KIND_SUBNETS,
    SUBNET_KEYS,
    ClusterDraft,
    NodeDraft,
    Origin,
    PodDraft,
    ServiceDraft,
    did_you_mean,
)
from podnet.model.types import (
    INTERNET_SUBNET,
    INTERNET_SUBNET6,
    PodSpec,
    ServicePort,
    ServiceSpec,
)

__all__ = [
    "check",
    "duplicates",
    "host_port_conflicts",
    "service_families",
    "service_specs",
    "usable_pod_addresses",
]

def usable_pod_addresses(prefix: int) -> int:
    """Pod addresses in a node's /prefix: all but network, gateway (the node) and broadcast."""
    return max(0, (1 << (32 - prefix)) - 3)


def check(draft: ClusterDraft) -> list[Problem]:
    """Every problem that spans documents or objects, in file order as far as possible."""
    problems: list[Problem] = []
    problems += _subnets(draft)
    problems += _shape(draft)
    problems += _node_names(draft)
    problems += duplicates(
        "Deployment", [(key, origin, "metadata.name") for key, origin in draft.deployments]
    )
    problems += duplicates(
        "pod", [(p.spec.key, p.origin, "metadata.name") for p in draft.pods if not p.spec.owner]
    )
    problems += duplicates(
        "Service",
        [(f"{s.namespace}/{s.name}", s.origin, "metadata.name") for s in draft.services],
    )
    problems += _addon(draft)
    problems += _pinned(draft)
    problems += host_port_conflicts(draft)
    problems += _capacity(draft)
    problems += _service_addresses(draft)
    return problems


IPV6_NODE_PREFIX = 64  # each node's IPv6 pod range, as --node-cidr-mask-size-ipv6
_INTERNET: dict[int, IPNetwork] = {4: INTERNET_SUBNET, 6: INTERNET_SUBNET6}


def _subnets(draft: ClusterDraft) -> list[Problem]:
    problems = []
    nets = draft.subnets
    for i, a in enumerate(SUBNET_KEYS):
        for b in SUBNET_KEYS[i + 1 :]:
            for na in nets[a] or ():
                for nb in nets[b] or ():
                    if na.version != nb.version or not na.overlaps(nb):
                        continue
                    # Report on the key the file set, naming the other (and if it is a default).
                    key, other = (b, a) if b in draft.explicit else (a, b)
                    mine, theirs = (nb, na) if key == b else (na, nb)
                    default = "" if other in draft.explicit else " (the default)"
                    problems.append(
                        draft.origin.problem(
                            draft.net_field(key),
                            f"{mine} overlaps {other} {theirs}{default}",
                            f"give each range its own addresses; {KIND_SUBNETS}",
                        )
                    )
    for key in SUBNET_KEYS:
        for net in nets[key] or ():
            world = _INTERNET[net.version]
            if net.overlaps(world) and key in draft.explicit:
                problems.append(
                    draft.origin.problem(
                        draft.net_field(key),
                        f"{net} overlaps {world}, where the lab's `internet` namespace "
                        "plays the outside world",
                        f"pick a range outside {world}; {KIND_SUBNETS}",
                    )
                )
    for pod in nets["podSubnet"] or ():
        prefix = draft.node_cidr_prefix if pod.version == 4 else IPV6_NODE_PREFIX
        problems += _node_ranges(draft, pod, prefix)
    problems += _room(draft)
    return problems


def _hosts(net: IPNetwork) -> int:
    """Addresses of `net` a host may hold on a LAN: all but the network's own and, in IPv4, the
    broadcast; a /31 or /32 (/127, /128) is no LAN."""
    if net.max_prefixlen - net.prefixlen < 2:
        return 0
    return net.num_addresses - (2 if net.version == 4 else 1)


def _room(draft: ClusterDraft) -> list[Problem]:
    """The node network holds its gateway and every node (and with vpc every pod), and each
    serviceSubnet a ClusterIP per Service: /30-/32 node networks raised StopIteration."""
    problems = []
    pods = sum(1 for p in draft.pods if not p.spec.host_network)  # hostNetwork: the node's
    need = len(draft.nodes) + 1 + (pods if draft.attachment == "vpc" else 0)
    what = f"its gateway and {len(draft.nodes)} node{'s' if len(draft.nodes) > 1 else ''}"
    if draft.attachment == "vpc":
        what += f" and {pods} pods"
    for net in draft.subnets["nodeSubnet"] or ():
        if draft.nodes and _hosts(net) < need:
            wider = net.supernet(new_prefix=net.max_prefixlen - math.ceil(math.log2(need + 2)))
            problems.append(draft.origin.problem(
                draft.net_field("nodeSubnet"),
                f"{net} has room for {_hosts(net)} addresses: the node network needs {need}, "
                f"{what}",
                f"use a /{wider.prefixlen} or wider, such as {wider} (kind's is 172.18.0.0/16)",
            ))
    count = len(draft.services)
    for net in draft.subnets["serviceSubnet"] or ():
        if count and _hosts(net) < count:
            wider = net.supernet(new_prefix=net.max_prefixlen - math.ceil(math.log2(count + 2)))
            problems.append(draft.origin.problem(
                draft.net_field("serviceSubnet"),
                f"{net} has room for {_hosts(net)} ClusterIPs, the file has {count} "
                f"Service{'s' if count > 1 else ''}",
                f"use a /{wider.prefixlen} or wider (kind's is 10.96.0.0/16)",
            ))
    return problems


def _node_ranges(draft: ClusterDraft, pod: IPNetwork, prefix: int | None) -> list[Problem]:
    """Whether `pod` cuts into a /prefix range for every node."""
    count = len(draft.nodes)
    if prefix is None or count == 0 or draft.attachment == "vpc":
        return []
    key = "nodeCIDRPrefix" if pod.version == 4 else "podSubnet"
    if prefix < pod.prefixlen:
        hint = (f"use nodeCIDRPrefix {max(pod.prefixlen, 24)} or more, or widen podSubnet"
                if pod.version == 4 else f"use an IPv6 podSubnet of /{prefix} or wider")
        return [
            draft.origin.problem(
                draft.net_field(key),
                f"/{prefix} is wider than podSubnet {pod}: no node range fits in it",
                hint,
            )
        ]
    ranges = 2 ** (prefix - pod.prefixlen)
    if ranges >= count:
        return []
    needed = max(0, prefix - math.ceil(math.log2(count)))
    wider = ipaddress.ip_network(f"{pod.network_address}/{needed}", strict=False)
    more = ", or a larger nodeCIDRPrefix" if pod.version == 4 else ""
    return [
        draft.origin.problem(
            draft.net_field("podSubnet"),
            f"{pod} holds {ranges} node range{'s' if ranges != 1 else ''} of /{prefix}, "
            f"the cluster has {count} nodes",
            f"use a podSubnet of /{needed} or wider (such as {wider}){more}",
        )
    ]


def _shape(draft: ClusterDraft) -> list[Problem]:
    """Attachments and routings that cannot go together."""
    if draft.attachment != "vpc":
        return []
    problems = []
    if draft.ip_family != "ipv4":
        problems.append(draft.origin.problem(
            draft.net_field("ipFamily"),
            f"attachment vpc builds IPv4 pods only, not {draft.ip_family}",
            "use ipFamily ipv4 with vpc, or attachment ptp or bridge for IPv6",
        ))
    if draft.routing != "static":
        problems.append(draft.origin.problem(
            draft.net_field("routing"),
            f"attachment vpc puts pods on the node network itself: routing {draft.routing} has "
            "nothing to route",
            "leave routing out (or static) with attachment vpc",
        ))
    return problems


def _node_names(draft: ClusterDraft) -> list[Problem]:
    problems = []
    first: dict[str, NodeDraft] = {}
    for node in draft.nodes:
        earlier = first.setdefault(node.spec.name, node)
        if earlier is node:
            continue
        if node.named:
            problems.append(
                node.origin.problem(
                    "name",
                    f"'{node.spec.name}' is already the name of {earlier.origin.path}",
                    "give every node its own name",
                )
            )
        else:
            problems.append(
                node.origin.problem(
                    "",
                    f"kind names it '{node.spec.name}', already the name of {earlier.origin.path}",
                    f"set name: on {node.origin.path}, or rename {earlier.origin.path}",
                )
            )
    return problems


def duplicates(kind: str, items: list[tuple[str, Origin, str]]) -> list[Problem]:
    problems = []
    first: dict[str, Origin] = {}
    for key, origin, rel in items:
        earlier = first.setdefault(key, origin)
        if earlier is not origin:
            problems.append(
                origin.problem(
                    rel,
                    f"{kind} {key} is already defined in {earlier.doc}",
                    f"{kind} names must be unique within a namespace: rename one",
                )
            )
    return problems


def _pinned(draft: ClusterDraft) -> list[Problem]:
    names = [n.spec.name for n in draft.nodes]
    if not names:  # `nodes` itself was wrong, and reported
        return []
    if draft.origin.doc == "cluster":
        otherwise = f"with no Cluster document the one node is {names[0]}: add one with nodes"
    else:
        otherwise = f"the nodes are {', '.join(names)}"
    problems = []
    reported: set[tuple[str, str]] = set()  # one report per Deployment, not per replica
    for pod in draft.pods:
        node = pod.spec.node
        if node is None or node in names or (pod.origin.where, node) in reported:
            continue
        reported.add((pod.origin.where, node))
        problems.append(
            pod.origin.problem(
                "spec.nodeName",
                f"no node is named '{node}'",
                did_you_mean(node, names, otherwise),
            )
        )
    return problems


def _schedulable(nodes: list[NodeDraft]) -> list[NodeDraft]:
    """Where unpinned pods may go: the workers, as kind taints its control-plane nodes; a
    cluster of control-plane nodes only (kind's default) schedules on them. The planner
    (`podnet.plan.layout`) places pods by the same rule."""
    workers = [n for n in nodes if n.spec.role == "worker"]
    return workers or nodes


def _capacity(draft: ClusterDraft) -> list[Problem]:
    """Nodes whose pod CIDR cannot hold the pods they get: pinned pods, then every other pod
    on the least-loaded schedulable node (ties in file order), as the planner places them."""
    prefix = draft.node_cidr_prefix
    # IPv6 node ranges are /64s, and vpc pods share the node network: only IPv4 ranges fill up.
    if prefix is None or not draft.nodes or 4 not in draft.families or draft.attachment == "vpc":
        return []
    index = {n.spec.name: i for i, n in enumerate(draft.nodes)}
    pinned = [0] * len(draft.nodes)
    unpinned = 0
    for pod in draft.pods:
        if pod.spec.host_network:
            continue  # takes no pod address: it has its node's
        if pod.spec.node is None:
            unpinned += 1
        elif pod.spec.node in index:
            pinned[index[pod.spec.node]] += 1
    extra = [0] * len(draft.nodes)
    heap = [(pinned[index[n.spec.name]], index[n.spec.name]) for n in _schedulable(draft.nodes)]
    heapq.heapify(heap)
    for _ in range(unpinned):
        load, i = heapq.heappop(heap)
        extra[i] += 1
        heapq.heappush(heap, (load + 1, i))
    usable = usable_pod_addresses(prefix)
    problems = []
    for i, node in enumerate(draft.nodes):
        need = pinned[i] + extra[i]
        if need <= usable:
            continue
        fits = 32 - math.ceil(math.log2(need + 3))
        parts = [f"{pinned[i]} pinned"] if pinned[i] else []
        if extra[i]:
            parts.append(f"{extra[i]} of the {unpinned} unpinned")
        problems.append(
            draft.origin.problem(
                draft.net_field("nodeCIDRPrefix"),
                f"node {node.spec.name} gets {need} pods ({', '.join(parts)}), "
                f"a /{prefix} has {usable} pod addresses",
                f"use nodeCIDRPrefix {fits} or less, or add worker nodes",
            )
        )
    return problems


def host_port_conflicts(draft: ClusterDraft) -> list[Problem]:
    """Host ports two pods cannot both have: a node has one listener per port and protocol (a
    hostPort, or a hostNetwork pod's own port). Pods pinned to one node that ask for the same
    port, and more pods asking for a port than there are nodes to give it (the scheduler would
    leave the rest Pending; the planner spreads the others, as its NodePorts filter does)."""
    nodes = [n.spec.name for n in draft.nodes]
    schedulable = {n.spec.name for n in _schedulable(draft.nodes)}
    wanted: dict[tuple[int, str], list[PodDraft]] = {}
    for pod in draft.pods:
        for key in pod.host_port_fields:
            wanted.setdefault(key, []).append(pod)
    problems = []
    for (port, protocol), pods in wanted.items():
        holders: dict[str, PodDraft] = {}
        for pod in pods:
            node = pod.spec.node
            if node is None or node not in nodes:
                continue
            first = holders.setdefault(node, pod)
            if first is not pod:
                problems.append(Problem(
                    pod.origin.where, pod.host_port_fields[(port, protocol)],
                    f"host port {port}/{protocol} on node {node} is already taken by pod "
                    f"{first.spec.key}",
                    "a node has one listener per port: give one of them another hostPort, or "
                    "pin them to different nodes"))
        unpinned = [p for p in pods if p.spec.node is None]
        free = sorted(schedulable - set(holders))
        if len(unpinned) > len(free):
            last = unpinned[len(free)]
            where = ", ".join(free) if free else "none is left"
            problems.append(Problem(
                last.origin.where, last.host_port_fields[(port, protocol)],
                f"{len(unpinned)} unpinned pods ask for host port {port}/{protocol}, and "
                f"{len(free)} node{'s' if len(free) != 1 else ''} can give it ({where})",
                "a node gives a host port to one pod: run fewer replicas, add worker nodes, "
                "or reach the pods through a NodePort Service"))
    return problems


def _addon(draft: ClusterDraft) -> list[Problem]:
    """The cluster DNS is every lab's, as kubeadm's is every kind cluster's: a file names
    neither its Service nor its Deployment, nor takes its address."""
    hint = (f"leave it out: every lab has {DNS_NAMESPACE}/{DNS_SERVICE} and the "
            f"{DNS_DEPLOYMENT} pods behind it, as kind does "
            f"(podnet get pods,services -n {DNS_NAMESPACE})")
    problems = [origin.problem("metadata.name", f"Deployment {key} is the lab's cluster DNS", hint)
                for key, origin in draft.deployments
                if key == f"{DNS_NAMESPACE}/{DNS_DEPLOYMENT}"]
    nets = draft.subnets["serviceSubnet"]
    first = nets[0] if nets else None
    dns_ip = nth_host(first, DNS_SERVICE_INDEX) if first else None
    for svc in draft.services:
        if (svc.namespace, svc.name) == (DNS_NAMESPACE, DNS_SERVICE):
            problems.append(svc.origin.problem(
                "metadata.name", f"Service {DNS_NAMESPACE}/{DNS_SERVICE} is the lab's cluster DNS",
                hint))
        elif dns_ip is not None and dns_ip in svc.cluster_ips:
            problems.append(svc.origin.problem(
                "spec.clusterIP", f"{dns_ip} is the cluster DNS's address "
                f"({DNS_NAMESPACE}/{DNS_SERVICE}, the 10th of serviceSubnet {first})",
                "pick another address, or leave clusterIP out"))
    return problems


def _service_addresses(draft: ClusterDraft) -> list[Problem]:
    problems = []
    nets = {n.version: n for n in draft.subnets["serviceSubnet"] or ()}
    ips: dict[IPAddress, ServiceDraft] = {}
    node_ports: dict[tuple[int, str], ServiceDraft] = {}
    for svc in draft.services:
        for ip in svc.cluster_ips:
            net = nets.get(ip.version)
            if net is None:
                if draft.subnets["serviceSubnet"] is not None:
                    problems.append(svc.origin.problem(
                        "spec.clusterIP",
                        f"{ip} is IPv{ip.version}, and the cluster has no IPv{ip.version} "
                        "serviceSubnet",
                        "leave clusterIP out, or set networking.ipFamily to dual",
                    ))
            elif ip not in net or ip in (net.network_address, net.broadcast_address):
                problems.append(
                    svc.origin.problem(
                        "spec.clusterIP",
                        f"{ip} is not a usable address of serviceSubnet {net}",
                        f"pick an address inside {net}, or leave clusterIP out",
                    )
                )
            elif (other := ips.setdefault(ip, svc)) is not svc:
                problems.append(
                    svc.origin.problem(
                        "spec.clusterIP",
                        f"{ip} is already the clusterIP of Service {other.namespace}/{other.name}",
                        "give each Service its own clusterIP, or leave it out",
                    )
                )
        for port in svc.ports:
            if port.node_port is None:
                continue
            owner = node_ports.setdefault((port.node_port, port.protocol), svc)
            if owner is not svc:
                problems.append(
                    Problem(
                        svc.origin.where,
                        f"{port.field}.nodePort",
                        f"{port.node_port}/{port.protocol} is already the nodePort of "
                        f"Service {owner.namespace}/{owner.name}",
                        "pick another port in 30000..32767, or leave nodePort out",
                    )
                )
    return problems


def service_families(
    svc: ServiceDraft, cluster: tuple[Family, ...]
) -> tuple[tuple[Family, ...], Problem | None]:
    """The families a Service gets, as the API server decides them from `ipFamilyPolicy`
    (SingleStack by default), `ipFamilies` and `clusterIPs`, and the cluster's families."""
    policy = svc.ip_family_policy or "SingleStack"
    asked = svc.ip_families or tuple(4 if ip.version == 4 else 6 for ip in svc.cluster_ips)
    missing = [f for f in asked if f not in cluster]
    if missing:
        return (), svc.origin.problem(
            "spec.ipFamilies", f"IPv{missing[0]} is not a family of this cluster "
            f"({', '.join(f'IPv{f}' for f in cluster)})",
            "leave ipFamilies out, or set networking.ipFamily to dual")
    if policy == "SingleStack":
        if len(asked) > 1:
            return (), svc.origin.problem(
                "spec.ipFamilyPolicy", "SingleStack with two families",
                "use PreferDualStack or RequireDualStack, or give one family")
        return (asked[0] if asked else cluster[0],), None
    if policy == "RequireDualStack" and len(cluster) < 2:
        return (), svc.origin.problem(
            "spec.ipFamilyPolicy", "RequireDualStack in a single-stack cluster",
            "set networking.ipFamily to dual, or use PreferDualStack")
    first = asked[0] if asked else cluster[0]
    return (first, *(f for f in cluster if f != first)), None


def _selects(selector: tuple[tuple[str, str], ...], pod: PodSpec, namespace: str) -> bool:
    if not selector or pod.namespace != namespace:
        return False
    labels = pod.label_dict()
    return all(labels.get(k) == v for k, v in selector)


def service_specs(draft: ClusterDraft) -> tuple[tuple[ServiceSpec, ...], list[Problem]]:
    """Services with named targetPorts resolved against the containers of the pods they
    select (`targetPort: http` -> the containerPort named http), and their families."""
    services = []
    problems = []
    for svc in draft.services:
        families, problem = service_families(svc, draft.families)
        if problem is not None:
            problems.append(problem)
        ports = []
        for port in svc.ports:
            target = port.target
            if isinstance(target, str):
                found = {
                    p.port_names[target]
                    for p in draft.pods
                    if target in p.port_names and _selects(svc.selector, p.spec, svc.namespace)
                }
                if len(found) != 1:
                    what = "no selected pod names" if not found else "selected pods disagree on"
                    problems.append(
                        Problem(
                            svc.origin.where,
                            f"{port.field}.targetPort",
                            f"{what} a container port '{target}'",
                            "name the port in the pods' containers[].ports[].name, or give "
                            "targetPort as a number",
                        )
                    )
                    continue
                target = found.pop()
            ports.append(
                ServicePort(
                    port=port.port,
                    target_port=target,
                    protocol="UDP" if port.protocol == "UDP" else "TCP",
                    node_port=port.node_port,
                    name=port.name,
                )
            )
        services.append(
            ServiceSpec(
                name=svc.name,
                namespace=svc.namespace,
                type="NodePort" if svc.type == "NodePort" else "ClusterIP",
                selector=svc.selector,
                ports=tuple(ports),
                ip_families=families,
                cluster_ips=tuple(str(ip) for ip in svc.cluster_ips),
                ip_family_policy=svc.ip_family_policy or "SingleStack",
                headless=svc.headless,
            )
        )
    return tuple(services), problems
