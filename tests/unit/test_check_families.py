"""`podnet check`'s plan on IPv6-only and dual-stack labs, pure: every path once per family, with
that family's addresses (`::1` for the pod itself, each Service by its ClusterIP of the family,
the node's address of the family as the internet must see it), and NetworkPolicies judged per
family. The kernel tests (tests/kernel/test_tools_ipv6.py, test_policy_ipv6.py) send them."""

from __future__ import annotations

import ipaddress

from podnet.model.loader import load_topology
from podnet.plan.check import KINDS, Probe, Result, probes, summarize
from podnet.plan.check_policy import judged
from podnet.plan.layout import Layout, layout
from tests.kernel.test_policy_lab import ALLOW, DENY
from tests.kernel.test_policy_lab import topology as policy_topology
from tests.kernel.topologies import web_lab

NODEPORT = "  type: NodePort\n"


def lab(family: str, service: str = NODEPORT + "  ipFamilyPolicy: PreferDualStack\n") -> Layout:
    return layout(load_topology(web_lab("ck", f"{{ipFamily: {family}}}", replicas=4,
                                        client_node="ck-worker", service=service)))


def version(address: str) -> int:
    return ipaddress.ip_address(address).version


def test_a_dual_stack_lab_is_probed_over_each_family_alike() -> None:
    lay = lab("dual")
    planned = probes(lay)
    # kube-dns is single-stack, the first family's, as kubeadm makes it on kind
    both = [p for p in planned if not p.target.startswith("kube-system/kube-dns:")]
    by_family = {f: [p for p in both if p.family == f] for f in (4, 6)}
    assert len(by_family[4]) == len(by_family[6]) and len(both) == 2 * len(by_family[4])
    for family, found in by_family.items():
        assert {p.kind for p in found} == set(KINDS)
        # a lookup over IPv6 asks AAAA of the pods' one nameserver, 10.96.0.10
        assert all(version(p.address) == family for p in found if p.kind != "dns"), family
        dns = [p for p in found if p.kind == "dns"]
        assert {p.address for p in dns} == {"10.96.0.10"}
        qtype = "A" if family == 4 else "AAAA"
        assert {p.target for p in dns} == {f"web.dev.svc.cluster.local {qtype}"}
    client6 = [p for p in by_family[6] if p.source == "default/client"]
    assert next(p for p in client6 if p.kind == "self").address == "::1"
    node = lay.node(lay.pod("default/client").node)  # type: ignore[union-attr]
    outside = next(p for p in client6 if p.kind == "outside")
    assert outside.address == "2001:db8:5100::100"
    assert outside.expect.client == str(node.ip_of(6).ip)  # type: ignore[union-attr]
    svc = next(p for p in client6 if p.kind == "service")
    web = next(s for s in lay.services if s.key == "dev/web")
    assert svc.address == str(web.cluster_ips[1])
    lookup = next(p for p in client6 if p.kind == "dns")
    assert lookup.expect.answers == (str(web.cluster_ips[1]),)
    nodeports = [p for p in by_family[6] if p.kind == "nodeport"]
    assert {p.address for p in nodeports} == {str(n.ip_of(6).ip) for n in lay.nodes}  # type: ignore[union-attr]


def test_a_single_stack_service_is_probed_over_its_one_family() -> None:
    lay = lab("dual", NODEPORT)
    planned = probes(lay)
    assert {p.family for p in planned if p.kind in ("service", "nodeport")} == {4}
    assert {p.family for p in planned if p.kind == "other-node"} == {4, 6}


def test_one_family_can_be_asked_and_an_ipv6_lab_has_only_ipv6() -> None:
    lay = lab("dual")
    assert {p.family for p in probes(lay, families=(6,))} == {6}
    six = probes(lab("ipv6"))
    assert {p.family for p in six} == {6} and all(":" in p.address for p in six)
    assert probes(lab("ipv6"), families=(4,)) == []


def test_the_matrix_has_a_row_per_source_and_family() -> None:
    lay = lab("dual")
    planned = [p for p in probes(lay) if p.source == "default/client"]
    results = [Result(p, p.family == 4 or p.kind != "outside", "", 1.0) for p in planned]
    rows = summarize(results)
    assert list(rows) == [("default/client", 4), ("default/client", 6)]
    assert str(rows[("default/client", 4)]["outside"]) == "ok 1/1"
    assert str(rows[("default/client", 6)]["outside"]) == "FAIL 0/1"


def test_policies_are_judged_per_family() -> None:
    text = policy_topology("{ipFamily: dual}", DENY + ALLOW)
    text = text.replace("  ports: [{name: http, port: 80, targetPort: http}]",
                        "  ports: [{name: http, port: 80, targetPort: http}]\n"
                        "  ipFamilyPolicy: PreferDualStack")
    lay = layout(load_topology(text))
    planned, undecided = judged(lay, probes(lay, targets=0))
    denied: dict[int, list[Probe]] = {4: [], 6: []}
    for p in planned:
        if p.expect.denied:
            denied[p.family].append(p)
    assert denied[4] and len(denied[4]) == len(denied[6])
    assert {(p.source, p.target, p.kind) for p in denied[4]} == \
        {(p.source, p.target, p.kind) for p in denied[6]}
    intruder = [p for p in denied[6] if p.source == "other/intruder"]
    assert intruder and all("is isolated for ingress" in p.expect.denied for p in intruder)
    allowed = [p for p in planned if p.source == "default/client" and p.family == 6
               and p.kind in ("same-node", "other-node") and p.target.startswith("dev/")]
    assert allowed and not any(p.expect.denied for p in allowed)
    assert undecided % 2 == 0  # what is left out is left out of both families
