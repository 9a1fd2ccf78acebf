"""`up` and `down` of a lab: record, observe, plan, execute, record again."""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass, field, replace

from podnet import state as lab_state
from podnet.apply.applier import Applier
from podnet.apply.executor import Progress, execute, execute_all
from podnet.errors import ObjectMissingError, StateError
from podnet.kernel import netns, nftables, tc
from podnet.kernel.netlink import Netlink
from podnet.model.addresses import IPNetwork
from podnet.model.shape import Shape
from podnet.model.types import ClusterSpec
from podnet.plan.builds import Step
from podnet.plan.layout import INTERNET_KEY, TUNNELS, Layout, NodeLayout, layout
from podnet.plan.rules import TABLE
from podnet.plan.running import Named, applied, removed
from podnet.plan.steps import NodeSeen, Observed, plan, plan_down, shaped_links
from podnet.runtime.procs import ProcessRef, is_alive
from podnet.runtime.spawner import Spawner

__all__ = ["Outcome", "down", "observe", "up"]

_RULES = nftables.Table(*TABLE.split(" ", 1))
NUD_PERMANENT = 0x80


@dataclass(frozen=True)
class Outcome:
    steps: list[Step]
    layout: Layout | None
    kept: list[str] = field(default_factory=list)  # objects not in the file, kept (no --prune)
    problems: list[str] = field(default_factory=list)  # what `down` could not remove
    removed: list[str] = field(default_factory=list)  # what `delete` took away


def observe(record: lab_state.LabState | None, desired: Layout | None = None) -> Observed:
    """What of the recorded lab really exists: namespaces, live containers, each node's paths to
    the other nodes' pods, the nodes' nftables tables and the outside world; and where the
    record or `desired` shapes links of a node, what its qdiscs do."""
    if record is None:
        return Observed(netns=frozenset(netns.list_named()))
    lay = record.layout
    # A pod or node counts as built when its namespace exists and so does the file its creation
    # writes last (its hosts file): a crash in the middle of one leaves the namespace alone, and
    # the next `up` must build it again rather than only start its containers.
    half_built = {p.netns for p in lay.pods if not os.path.exists(p.hosts_file)}
    half_built |= {n.netns for n in lay.nodes if not os.path.exists(n.hosts_file)}
    names = frozenset(netns.list_named()) - half_built
    running = set()
    owners = [(p.key, len(p.containers)) for p in lay.pods]
    if lay.internet is not None:
        owners.append((INTERNET_KEY, 1))
    by_pod: dict[str, list[lab_state.ContainerRecord]] = {}
    for c in record.containers:
        by_pod.setdefault(c.pod, []).append(c)
    for key, count in owners:
        refs = by_pod.get(key, [])
        if len(refs) == count and all(is_alive(ProcessRef(r.pid, r.starttime)) for r in refs):
            running.add(key)
    present = [n for n in lay.nodes if n.netns in names]
    digests = _rules_seen(present)
    shaping = {n.name for n in lay.nodes if shaped_links(lay, n)}
    if desired is not None:
        shaping |= {n.name for n in desired.nodes if shaped_links(desired, n)}
    nodes = {n.name: _node_seen(lay, n, digests.get(n.name), n.name in shaping)
             for n in present}
    internet = None
    if lay.internet is not None:
        internet = "absent"
        if lay.internet.netns in names:
            internet = "running" if INTERNET_KEY in running else "stopped"
    return Observed(netns=names, running=frozenset(running), nodes=nodes, internet=internet)


def _node_seen(lay: Layout, node: NodeLayout, rules: str | None, shaping: bool) -> NodeSeen:
    """The node's routes into the lab's pod subnets through a next hop, and the permanent
    neighbour and FDB entries of its tunnels; with `shaping`, what its links' qdiscs do."""
    nets = lay.pod_subnets
    with Netlink.open(netns.path_of(node.netns), label=node.netns) as nl:
        routes = frozenset(
            (r["dst"], r["gateway"])
            for r in nl.routes()
            if r["gateway"] and r["dst"] != "default"
            and any(_inside(r["dst"], net) for net in nets)
        )
        tunnels = {}
        for family in lay.families:
            try:
                tunnels[nl.index(TUNNELS[family])] = TUNNELS[family]
            except ObjectMissingError:
                continue
        neighbours = frozenset(
            (tunnels[n["ifindex"]], n["dst"], n["mac"])
            for family in lay.families for n in nl.neighbours(version=family)
            if n["ifindex"] in tunnels and n["state"] & NUD_PERMANENT
        ) if tunnels else frozenset()
        fdb = frozenset(
            (tunnels[n["ifindex"]], n["mac"], n["dst"])
            for n in nl.neighbours(bridge=True)
            if n["ifindex"] in tunnels and n["dst"]
        ) if tunnels else frozenset()
    shapes = _shapes_seen(node) if shaping else frozenset()
    return NodeSeen(routes=routes, neighbours=neighbours, fdb=fdb, rules=rules, shapes=shapes)


def _shapes_seen(node: NodeLayout) -> frozenset[tuple[str, Shape, Shape]]:
    """(ifname, egress, ingress) of each link of the node a qdisc shapes (one `tc` process,
    and one more per link whose arrivals are redirected)."""
    links = tc.read(netns.path_of(node.netns))
    return frozenset((name, link.egress, link.ingress) for name, link in links.items()
                     if link.impaired)


def _inside(cidr: str, net: IPNetwork) -> bool:
    found = ipaddress.ip_network(cidr, strict=False)
    return found.version == net.version and found.subnet_of(net)  # type: ignore[arg-type]


def _rules_seen(nodes: list[NodeLayout]) -> dict[str, str | None]:
    """Each node's rules digest, from its table's comment (None: no table)."""
    paths = {n.name: netns.path_of(n.netns) for n in nodes}
    comments = nftables.read_comments(_RULES, paths) if paths else {}
    return {name: comment.rsplit(" ", 1)[-1] if comment else None
            for name, comment in comments.items()}


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
    Without `prune`, what the running lab has and `spec` does not name stays."""
    with lab_state.locked(spec.name):
        record = lab_state.load(spec.name)
        previous = record.layout if record else None
        kept: list[str] = []
        if previous is not None:
            spec, kept = applied(spec, previous, prune=prune)
        desired = layout(spec, previous)
        steps = plan(desired, previous, observe(record, desired))
        if dry_run or not steps:
            return Outcome(steps, desired, kept)
        # Record the union before touching anything: if this run dies, `down` finds it all (and
        # removes of it only the namespaces whose inodes the record and its journal hold).
        intent = lab_state.LabState(
            layout=_union(desired, previous),
            containers=list(record.containers) if record else [],
            topology=topology,
            complete=False,
            owned=dict(record.owned) if record else {},
        )
        lab_state.save(intent)
        app = Applier(intent, spawner)
        try:
            execute(app, steps, progress=progress)
        except BaseException:
            _record_after_failure(app.state, previous, desired, topology)
            raise
        final = lab_state.LabState(desired, app.state.containers, topology, complete=True,
                                   owned=app.state.owned,
                                   applied=_applied(desired, previous, record))
        lab_state.save(final)
        if spawner is not None:
            spawner.keep()  # recorded: the containers may now outlive podnet
        return Outcome(steps, desired, kept)


def _applied(desired: Layout, previous: Layout | None,
             record: lab_state.LabState | None) -> dict[str, float]:
    """When each policy took its present form: kept while unchanged, now when new or edited."""
    before = {p.key: p for p in previous.policies} if previous else {}
    now = time.time()
    out = {}
    for policy in desired.policies:
        key = f"NetworkPolicy/{policy.key}"
        kept = record.applied.get(key) if record and before.get(policy.key) == policy else None
        out[key] = kept or now
    return out


def delete(cluster: str, named: Named, *, spawner: Spawner | None = None,
           progress: Progress | None = None) -> Outcome:
    """Take the objects `named` out of the running lab (kubectl delete), and converge."""
    record = lab_state.load(cluster)
    if record is None:
        raise StateError(f"no lab named {cluster} is up", hint="bring it up with `podnet up`")
    spec, gone = removed(record.layout, named)
    if not gone:
        return Outcome([], record.layout)
    outcome = up(spec, topology=record.topology, spawner=spawner, progress=progress,
                 prune=True)
    return replace(outcome, removed=gone)


def down(cluster: str, *, progress: Progress | None = None) -> Outcome:
    """Remove everything the record names and podnet made; succeeds when there is nothing left.
    Best effort: what cannot be removed is reported, and the record stays for another try."""
    with lab_state.locked(cluster):
        record = lab_state.load(cluster)
        if record is None:
            lab_state.remove(cluster)
            return Outcome([], None)
        steps = plan_down(record.layout)
        app = Applier(record, None)
        failed = execute_all(app, steps, progress=progress)
        if failed:
            lab_state.save(record)
            raise StateError(
                f"lab {cluster}: {len(failed)} thing(s) could not be removed: "
                + "; ".join(failed),
                hint="see what is left with `podnet inspect`; `podnet down` tries again",
            )
        lab_state.remove(cluster)
        return Outcome(steps, record.layout, problems=app.left_alone)


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
    state: lab_state.LabState, previous: Layout | None, desired: Layout, topology: str
) -> None:
    """After a rollback, record what the lab is now: what it was, and what of this run's work
    outlived the rollback (a namespace podnet still owns), so `down` can remove it."""
    if previous is None and not state.owned and not state.containers:
        lab_state.remove(desired.cluster)
        return
    union = _union(desired, previous)
    was = previous or replace(desired, nodes=(), pods=())
    kept_nodes = {n.name for n in was.nodes}
    kept_pods = {p.key for p in was.pods}
    left = replace(
        union,
        nodes=tuple(n for n in union.nodes if n.name in kept_nodes or n.netns in state.owned),
        pods=tuple(p for p in union.pods if p.key in kept_pods or p.netns in state.owned),
    )
    lab_state.save(lab_state.LabState(left, state.containers, topology, False,
                                      owned=state.owned))
