"""What each planned step does to the kernel: one function per Action, all idempotent.

Handlers share a `Context` that keeps one netlink socket per namespace for the whole run, so a
node's socket is opened once, not once per pod.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Callable

from podnet.errors import ObjectMissingError, ProcessError
from podnet.kernel import netns, sysctl
from podnet.kernel.attach import PodAttachment, attach_pod, ensure_bridge
from podnet.kernel.netlink import Netlink
from podnet.plan.layout import Layout, NodeLayout, PodLayout
from podnet.plan.steps import ALL_PODS, Action, Step
from podnet.runtime import pod as pod_runtime
from podnet.runtime.container import SpawnRequest
from podnet.runtime.procs import ProcessRef, stop
from podnet.runtime.spawner import Spawner
from podnet.state import ContainerRecord, LabState

__all__ = ["HANDLERS", "Context"]

_NODE_SYSCTLS = {"net.ipv4.ip_forward": "1"}
_NODE_SYSCTLS_V6 = {"net.ipv6.conf.default.accept_ra": "0", "net.ipv6.conf.all.forwarding": "1"}


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
        self.submitted: list[PodLayout] = []  # pods whose containers the spawner is starting
        self._next_index: dict[str, int] = {}
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

    def collect_started(self) -> None:
        """Wait for the containers submitted so far and record them (PID and start time)."""
        if not self.submitted or self.spawner is None:
            return
        pods, self.submitted = self.submitted, []
        refs = self.spawner.collect()
        cursor = 0
        for pod in pods:
            record_started(self, pod, refs[cursor : cursor + len(pod.containers)])
            cursor += len(pod.containers)

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
    settings = dict(_NODE_SYSCTLS)
    with netns.entered(path):
        if os.path.isdir("/proc/sys/net/ipv6"):
            settings.update(_NODE_SYSCTLS_V6)
    sysctl.write(path, settings)
    fab = ctx.nl(lay.fabric_netns)
    fd = os.open(path, os.O_RDONLY)
    try:
        fab.add_veth(node.uplink, "eth0", fd, mtu=lay.mtu)
    finally:
        os.close(fd)
    fab.set_link(node.uplink, up=True, owned=True, master=lay.bridge)
    nl.add_address("eth0", str(node.ip))
    nl.set_link("eth0", up=True)
    nl.add_route("default", gateway=str(lay.fabric_gateway.ip))
    if lay.attachment == "bridge":
        gateway = ipaddress.IPv4Interface(f"{node.gateway}/{node.pod_cidr.prefixlen}")
        ensure_bridge(nl, "cni0", gateway, lay.mtu)
    pod_runtime.create_pod_uts(node.uts, node.name)
    _write_node_hosts(node)


def node_delete(ctx: Context, step: Step) -> None:
    node = next((n for n in ctx.state.layout.nodes if n.name == step.target), None)
    node = node or ctx.layout.node(step.target)
    ctx.forget(node.netns)
    netns.delete(node.netns)
    pod_runtime.delete_pod_uts(node.uts)
    _unlink(node.hosts_file)


def node_routes(ctx: Context, step: Step) -> None:
    node = ctx.layout.node(step.target)
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
                mtu=lay.mtu,
                bridge="cni0" if lay.attachment == "bridge" else None,
                hairpin=lay.attachment == "bridge",
                host_accept_ra=True,  # inherited: node_create set the node's default to 0
            ),
            indexes=indexes,
        )
    pod_runtime.create_pod_uts(pod.uts, pod.name)
    pod_runtime.write_hosts_file(pod.hosts_file, str(pod.ip.ip), pod.name)


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
    ctx.submitted.append(pod)


def pod_stop(ctx: Context, step: Step) -> None:
    _stop_containers(ctx, step.target)


def log_path(lay: Layout, pod: PodLayout, container: str) -> str:
    return f"{lay.state_dir}/logs/{pod.namespace}_{pod.name}_{container}.log"


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


def record_started(ctx: Context, pod: PodLayout, refs: list[ProcessRef]) -> None:
    for container, ref in zip(pod.containers, refs, strict=True):
        ctx.state.containers.append(
            ContainerRecord(pod.key, container.name, ref.pid, ref.starttime)
        )


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
    Action.NODE_CREATE: node_create,
    Action.NODE_DELETE: node_delete,
    Action.NODE_ROUTES: node_routes,
    Action.POD_CREATE: pod_create,
    Action.POD_DELETE: pod_delete,
    Action.POD_START: pod_start,
    Action.POD_STOP: pod_stop,
}
