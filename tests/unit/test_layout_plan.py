"""The planner is pure: layouts and plans checked without root or kernel."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from podnet.model.types import ClusterSpec, ContainerSpec, NodeSpec, PodSpec
from podnet.plan.addons import DNS_NAMESPACE
from podnet.plan.builds import Action
from podnet.plan.layout import Layout, PodLayout, layout
from podnet.plan.ops import CreateNetns, DeleteNetns, SetHostname, StartContainer
from podnet.plan.steps import Observed, plan, plan_down, seen_as_planned

WEB = (ContainerSpec("web", ports=(80,)),)


def workloads(lay: Layout) -> list[PodLayout]:
    """The file's pods: every lab has the cluster DNS's coredns pods in kube-system too."""
    return [p for p in lay.pods if p.namespace != DNS_NAMESPACE]


def spec(pods: int = 4, **kw: object) -> ClusterSpec:
    return ClusterSpec(
        name="lab",
        nodes=(NodeSpec("lab-control-plane", "control-plane"), NodeSpec("lab-worker"),
               NodeSpec("lab-worker2")),
        pods=tuple(PodSpec(f"p{i}", "dev", containers=WEB) for i in range(pods)),
        **kw,  # type: ignore[arg-type]
    )


def test_nodes_get_kind_addresses_and_pod_cidrs() -> None:
    lay = layout(spec())
    assert [str(n.ip) for n in lay.nodes] == ["172.18.0.2/16", "172.18.0.3/16", "172.18.0.4/16"]
    assert [str(n.pod_cidr) for n in lay.nodes] == ["10.244.0.0/24", "10.244.1.0/24",
                                                     "10.244.2.0/24"]
    assert str(lay.fabric_gateway) == "172.18.0.1/16"


def test_pods_avoid_the_control_plane_and_spread_evenly() -> None:
    lay = layout(spec(pods=6))
    assert {p.node for p in workloads(lay)} == {"lab-worker", "lab-worker2"}
    assert sum(p.node == "lab-worker" for p in lay.pods) == 3
    # kind schedules the coredns replicas on the control plane (they tolerate its taint)
    assert {p.node for p in lay.pods if p.namespace == DNS_NAMESPACE} == {"lab-control-plane"}
    for pod in lay.pods:
        node = lay.node(pod.node)
        assert pod.ip.ip in node.pod_cidr and pod.ip.ip != node.gateway
        assert pod.netns.startswith("cni-") and len(pod.netns) == 40
        assert pod.veth.startswith("veth") and len(pod.veth) == 12


def test_pinned_pod_lands_on_its_node() -> None:
    s = spec(pods=2)
    s = replace(s, pods=(*s.pods, PodSpec("pinned", node="lab-control-plane", containers=WEB)))
    lay = layout(s)
    assert lay.pod("default/pinned") is not None
    assert lay.pod("default/pinned").node == "lab-control-plane"  # type: ignore[union-attr]


def test_layout_is_stable_and_second_up_plans_nothing() -> None:
    first = layout(spec())
    again = layout(spec(), first)
    assert again == first
    assert plan(again, first, seen_as_planned(first)) == []


def test_removed_pod_is_deleted_and_kept_pods_do_not_move() -> None:
    first = layout(spec(pods=4))
    smaller = layout(spec(pods=3), first)
    steps = plan(smaller, first, seen_as_planned(first))
    # the pod's DNS records go with it
    assert [(s.action, s.target) for s in steps] == [(Action.POD_DELETE, "dev/p3"),
                                                     (Action.DNS_RECORDS, "lab")]
    assert workloads(smaller) == workloads(first)[:3]


def test_added_pod_gets_a_free_address() -> None:
    first = layout(spec(pods=2))
    bigger = layout(spec(pods=3), first)
    used = {p.ip for p in first.pods}
    new = bigger.pod("dev/p2")
    assert new is not None and new.ip not in used
    steps = plan(bigger, first, seen_as_planned(first))
    assert [(s.action, s.target) for s in steps] == [
        (Action.DNS_RECORDS, "lab"), (Action.POD_CREATE, "dev/p2"), (Action.POD_START, "dev/p2")]


def test_dead_container_is_restarted_and_missing_namespace_rebuilt() -> None:
    lay = layout(spec(pods=2))
    seen = seen_as_planned(lay)
    dns = {p.key for p in lay.pods if p.namespace == DNS_NAMESPACE}
    dead = replace(seen, running=frozenset({"dev/p1", "internet", *dns}))
    assert [(s.action, s.target) for s in plan(lay, lay, dead)] == [(Action.POD_START, "dev/p0")]
    gone = replace(seen, netns=seen.netns - {workloads(lay)[0].netns})
    assert [(s.action, s.target) for s in plan(lay, lay, gone)] == [
        (Action.POD_CREATE, "dev/p0"), (Action.POD_START, "dev/p0")]


def test_what_a_step_makes_can_be_undone_and_down_removes_everything() -> None:
    lay = layout(spec())
    steps = plan(lay, None, Observed())
    for op in (op for step in steps for op in step.ops):
        if isinstance(op, CreateNetns | SetHostname | StartContainer):
            assert op.undo() is not None, op
    assert isinstance(steps[1].ops[0].undo(), DeleteNetns)
    down = plan_down(lay)
    deleted = {s.target for s in down if s.action is Action.POD_DELETE}
    assert deleted == {p.key for p in lay.pods}
    assert down[-1].action is Action.FABRIC_DELETE


def test_pool_exhaustion_names_the_node() -> None:
    import pytest

    from podnet.ipam.pool import PoolExhaustedError

    tiny = spec(pods=12, node_cidr_prefix=29)  # 6 per worker, 5 usable in a /29
    with pytest.raises(PoolExhaustedError, match="node lab-worker"):
        layout(tiny)
    assert ipaddress.ip_network("10.244.0.0/29").num_addresses == 8
