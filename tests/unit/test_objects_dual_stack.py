"""`get` and `describe` on dual-stack and IPv6-only labs, pure: the default columns are kubectl's
(the first family's address, as `status.podIP`), `-o wide` shows every family's (`podIPs`, both
InternalIPs and pod CIDRs, every ClusterIP), and a Service's `ipFamilyPolicy` is the one its file
gave, kept in the record (not guessed from how many ClusterIPs it got)."""

from __future__ import annotations

from typing import Any

import pytest

from podnet import state as lab_state
from podnet.inspect.model import Host
from podnet.model.loader import load_topology
from podnet.objects.kinds import Kind, kind_named
from podnet.plan.layout import layout
from podnet.state import LabState
from tests.kernel.topologies import web_lab


class Reads:
    """`KernelReads` with nothing running: the lists come from the record."""

    def exists(self, netns: str) -> bool:
        return True

    def host(self, names: object) -> Host:
        return Host()

    def running(self, pid: int, starttime: int) -> bool:
        return False

    def started(self, starttime: int) -> float | None:
        return None


def record(family: str, service: str = "") -> LabState:
    spec = load_topology(web_lab("ds", f"{{ipFamily: {family}}}", replicas=2, service=service))
    return LabState(layout(spec), [], complete=True)


def kind(name: str) -> Kind:
    found = kind_named(name)
    assert found is not None
    return found


def table(name: str, lab: LabState, *, wide: bool) -> list[dict[str, str]]:
    k = kind(name)
    headers, rows = k.table(k.collect(lab, Reads()), wide=wide)  # type: ignore[arg-type]
    return [dict(zip(headers, row, strict=True)) for row in rows]


def test_pods_show_the_first_family_by_default_and_every_family_wide() -> None:
    lab = record("dual")
    client = next(p for p in lab.layout.pods if p.name == "client")
    v4, v6 = (str(ip.ip) for ip in client.ips)
    assert ":" not in v4 and ":" in v6
    def row(wide: bool) -> dict[str, str]:
        return next(r for r in table("pods", lab, wide=wide) if r["NAME"] == "client")

    assert row(False)["IP"] == v4
    assert row(True)["IP"] == f"{v4},{v6}"
    obj = next(o for o in kind("pods").collect(lab, Reads())  # type: ignore[arg-type]
               if o["metadata"]["name"] == "client")
    assert obj["status"]["podIP"] == v4
    assert obj["status"]["podIPs"] == [{"ip": v4}, {"ip": v6}]


def test_an_ipv6_only_pod_shows_its_one_address() -> None:
    lab = record("ipv6")
    row = table("pods", lab, wide=True)[0]
    assert row["IP"].startswith("fd00:10:244:") and "," not in row["IP"]


def test_nodes_show_both_internal_ips_and_pod_cidrs_wide() -> None:
    lab = record("dual")
    node = lab.layout.nodes[0]
    plain, wide = table("nodes", lab, wide=False)[0], table("nodes", lab, wide=True)[0]
    assert plain["INTERNAL-IP"] == str(node.ips[0].ip)
    assert plain["POD-CIDR"] == str(node.pod_cidrs[0])
    assert wide["INTERNAL-IP"] == ",".join(str(ip.ip) for ip in node.ips)
    assert wide["POD-CIDR"] == ",".join(str(c) for c in node.pod_cidrs)
    assert wide["INTERNAL-IP"].count(":") > 1 and wide["POD-CIDR"].endswith("::/64")


@pytest.mark.parametrize(("family", "policy", "families"), [
    ("dual", "", ["IPv4"]),
    ("dual", "PreferDualStack", ["IPv4", "IPv6"]),
    ("dual", "RequireDualStack", ["IPv4", "IPv6"]),
    ("ipv4", "PreferDualStack", ["IPv4"]),  # one family in this cluster: still PreferDualStack
    ("ipv6", "", ["IPv6"]),
])
def test_a_services_families_and_policy_are_as_its_file_says(
        family: str, policy: str, families: list[str]) -> None:
    line = f"  ipFamilyPolicy: {policy}\n" if policy else ""
    lab = record(family, line)
    svcs = kind("svc")
    obj: dict[str, Any] = svcs.collect(lab, Reads())[0]  # type: ignore[arg-type]
    spec = obj["spec"]
    assert spec["ipFamilies"] == families
    assert spec["ipFamilyPolicy"] == (policy or "SingleStack")
    assert spec["clusterIP"] == spec["clusterIPs"][0] and len(spec["clusterIPs"]) == len(families)
    assert svcs.describe is not None
    doc = svcs.describe(lab, obj, Reads())  # type: ignore[arg-type]
    assert doc["IP Family Policy"] == (policy or "SingleStack")
    assert doc["IP Families"] == ",".join(families)
    plain, wide = table("svc", lab, wide=False)[0], table("svc", lab, wide=True)[0]
    assert plain["CLUSTER-IP"] == spec["clusterIP"]
    assert wide["CLUSTER-IP"] == ",".join(spec["clusterIPs"])
    assert wide["IP-FAMILY-POLICY"] == (policy or "SingleStack")
    assert "IP-FAMILY-POLICY" not in plain


def test_the_policy_survives_the_record_and_an_older_record_gets_what_it_implies() -> None:
    lab = record("ipv4", "  ipFamilyPolicy: PreferDualStack\n")
    encoded = lab_state._encode(lab)
    assert encoded["services"][0]["ip_family_policy"] == "PreferDualStack"
    again = lab_state._decode(encoded)
    assert again.layout.services[0].ip_family_policy == "PreferDualStack"
    del encoded["services"][0]["ip_family_policy"]  # written before the policy was kept
    assert lab_state._decode(encoded).layout.services[0].ip_family_policy == "SingleStack"
    dual = lab_state._encode(record("dual", "  ipFamilyPolicy: RequireDualStack\n"))
    del dual["services"][0]["ip_family_policy"]
    assert lab_state._decode(dual).layout.services[0].ip_family_policy == "RequireDualStack"
