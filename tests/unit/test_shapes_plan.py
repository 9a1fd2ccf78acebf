"""Network shapes in the pure planner: Services, VXLAN, egress, the nftables table, check probes."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import replace
from pathlib import Path

import pytest

from podnet.kernel.nftables import Table, Transaction
from podnet.model.naming import vtep_mac
from podnet.model.types import (
    ClusterSpec,
    ContainerSpec,
    NodeSpec,
    PodSpec,
    ServicePort,
    ServiceSpec,
)
from podnet.plan.builds import Action, nft_replace_script
from podnet.plan.check import KINDS, Probe, Result, probes, summarize
from podnet.plan.layout import INTERNET_SUBNET, Layout, layout
from podnet.plan.ops import CreateNetns, SetHostname, StartContainer
from podnet.plan.rules import node_rules, table_bodies
from podnet.plan.services import NODE_PORT_RANGE
from podnet.plan.steps import NodeSeen, Observed, plan, seen_as_planned

GOLDEN = Path(__file__).parent.parent / "golden" / "plans"
WEB = (ContainerSpec("web", ports=(80,)),)
APP = (("app", "web"),)


def spec(**kw: object) -> ClusterSpec:
    client = PodSpec("client", "default", (), (ContainerSpec("c", ("sleep", "infinity")),))
    pods = (*(PodSpec(f"web-{i}", "dev", APP, WEB) for i in range(3)), client)
    services = (
        ServiceSpec("web", "dev", "ClusterIP", APP, (ServicePort(80, 80, name="http"),)),
        ServiceSpec("web-np", "dev", "NodePort", APP, (ServicePort(8080, 80),)),
    )
    base = ClusterSpec(
        name="lab",
        nodes=(NodeSpec("lab-control-plane", "control-plane"), NodeSpec("lab-worker"),
               NodeSpec("lab-worker2")),
        pods=pods,
        services=services,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def seen_all(lay: Layout) -> Observed:
    """What observe() reports for a lab exactly as `lay` describes it."""
    return seen_as_planned(lay)


# --- Services: addresses, node ports, endpoints --------------------------------------------------


def test_cluster_ips_come_from_the_service_subnet_and_stay() -> None:
    lay = layout(spec())
    ips = {s.key: s.cluster_ip for s in lay.services}
    net = ipaddress.IPv4Network("10.96.0.0/16")
    assert all(ip in net for ip in ips.values()) and len(set(ips.values())) == 3
    assert ips["kube-system/kube-dns"] == ipaddress.IPv4Address("10.96.0.10")  # kubeadm's
    assert ipaddress.IPv4Address("10.96.0.1") not in ips.values()  # the kubernetes Service's
    # A fresh lab draws the same addresses; a kept record keeps them even if the draw moved.
    assert {s.key: s.cluster_ip for s in layout(spec()).services} == ips
    renamed = replace(spec(), name="other")
    moved = layout(renamed, lay)
    assert {s.key: s.cluster_ip for s in moved.services} == ips


def test_pinned_cluster_ip_wins_over_the_record() -> None:
    first = layout(spec())
    taken = next(s for s in first.services if s.key == "dev/web").cluster_ip
    pinned = spec(services=(
        ServiceSpec("other", "dev", "ClusterIP", APP, (ServicePort(80, 80),),
                    cluster_ips=(str(taken),)),
        *spec().services,
    ))
    lay = layout(pinned, first)
    by_key = {s.key: s.cluster_ip for s in lay.services}
    assert by_key["dev/other"] == taken
    assert by_key["dev/web"] != taken and by_key["dev/web"] in ipaddress.IPv4Network("10.96.0.0/16")


def test_node_ports_are_drawn_in_range_pinned_or_kept() -> None:
    lay = layout(spec())
    np = next(s for s in lay.services if s.type == "NodePort")
    port = np.ports[0].node_port
    assert port in NODE_PORT_RANGE
    assert next(s for s in lay.services if s.type == "ClusterIP").ports[0].node_port is None
    pinned = spec(services=(ServiceSpec("web-np", "dev", "NodePort", APP,
                                        (ServicePort(8080, 80, node_port=30080),)),))
    assert layout(pinned).services[0].ports[0].node_port == 30080
    assert layout(spec(), lay).services == lay.services


def test_endpoints_are_the_selected_pods_of_the_services_namespace() -> None:
    other_ns = PodSpec("web-x", "prod", APP, WEB)
    lay = layout(spec(pods=(*spec().pods, other_ns)))
    web = next(s for s in lay.services if s.key == "dev/web")
    assert web.endpoints == ("dev/web-0", "dev/web-1", "dev/web-2")


def test_service_names_follow_cluster_dns() -> None:
    web = next(s for s in layout(spec()).services if s.key == "dev/web")
    assert web.hostnames("dev") == ("web", "web.dev", "web.dev.svc", "web.dev.svc.cluster.local")
    assert web.hostnames("default")[0] == "web.dev"


# --- VXLAN, MTU, the outside world --------------------------------------------------------------


def test_vxlan_lowers_the_pod_mtu_and_gives_each_node_a_vtep() -> None:
    lay = layout(spec(routing="vxlan"))
    assert lay.pod_mtu == 1450 and layout(spec()).pod_mtu == 1500
    macs = {n.vtep_mac for n in lay.nodes}
    assert len(macs) == 3
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
    assert vtep_mac("lab", "lab-worker") == vtep_mac("lab", "lab-worker")
    assert [str(n.vtep_ips[0]) for n in lay.nodes] == ["10.244.0.0", "10.244.1.0", "10.244.2.0"]


def test_vxlan_plan_has_the_device_and_per_node_route_neighbour_fdb() -> None:
    lay = layout(spec(routing="vxlan", vxlan_vni=42, vxlan_port=4789))
    steps = plan(lay, None, Observed())
    create = next(s for s in steps if s.action is Action.NODE_CREATE and s.target == "lab-worker")
    assert any("type vxlan id 42 local 172.18.0.3 dev eth0 dstport 4789 nolearning" in c
               and "mtu 1450" in c for c in create.commands)
    routes = next(s for s in steps if s.action is Action.NODE_ROUTES and s.target == "lab-worker")
    worker2 = lay.node("lab-worker2")
    text = "\n".join(routes.commands)
    assert "route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in text
    assert f"neigh replace 10.244.2.0 lladdr {worker2.vtep_mac} dev flannel.1 nud permanent" in text
    assert f"fdb replace {worker2.vtep_mac} dev flannel.1 dst 172.18.0.4 self permanent" in text
    pod = next(s for s in steps if s.action is Action.POD_CREATE)
    veth = "mtu 1450 numtxqueues 1 numrxqueues 1 type veth peer name eth0 mtu 1450"
    assert veth in pod.commands[2]


def test_internet_is_test_net_2_routed_through_the_fabric() -> None:
    lay = layout(spec())
    assert lay.internet is not None
    assert lay.internet.address.ip in INTERNET_SUBNET and lay.internet.netns == "lab-internet"
    steps = plan(lay, None, Observed())
    create = next(s for s in steps if s.action is Action.INTERNET_CREATE)
    assert "ip -n lab-internet route add 172.18.0.0/16 via 198.51.100.1" in create.commands
    assert create.ops[0].undo() is not None
    start = next(s for s in steps if s.action is Action.INTERNET_START)
    assert start.ops[0].undo() is not None


def test_subnets_overlapping_the_internet_are_refused() -> None:
    from podnet.errors import TopologyError

    with pytest.raises(TopologyError, match=r"198\.51\.100\.0/24"):
        layout(spec(node_subnets=(ipaddress.IPv4Network("198.51.0.0/16"),)))


# --- the nftables table -----------------------------------------------------------------------


def test_rules_spread_each_service_over_its_endpoints() -> None:
    lay = layout(spec())
    text = node_rules(lay)
    web = next(s for s in lay.services if s.key == "dev/web")
    assert f"{web.cluster_ip} . tcp . 80 : goto svc-dev/web/tcp/http" in text
    assert "numgen random mod 3 vmap { 0 : goto ep-dev/web/tcp/http/" in text
    for key in web.endpoints:
        ip = str(lay.pod(key).ip.ip)  # type: ignore[union-attr]
        assert f"ip saddr {ip} jump mark-for-masquerade" in text  # hairpin
        assert f"meta l4proto tcp dnat ip to {ip}:80" in text
    np = next(s for s in lay.services if s.type == "NodePort")
    assert f"tcp . {np.ports[0].node_port} : goto ext-dev/web-np/tcp/8080" in text
    assert "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade" in text


def test_a_service_without_endpoints_is_refused_not_blackholed() -> None:
    lonely = ServiceSpec("none", "dev", "NodePort", (("app", "none"),),
                         (ServicePort(80, 80, node_port=30111),))
    lay = layout(spec(services=(lonely,)))
    text = node_rules(lay)
    assert f"{lay.services[0].cluster_ip} . tcp . 80 : goto reject-chain" in text
    assert "tcp . 30111 : goto reject-chain" in text
    assert "svc-dev/none" not in text


def test_rules_digest_follows_endpoints() -> None:
    three = layout(spec())
    two = layout(spec(pods=spec().pods[1:]), three)
    def digest(lay: Layout) -> str:
        return table_bodies(lay)["lab-worker"][0]

    assert digest(three) != digest(two)
    assert digest(three) == digest(layout(spec(), three))


def test_explain_script_is_what_the_kernel_module_sends() -> None:
    _, body = table_bodies(layout(spec()))["lab-worker"]
    assert nft_replace_script(body) == Transaction(Table("inet"), "x").replace(body).script


def test_transactions_cannot_leave_their_table() -> None:
    tx = Transaction(Table("ip", "podnet"), "test")
    with pytest.raises(ValueError):
        tx.add_rule("x; flush ruleset", "accept")
    with pytest.raises(ValueError):
        tx.add_rule("chain", "accept; flush ruleset")
    with pytest.raises(ValueError):
        tx.add_rule("chain", "accept\nflush ruleset")
    with pytest.raises(ValueError):
        tx.replace("}\nflush ruleset\ntable ip podnet {")
    with pytest.raises(ValueError):
        tx.add_set("s", "type ipv4_addr; } ; flush ruleset ; add set ip podnet t {")
    with pytest.raises(ValueError):
        Table("bridge", "podnet")
    ok = (tx.add_set("pods", "type ipv4_addr;")
          .add_chain("masq", "type nat hook postrouting priority srcnat; policy accept;")
          .add_rule("masq", 'ip saddr @pods masquerade comment "a; b"')
          .add_element("pods", ["10.0.0.1"]))
    assert all(" ip podnet " in line for line in ok.script.splitlines())


# --- convergence -------------------------------------------------------------------------------


def test_a_running_lab_plans_nothing() -> None:
    lay = layout(spec(routing="vxlan", attachment="bridge"))
    again = layout(spec(routing="vxlan", attachment="bridge"), lay)
    assert plan(again, lay, seen_all(lay)) == []


def test_missing_table_is_reapplied_on_that_node_only() -> None:
    lay = layout(spec())
    seen = seen_all(lay)
    gone = replace(seen, nodes={**seen.nodes,
                                "lab-worker": replace(seen.nodes["lab-worker"], rules=None)})
    steps = plan(lay, lay, gone)
    assert [(s.action, s.target) for s in steps] == [(Action.NODE_RULES, "lab-worker")]


def test_dead_internet_server_is_restarted_and_missing_internet_rebuilt() -> None:
    lay = layout(spec())
    stopped = replace(seen_all(lay), internet="stopped")
    assert [s.action for s in plan(lay, lay, stopped)] == [Action.INTERNET_START]
    absent = replace(seen_all(lay), internet="absent")
    assert [s.action for s in plan(lay, lay, absent)] == [Action.INTERNET_CREATE,
                                                          Action.INTERNET_START]


def test_new_service_rewrites_rules_and_dns_records_but_moves_nothing() -> None:
    first = layout(spec(services=spec().services[:1]))
    second = layout(spec(), first)
    assert second.services[0] == first.services[0]
    steps = plan(second, first, seen_all(first))
    # No pod's file changes: Service names are the cluster DNS's, not /etc/hosts'.
    assert [s.action for s in steps] == [Action.NODE_RULES, Action.DNS_RECORDS]


def test_changing_the_shape_rebuilds_the_lab_with_the_same_addresses() -> None:
    first = layout(spec())
    vx = layout(spec(routing="vxlan"), first)
    assert [p.ip for p in vx.pods] == [p.ip for p in first.pods]
    steps = plan(vx, first, seen_all(first))
    actions = [s.action for s in steps]
    assert actions[0] is Action.POD_STOP and Action.FABRIC_DELETE in actions
    assert actions.index(Action.FABRIC_DELETE) < actions.index(Action.FABRIC_CREATE)
    assert actions.count(Action.POD_CREATE) == len(vx.pods)


def test_everything_a_new_lab_makes_can_be_undone() -> None:
    for step in plan(layout(spec(routing="vxlan")), None, Observed()):
        for op in step.ops:
            if isinstance(op, CreateNetns | SetHostname | StartContainer):
                assert op.undo() is not None, op


def test_stale_and_missing_paths_are_repaired_and_only_those() -> None:
    lay = layout(spec(routing="vxlan"))
    seen = seen_all(lay)
    worker = seen.nodes["lab-worker"]
    broken = replace(worker, routes=worker.routes - {("10.244.2.0/24", "10.244.2.0")}
                     | {("10.244.9.0/24", "10.244.9.0")},
                     fdb=frozenset())
    steps = plan(lay, lay, replace(seen, nodes={**seen.nodes, "lab-worker": broken}))
    assert [(s.action, s.target) for s in steps] == [(Action.NODE_ROUTES, "lab-worker")]
    text = steps[0].commands
    assert "ip -n lab-worker route del 10.244.9.0/24" in text
    assert any("route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in c
               for c in text)
    assert sum("fdb replace" in c for c in text) == 2  # both remote nodes' entries were gone
    assert not any("10.244.0.0/24" in c and "route" in c for c in text)  # intact: untouched
    assert NodeSeen().rules is None


# --- podnet check ------------------------------------------------------------------------------


def test_check_probes_every_kind_of_path() -> None:
    lay = layout(spec())
    planned = probes(lay)
    kinds = {p.kind for p in planned}
    assert kinds == set(KINDS)
    client = [p for p in planned if p.source == "default/client"]
    assert {p.kind for p in client} == {"self", "same-node", "other-node", "node", "service",
                                        "dns", "outside"}
    self_probe = next(p for p in client if p.kind == "self")
    assert not self_probe.expect.http  # no server in it: a reset from lo proves lo is up
    outside = next(p for p in client if p.kind == "outside")
    node = lay.node(lay.pod("default/client").node)  # type: ignore[union-attr]
    assert outside.expect.client == str(node.ip.ip)
    svc = next(p for p in client if p.kind == "service" and p.target == "dev/web:80")
    assert len(svc.expect.pods) == 3
    nodeports = [p for p in planned if p.kind == "nodeport"]
    assert len(nodeports) == 3 and all(p.netns == lay.fabric_netns for p in nodeports)


def test_check_stays_linear_in_big_labs() -> None:
    big = spec(pods=tuple(PodSpec(f"w{i}", "dev", APP, WEB) for i in range(60)))
    lay = layout(big)
    planned = probes(lay, targets=3)
    per_source = max(sum(p.source == s.key and p.kind == "other-node" for p in planned)
                     for s in lay.pods)
    assert per_source == 3
    targeted = {p.target for p in planned if p.kind == "other-node"}
    assert targeted == {p.key for p in lay.pods}  # rotated: every pod is someone's target


def test_summary_counts_cells() -> None:
    p = Probe("node", "a/b", "ns", "", "n1", "1.2.3.4", 1, probes(layout(spec()))[0].expect)
    cells = summarize([Result(p, True, "", 1.0), Result(replace(p, target="n2"), False, "", 1.0)])
    row = cells[("a/b", 4)]
    assert str(row["node"]) == "FAIL 1/2" and str(row["self"]) == "-"


# --- golden: the bridge + VXLAN lab with Services, as `podnet explain` shows it -------------------


def test_bridge_vxlan_services_golden() -> None:
    steps = plan(layout(spec(attachment="bridge", routing="vxlan")), None, Observed())
    text = "".join(
        f"# {s.action.value} {s.target}: {s.comment}\n" + "".join(c + "\n" for c in s.commands)
        for s in steps
    )
    path = GOLDEN / "shapes-bridge-vxlan.txt"
    if os.environ.get("PODNET_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text()
