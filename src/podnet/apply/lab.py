"""`up` and `down` of a lab: record, observe, plan, execute, record again."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from podnet import state as lab_state
from podnet.apply.executor import Progress, execute
from podnet.apply.handlers import RULES, Context
from podnet.errors import ObjectMissingError
from podnet.kernel import netns, nftables
from podnet.kernel.netlink import Netlink
from podnet.model.types import ClusterSpec
from podnet.plan.layout import INTERNET_KEY, TUNNEL, Layout, NodeLayout, layout
from podnet.plan.steps import Observed, Step, plan, plan_down
from podnet.runtime.procs import ProcessRef, is_alive
from podnet.runtime.spawner import Spawner

__all__ = ["Outcome", "down", "observe", "up"]


@dataclass(frozen=True)
class Outcome:
    steps: list[Step]
    layout: Layout | None


def observe(record: lab_state.LabState | None) -> Observed:
    """What of the recorded lab really exists: namespaces, live containers, peer routes, the
    nodes' nftables tables and the outside world."""
    if record is None:
        return Observed(netns=frozenset(netns.list_named()))
    lay = record.layout
    names = frozenset(netns.list_named())
    running = set()
    owners = [(p.key, len(p.containers)) for p in lay.pods]
    if lay.internet is not None:
        owners.append((INTERNET_KEY, 1))
    for key, count in owners:
        refs = record.containers_of(key)
        if len(refs) == count and all(is_alive(ProcessRef(r.pid, r.starttime)) for r in refs):
            running.add(key)
    routes: dict[str, frozenset[str]] = {}
    for node in lay.nodes:
        if node.netns not in names:
            continue
        with Netlink.open(netns.path_of(node.netns), label=node.netns) as nl:
            routes[node.name] = (
                _tunnel_routes(lay, nl) if lay.routing == "vxlan" else _peer_routes(lay, nl)
            )
    internet = None
    if lay.internet is not None:
        internet = "absent"
        if lay.internet.netns in names:
            internet = "running" if INTERNET_KEY in running else "stopped"
    return Observed(netns=names, running=frozenset(running), routes=routes,
                    rules=_rules_seen(lay.nodes, names), internet=internet)


def _peer_routes(lay: Layout, nl: Netlink) -> frozenset[str]:
    fabric_net = lay.fabric_gateway.network
    return frozenset(
        r["dst"]
        for r in nl.routes()
        if r["gateway"] and ipaddress.ip_address(r["gateway"]) in fabric_net
        and r["dst"] != "default"
    )


def _tunnel_routes(lay: Layout, nl: Netlink) -> frozenset[str]:
    """Remote pod CIDRs whose route, permanent neighbour and FDB entry are all in place."""
    try:
        tun = nl.index(TUNNEL)
    except ObjectMissingError:
        return frozenset()
    neigh = {n["dst"]: n["mac"] for n in nl.neighbours() if n["ifindex"] == tun}
    fdb = {(n["mac"], n["dst"]) for n in nl.neighbours(bridge=True) if n["ifindex"] == tun}
    by_vtep = {str(n.vtep_ip): n for n in lay.nodes}
    found = set()
    for r in nl.routes():
        node = by_vtep.get(r["gateway"] or "")
        if r["oif"] != tun or node is None or r["dst"] != str(node.pod_cidr):
            continue
        if neigh.get(r["gateway"]) == node.vtep_mac and (node.vtep_mac, str(node.ip.ip)) in fdb:
            found.add(r["dst"])
    return frozenset(found)


def _rules_seen(nodes: tuple[NodeLayout, ...], names: frozenset[str]) -> dict[str, str | None]:
    """Each node's rules digest, from its table's comment (None: no table)."""
    paths = {n.name: netns.path_of(n.netns) for n in nodes if n.netns in names}
    comments = nftables.read_comments(RULES, paths) if paths else {}
    out: dict[str, str | None] = {n.name: None for n in nodes}
    for name, comment in comments.items():
        out[name] = comment.rsplit(" ", 1)[-1] if comment else None
    return out


def up(
    spec: ClusterSpec,
    *,
    topology: str = "",
    spawner: Spawner | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
    prune: bool = False,
) -> Outcome:
    """Converge the running lab on `spec`; a second call with the same spec does nothing.

    `prune`: also remove pods and nodes `spec` does not name (kubectl apply's --prune); without
    it they stay. (Passed down by the CLI; the planner gives it its meaning.)
    """
    del prune  # not read yet: see the planner
    with lab_state.locked(spec.name):
        record = lab_state.load(spec.name)
        previous = record.layout if record else None
        desired = layout(spec, previous)
        steps = plan(desired, previous, observe(record))
        if dry_run or not steps:
            return Outcome(steps, desired)
        owned = _netns_of(previous) if previous else frozenset()
        # Record the union before touching anything: if this run dies, `down` finds it all.
        intent = lab_state.LabState(
            layout=_union(desired, previous),
            containers=list(record.containers) if record else [],
            topology=topology,
            complete=False,
        )
        lab_state.save(intent)
        ctx = Context(desired, intent, owned, spawner)
        try:
            execute(ctx, steps, progress=progress)
        except Exception:
            _record_after_failure(ctx, previous, desired, topology)
            raise
        final = lab_state.LabState(desired, ctx.state.containers, topology, complete=True)
        lab_state.save(final)
        if spawner is not None:
            spawner.keep()  # recorded: the containers may now outlive podnet
        return Outcome(steps, desired)


def down(cluster: str, *, progress: Progress | None = None) -> Outcome:
    """Remove everything the record names; succeeds when there is nothing left."""
    with lab_state.locked(cluster):
        record = lab_state.load(cluster)
        if record is None:
            lab_state.remove(cluster)
            return Outcome([], None)
        steps = plan_down(record.layout)
        ctx = Context(record.layout, record, _netns_of(record.layout))
        execute(ctx, steps, progress=progress)
        lab_state.remove(cluster)
        return Outcome(steps, record.layout)


def _netns_of(lay: Layout) -> frozenset[str]:
    internet = [lay.internet.netns] if lay.internet is not None else []
    return frozenset(
        [lay.fabric_netns, *internet, *(n.netns for n in lay.nodes), *(p.netns for p in lay.pods)]
    )


def _union(desired: Layout, previous: Layout | None) -> Layout:
    if previous is None:
        return desired
    keys = {p.key for p in desired.pods}
    names = {n.name for n in desired.nodes}
    return replace(
        desired,
        nodes=desired.nodes + tuple(n for n in previous.nodes if n.name not in names),
        pods=desired.pods + tuple(p for p in previous.pods if p.key not in keys),
    )


def _record_after_failure(
    ctx: Context, previous: Layout | None, desired: Layout, topology: str
) -> None:
    """After a rollback, record what may still exist so `down` can remove it."""
    if previous is None and not netns.exists(desired.fabric_netns) and not ctx.state.containers:
        lab_state.remove(desired.cluster)
        return
    lab_state.save(
        lab_state.LabState(_union(desired, previous), ctx.state.containers, topology, False)
    )
