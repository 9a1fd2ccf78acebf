"""kubelet's capabilities and link impairment in the lab, without root: the loader's new fields,
the layout (hostNetwork pods, host ports placed as the scheduler places them), the plan's
ShapeLink operations (rendered as tc commands, undone, converged) and the portmap rules."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from podnet.errors import TopologyError
from podnet.kernel import tc
from podnet.model import load_topology
from podnet.model.shape import Shape
from podnet.model.types import HostPort, Impairment
from podnet.plan.builds import Action
from podnet.plan.layout import Layout, layout
from podnet.plan.ops import DeleteNetns, ShapeLink, StartContainer, StopContainers, WriteFile
from podnet.plan.rules import host_port_rules, table_bodies
from podnet.plan.steps import Observed, plan, plan_down, seen_as_planned, shaped_links
from podnet.runtime.hosts import resolv_path
from podnet.state import LabState, _decode, _encode

CLUSTER = """kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: caps
nodes:
- role: control-plane
- role: worker
  netem: {delay: 20ms, jitter: 2ms, rate: 100mbit, ingress: {loss: 0.5%}}
- role: worker
"""


def pod(name: str, *, annotations: str = "", spec: str = "", ports: str = "") -> str:
    notes = f"\n  annotations: {{{annotations}}}" if annotations else ""
    port_list = f", ports: [{ports}]" if ports else ""
    return (f"---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}{notes}\nspec:\n{spec}"
            f"  containers: [{{name: c{port_list}}}]\n")


LAB = (CLUSTER
       + pod("limited", annotations="kubernetes.io/ingress-bandwidth: 10M, "
             "kubernetes.io/egress-bandwidth: 5M, podnet.io/delay: 5ms",
             spec="  nodeName: caps-worker\n", ports="{containerPort: 80, hostPort: 8080}")
       + pod("agent", spec="  nodeName: caps-worker2\n  hostNetwork: true\n",
             ports="{containerPort: 9100}")
       + pod("client", spec="  nodeName: caps-worker2\n"))


def lab() -> Layout:
    return layout(load_topology(LAB))


# --- the loader ----------------------------------------------------------------------------------


def test_annotations_and_node_netem_become_impairments() -> None:
    spec = load_topology(LAB)
    limited = next(p for p in spec.pods if p.name == "limited")
    assert limited.impairment == Impairment(sent=Shape(delay_ms=5.0, rate_bps=5_000_000),
                                            received=Shape(rate_bps=10_000_000))
    worker = next(n for n in spec.nodes if n.name == "caps-worker")
    assert worker.impairment == Impairment(Shape(20.0, 2.0, rate_bps=100_000_000),
                                           Shape(loss_pct=0.5))
    assert all(n.impairment.empty for n in spec.nodes if n.name != "caps-worker")
    assert limited.host_ports == (HostPort(8080, 80),)


def test_quantities_are_read_as_kubelet_reads_them() -> None:
    for text, bps in (("10M", 10**7), ("1G", 10**9), ("512k", 512_000), ("1Mi", 2**20),
                      ("1.5M", 1_500_000)):
        spec = load_topology(pod("p", annotations=f"kubernetes.io/egress-bandwidth: {text}"))
        assert spec.pods[0].impairment.sent.rate_bps == bps, text


def test_ingress_keys_shape_what_reaches_the_pod() -> None:
    spec = load_topology(pod("p", annotations="podnet.io/ingress-delay: 30ms, "
                             "podnet.io/ingress-rate: 2mbit, podnet.io/loss: 1%"))
    assert spec.pods[0].impairment == Impairment(Shape(loss_pct=1.0),
                                                 Shape(delay_ms=30.0, rate_bps=2_000_000))


def test_a_template_carries_its_annotations_to_every_replica() -> None:
    text = CLUSTER + """---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {kubernetes.io/ingress-bandwidth: 20M}}
    spec: {containers: [{name: c, ports: [{containerPort: 80, hostPort: 80}]}]}
"""
    pods = load_topology(text).pods
    assert len(pods) == 2
    assert {p.impairment.received.rate_bps for p in pods} == {20_000_000}
    lay = layout(load_topology(text))
    web = [p for p in lay.pods if p.owner == "web"]
    assert sorted(p.node for p in web) == ["caps-worker", "caps-worker2"]  # a port each


def test_a_host_network_pods_ports_are_host_ports_of_its_node() -> None:
    spec = load_topology(LAB)
    agent = next(p for p in spec.pods if p.name == "agent")
    assert agent.host_network and agent.host_ports == (HostPort(9100, 9100),)


def test_a_host_port_on_a_host_network_pod_refuses_the_same_port_elsewhere_on_its_node() -> None:
    text = LAB + pod("other", spec="  nodeName: caps-worker2\n",
                     ports="{containerPort: 80, hostPort: 9100}")
    with pytest.raises(TopologyError) as info:
        load_topology(text)
    assert "host port 9100/TCP on node caps-worker2 is already taken by pod default/agent" in \
        str(info.value)


def test_kind_config_without_podnets_keys_still_loads() -> None:
    spec = load_topology("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
                         "nodes: [{role: control-plane}, {role: worker}]\n")
    assert all(n.impairment.empty for n in spec.nodes)


# --- the layout ----------------------------------------------------------------------------------


def test_a_host_network_pod_is_its_node_and_takes_no_pod_address() -> None:
    lay = lab()
    agent, client = lay.pod("default/agent"), lay.pod("default/client")
    node = lay.node("caps-worker2")
    assert agent is not None and client is not None
    assert (agent.netns, agent.ips, agent.veth) == (node.netns, node.ips, "")
    assert (agent.uts, agent.hosts_file) == (node.uts, node.hosts_file)
    assert str(client.ip) == "10.244.2.2/24"  # the first pod address of the node is still free


def test_replicas_with_a_host_port_spread_and_a_running_lab_can_refuse_a_new_one() -> None:
    first = lab()
    text = LAB + pod("late", spec="  nodeName: caps-worker\n",
                     ports="{containerPort: 80, hostPort: 8080}")
    spec = load_topology(LAB.replace("hostPort: 8080", "hostPort: 8081"))
    assert layout(spec, first).pod("default/limited") is not None
    # The file alone is refused by the loader; a pod kept from the running lab by the layout.
    with pytest.raises(TopologyError):
        load_topology(text)
    running = load_topology(LAB)
    newcomer = replace(load_topology(pod("late", ports="{containerPort: 80, hostPort: 8080}")
                                     ).pods[0], node="caps-worker")
    with pytest.raises(TopologyError) as info:
        layout(replace(running, pods=(*running.pods, newcomer)), first)
    assert "host port 8080/TCP is already taken on node caps-worker (by default/limited)" in \
        str(info.value)


# --- the plan ------------------------------------------------------------------------------------


def commands(lay: Layout, action: Action, target: str) -> list[str]:
    steps = [s for s in plan(lay, None, Observed()) if s.action == action and s.target == target]
    assert len(steps) == 1, (action, target)
    return steps[0].commands


def test_a_pods_veth_is_shaped_as_the_bandwidth_plugin_shapes_it() -> None:
    lay = lab()
    limited = lay.pod("default/limited")
    assert limited is not None
    lines = commands(lay, Action.POD_CREATE, "default/limited")
    veth, ifb = limited.veth, tc.ifb_name(limited.veth)
    shaping = [line for line in lines
               if line.startswith(("tc ", f"ip -n caps-worker link add {ifb}"))]
    # What reaches the pod leaves the node by the veth (root tbf); what the pod sends arrives
    # on it, through the ifb: netem's delay with the rate under it.
    assert shaping == [
        f"tc -n caps-worker qdisc add dev {veth} root handle 70d: tbf rate 10mbit burst 16384 "
        "latency 50ms",
        f"ip -n caps-worker link add {ifb} type ifb",
        f"tc -n caps-worker qdisc add dev {veth} handle ffff: ingress",
        f"tc -n caps-worker filter add dev {veth} parent ffff: protocol all u32 match u32 0 0 "
        f"action mirred egress redirect dev {ifb}",
        f"tc -n caps-worker qdisc add dev {ifb} root handle 70d: netem delay 5ms",
        f"tc -n caps-worker qdisc add dev {ifb} parent 70d:1 handle 70e: tbf rate 5mbit burst "
        "16384 latency 50ms",
    ]
    veth_made = next(i for i, line in enumerate(lines) if " veth peer " in line)
    assert lines.index(shaping[0]) > veth_made
    last = max(i for i, line in enumerate(lines) if ".hosts <<'EOF'" in line)
    assert lines.index(shaping[-1]) < last  # the hosts file stays last


def test_a_nodes_uplink_is_shaped_before_its_hosts_file() -> None:
    lines = commands(lab(), Action.NODE_CREATE, "caps-worker")
    first = next(i for i, line in enumerate(lines) if line.startswith("tc "))
    assert lines[first] == ("tc -n caps-worker qdisc add dev eth0 root handle 70d: netem delay "
                            "20ms 2ms")
    assert "tc -n caps-worker qdisc add dev eth0 parent 70d:1 handle 70e: tbf rate 100mbit " \
        "burst 125000 latency 50ms" in lines
    assert any(line.endswith(" root handle 70d: netem loss 0.5%") for line in lines)
    assert first < next(i for i, line in enumerate(lines) if ".hosts <<'EOF'" in line)


def test_a_host_network_pod_is_only_started_in_its_nodes_namespaces() -> None:
    lay = lab()
    steps = plan(lay, None, Observed())
    mine = [s for s in steps if s.target == "default/agent"]
    assert [s.action for s in mine] == [Action.POD_START]
    start = mine[0].ops[0]
    node = lay.node("caps-worker2")
    assert isinstance(start, StartContainer)
    assert (start.netns, start.uts, start.hosts_file, start.ip) == (
        node.netns, node.uts, node.hosts_file, str(node.ip.ip))
    # No step writes the node's hosts file but the node's own, nor a resolv.conf beside it.
    written = [op.path for s in steps if s.action != Action.NODE_CREATE for op in s.ops
               if isinstance(op, WriteFile)]
    assert node.hosts_file not in written
    assert resolv_path(node.hosts_file) not in written


def test_deleting_a_host_network_pod_never_touches_its_nodes_namespace() -> None:
    lay = lab()
    without = layout(replace(load_topology(LAB), pods=tuple(
        p for p in load_topology(LAB).pods if p.name != "agent")), lay)
    steps = plan(without, lay, seen_as_planned(lay))
    assert [s.action for s in steps] == [Action.POD_DELETE, Action.DNS_RECORDS]
    ops = steps[0].ops
    assert isinstance(ops[0], StopContainers) and not any(isinstance(o, DeleteNetns) for o in ops)
    down = [op for s in plan_down(lay) for op in s.ops if isinstance(op, DeleteNetns)]
    assert [op.name for op in down].count("caps-worker2") == 1  # the node's own step


def test_deleting_a_shaped_pod_removes_its_ifb_while_the_node_stays() -> None:
    lay = lab()
    spec = load_topology(LAB)
    without = layout(replace(spec, pods=tuple(p for p in spec.pods if p.name != "limited")),
                     lay)
    step = next(s for s in plan(without, lay, seen_as_planned(lay))
                if s.target == "default/limited")
    kinds = [type(op).__name__ for op in step.ops]
    assert kinds.index("ShapeLink") < kinds.index("DeleteNetns")
    assert f"ip -n caps-worker link del {tc.ifb_name(lay.pod('default/limited').veth)}" in \
        step.commands  # type: ignore[union-attr]


def test_a_second_up_shapes_nothing_and_a_changed_rate_reshapes_in_place() -> None:
    lay = lab()
    assert plan(layout(load_topology(LAB), lay), lay, seen_as_planned(lay)) == []
    changed = layout(load_topology(LAB.replace("ingress-bandwidth: 10M", "ingress-bandwidth: 20M")
                                   .replace("netem: {delay: 20ms, jitter: 2ms, rate: 100mbit, "
                                            "ingress: {loss: 0.5%}}", "")), lay)
    steps = plan(changed, lay, seen_as_planned(lay))
    assert [(s.action, s.target) for s in steps] == [(Action.LINKS_SHAPE, "caps-worker")]
    veth = lay.pod("default/limited").veth  # type: ignore[union-attr]
    ops = {op.ifname: op for op in steps[0].ops if isinstance(op, ShapeLink)}
    assert ops["eth0"].egress.empty and ops["eth0"].ingress.empty  # removed from the file
    assert ops["eth0"].was_egress == Shape(20.0, 2.0, rate_bps=100_000_000)
    assert ops[veth].egress == Shape(rate_bps=20_000_000)
    assert ops[veth].undo() == ShapeLink("caps-worker", veth, ops[veth].was_egress,
                                         ops[veth].was_ingress, ops[veth].egress,
                                         ops[veth].ingress)
    assert steps[0].commands[:3] == ["tc -n caps-worker qdisc del dev eth0 root",
                                     "tc -n caps-worker qdisc del dev eth0 ingress",
                                     f"ip -n caps-worker link del {tc.ifb_name('eth0')}"]


def test_a_planned_link_changed_by_hand_is_put_back_and_others_are_left_alone() -> None:
    lay = lab()
    seen = seen_as_planned(lay)
    veth = lay.pod("default/limited").veth  # type: ignore[union-attr]
    client = lay.pod("default/client").veth  # type: ignore[union-attr]
    worker = seen.nodes["caps-worker"]
    touched = replace(worker, shapes=frozenset(s for s in worker.shapes if s[0] != veth))
    worker2 = replace(seen.nodes["caps-worker2"], shapes=frozenset(
        {(client, Shape(delay_ms=50.0), Shape())}))  # `podnet netem` on a link the file leaves
    nodes = {**seen.nodes, "caps-worker": touched, "caps-worker2": worker2}
    steps = plan(lay, lay, replace(seen, nodes=nodes))
    assert [(s.action, s.target) for s in steps] == [(Action.LINKS_SHAPE, "caps-worker")]
    (op,) = steps[0].ops
    assert isinstance(op, ShapeLink) and op.ifname == veth and op.was_egress.empty


def test_the_kernels_rounding_is_no_change() -> None:
    lay = lab()
    seen = seen_as_planned(lay)
    worker = seen.nodes["caps-worker"]
    read_back = frozenset(
        (name, replace(e, loss_pct=e.loss_pct + 1e-7) if e.loss_pct else e,
         replace(i, loss_pct=round(i.loss_pct - 2e-8, 7)) if i.loss_pct else i)
        for name, e, i in worker.shapes)
    nodes = {**seen.nodes, "caps-worker": replace(worker, shapes=read_back)}
    assert plan(lay, lay, replace(seen, nodes=nodes)) == []


def test_shaped_links_name_the_right_end_and_direction() -> None:
    lay = lab()
    limited = lay.pod("default/limited")
    assert limited is not None
    links = shaped_links(lay, lay.node("caps-worker"))
    assert links[limited.veth] == (limited.impairment.received, limited.impairment.sent)
    assert links["eth0"] == (lay.node("caps-worker").impairment.sent,
                             lay.node("caps-worker").impairment.received)
    assert shaped_links(lay, lay.node("caps-worker2")) == {}  # hostNetwork: nothing of its own


# --- rules: portmap's DNAT, only where the pod runs ----------------------------------------------


def test_host_ports_are_published_only_on_the_pods_node() -> None:
    lay = lab()
    limited = lay.pod("default/limited")
    assert limited is not None
    rules = host_port_rules(lay, lay.node("caps-worker"))
    assert "tcp . 8080 : goto hostport-default/limited/tcp/8080," in rules
    assert f"ip saddr {limited.ip.ip} jump mark-for-masquerade" in rules  # hairpin
    assert f"meta l4proto tcp dnat ip to {limited.ip.ip}:80" in rules
    assert "type nat hook prerouting priority dstnat + 1; policy accept;" in rules
    assert "type nat hook output priority -99; policy accept;" in rules
    assert host_port_rules(lay, lay.node("caps-worker2")) == ""  # hostNetwork: no DNAT
    bodies = table_bodies(lay)
    assert "host ports" in bodies["caps-worker"][1]
    assert "host-ports" not in bodies["caps-worker2"][1]


def test_dual_stack_host_ports_get_both_families() -> None:
    text = LAB.replace("name: caps\n", "name: caps\nnetworking: {ipFamily: dual}\n")
    lay = layout(load_topology(text))
    limited = lay.pod("default/limited")
    assert limited is not None
    rules = host_port_rules(lay, lay.node("caps-worker"))
    v6 = limited.ip_of(6)
    assert v6 is not None
    assert f"meta l4proto tcp dnat ip6 to [{v6.ip}]:80" in rules
    assert ("fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @host-ports6"
            in rules)


# --- the record ----------------------------------------------------------------------------------


def test_the_record_keeps_shaping_host_ports_and_host_network() -> None:
    lay = lab()
    state = LabState(lay, complete=True)
    back = _decode(_encode(state)).layout
    assert back.nodes == lay.nodes
    for before in lay.pods:
        after = back.pod(before.key)
        assert after is not None
        assert (after.impairment, after.host_network, after.host_ports) == (
            before.impairment, before.host_network, before.host_ports)
    plain = _encode(LabState(layout(load_topology(CLUSTER.replace(
        "  netem: {delay: 20ms, jitter: 2ms, rate: 100mbit, ingress: {loss: 0.5%}}\n", "")
        + pod("p"))), complete=True))
    assert "impairment" not in plain["pods"][0] and "impairment" not in plain["nodes"][1]
    assert ipaddress.ip_interface(plain["pods"][0]["ip"])  # older readers see what they knew
