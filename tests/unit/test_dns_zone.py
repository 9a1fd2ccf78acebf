"""Answers of the DNS server without sockets: podnet.dns.zone, DnsServer.handle and reload, the
inotify watch and the metrics text. Real queries over real sockets are in
tests/kernel/test_dns_server.py."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from podnet.dns.files import read_records, write_records
from podnet.dns.records import DnsPod, DnsPort, DnsService, Record, RecordSet, cluster_records
from podnet.dns.server import DnsServer, server_command
from podnet.dns.watch import FileWatch
from podnet.dns.zone import Zones

NETWORKS = ("10.96.0.0/16", "10.244.0.0/16", "fd00:10:96::/112", "fd00:10:244::/56")


def records(extra_pods: int = 0, **kw: object) -> RecordSet:
    pods = [
        DnsPod("dev", "demo-a", ("10.244.1.5",)),
        DnsPod("dev", "web-0", ("10.244.1.9", "fd00:10:244:1::9"), hostname="web-0",
               subdomain="web"),
        *(DnsPod("dev", f"many-{i}", (f"10.244.3.{i + 1}",), subdomain="many")
          for i in range(extra_pods)),
    ]
    services = [
        DnsService("dev", "demo", ("10.96.12.3",), (DnsPort("http", 80, "TCP"),), ("dev/demo-a",)),
        DnsService("dev", "web", (), (DnsPort("http", 80, "TCP"),), ("dev/web-0",)),
        DnsService("dev", "many", (), (), tuple(f"dev/many-{i}" for i in range(extra_pods))),
    ]
    return cluster_records(
        services, pods, networks=NETWORKS, nameservers=("10.96.0.10",), **kw  # type: ignore[arg-type]
    )


ZONES = Zones(records())


def ask(name: str, rdtype: str, zones: Zones = ZONES, **kw: object) -> dns.message.Message:
    return zones.answer(dns.message.make_query(name, rdtype, **kw))  # type: ignore[arg-type]


def answer_text(response: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


def test_service_a_is_authoritative() -> None:
    r = ask("demo.dev.svc.cluster.local", "A")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA and r.flags & dns.flags.RA
    assert answer_text(r) == ["10.96.12.3"]
    assert r.answer[0].ttl == 30


def test_missing_type_is_nodata_with_the_soa() -> None:
    r = ask("demo.dev.svc.cluster.local", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    assert str(r.authority[0].name) == "cluster.local."


def test_empty_non_terminal_is_nodata_not_nxdomain() -> None:
    for name in ("dev.svc.cluster.local", "svc.cluster.local", "_tcp.demo.dev.svc.cluster.local"):
        r = ask(name, "A")
        assert r.rcode() == dns.rcode.NOERROR and not r.answer, name


def test_missing_name_in_the_domain_is_nxdomain_with_the_soa() -> None:
    r = ask("nope.dev.svc.cluster.local", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.flags & dns.flags.AA
    assert r.authority[0].rdtype == dns.rdatatype.SOA


def test_missing_reverse_name_in_a_lab_network_is_nxdomain() -> None:
    r = ask("99.99.244.10.in-addr.arpa", "PTR")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert str(r.authority[0].name) == "244.10.in-addr.arpa."


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("example.com", "A"), ("kubernetes.io", "AAAA"), ("1.1.1.1.in-addr.arpa", "PTR"),
     ("local", "SOA"), (".", "NS")],
)
def test_outside_the_cluster_is_refused_and_says_why(name: str, rdtype: str) -> None:
    r = ask(name, rdtype, use_edns=0)
    assert r.rcode() == dns.rcode.REFUSED
    assert not r.answer and not r.flags & dns.flags.AA
    ede = [o for o in r.options if isinstance(o, dns.edns.EDEOption)]
    assert ede and ede[0].code == dns.edns.EDECode.NOT_AUTHORITATIVE
    assert "cluster.local" in (ede[0].text or "")


def test_chaos_class_is_refused() -> None:
    r = ask("version.bind", "TXT", rdclass="CH")
    assert r.rcode() == dns.rcode.REFUSED


def test_srv_carries_the_target_addresses() -> None:
    r = ask("_http._tcp.web.dev.svc.cluster.local", "SRV")
    assert answer_text(r) == ["0 100 80 web-0.web.dev.svc.cluster.local."]
    glue = sorted(rd.to_text() for rrset in r.additional for rd in rrset)
    assert glue == ["10.244.1.9", "fd00:10:244:1::9"]


def test_ptr_of_service_and_pod() -> None:
    assert answer_text(ask("3.12.96.10.in-addr.arpa", "PTR")) == ["demo.dev.svc.cluster.local."]
    assert answer_text(ask("5.1.244.10.in-addr.arpa", "PTR")) == [
        "10-244-1-5.demo.dev.svc.cluster.local."
    ]
    six = dns.reversename.from_address("fd00:10:244:1::9")
    assert answer_text(ask(six.to_text(), "PTR")) == ["web-0.web.dev.svc.cluster.local."]


def test_names_answer_in_the_case_they_were_asked() -> None:
    r = ask("Demo.DEV.svc.Cluster.Local", "A")
    assert answer_text(r) == ["10.96.12.3"]
    assert r.answer[0].name.to_text() == "Demo.DEV.svc.Cluster.Local."


def test_any_returns_every_type_of_the_name() -> None:
    r = ask("cluster.local", "ANY")
    assert {rrset.rdtype for rrset in r.answer} == {dns.rdatatype.SOA, dns.rdatatype.NS}


def test_insecure_pods_answer_any_dashed_address_verified_only_real_pods() -> None:
    assert answer_text(ask("10-1-2-3.other.pod.cluster.local", "A")) == ["10.1.2.3"]
    assert answer_text(ask("fd00--7.other.pod.cluster.local", "AAAA")) == ["fd00::7"]
    r = ask("10-1-2-3.other.pod.cluster.local", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert ask("not-an-ip.dev.pod.cluster.local", "A").rcode() == dns.rcode.NXDOMAIN
    verified = Zones(records(pod_mode="verified"))
    assert ask("10-1-2-3.other.pod.cluster.local", "A", verified).rcode() == dns.rcode.NXDOMAIN
    assert answer_text(ask("10-244-1-5.dev.pod.cluster.local", "A", verified)) == ["10.244.1.5"]


def test_other_opcodes_are_not_implemented() -> None:
    query = dns.message.make_query("demo.dev.svc.cluster.local", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    assert ZONES.answer(query).rcode() == dns.rcode.NOTIMP


# The server's message handling, without sockets ------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> DnsServer:
    path = tmp_path / "records.json"
    write_records(str(path), records())
    return DnsServer(str(path), metrics_port=None, log=io.StringIO())


def test_a_repeated_query_comes_from_the_cache_with_its_own_id(server: DnsServer) -> None:
    query = dns.message.make_query("demo.dev.svc.cluster.local", "A")
    first = dns.message.from_wire(server.handle(query.to_wire(), "udp") or b"")
    query.id = (query.id + 1) % 65536
    again = dns.message.from_wire(server.handle(query.to_wire(), "udp") or b"")
    assert again.id == query.id != first.id
    assert answer_text(again) == answer_text(first) == ["10.96.12.3"]
    assert server.metrics.cache_hits == 1
    assert server.metrics.requests[("udp", "A")] == 2


def test_garbage_gets_formerr_and_short_or_response_messages_are_dropped(
    server: DnsServer,
) -> None:
    out = server.handle(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff", "udp")
    assert out is not None
    reply = dns.message.from_wire(out)
    assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
    assert server.handle(b"\x12\x34\x01", "udp") is None
    response = dns.message.make_response(dns.message.make_query("x.cluster.local", "A"))
    assert server.handle(response.to_wire(), "udp") is None  # never answer an answer
    assert server.metrics.dropped == 2


def test_edns_version_1_gets_badvers(server: DnsServer) -> None:
    query = dns.message.make_query("demo.dev.svc.cluster.local", "A", use_edns=1)
    reply = dns.message.from_wire(server.handle(query.to_wire(), "udp") or b"")
    assert reply.rcode() == dns.rcode.BADVERS


def test_big_answers_truncate_over_udp_and_not_over_tcp(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    write_records(str(path), records(extra_pods=60))
    server = DnsServer(str(path), metrics_port=None, log=io.StringIO())
    query = dns.message.make_query("many.dev.svc.cluster.local", "A")  # no EDNS: 512 bytes
    udp = server.handle(query.to_wire(), "udp") or b""
    assert len(udp) <= 512
    assert dns.message.from_wire(udp).flags & dns.flags.TC
    tcp = dns.message.from_wire(server.handle(query.to_wire(), "tcp") or b"")
    assert not tcp.flags & dns.flags.TC
    assert len(answer_text(tcp)) == 60
    edns = dns.message.make_query("many.dev.svc.cluster.local", "A", use_edns=0, payload=4096)
    big = server.handle(edns.to_wire(), "udp") or b""
    assert 512 < len(big) <= 1232  # the most this server sends over UDP
    assert len(answer_text(dns.message.from_wire(big))) == 60


def test_reload_serves_the_new_records_and_keeps_the_old_on_a_bad_file(
    server: DnsServer,
) -> None:
    query = dns.message.make_query("late.dev.svc.cluster.local", "A").to_wire()
    assert dns.message.from_wire(server.handle(query, "udp") or b"").rcode() == dns.rcode.NXDOMAIN
    rs = records()
    late = Record("late.dev.svc.cluster.local.", "A", "10.96.7.7")
    added = dataclasses.replace(rs, records=(*rs.records, late))
    write_records(server.records_path, added)
    assert server.reload()
    reply = dns.message.from_wire(server.handle(query, "udp") or b"")
    assert answer_text(reply) == ["10.96.7.7"]
    Path(server.records_path).write_text("{ not json")
    assert not server.reload()
    reply = dns.message.from_wire(server.handle(query, "udp") or b"")
    assert answer_text(reply) == ["10.96.7.7"]
    assert server.metrics.reloads == {"ok": 1, "error": 1}
    assert "still serving the previous records" in server.log.getvalue()  # type: ignore[attr-defined]


def test_a_missing_or_bad_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        DnsServer(str(tmp_path / "absent.json"), metrics_port=None)
    bad = tmp_path / "bad.json"
    rs = records()
    bad.write_text(dataclasses.replace(rs, zones=("cluster.local.",)).to_json())
    with pytest.raises(ValueError, match="outside every zone"):
        DnsServer(str(bad), metrics_port=None)
    bad.write_text(dataclasses.replace(rs, zones=(*rs.zones, "example.org.")).to_json())
    with pytest.raises(ValueError, match=r"example\.org\. has no SOA"):
        DnsServer(str(bad), metrics_port=None)
    bad.write_text(rs.to_json().replace("10.96.12.3", "10.96.12.300"))
    with pytest.raises(ValueError, match=r"demo\.dev\.svc\.cluster\.local\. A"):
        DnsServer(str(bad), metrics_port=None)


def test_metrics_text_counts_by_type_and_rcode(server: DnsServer) -> None:
    for name in ("demo.dev.svc.cluster.local", "nope.dev.svc.cluster.local", "example.com"):
        server.handle(dns.message.make_query(name, "A").to_wire(), "udp")
    server.handle(dns.message.make_query("demo.dev.svc.cluster.local", "SRV").to_wire(), "tcp")
    text = server.metrics.render()
    assert 'podnet_dns_requests_total{proto="udp",type="A"} 3' in text
    assert 'podnet_dns_requests_total{proto="tcp",type="SRV"} 1' in text
    assert 'podnet_dns_responses_total{rcode="NOERROR"} 2' in text
    assert 'podnet_dns_responses_total{rcode="NXDOMAIN"} 1' in text
    assert 'podnet_dns_responses_total{rcode="REFUSED"} 1' in text
    assert "# TYPE podnet_dns_requests_total counter" in text
    assert f"podnet_dns_records {ZONES.size}" in text


# The records file and its watch ----------------------------------------------------------------


def test_the_watch_sees_an_atomic_rewrite_and_ignores_other_files(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    write_records(str(path), records())
    watch = FileWatch(str(path))
    try:
        assert not watch.changed()
        (tmp_path / "other.txt").write_text("x")
        assert not watch.changed()
        write_records(str(path), records(extra_pods=1))
        assert watch.changed()
        assert not watch.changed()
        with open(path, "a") as fh:  # an edit in place
            fh.write(" ")
        assert watch.changed()
    finally:
        watch.close()
    assert read_records(str(path)) == records(extra_pods=1)


def test_the_watch_of_a_missing_directory_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="inotify"):
        FileWatch(str(tmp_path / "absent" / "records.json"))


def test_server_command_runs_this_copy_of_podnet() -> None:
    argv, env = server_command("/run/podnet/kind/dns/records.json", python="/usr/bin/python3")
    assert argv == ["/usr/bin/python3", "-m", "podnet.dns.server", "--records",
                    "/run/podnet/kind/dns/records.json"]
    assert os.path.isfile(os.path.join(env["PYTHONPATH"], "podnet", "dns", "server.py"))


def test_zone_transfers_are_refused() -> None:
    for rdtype in ("AXFR", "IXFR"):
        assert ask("cluster.local", rdtype).rcode() == dns.rcode.REFUSED
