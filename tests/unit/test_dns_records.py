"""The record set of a cluster (podnet.dns.records): golden zone text and the specification's rules.

After a deliberate change, rewrite the golden file and review the diff:

    PODNET_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_dns_records.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podnet.dns.records import (
    DnsPod,
    DnsPort,
    DnsService,
    Record,
    RecordSet,
    RecordsFileError,
    cluster_records,
    dashed,
    normalize_domain,
    reverse_name,
    reverse_zone,
    undashed,
)

GOLDEN = Path(__file__).parent.parent / "golden" / "dns"
UPDATE = os.environ.get("PODNET_UPDATE_GOLDEN") == "1"

NETWORKS = ("10.96.0.0/16", "10.244.0.0/16", "fd00:10:96::/112", "fd00:10:244::/56")
HTTP = DnsPort("http", 80, "TCP")


def lab() -> tuple[list[DnsService], list[DnsPod]]:
    """A dual-stack lab with every kind of record: ClusterIP, headless, hostnames, unready."""
    pods = [
        DnsPod("dev", "demo-a", ("10.244.1.5", "fd00:10:244:1::5")),
        DnsPod("dev", "demo-b", ("10.244.2.7", "fd00:10:244:2::7")),
        DnsPod("dev", "web-0", ("10.244.1.9",), hostname="web-0", subdomain="web"),
        DnsPod("dev", "web-1", ("10.244.2.3",), hostname="web-1", subdomain="other"),
        DnsPod("dev", "web-2", ("10.244.2.4",), hostname="web-2", subdomain="web", ready=False),
        DnsPod("default", "jumpbox", ("10.244.1.2", "fd00:10:244:1::2")),
    ]
    services = [
        DnsService(
            "dev",
            "demo",
            ("10.96.12.3", "fd00:10:96::c"),
            (HTTP, DnsPort("", 8080, "TCP")),
            ("dev/demo-a", "dev/demo-b"),
        ),
        DnsService("dev", "web", (), (HTTP,), ("dev/web-0", "dev/web-1", "dev/web-2")),
        DnsService("dev", "empty", (), (HTTP,), ()),
        DnsService(
            "kube-system",
            "kube-dns",
            ("10.96.0.10", "fd00:10:96::a"),
            (DnsPort("dns", 53, "UDP"), DnsPort("dns-tcp", 53, "TCP"),
             DnsPort("metrics", 9153, "TCP")),
        ),
    ]
    return services, pods


def lab_records(**kw: object) -> RecordSet:
    services, pods = lab()
    return cluster_records(
        services, pods, networks=NETWORKS, nameservers=("10.96.0.10", "fd00:10:96::a"), **kw  # type: ignore[arg-type]
    )


def names(rs: RecordSet, rtype: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rs.records:
        if r.type == rtype:
            out.setdefault(r.name, []).append(r.data)
    return out


def test_zone_text_matches_golden() -> None:
    text = lab_records().zone_text()
    golden = GOLDEN / "lab.zone"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text()


def test_cluster_ip_service_answers_its_addresses_of_each_family() -> None:
    rs = lab_records()
    assert names(rs, "A")["demo.dev.svc.cluster.local."] == ["10.96.12.3"]
    assert names(rs, "AAAA")["demo.dev.svc.cluster.local."] == ["fd00:10:96::c"]
    assert names(rs, "PTR")["3.12.96.10.in-addr.arpa."] == ["demo.dev.svc.cluster.local."]
    six = reverse_name("fd00:10:96::c")
    assert names(rs, "PTR")[six] == ["demo.dev.svc.cluster.local."]


def test_srv_per_named_port_and_none_for_unnamed() -> None:
    srv = names(lab_records(), "SRV")
    assert srv["_http._tcp.demo.dev.svc.cluster.local."] == ["0 100 80 demo.dev.svc.cluster.local."]
    assert srv["_dns._udp.kube-dns.kube-system.svc.cluster.local."] == [
        "0 100 53 kube-dns.kube-system.svc.cluster.local."
    ]
    assert not [n for n in srv if "8080" in n or n.startswith("__")]
    assert all(data.split()[2] != "8080" for rows in srv.values() for data in rows)


def test_headless_answers_ready_endpoints_with_their_hostnames() -> None:
    rs = lab_records()
    a = names(rs, "A")
    # web-0 names itself (subdomain web); web-1's subdomain is another Service: a dashed name;
    # web-2 is not ready: absent everywhere.
    assert a["web.dev.svc.cluster.local."] == ["10.244.1.9", "10.244.2.3"]
    assert a["web-0.web.dev.svc.cluster.local."] == ["10.244.1.9"]
    assert a["10-244-2-3.web.dev.svc.cluster.local."] == ["10.244.2.3"]
    assert not [n for n in a if n.startswith("web-1.") or n.startswith("web-2.")]
    assert "10.244.2.4" not in [d for n, rows in a.items() if ".svc." in n for d in rows]
    assert names(rs, "SRV")["_http._tcp.web.dev.svc.cluster.local."] == [
        "0 50 80 10-244-2-3.web.dev.svc.cluster.local.",
        "0 50 80 web-0.web.dev.svc.cluster.local.",
    ]
    assert names(rs, "PTR")[reverse_name("10.244.1.9")] == ["web-0.web.dev.svc.cluster.local."]


def test_headless_without_ready_endpoints_has_no_name() -> None:
    rs = lab_records()
    assert not [r for r in rs.records if r.name.endswith("empty.dev.svc.cluster.local.")]


def test_every_pod_address_has_a_pod_record_and_a_ptr() -> None:
    rs = lab_records()
    a, aaaa, ptr = names(rs, "A"), names(rs, "AAAA"), names(rs, "PTR")
    assert a["10-244-1-2.default.pod.cluster.local."] == ["10.244.1.2"]
    assert aaaa["fd00-10-244-1--2.default.pod.cluster.local."] == ["fd00:10:244:1::2"]
    assert ptr[reverse_name("10.244.1.2")] == ["10-244-1-2.default.pod.cluster.local."]
    # An endpoint is named by its Services (as coredns does), once per Service.
    assert ptr[reverse_name("10.244.1.5")] == ["10-244-1-5.demo.dev.svc.cluster.local."]
    # An unready pod still has its pod record: it exists, it is only no endpoint.
    assert a["10-244-2-4.dev.pod.cluster.local."] == ["10.244.2.4"]


def test_zones_soa_ns_and_version() -> None:
    rs = lab_records()
    assert rs.zones[0] == "cluster.local."
    assert set(rs.zones[1:]) == {
        "96.10.in-addr.arpa.",
        "244.10.in-addr.arpa.",
        reverse_zone("fd00:10:96::/112"),
        reverse_zone("fd00:10:244::/56"),
    }
    soa = names(rs, "SOA")
    assert set(soa) == set(rs.zones)
    assert all(data.startswith("ns.dns.cluster.local. hostmaster.cluster.local. ") for
               rows in soa.values() for data in rows)
    assert names(rs, "NS")["cluster.local."] == ["ns.dns.cluster.local."]
    assert names(rs, "A")["ns.dns.cluster.local."] == ["10.96.0.10"]
    assert names(rs, "TXT")["dns-version.cluster.local."] == ['"1.1.0"']


def test_the_cluster_domain_is_configurable() -> None:
    rs = lab_records(domain="Lab.Example.")
    assert rs.domain == "lab.example"
    assert rs.zones[0] == "lab.example."
    assert "demo.dev.svc.lab.example." in names(rs, "A")
    assert not [r for r in rs.records if r.name.endswith("cluster.local.")]
    with pytest.raises(ValueError, match="not a domain name"):
        normalize_domain("a..b")


def test_same_cluster_same_file_and_a_change_changes_the_serial() -> None:
    first, again = lab_records(), lab_records()
    assert first.to_json() == again.to_json()
    services, pods = lab()
    pods.append(DnsPod("dev", "late", ("10.244.1.77",)))
    later = cluster_records(services, pods, networks=NETWORKS)
    serial = {rows[0].split()[2] for rows in names(first, "SOA").values()}
    assert serial != {rows[0].split()[2] for rows in names(later, "SOA").values()}


@pytest.mark.parametrize(
    ("network", "zone"),
    [
        ("10.96.0.0/16", "96.10.in-addr.arpa."),
        ("10.96.0.0/12", "10.in-addr.arpa."),
        ("10.244.1.0/24", "1.244.10.in-addr.arpa."),
        ("10.0.0.0/7", "in-addr.arpa."),
        ("fd00:10:96::/112", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa."),
        ("fd00::/8", "d.f.ip6.arpa."),
        ("fd00::/10", "d.f.ip6.arpa."),
    ],
)
def test_reverse_zone_cuts_at_octets_and_nibbles(network: str, zone: str) -> None:
    assert reverse_zone(network) == zone


@pytest.mark.parametrize(
    ("ip", "label"),
    [
        ("10.244.1.5", "10-244-1-5"),
        ("fd00:10:244:1::5", "fd00-10-244-1--5"),
        ("::1", "--1"),
        ("fd00::", "fd00--"),
    ],
)
def test_dashed_names_round_trip(ip: str, label: str) -> None:
    assert dashed(ip) == label
    assert str(undashed(label)) == ip


@pytest.mark.parametrize("label", ["demo", "10-244-1", "10-244-1-500", "1-2-3-4-5-6-7-8-9", ""])
def test_undashed_refuses_what_is_no_address(label: str) -> None:
    assert undashed(label) is None


def test_json_round_trip() -> None:
    rs = lab_records(pod_mode="verified")
    again = RecordSet.from_json(rs.to_json())
    assert again == rs


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: "{", "not JSON"),
        (lambda b: "[]", "not a JSON object"),
        (lambda b: json.dumps({**b, "version": 9}), "format version 9"),
        (lambda b: json.dumps({**b, "domain": ""}), "'domain'"),
        (lambda b: json.dumps({**b, "ttl": "30"}), "'ttl'"),
        (lambda b: json.dumps({**b, "pods": "all"}), "'pods'"),
        (lambda b: json.dumps({**b, "zones": ["cluster.local"]}), "absolute"),
        (lambda b: json.dumps({**b, "records": [["a.cluster.local.", "A"]]}), "record 0"),
        (lambda b: json.dumps({**b, "records": [["a.cluster.local", "A", "1.2.3.4"]]}),
         "not absolute"),
        (lambda b: json.dumps({**b, "records": [["a.cluster.local.", "MX", "1 b."]]}),
         "type 'MX'"),
    ],
)
def test_a_bad_file_says_what_is_wrong(mutate: object, message: str) -> None:
    body = json.loads(lab_records().to_json())
    with pytest.raises(RecordsFileError, match=message):
        RecordSet.from_json(mutate(body))  # type: ignore[operator]


def test_records_sort_in_canonical_order() -> None:
    rs = lab_records()
    keys = [r.sort_key() for r in rs.records]
    assert keys == sorted(keys)
    assert Record("b.a.", "A", "1.2.3.4").sort_key() < Record("a.b.", "A", "1.2.3.4").sort_key()


def test_records_import_no_dnspython_and_no_pyroute2() -> None:
    code = (
        "import sys, podnet.dns.records, podnet.dns.resolv; "
        "print(any(m == 'dns' or m.startswith(('dns.', 'pyroute2')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ptr_records_only_inside_the_given_networks() -> None:
    services, pods = lab()
    only_services = cluster_records(services, pods, networks=("10.96.0.0/16",))
    ptrs = [r.name for r in only_services.records if r.type == "PTR"]
    assert ptrs == ["10.0.96.10.in-addr.arpa.", "3.12.96.10.in-addr.arpa."]
    none = cluster_records(services, pods)
    assert not [r for r in none.records if r.type == "PTR"]
    assert none.zones == ("cluster.local.",)
