"""What each planned step does to the kernel: one function per Action, all idempotent.

Handlers share a `Context` that keeps one netlink socket per namespace for the whole run, so a
node's socket is opened once, not once per pod.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable

from podnet.errors import KernelError, ObjectMissingError, ProcessError
from podnet.kernel import netns, nftables, sysctl
from podnet.kernel.attach import PodAttachment, attach_pod, ensure_bridge
from podnet.kernel.batch import Batch
from podnet.kernel.netlink import OWNER_ALIAS, Netlink
from podnet.plan.layout import INTERNET_KEY, TUNNEL, InternetLayout, Layout, NodeLayout, PodLayout
from podnet.plan.steps import ALL_PODS, Action, Step, rules_file, service_hosts
from podnet.runtime import pod as pod_runtime
from podnet.runtime.container import SpawnRequest
from podnet.runtime.procs import ProcessRef, stop
from podnet.runtime.spawner import Spawner
from podnet.state import ContainerRecord, LabState, log_path

__all__ = ["HANDLERS", "Context"]

_NODE_SYSCTLS = {"net.ipv4.ip_forward": "1"}
_NODE_SYSCTLS_V6 = {"net.ipv6.conf.default.accept_ra": "0", "net.ipv6.conf.all.forwarding": "1"}
_BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"
RULES = nftables.Table("ip", nftables.TABLE)  # the one table the lab writes, on every node


class Context:
    """Open sockets and the record being updated, for one `up` or `down`."""

    def __init__(
        self,
        layout: Layout,
        state: LabState,
        owned_netns: frozenset[str],
        spawner: Spawner | None = None,
    ) -> None:
        self.layout = layout
        self.state = state
        # Namespaces the record named before this run: the only ones we may replace.
        self.owned_netns = owned_netns
        self.spawner = spawner
        self._sockets: dict[str, Netlink] = {}
        # (record key, container names) whose processes the spawner is starting
        self.submitted: list[tuple[str, tuple[str, ...]]] = []
        self._next_index: dict[str, int] = {}
        self.pending: list[nftables.Pending] = []  # nft transactions still running
        self._pod_eth0_index: int | None = None

    def free_index(self, ns: str) -> int:
        """An ifindex unused in namespace `ns`, so one batch can create and address a veth."""
        if ns not in self._next_index:
            self._next_index[ns] = max(link["index"] for link in self.nl(ns).links()) + 1
        self._next_index[ns] += 1
        return self._next_index[ns] - 1

    def pod_eth0_index(self, pod_nl: Netlink) -> int:
        """The first free ifindex of a new pod namespace: lo, plus whatever fallback tunnel
        devices this kernel's modules put in every new namespace (tunl0, sit0...): on a kind
        node that makes pods' eth0 if2 or if3. Asked once per run: all new namespaces match."""
        if self._pod_eth0_index is None:
            self._pod_eth0_index = max(link["index"] for link in pod_nl.links()) + 1
        return self._pod_eth0_index

    def finish(self) -> None:
        """Wait for the work steps left running: nft transactions, then containers."""
        pending, self.pending = self.pending, []
        try:
            for job in pending:
                job.wait()
        finally:
            self.collect_started()

    def collect_started(self) -> None:
        """Wait for the containers submitted so far and record them (PID and start time)."""
        if not self.submitted or self.spawner is None:
            return
        owners, self.submitted = self.submitted, []
        refs = self.spawner.collect()
        cursor = 0
        for key, names in owners:
            record_started(self, key, names, refs[cursor : cursor + len(names)])
            cursor += len(names)

    def nl(self, ns: str) -> Netlink:
        sock = self._sockets.get(ns)
        if sock is None:
            sock = self._sockets[ns] = Netlink.open(netns.path_of(ns), label=ns)
        return sock

    def forget(self, ns: str) -> None:
        sock = self._sockets.pop(ns, None)
        if sock is not None:
            sock.close()  # a socket holds its namespace alive: close before deleting it

    def close(self) -> None:
        for ns in list(self._sockets):
            self.forget(ns)


# --- the node network and nodes ---------------------------------------------------------------


def fabric_create(ctx: Context, step: Step) -> None:
    lay = ctx.layout
    _create_netns(ctx, lay.fabric_netns)
    fab = ctx.nl(lay.fabric_netns)
    fab.set_link("lo", up=True)
    with contextlib.suppress(FileExistsError):
        fab.add_bridge(lay.bridge, mtu=lay.mtu)
    fab.set_link(lay.bridge, up=True, owned=True)
    fab.add_address(lay.bridge, str(lay.fabric_gateway), exist_ok=True)


def fabric_delete(ctx: Context, step: Step) -> None:
    ctx.forget(step.target)
    netns.delete(step.target)


def node_create(ctx: Context, step: Step) -> None:
    lay = ctx.layout
    node = lay.node(step.target)
    path = _create_netns(ctx, node.netns)
    nl = ctx.nl(node.netns)
    nl.set_link("lo", up=True)
    sysctl.write(path, {**_NODE_SYSCTLS, **_NODE_SYSCTLS_V6}, optional=_NODE_SYSCTLS_V6)
    fab = ctx.nl(lay.fabric_netns)
    fab.add_veth(node.uplink, "eth0", path, mtu=lay.mtu)
    fab.set_link(node.uplink, up=True, owned=True, master=lay.bridge)
    nl.add_address("eth0", str(node.ip))
    nl.set_link("eth0", up=True)
    nl.add_route("default", gateway=str(lay.fabric_gateway.ip))
    if lay.attachment == "bridge":
        gateway = ipaddress.IPv4Interface(f"{node.gateway}/{node.pod_cidr.prefixlen}")
        ensure_bridge(nl, "cni0", gateway, lay.pod_mtu)
        _see_bridged_traffic(lay, node, path)
    if lay.routing == "vxlan":
        index = ctx.free_index(node.netns)
        nl.send(
            Batch(f"the VXLAN device of node {node.name}")
            .vxlan_add(TUNNEL, index, vni=lay.vxlan_vni, local=str(node.ip.ip),
                       port=lay.vxlan_port, underlay=nl.index("eth0"), mtu=lay.pod_mtu,
                       mac=node.vtep_mac)
            .addr_add(index, f"{node.vtep_ip}/32")
            .link_set(index, up=True, alias=OWNER_ALIAS)
        )
    pod_runtime.create_pod_uts(node.uts, node.name)
    _write_node_hosts(node)


def _see_bridged_traffic(lay: Layout, node: NodeLayout, path: str) -> None:
    """Show bridged frames to conntrack in this node, as Kubernetes requires of bridge networks:
    a Service reply from one pod of cni0 to another is bridged, and only then does conntrack
    turn its source back into the Service's address."""
    if os.path.exists("/proc/sys/net/bridge"):
        sysctl.write(path, {_BRIDGE_NF: "1"})
    elif lay.services:
        raise KernelError(
            f"node {node.name}: bridge attachment with Services needs the br_netfilter module",
            hint="load it (`modprobe br_netfilter`; it applies to this machine's own bridges "
            "too), or use attachment: ptp",
        )


def node_delete(ctx: Context, step: Step) -> None:
    node = next((n for n in ctx.state.layout.nodes if n.name == step.target), None)
    node = node or ctx.layout.node(step.target)
    ctx.forget(node.netns)
    netns.delete(node.netns)
    pod_runtime.delete_pod_uts(node.uts)
    _unlink(node.hosts_file)


def node_routes(ctx: Context, step: Step) -> None:
    node = ctx.layout.node(step.target)
    if ctx.layout.routing == "vxlan":
        _tunnel_routes(ctx, node, step)
        return
    nl = ctx.nl(node.netns)
    wanted = dict(step.routes)
    fabric_net = ctx.layout.fabric_gateway.network
    for route in nl.routes():
        dst, gw = route["dst"], route["gateway"]
        is_peer_route = gw and dst != "default" and ipaddress.ip_address(gw) in fabric_net
        if is_peer_route and wanted.get(dst) != gw:
            nl.delete_route(dst)
    present = {r["dst"]: r["gateway"] for r in nl.routes()}
    for cidr, via in step.routes:
        if present.get(cidr) != via:
            nl.add_route(cidr, gateway=via)


def _tunnel_routes(ctx: Context, node: NodeLayout, step: Step) -> None:
    """Per remote node: pod CIDR via its VTEP address (onlink), that address's MAC as a
    permanent neighbour, and that MAC's FDB entry pointing at the node: flannel's three writes.
    Entries for nodes that left are removed. One batch, one round trip."""
    nl = ctx.nl(node.netns)
    tun = nl.index(TUNNEL)
    vias = {via for _, via in step.routes}
    macs = {mac for _, mac, _ in step.tunnels}
    batch = Batch(f"the tunnel routes of node {node.name}")
    wanted = {cidr for cidr, _ in step.routes}
    for route in nl.routes():
        ours = route["family"] == socket.AF_INET and route["oif"] == tun
        if ours and route["dst"] != "default" and route["dst"] not in wanted:
            batch.route_delete(route["dst"], oif=tun)
    for entry in nl.neighbours():
        if entry["ifindex"] == tun and entry["dst"] not in vias:
            batch.neigh_delete(tun, entry["dst"])
    for entry in nl.neighbours(bridge=True):
        if entry["ifindex"] == tun and entry["mac"] not in macs and entry["dst"]:
            batch.fdb_delete(tun, entry["mac"], entry["dst"])
    for (cidr, via), (_, mac, remote) in zip(step.routes, step.tunnels, strict=True):
        batch.route_replace(cidr, oif=tun, gateway=via, onlink=True)
        batch.neigh_replace(tun, via, mac)
        batch.fdb_replace(tun, mac, remote)
    nl.send(batch)


def node_rules(ctx: Context, step: Step) -> None:
    """The nodes' nftables table, replaced whole in one transaction per node, side by side."""
    jobs = []
    for name in step.nodes:
        node = ctx.layout.node(name)
        tx = nftables.Transaction(RULES, f"the nftables table of node {name}")
        jobs.append((tx.replace(step.script), netns.path_of(node.netns)))
    if jobs:
        # For people: the transaction `podnet explain` shows, as `up` sent it.
        pod_runtime.write_file_atomic(rules_file(ctx.layout), jobs[0][0].script, mode=0o600)
    # The nft processes finish while the pods are built; `Context.finish` waits for them.
    ctx.pending.append(nftables.start_many(jobs))


# --- the outside world -------------------------------------------------------------------------


def _internet(ctx: Context) -> InternetLayout:
    net = ctx.layout.internet or ctx.state.layout.internet
    if net is None:
        raise ObjectMissingError("this lab has no internet namespace")
    return net


def internet_create(ctx: Context, step: Step) -> None:
    lay = ctx.layout
    net = _internet(ctx)
    path = _create_netns(ctx, net.netns)
    nl = ctx.nl(net.netns)
    nl.set_link("lo", up=True)
    fab = ctx.nl(lay.fabric_netns)
    fab.add_veth(net.link, "eth0", path, mtu=lay.mtu)
    fab.set_link(net.link, up=True, owned=True)
    fab.add_address(net.link, str(net.gateway), exist_ok=True)
    sysctl.write(netns.path_of(lay.fabric_netns), {"net.ipv4.ip_forward": "1"})
    nl.add_address("eth0", str(net.address))
    nl.set_link("eth0", up=True, owned=True)
    # The internet knows the node network (as it knows a docker host's address), never the pods.
    nl.add_route(str(lay.fabric_gateway.network), gateway=str(net.gateway.ip))


def internet_delete(ctx: Context, step: Step) -> None:
    ctx.forget(step.target)
    netns.delete(step.target)
    net = ctx.layout.internet or ctx.state.layout.internet
    if net is not None and net.log:
        _unlink(net.log)


def internet_start(ctx: Context, step: Step) -> None:
    if ctx.spawner is None:
        raise ProcessError(f"cannot start the web server of {step.target}: no spawner")
    net = _internet(ctx)
    os.makedirs(f"{ctx.layout.state_dir}/logs", mode=0o700, exist_ok=True)
    ctx.spawner.submit(
        SpawnRequest(
            netns_path=netns.path_of(net.netns),
            uts_path=None,
            hosts_file=None,
            argv=None,
            ports=[net.port],
            log_path=net.log,
            pod_name="web",
            pod_namespace="internet",
            node_name=net.netns,
            pod_ip=str(net.address.ip),
            container_name="web",
        )
    )
    ctx.submitted.append((INTERNET_KEY, ("web",)))


def internet_stop(ctx: Context, step: Step) -> None:
    _stop_containers(ctx, INTERNET_KEY)


def _write_node_hosts(node: NodeLayout) -> None:
    # A kind node's /etc/hosts, as docker writes it (the lesson's `cat /etc/hosts` on kind-worker).
    text = (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
        f"ff02::2\tip6-allrouters\n{node.ip.ip}\t{node.name}\n"
    )
    pod_runtime.write_file_atomic(node.hosts_file, text)


# --- pods --------------------------------------------------------------------------------------


def pod_create(ctx: Context, step: Step) -> None:
    lay = ctx.layout
    pod = _desired_pod(ctx, step.target)
    node = lay.node(pod.node)
    path = _create_netns(ctx, pod.netns)
    with Netlink.open(path, label=pod.netns) as pod_nl:
        indexes = (ctx.free_index(node.netns), ctx.pod_eth0_index(pod_nl))
        attach_pod(
            ctx.nl(node.netns),
            pod_nl,
            path,
            PodAttachment(
                host_ifname=pod.veth,
                pod_ip=pod.ip,
                gateway=node.gateway,
                mode="bridge" if lay.attachment == "bridge" else "ptp",
                mtu=lay.pod_mtu,
                bridge="cni0" if lay.attachment == "bridge" else None,
                hairpin=lay.attachment == "bridge",
                host_accept_ra=True,  # inherited: node_create set the node's default to 0
            ),
            indexes=indexes,
        )
    pod_runtime.create_pod_uts(pod.uts, pod.name)
    _write_pod_hosts(ctx.layout, pod)


def _write_pod_hosts(lay: Layout, pod: PodLayout) -> None:
    # Service names resolve as cluster DNS would answer them: demo, demo.dev, demo.dev.svc...
    extra = service_hosts(lay, pod.namespace)
    pod_runtime.write_hosts_file(pod.hosts_file, str(pod.ip.ip), pod.name, extra)


def pods_hosts(ctx: Context, step: Step) -> None:
    """Rewrite the hosts file of every pod that has one (pods built later write their own).
    Running containers keep the file they mounted; `podnet exec` sees the new one."""
    for pod in ctx.layout.pods:
        if os.path.exists(pod.hosts_file):
            _write_pod_hosts(ctx.layout, pod)


def pod_delete(ctx: Context, step: Step) -> None:
    pod = _recorded_pod(ctx, step.target) or _desired_pod(ctx, step.target)
    _stop_containers(ctx, pod.key)
    ctx.forget(pod.netns)
    netns.delete(pod.netns)
    pod_runtime.delete_pod_uts(pod.uts)
    _unlink(pod.hosts_file)
    for container in pod.containers:
        _unlink(log_path(ctx.layout, pod, container.name))


def pod_start(ctx: Context, step: Step) -> None:
    """Hand the pod's containers to the spawner, which starts them on the other core while
    the next pods are built; `Context.collect_started` waits for them at the end."""
    if ctx.spawner is None:
        raise ProcessError(f"cannot start the containers of {step.target}: no spawner")
    pod = _desired_pod(ctx, step.target)
    for request in spawn_requests(ctx, pod):
        ctx.spawner.submit(request)
    ctx.submitted.append((pod.key, tuple(c.name for c in pod.containers)))


def pod_stop(ctx: Context, step: Step) -> None:
    _stop_containers(ctx, step.target)


def spawn_requests(ctx: Context, pod: PodLayout) -> list[SpawnRequest]:
    os.makedirs(f"{ctx.layout.state_dir}/logs", mode=0o700, exist_ok=True)
    return [
        SpawnRequest(
            netns_path=netns.path_of(pod.netns),
            uts_path=pod.uts,
            hosts_file=pod.hosts_file,
            argv=list(c.command) if c.command else None,
            ports=list(c.ports),
            log_path=log_path(ctx.layout, pod, c.name),
            pod_name=pod.name,
            pod_namespace=pod.namespace,
            node_name=pod.node,
            pod_ip=str(pod.ip.ip),
            container_name=c.name,
            env=list(c.env),
        )
        for c in pod.containers
    ]


def record_started(
    ctx: Context, key: str, names: tuple[str, ...], refs: list[ProcessRef]
) -> None:
    for name, ref in zip(names, refs, strict=True):
        # A container started again takes its old record's place and counts the restart.
        old = [c for c in ctx.state.containers if c.pod == key and c.name == name]
        restarts = max((c.restarts + 1 for c in old), default=0)
        ctx.state.containers = [c for c in ctx.state.containers if c not in old]
        ctx.state.containers.append(ContainerRecord(key, name, ref.pid, ref.starttime,
                                                    restarts))


def _stop_containers(ctx: Context, pod_key: str) -> None:
    every = pod_key == ALL_PODS
    records = ctx.state.containers if every else ctx.state.containers_of(pod_key)
    if records:
        stop([ProcessRef(r.pid, r.starttime) for r in records])
        ctx.state.containers = [c for c in ctx.state.containers if not every and c.pod != pod_key]


def _desired_pod(ctx: Context, key: str) -> PodLayout:
    pod = ctx.layout.pod(key)
    if pod is None:
        raise ObjectMissingError(f"pod {key} is not in the lab")
    return pod


def _recorded_pod(ctx: Context, key: str) -> PodLayout | None:
    return ctx.state.layout.pod(key)


def _create_netns(ctx: Context, name: str) -> str:
    if name in ctx.owned_netns and netns.exists(name):
        ctx.forget(name)
        netns.delete(name)  # ours, left half-built by a crash: start it clean
    return netns.create(name)  # someone else's namespace of that name: ObjectExistsError


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


HANDLERS: dict[Action, Callable[[Context, Step], None]] = {
    Action.FABRIC_CREATE: fabric_create,
    Action.FABRIC_DELETE: fabric_delete,
    Action.INTERNET_CREATE: internet_create,
    Action.INTERNET_DELETE: internet_delete,
    Action.INTERNET_START: internet_start,
    Action.INTERNET_STOP: internet_stop,
    Action.NODE_CREATE: node_create,
    Action.NODE_DELETE: node_delete,
    Action.NODE_ROUTES: node_routes,
    Action.NODE_RULES: node_rules,
    Action.POD_CREATE: pod_create,
    Action.POD_DELETE: pod_delete,
    Action.POD_START: pod_start,
    Action.POD_STOP: pod_stop,
    Action.PODS_HOSTS: pods_hosts,
}
