"""The tools that show and test a lab, on IPv6-only and dual-stack labs (sandbox only), with real
packets: `trace` (routes, NDP neighbours, VXLAN over an IPv6 underlay, the `ip6` rules of the
lab's `inet` table: a Service's DNAT to the backend conntrack gave the probe, egress masquerade;
an `ip6` drop rule found and seen on the wire; ICMPv6 'packet too big' named at the hop that
sends it), `check` (every family, `-4`/`-6`, `--mtu`), `get -o wide`, `graph`, `inspect` and
`tour`. Shapes: ptp with static routes and a bridge with VXLAN, each IPv6-only and dual-stack.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from podnet import state as lab_state
from podnet.kernel.lookup import Lookup
from podnet.plan.layout import Layout, PodLayout
from tests.kernel.test_lab import podnet
from tests.kernel.topologies import web_lab

pytestmark = pytest.mark.kernel

CLUSTER = "v6t"
SHAPES = [("ptp", "static", "ipv6"), ("ptp", "static", "dual"), ("bridge", "vxlan", "ipv6"),
          ("bridge", "vxlan", "dual")]


@dataclass
class Lab:
    attachment: str
    routing: str
    family: str
    lay: Layout

    @property
    def client(self) -> PodLayout:
        pod = self.lay.pod("default/client")
        assert pod is not None
        return pod

    def far(self) -> PodLayout:
        """A web pod on another node than the client."""
        return next(p for p in self.lay.pods
                    if p.namespace == "dev" and p.node != self.client.node)

    @property
    def families(self) -> tuple[int, ...]:
        return self.lay.families


def topology(attachment: str, routing: str, family: str) -> str:
    return web_lab(CLUSTER, f"{{attachment: {attachment}, routing: {routing}, ipFamily: {family}}}",
                   replicas=4, client_node=f"{CLUSTER}-worker",
                   service="  type: NodePort\n  ipFamilyPolicy: PreferDualStack\n")


@pytest.fixture(scope="module", params=SHAPES, ids=["-".join(s) for s in SHAPES])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    path = tmp_path_factory.mktemp("v6t") / "lab.yaml"
    path.write_text(topology(*request.param))
    podnet("up", "-q", "-f", str(path))
    try:
        record = lab_state.load(CLUSTER)
        assert record is not None
        yield Lab(*request.param, record.layout)
    finally:
        podnet("down", "-q", "-C", CLUSTER)


def trace(*args: str) -> tuple[int, dict[str, Any]]:
    done = podnet("trace", "-o", "json", "--timeout", "1", *args, check=False)
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, json.loads(done.stdout)


def v6(pod: PodLayout) -> str:
    ip = pod.ip_of(6)
    assert ip is not None
    return str(ip.ip)


def steps(report: dict[str, Any]) -> list[str]:
    return [h["step"] for h in report["forward"]["hops"]]


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


# --- trace ----------------------------------------------------------------------------------


def test_trace_pod_to_pod_across_nodes_over_ipv6(lab: Lab) -> None:
    far = lab.far()
    code, report = trace("-6", "client", far.key, "--port", "80")
    assert code == 0 and report["verdict"] == "works", report["summary"]
    assert report["forward"]["packet"]["dst"] == v6(far)
    assert report["forward"]["packet"]["src"] == v6(lab.client)
    assert report["probe"]["local"].startswith(f"[{v6(lab.client)}]:")
    hops = report["forward"]["hops"]
    assert hops[-1]["step"] == "deliver" and hops[-1]["owner"] == f"pod {far.key}"
    assert hops[-1]["text"].endswith("listens on [::]:80")
    neigh = [c for h in hops for c in h["commands"] if " neigh show " in c]
    assert neigh and all(" -6 neigh show " in c for c in neigh), neigh
    if lab.routing == "vxlan":
        vx = next(h for h in hops if h["step"] == "vxlan")
        assert vx["dev"] == "flannel-v6.1" and vx["notes"][0].startswith("VXLAN adds 70 bytes")
        node6 = lab.lay.node(far.node).ip_of(6)
        assert node6 is not None and f"to [{node6.ip}]:8472" in vx["text"]
        decap = next(h for h in hops if h["step"] == "decap")
        assert decap["dev"] == "flannel-v6.1" and decap["owner"] == f"node {far.node}"
    else:
        assert "vxlan" not in steps(report)
        assert steps(report)[:4] == ["route", "veth", "route", "veth"]


def test_trace_sends_an_icmpv6_echo_without_a_port(lab: Lab) -> None:
    code, report = trace("-6", "client", lab.far().key)
    assert code == 0, report["summary"]
    probe = report["probe"]
    assert (probe["proto"], probe["outcome"]) == ("icmpv6", "reply")
    assert probe["full"]["ok"] and probe["full"]["size"] == lab.lay.pod_mtu
    assert report["forward"]["packet"]["proto"] == "icmpv6"
    assert "its kernel answers the echo request" in report["forward"]["hops"][-1]["text"]


def test_trace_follows_a_services_dnat_per_family_to_the_backend_conntrack_gave(lab: Lab) -> None:
    (svc,) = [s for s in lab.lay.services if s.namespace != "kube-system"]
    assert [ip.version for ip in svc.cluster_ips] == list(lab.families)
    node = lab.lay.node(lab.client.node)
    for vip in svc.cluster_ips:
        code, report = trace(f"-{vip.version}", "client", "web.dev")
        assert code == 0, report["summary"]
        nat = next(h for h in report["forward"]["hops"] if h["step"] == "nat")
        shown = f"[{vip}]:80" if vip.version == 6 else f"{vip}:80"
        assert nat["text"].startswith(f"dnat: destination {shown} -> ")
        assert "other connections may go to" in nat["text"] and nat["owner"] == f"node {node.name}"
        backend = report["forward"]["packet"]["dst"]
        web = {str(ip.ip): p.key for p in lab.lay.pods if p.namespace == "dev" for ip in p.ips}
        assert report["forward"]["hops"][-1]["owner"] == f"pod {web[backend]}"
        sport = int(report["probe"]["local"].rsplit(":", 1)[1])
        src = report["forward"]["packet"]["src"]
        with Lookup() as lookup:
            seen = lookup.conntrack_reply(f"/run/netns/{node.netns}", src, sport, str(vip), 80)
        assert seen is not None and seen[0] == backend  # the walk followed the probe's backend


def test_trace_names_the_masquerade_of_ipv6_egress(lab: Lab) -> None:
    code, report = trace("-6", "client", "internet")
    assert code == 0, report["summary"]
    node6 = lab.lay.node(lab.client.node).ip_of(6)
    assert node6 is not None
    nat = next(h for h in report["forward"]["hops"] if h["step"] == "nat")
    assert nat["text"].startswith(f"masquerade: source {v6(lab.client)} -> {node6.ip} (")
    assert report["forward"]["hops"][-1]["text"].startswith("2001:db8:5100::100 is local to")


def test_trace_picks_the_family_asked_and_refuses_one_that_is_missing(lab: Lab) -> None:
    far = lab.far()
    code, report = trace("client", far.key, "--port", "80", "--no-probe")
    assert code == 0 and report["forward"]["packet"]["dst"] == str(far.ip.ip)  # the first
    code, report = trace("--family", "6", "client", far.key, "--port", "80", "--no-probe")
    assert code == 0 and report["forward"]["packet"]["dst"] == v6(far)
    if lab.family == "ipv6":
        done = podnet("trace", "-4", "client", far.key, check=False)
        assert done.returncode == 1 and f"pod {far.key} has no IPv4 address (only IPv6)" in \
            done.stderr
        done = podnet("trace", "client", "10.244.2.2", check=False)
        assert done.returncode == 1 and "pod default/client has no IPv4 address" in done.stderr
    done = podnet("trace", "-4", "client", v6(far), check=False)
    assert done.returncode == 1 and "is an IPv6 address, not IPv4" in done.stderr


def test_trace_finds_an_ip6_drop_rule_and_the_captures_agree(lab: Lab) -> None:
    far = lab.far()
    node = lab.lay.node(far.node).netns
    rules = (f"add table ip6 block\n"
             f"add chain ip6 block in_fwd {{ type filter hook forward priority 0; }}\n"
             f"add rule ip6 block in_fwd ip6 daddr {v6(far)} tcp dport 80 drop\n")
    subprocess.run(["ip", "netns", "exec", node, "nft", "-f", "-"], input=rules, text=True,
                   check=True, timeout=30)
    try:
        code, report = trace("-6", "--capture", "client", far.key, "--port", "80")
        assert code == 1 and report["verdict"] == "broken"
        hop = report["forward"]["hops"][report["forward"]["broken"]]
        assert (hop["step"], hop["reason"], hop["owner"]) == ("filter", "rule drop",
                                                               f"node {far.node}")
        assert f"`ip6 daddr {v6(far)} tcp dport 80 drop`" in hop["text"]
        seen = [h["seen"] for h in report["forward"]["hops"] if h["seen"] is not None]
        assert seen[0] is True and seen[-1] is False
        first = next(h for h in report["forward"]["hops"] if h["seen"])
        assert f"[{v6(lab.client)}]:" in first["wire"] and f"[{v6(far)}]:80 [S]" in first["wire"]
        code, report = trace("-4" if 4 in lab.families else "-6", "client", far.key, "--port",
                             "80")
        assert (code == 0) == (4 in lab.families), "an ip6 table leaves IPv4 alone"
    finally:
        sh("ip", "netns", "exec", node, "nft", "delete", "table", "ip6", "block")


def test_a_pod_too_large_for_the_ipv6_tunnel_is_named_by_packet_too_big(lab: Lab) -> None:
    if lab.routing != "vxlan":
        pytest.skip("only a tunnel makes the pods' MTU smaller than the node network's")
    client, far = lab.client, lab.far()
    pods = [(client, lab.lay.node(client.node).netns), (far, lab.lay.node(far.node).netns)]

    def set_mtu(mtu: int) -> None:
        for pod, node in pods:
            sh("ip", "-n", pod.netns, "link", "set", "eth0", "mtu", str(mtu))
            sh("ip", "-n", node, "link", "set", pod.veth, "mtu", str(mtu))

    set_mtu(1500)
    try:
        code, report = trace("-6", "client", far.key, "--port", "80")
        assert code == 1 and report["probe"]["outcome"] == "connected"
        assert "'packet too big'" in report["probe"]["full"]["detail"]
        hop = report["forward"]["hops"][report["forward"]["broken"]]
        assert (hop["step"], hop["reason"], hop["dev"], hop["mtu"]) == (
            "route", "too big", "flannel-v6.1", lab.lay.pod_mtu)
        assert any("IPv6 routers never fragment" in n for n in hop["notes"])
        code, report = trace("-6", "client", far.key)  # an echo: the router's own answer
        assert code == 1 and "says packet too big (its next hop carries " \
            f"{lab.lay.pod_mtu} bytes)" in report["probe"]["full"]["detail"]
    finally:
        set_mtu(lab.lay.pod_mtu)
        subprocess.run(["ip", "-n", client.netns, "-6", "route", "flush", "cache"], check=False)


# --- check ----------------------------------------------------------------------------------


def check(*args: str) -> tuple[int, dict[str, Any]]:
    done = podnet("check", "-o", "json", "--timeout", "1", *args, check=False)
    return done.returncode, json.loads(done.stdout)


def test_check_probes_every_path_over_every_family(lab: Lab) -> None:
    code, report = check("--targets", "0", "--mtu")
    assert code == 0, [p for p in report["probes"] if not p["ok"]]
    names = [f"IPv{f}" for f in lab.families]
    assert report["ipFamilies"] == names
    by_family: dict[str, set[str]] = {}
    for p in report["probes"]:
        by_family.setdefault(p["family"], set()).add(p["kind"])
        if p["kind"] != "dns":  # a lookup over IPv6 asks AAAA of the pod's one nameserver
            assert (":" in p["address"]) == (p["family"] == "IPv6"), p
    assert sorted(by_family) == names
    kinds = {"self", "same-node", "other-node", "node", "service", "dns", "nodeport", "outside"}
    assert all(k == kinds for k in by_family.values())
    # kube-dns is single-stack (kubeadm's), the first family's: its ports once
    paths = [p for p in report["probes"] if not p["to"].startswith("kube-system/kube-dns:")]
    counts = [sum(p["family"] == n for p in paths) for n in names]
    assert len(set(counts)) == 1, counts  # the same paths, once per family
    six = [p for p in report["probes"] if p["family"] == "IPv6"]
    assert any(p["kind"] == "self" and p["address"] == "::1" for p in six)
    assert all(p["fullSize"]["ok"] for p in report["probes"] if "fullSize" in p)


def test_check_one_family_and_refuse_a_missing_one(lab: Lab) -> None:
    code, report = check("-6")
    assert code == 0 and {p["family"] for p in report["probes"]} == {"IPv6"}
    text = podnet("check", "--timeout", "1").stdout
    if lab.family == "dual":
        assert "IPv4 and IPv6 (dual-stack)" in text.splitlines()[0]
        assert "FAMILY" in text.splitlines()[2]
        done = podnet("check", "-4", "--timeout", "1")
        assert "FAMILY" not in done.stdout
    else:
        assert text.splitlines()[0].endswith(", IPv6")
        done = podnet("check", "-4", check=False)
        assert done.returncode == 1 and f"lab {CLUSTER} has no IPv4" in done.stderr


# --- get, graph, inspect, tour ----------------------------------------------------------------


def test_get_wide_shows_every_family(lab: Lab) -> None:
    client = lab.client
    wide = podnet("get", "pods", "client", "-o", "wide").stdout
    plain = podnet("get", "pods", "client").stdout
    every = ",".join(str(ip.ip) for ip in client.ips)
    assert every in wide and str(client.ip.ip) in plain
    assert (every in plain) == (lab.family == "ipv6")
    nodes = podnet("get", "nodes", "-o", "wide").stdout
    node = lab.lay.node(client.node)
    assert ",".join(str(c) for c in node.pod_cidrs) in nodes
    svc = json.loads(podnet("get", "svc", "-n", "dev", "web", "-o", "json").stdout)["spec"]
    assert svc["ipFamilyPolicy"] == "PreferDualStack"
    assert svc["ipFamilies"] == [f"IPv{f}" for f in lab.families]


def test_graph_and_inspect_show_ipv6_addresses_and_routes(lab: Lab) -> None:
    client = lab.client
    mermaid = podnet("graph", "-o", "mermaid").stdout
    assert f"eth0<br>{'<br>'.join(str(ip) for ip in client.ips)}" in mermaid
    node = lab.lay.node(client.node)
    cidr6 = node.pod_cidr_of(6)
    assert cidr6 is not None and f"pods {cidr6}" in mermaid
    if lab.routing == "vxlan":
        assert "flannel-v6.1" in mermaid
    seen = json.loads(podnet("inspect", "--netns", client.netns, "-o", "json").stdout)
    pod = next(ns for ns in seen["namespaces"] if ns["name"] == client.netns)
    eth0 = next(i for i in pod["interfaces"] if i["ifname"] == "eth0")
    assert f"{v6(client)}/64" in eth0["addresses"]
    gateway = node.gateways[-1]
    assert {"dst": "default", "family": 6, "gateway": str(gateway)}.items() <= next(
        r for r in pod["routes"] if r["family"] == 6 and r["dst"] == "default").items()
    assert eth0["peer"]["ifname"] == client.veth


def test_the_tour_runs_on_the_lab(lab: Lab) -> None:
    """On its first family: IPv6 in an IPv6-only lab, IPv4 in a dual-stack one (kind's order)."""
    done = podnet("tour", "--non-interactive", check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert done.stdout.splitlines()[-1].endswith("as the lesson expects")
    first = lab.lay.pod("default/client")
    assert first is not None
    if lab.family == "ipv6" and lab.attachment == "ptp":
        assert "Display the IPv6 addresses of the node's interfaces (kindnet's /128 gateway)" \
            in done.stdout
