"""kubectl's habits, the pure parts: JSONPath templates, label selectors, `-o` printers, the
describe views on recorded kernel answers, `describe` text, log tails and the current lab."""

from __future__ import annotations

import io
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
import yaml

from podnet.inspect.model import Host, Interface, Namespace, PairEnd, PeerRef, Route, VethPair
from podnet.model.loader import default_topology
from podnet.model.selector import SelectorError, parse_selector
from podnet.objects.kinds import all_kinds, kind_named
from podnet.plan.layout import layout
from podnet.render.describe_text import render_describe
from podnet.render.jsonpath import JsonPathError, jsonpath, jsonpath_values
from podnet.render.printers import Group, Table, parse_custom_columns, printer_for
from podnet.state import ContainerRecord, LabState

DOC: dict[str, Any] = {"kind": "List", "items": [
    {"metadata": {"name": "a", "namespace": "default",
                  "labels": {"app": "x", "app.kubernetes.io/name": "web"}},
     "status": {"podIP": "10.0.0.1", "phase": "Running"},
     "spec": {"containers": [{"name": "c1", "ports": [{"containerPort": 80}]}]}},
    {"metadata": {"name": "b", "namespace": "dev", "labels": {}},
     "status": {"podIP": "10.0.0.2", "phase": "Failed"},
     "spec": {"containers": [{"name": "c2"}, {"name": "c3"}]}},
]}


# --- JSONPath ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("template", "expected"), [
    ("{.items[*].metadata.name}", "a b"),
    ("{.items[0].metadata.name}", "a"),
    ("{.items[-1:].metadata.name}", "b"),
    ("{.items[0,1].status.podIP}", "10.0.0.1 10.0.0.2"),
    ('{range .items[*]}{.metadata.name}{"\\t"}{.status.podIP}{"\\n"}{end}',
     "a\t10.0.0.1\nb\t10.0.0.2\n"),
    ("{range .items[*]}[{range .spec.containers[*]}{.name},{end}]{end}", "[c1,][c2,c3,]"),
    ('{.items[?(@.status.phase=="Running")].metadata.name}', "a"),
    ("{.items[?(@.status.phase!='Running')].metadata.name}", "b"),
    ("{.items[?(@.spec.containers[1])].metadata.name}", "b"),
    ("{.items[?(@.spec.containers[0].ports[0].containerPort>=80)].metadata.name}", "a"),
    ("{..name}", "a c1 b c2 c3"),
    ("{.items[0].metadata.labels['app.kubernetes.io/name']}", "web"),
    ("{.items[0].metadata.labels.app\\.kubernetes\\.io/name}", "web"),
    ("{.items[0].metadata.labels}", '{"app":"x","app.kubernetes.io/name":"web"}'),
    ("{.items[0].metadata.labels.*}", "x web"),
    ("names: {.items[*].metadata.name}!", "names: a b!"),
    ("{$.kind} {@.kind}", "List List"),
    ("{.missing}", ""),  # kubectl's --allow-missing-template-keys, on by default
    ("{.items[*].spec.containers[*].ports[*].containerPort}", "80"),
])
def test_jsonpath_as_kubectl_evaluates_it(template: str, expected: str) -> None:
    assert jsonpath(template, DOC) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{.items[5]}", "out of bounds"),
    ("{.a", "unclosed action"),
    ("{range .items[*]}{.x}", "without {end}"),
    ("{end}", "without {range}"),
    ("{foo}", "unknown word"),
    ("{.items[x]}", "bad index"),
    ('{"\\q"}', "unknown escape"),
    ("{.kind[0]}", "not a list"),
])
def test_jsonpath_errors_say_what_is_wrong(template: str, message: str) -> None:
    with pytest.raises(JsonPathError, match=message.replace("{", "\\{")):
        jsonpath(template, DOC)


def test_jsonpath_values_accept_paths_without_braces() -> None:
    assert jsonpath_values(".status.podIP", DOC["items"][1]) == ["10.0.0.2"]
    assert jsonpath_values("{.items[*].metadata.name}", DOC) == ["a", "b"]


# --- label selectors -----------------------------------------------------------------------------

LABELS = {"app": "web", "tier": "front", "n": "3"}


@pytest.mark.parametrize(("text", "matches"), [
    ("app=web", True), ("app==web", True), ("app!=web", False), ("app!=db", True),
    ("tier in (front, back)", True), ("tier notin (front)", False), ("missing notin (a)", True),
    ("missing!=a", True), ("app", True), ("!app", False), ("!canary", True),
    ("app=web,tier=front", True), ("app=web,tier=back", False),
    ("  app = web , tier in(front) ", True), ("", True), ("app=", False),
])
def test_selectors_match_as_kubernetes_does(text: str, matches: bool) -> None:
    assert parse_selector(text).matches(LABELS) is matches


def test_a_selector_is_the_policies_label_selector() -> None:
    from podnet.model.policies import LabelSelector, Requirement

    parsed = parse_selector("app=web, tier notin (b,a), !canary, env")
    assert parsed == LabelSelector((("app", "web"),), (
        Requirement("tier", "NotIn", ("a", "b")), Requirement("canary", "DoesNotExist"),
        Requirement("env", "Exists")))
    assert parsed.text() == "app=web,tier notin (a,b),!canary,env"


@pytest.mark.parametrize(("text", "message"), [
    ("app=web,", "missing after the last"),
    ("a b", "not an operator"),
    ("tier in front", "set in parentheses"),
    ("tier in ()", "at least one value"),
    ("n>2", "compares numbers"),
    ("a=b=c", "expected ','"),
    ("app=-x", "not a valid label value"),
    ("tier in (a", "not closed"),
    ("-bad=1", "not a valid label key"),
])
def test_bad_selectors_are_refused(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        parse_selector(text)


# --- printers ------------------------------------------------------------------------------------


def _group(objects: list[dict[str, Any]]) -> Group:
    return Group("pod", objects, Table(["NAME", "IP"], lambda objs: [
        [o["metadata"]["name"], o["status"]["podIP"]] for o in objs]))


def test_a_named_object_is_printed_unwrapped_a_query_as_a_list() -> None:
    group = _group(DOC["items"][:1])
    assert json.loads(printer_for("json").render([group], single=True))["metadata"]["name"] == "a"
    listed = json.loads(printer_for("json").render([group], single=False))
    assert listed["kind"] == "List" and len(listed["items"]) == 1
    # One match of a query (a namespace, a selector) stays a List: {.items[*]} still works.
    assert printer_for("jsonpath={.items[*].metadata.name}").render([group], single=False) == "a"
    assert printer_for("jsonpath={.metadata.name}").render([group], single=True) == "a"
    assert yaml.safe_load(printer_for("yaml").render([group], single=False))["items"][0][
        "status"]["podIP"] == "10.0.0.1"


def test_tables_custom_columns_names_and_labels() -> None:
    group = _group(DOC["items"])
    assert printer_for(None).render([group], single=False).splitlines() == [
        "NAME   IP", "a      10.0.0.1", "b      10.0.0.2"]
    assert printer_for(None, no_headers=True).render([group], single=False).splitlines()[0] \
        .startswith("a ")
    labelled = printer_for(None, show_labels=True).render([group], single=False).splitlines()
    assert labelled[0].split() == ["NAME", "IP", "LABELS"]
    assert labelled[1].endswith("app=x,app.kubernetes.io/name=web")
    assert labelled[2].endswith("<none>")
    custom = printer_for("custom-columns=N:.metadata.name,C:.spec.containers[*].name")
    assert custom.render([group], single=False).splitlines() == ["N   C", "a   c1", "b   c2,c3"]
    assert printer_for("name").render([group], single=False) == "pod/a\npod/b"
    as_json = printer_for("jsonpath-as-json={.items[*].metadata.name}")
    assert json.loads(as_json.render([group], single=False)) == ["a", "b"]


def test_custom_columns_and_jsonpath_from_files(tmp_path: Path) -> None:
    group = _group(DOC["items"])
    cols = tmp_path / "cols"
    cols.write_text("NAME   PHASE\n.metadata.name   .status.phase\n")
    assert printer_for(f"custom-columns-file={cols}").render([group], single=False) \
        .splitlines()[2].split() == ["b", "Failed"]
    tmpl = tmp_path / "t"
    tmpl.write_text("{.items[1].status.podIP}\n")
    assert printer_for(f"jsonpath-file={tmpl}").render([group], single=False) == "10.0.0.2"


@pytest.mark.parametrize(("output", "message"), [
    ("yml", "unknown output format 'yml'; allowed: wide, json, yaml"),
    ("jsonpath", "needs a value"),
    ("go-template={{.x}}", "unknown output format"),
    ("custom-columns=NAME", "not HEADER:JSONPATH"),
    ("jsonpath={.a", "unclosed action"),
])
def test_other_formats_are_refused(output: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        printer_for(output)
    with pytest.raises(ValueError):
        parse_custom_columns("")


def test_watch_rows_keep_the_first_tables_columns() -> None:
    group = _group(DOC["items"])
    printer: Any = printer_for(None)
    widths = printer.widths(group, True)
    assert printer.header(group, True).split() == ["EVENT", "NAME", "IP"]
    row = printer.rows(group, DOC["items"][:1], ["MODIFIED"], widths)
    assert row.split() == ["MODIFIED", "a", "10.0.0.1"]
    assert row.index("a") == printer.header(group, True).index("NAME")


# --- the kinds and their describe views, on a recorded kernel -------------------------------


class Recorded:
    """`KernelReads` answered from a hand-built host."""

    def __init__(self, host: Host, alive: Collection[int] = (),
                 shaped: dict[str, dict[str, str]] | None = None) -> None:
        self.whole, self.alive = host, set(alive)
        self.shaped = shaped or {}

    def exists(self, netns: str) -> bool:
        return any(ns.name == netns for ns in self.whole.namespaces)

    def host(self, names: Collection[str]) -> Host:
        return Host(tuple(ns for ns in self.whole.namespaces if ns.name in names),
                    self.whole.veth_pairs)

    def running(self, pid: int, starttime: int) -> bool:
        return pid in self.alive

    def started(self, starttime: int) -> float | None:
        return 1_700_000_000.0

    def qdiscs(self, netns: str) -> dict[str, str]:
        return self.shaped.get(netns, {})


def _iface(name: str, index: int, addrs: tuple[str, ...], peer: PeerRef | None,
           kind: str = "veth", master: str | None = None) -> Interface:
    return Interface(name, index, kind, f"02:00:00:00:00:{index:02x}", 1500, "UP", True, addrs,
                     master, peer)


def recorded_lab() -> tuple[LabState, Recorded]:
    lay = layout(default_topology())
    jump = next(p for p in lay.pods if p.name == "jumpbox")
    node = lay.node(jump.node)
    record = LabState(lay, [ContainerRecord(jump.key, "nginx", 4242, 7)], complete=True)
    pod_ns = Namespace(11, jump.netns, jump.netns, interfaces=(
        _iface("eth0", 2, (f"{jump.ip}", "fe80::1/64"), PeerRef(node.netns, jump.veth, 3)),),
        routes=(Route("default", 4, gateway=str(node.gateway), dev="eth0"),))
    node_ns = Namespace(12, node.netns, node.netns, interfaces=(
        _iface("eth0", 2, (str(node.ip),), PeerRef(lay.fabric_netns, node.uplink, 7)),
        _iface(jump.veth, 3, (f"{node.gateway}/32",), PeerRef(jump.netns, "eth0", 2))),
        routes=(Route(f"{jump.ip.ip}/32", 4, dev=jump.veth, scope="host"),
                Route(str(node.pod_cidr), 4, dev="cni0"),
                Route("default", 4, gateway=str(lay.fabric_gateway.ip), dev="eth0")))
    fabric = Namespace(13, lay.fabric_netns, lay.fabric_netns, interfaces=(
        _iface(lay.bridge, 2, (str(lay.fabric_gateway),), None, kind="bridge"),
        _iface(node.uplink, 7, (), PeerRef(node.netns, "eth0", 2), master=lay.bridge)))
    pairs = (VethPair((PairEnd(jump.netns, 11, "eth0", 2),
                       PairEnd(node.netns, 12, jump.veth, 3))),)
    return record, Recorded(Host((pod_ns, node_ns, fabric), pairs), alive={4242})


def test_every_kind_is_registered_once_under_each_of_its_names() -> None:
    names = [k.name for k in all_kinds()]
    assert names[:4] == ["pods", "nodes", "services", "links"]
    for alias, name in (("po", "pods"), ("Pod", "pods"), ("svc", "services"), ("no", "nodes"),
                        ("link", "links")):
        kind = kind_named(alias)
        assert kind is not None and kind.name == name
    assert kind_named("deployments") is None


def test_pods_are_listed_in_kubectls_shape_with_liveness_from_the_kernel() -> None:
    record, reads = recorded_lab()
    pods = kind_named("pods")
    assert pods is not None
    objs = pods.collect(record, reads)
    jump = next(o for o in objs if o["metadata"]["name"] == "jumpbox")
    assert jump["status"]["phase"] == "Running" and jump["status"]["ready"] == "1/1"
    assert jump["status"]["podIPs"] == [{"ip": jump["status"]["podIP"]}]
    demo = next(o for o in objs if o["metadata"]["name"].startswith("demo-"))
    assert demo["status"]["phase"] == "Failed"  # no container was recorded for it
    headers, rows = pods.table(objs, wide=True)
    assert headers[:4] == ["NAME", "READY", "STATUS", "RESTARTS"] and "PIDS" in headers
    row = next(r for r in rows if r[headers.index("NAME")] == "jumpbox")
    assert row[headers.index("PIDS")] == "4242"


def test_describe_pod_joins_the_veth_pair_end_to_end() -> None:
    record, reads = recorded_lab()
    pods = kind_named("pods")
    assert pods is not None and pods.describe is not None
    jump = next(o for o in pods.collect(record, reads) if o["metadata"]["name"] == "jumpbox")
    doc = pods.describe(record, jump, reads)
    pod = record.layout.pod("default/jumpbox")
    assert pod is not None
    assert doc["Node"] == f"{pod.node}/{record.layout.node(pod.node).ip.ip}"
    assert doc["IPs"] == [str(pod.ip.ip)]
    assert doc["Containers"]["nginx"]["PID"] == "4242"
    assert doc["Containers"]["nginx"]["State"] == "Running"
    assert doc["Veth pair"]["Joined"].startswith(f"yes: eth0@if3 and {pod.veth}@if2")
    assert "fe80::1/64" in doc["Interfaces"][0]  # every family
    assert doc["Routes"] == [f"default via {record.layout.node(pod.node).gateway} dev eth0"]
    # The node's most specific route to the pod first, then the wider one.
    assert doc["Node routes"] == [f"{pod.ip.ip}/32 dev {pod.veth} scope host",
                                  f"{record.layout.node(pod.node).pod_cidr} dev cni0"]
    text = render_describe(doc)
    assert f"Name:               {pod.name}" in text.splitlines()
    assert "  Joined:    yes" in text


def test_describe_pod_says_when_the_veth_ends_are_not_each_others_peer() -> None:
    record, reads = recorded_lab()
    pod = record.layout.pod("default/jumpbox")
    assert pod is not None
    wrong = tuple(
        ns if ns.name != pod.netns else Namespace(
            ns.inode, ns.label, ns.name,
            interfaces=(_iface("eth0", 2, (), PeerRef(pod.node, "elsewhere", 9)),))
        for ns in reads.whole.namespaces)
    reads = Recorded(Host(wrong), alive=())
    pods = kind_named("pods")
    assert pods is not None and pods.describe is not None
    obj = next(o for o in pods.collect(record, reads) if o["metadata"]["name"] == "jumpbox")
    doc = pods.describe(record, obj, reads)
    assert doc["Veth pair"]["Joined"].startswith("NO")
    assert doc["Containers"]["nginx"]["State"].startswith("Terminated")


def test_describe_node_names_the_uplinks_peer_in_the_node_network() -> None:
    record, reads = recorded_lab()
    nodes = kind_named("nodes")
    assert nodes is not None and nodes.describe is not None
    pod = record.layout.pod("default/jumpbox")
    assert pod is not None
    node = record.layout.node(pod.node)
    obj = next(o for o in nodes.collect(record, reads) if o["metadata"]["name"] == node.name)
    doc = nodes.describe(record, obj, reads)
    assert doc["Uplink"]["Peer"].startswith(f"{node.uplink} (ifindex 7) in "
                                            f"{record.layout.fabric_netns}")
    assert f"port of bridge {record.layout.bridge}" in doc["Uplink"]["Peer"]
    assert any(line.startswith("default/jumpbox") for line in doc["Pods"])


def test_links_name_the_real_peer_of_each_uplink() -> None:
    record, reads = recorded_lab()
    links = kind_named("links")
    assert links is not None
    objs = links.collect(record, reads)
    pod = record.layout.pod("default/jumpbox")
    assert pod is not None
    node = record.layout.node(pod.node)
    uplink = next(o for o in objs if o["node"] == node.name and o["metadata"]["name"] == "eth0")
    assert uplink["peer"]["ifname"] == node.uplink
    assert uplink["peer"]["netns"] == record.layout.fabric_netns
    headers, rows = links.table(objs, wide=False)
    row = dict(zip(headers, rows[objs.index(uplink)], strict=True))
    assert row["PEER"] == node.uplink and row["PEER-IN"] == "(node network)"


def test_links_wide_shows_each_links_qdiscs() -> None:
    record, plain = recorded_lab()
    pod = record.layout.pod("default/jumpbox")
    assert pod is not None
    node = record.layout.node(pod.node)
    shaped = {node.netns: {pod.veth: "tbf rate 10mbit; ingress via pnifb1: rate 5mbit"}}
    reads = Recorded(plain.whole, alive={4242}, shaped=shaped)
    links = kind_named("links")
    assert links is not None
    objs = links.collect(record, reads)
    headers, rows = links.table(objs, wide=True)
    by_name = {row[headers.index("NAME")].split("@")[0]: row[headers.index("QDISC")]
               for row in rows}
    assert by_name[pod.veth] == "tbf rate 10mbit; ingress via pnifb1: rate 5mbit"
    assert by_name["eth0"] == "noqueue"  # what tc does not list has its default
    assert "QDISC" not in links.table(objs, wide=False)[0]


def test_describe_service_lists_its_endpoints() -> None:
    record, reads = recorded_lab()
    svcs = kind_named("svc")
    assert svcs is not None and svcs.describe is not None
    obj = svcs.collect(record, reads)[0]
    doc = svcs.describe(record, obj, reads)
    demo = record.layout.services[0]
    ips = [str(p.ip.ip) for key in demo.endpoints for p in record.layout.pods if p.key == key]
    assert doc["Ports"]["http"]["Endpoints"] == ",".join(f"{ip}:80" for ip in ips)
    assert len(doc["Endpoint pods"]) == len(demo.endpoints)


def test_describe_text_aligns_like_kubectl() -> None:
    text = render_describe({"Name": "x", "Labels": ["a=b", "c=d"], "Empty": [],
                            "Nested": {"Key": "v", "Longer key": "w"}})
    assert text.splitlines() == [
        "Name:    x",
        "Labels:  a=b",
        "         c=d",
        "Empty:   <none>",
        "Nested:",
        "  Key:         v",
        "  Longer key:  w",
    ]


# --- logs and the current lab --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "count", "expected"), [
    (b"a\nb\nc\n", 2, b"b\nc\n"),
    (b"a\nb\nc", 2, b"b\nc"),
    (b"a\nb\nc\n", 0, b""),
    (b"a\nb\n", 5, b"a\nb\n"),
    (b"", 3, b""),
    (b"x\n" * 70000, 1, b"x\n"),  # across read blocks
])
def test_tail_finds_the_last_lines(text: bytes, count: int, expected: bytes) -> None:
    from podnet.cli.logs import tail_lines

    fh = io.BytesIO(text)
    fh.seek(tail_lines(fh, count))
    assert fh.read() == expected


def test_the_current_lab_is_remembered_and_validated(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from podnet import state
    from podnet.cli import context
    from podnet.errors import StateError

    monkeypatch.setattr(state, "STATE_ROOT", str(tmp_path))
    monkeypatch.setattr(context, "STATE_ROOT", str(tmp_path))
    monkeypatch.setattr(context, "CURRENT_FILE", str(tmp_path / ".current"))
    for lab in ("one", "two"):
        (tmp_path / lab).mkdir()
        (tmp_path / lab / "state.json").write_text("{}")
    with pytest.raises(StateError, match=r"2 labs are up .* none is current"):
        context.pick_cluster(None)
    context.remember_current("two")
    assert (tmp_path / ".current").stat().st_mode & 0o777 == 0o600
    assert context.pick_cluster(None) == "two"
    assert context.pick_cluster("one") == "one"  # --cluster and PODNET_CLUSTER still win
    (tmp_path / "two" / "state.json").unlink()  # the current lab went down
    assert context.pick_cluster(None) == "one"
    for bad in ("../victim", "a/b", "UPPER", "x" * 13, ".current"):
        with pytest.raises(StateError, match="cannot name a lab"):
            context.pick_cluster(bad)
        with pytest.raises(StateError):
            context.remember_current(bad)
    (tmp_path / ".current").unlink()
    (tmp_path / ".current").symlink_to(tmp_path / "one" / "state.json")
    assert context.current_lab() is None  # never read through a symlink


# --- tables in a narrow terminal -----------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 80, 100, 200])
@pytest.mark.parametrize("wide", [False, True])
def test_inspect_tables_never_split_a_name_or_an_address(width: int, wide: bool) -> None:
    from podnet.render.inspect_text import render_table
    from tests.unit.test_graph_render import lab_host

    host, _lab = lab_host()
    long_ns = Namespace(99, "cni-c3aae76a-b551-5e45-9366-4dc29a9544cc",
                        "cni-c3aae76a-b551-5e45-9366-4dc29a9544cc", interfaces=(
                            _iface("veth126e4b12", 3, ("10.244.1.1/32", "fd00:10:244:1::1/128"),
                                   None),))
    addrs = ("10.244.1.1/32", "fd00:10:244:1::1/128")
    pair = VethPair((PairEnd(long_ns.label, 99, "veth126e4b12", 3, addresses=addrs),
                     PairEnd("cni-a", 3, "eth0", 2, addresses=("10.244.1.2/24",))))
    host = Host((*host.namespaces, long_ns), (*host.veth_pairs, pair))
    text = render_table(host, wide=wide, width=width)
    words = {ns.label for ns in host.namespaces} | {
        w for p in host.veth_pairs for e in p.ends for w in (e.ifname or "", *(e.addresses or ()))
        if w and (wide or not w.startswith("fe80"))}
    if wide:
        words |= {w for ns in host.namespaces for i in ns.interfaces
                  for w in (i.ifname, *i.addresses)}
    lines = text.splitlines()
    for word in words:
        assert any(word in line for line in lines), (word, text)
