"""The cluster DNS of a lab built by `podnet up` (sandbox only): real queries from pods through the
kube-dns Service's DNAT to the coredns pods, over UDP and TCP; A, AAAA, SRV and PTR records,
NXDOMAIN, an outside name refused at once, glibc's search path through `podnet exec` and
`getent`, a Service added by `up -f` that resolves at once without restarting anything, a
headless Service answered by its pods, and `podnet delete` refusing the add-on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from podnet.kernel import netns
from tests.kernel.test_lab import host_snapshot, podnet

pytestmark = pytest.mark.kernel

CLUSTER = "names"
DOMAIN = "lab.example"  # networking.dnsDomain: not cluster.local, so nothing works by accident

LAB = f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {CLUSTER}
networking: {{ipFamily: dual, dnsDomain: {DOMAIN}}}
nodes: [{{role: control-plane}}, {{role: worker}}, {{role: worker}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, labels: {{run: client}}}}
spec:
  containers: [{{name: idle}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: dev}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, ports: [{{containerPort: 80, name: http}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: dev}}
spec:
  ipFamilyPolicy: PreferDualStack
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: db-0, namespace: dev, labels: {{app: db}}}}
spec:
  hostname: db-0
  subdomain: db
  containers: [{{name: idle}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: dev}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: pg, port: 5432}}]
"""

LATER = """apiVersion: v1
kind: Service
metadata: {name: later, namespace: dev}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 80}]
"""


def record() -> dict[str, object]:
    with open(f"/run/podnet/{CLUSTER}/state.json") as fh:
        data: dict[str, object] = json.load(fh)
    return data


def pod(name: str) -> dict[str, object]:
    found = next(p for p in record()["pods"] if p["name"] == name)  # type: ignore[attr-defined]
    assert isinstance(found, dict)
    return found


def service(name: str) -> dict[str, object]:
    found = next(s for s in record()["services"]  # type: ignore[attr-defined]
                 if s["name"] == name)
    assert isinstance(found, dict)
    return found


def ask(name: str, rdtype: str = "A", *, tcp: bool = False, source: str = "client",
        server: str = "") -> dns.message.Message:
    """A query from inside pod `source` to its nameserver (the kube-dns ClusterIP)."""
    query = dns.message.make_query(name, rdtype)
    where = server or service("kube-dns")["cluster_ip"]
    assert isinstance(where, str)
    with netns.entered(netns.path_of(str(pod(source)["netns"]))):
        send = dns.query.tcp if tcp else dns.query.udp
        return send(query, where, timeout=2.0)


def addresses(answer: dns.message.Message) -> set[str]:
    return {str(rd) for rrset in answer.answer for rd in rrset
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)}


def pids() -> dict[str, list[int]]:
    return {p["name"]: [c["pid"] for c in p["containers"]]  # type: ignore[index]
            for p in record()["pods"]}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    topo = tmp_path_factory.mktemp("dns") / "lab.yaml"
    topo.write_text(LAB)
    before = host_snapshot()
    podnet("up", "-q", "-f", str(topo))
    try:
        yield topo
    finally:
        podnet("down", "-q", "-C", CLUSTER)
        assert host_snapshot() == before
        assert not [n for n in netns.list_named() if n.startswith((CLUSTER, "cni-", "podnet-"))]


def test_the_add_on_is_there_as_on_kind(lab: Path) -> None:
    dns_svc = service("kube-dns")
    assert dns_svc["namespace"] == "kube-system"
    assert dns_svc["cluster_ips"] == ["10.96.0.10"]  # kubeadm's: the first family's 10th
    assert [(p["name"], p["protocol"], p["port"]) for p in dns_svc["ports"]] == [  # type: ignore[attr-defined]
        ("dns", "UDP", 53), ("dns-tcp", "TCP", 53), ("metrics", "TCP", 9153)]
    coredns = [p for p in record()["pods"] if p["namespace"] == "kube-system"]  # type: ignore[attr-defined]
    assert len(coredns) == 2
    assert {p["node"] for p in coredns} == {f"{CLUSTER}-control-plane"}
    assert all(p["name"].startswith("coredns-") and p["owner"] == "coredns" for p in coredns)
    listed = podnet("get", "pods", "-n", "kube-system", "-C", CLUSTER).stdout
    assert listed.count("Running") == 2
    out = podnet("get", "services", "-n", "kube-system", "-C", CLUSTER).stdout
    assert "kube-dns" in out and "53/UDP,53/TCP,9153/TCP" in out


def test_a_and_aaaa_over_udp_and_tcp_through_the_service(lab: Path) -> None:
    web = service("web")
    name = f"web.dev.svc.{DOMAIN}."
    for tcp in (False, True):
        four, six = ask(name, "A", tcp=tcp), ask(name, "AAAA", tcp=tcp)
        assert four.rcode() == dns.rcode.NOERROR and six.rcode() == dns.rcode.NOERROR
        assert addresses(four) | addresses(six) == set(web["cluster_ips"])  # type: ignore[arg-type]


def test_srv_ptr_and_pod_records(lab: Path) -> None:
    srv = ask(f"_http._tcp.web.dev.svc.{DOMAIN}.", "SRV")
    assert [str(rd) for rrset in srv.answer for rd in rrset] == [
        f"0 100 80 web.dev.svc.{DOMAIN}."]
    ptr = ask(dns.reversename.from_address("10.96.0.10").to_text(), "PTR")
    assert [str(rd) for rrset in ptr.answer for rd in rrset] == [
        f"kube-dns.kube-system.svc.{DOMAIN}."]
    ip = str(pod("client")["ips"][0]).split("/")[0]  # type: ignore[index]
    dashed = ip.replace(".", "-")
    assert addresses(ask(f"{dashed}.default.pod.{DOMAIN}.")) == {ip}


def test_nxdomain_inside_and_refused_outside_at_once(lab: Path) -> None:
    started = time.monotonic()
    missing = ask(f"nothing.dev.svc.{DOMAIN}.")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    outside = ask("example.com.")
    assert outside.rcode() == dns.rcode.REFUSED
    assert time.monotonic() - started < 0.5  # answered, never a timeout


def test_a_headless_service_answers_with_its_pods(lab: Path) -> None:
    assert service("db")["cluster_ips"] == []
    db = {str(ip).split("/")[0] for ip in pod("db-0")["ips"]}  # type: ignore[attr-defined]
    name = f"db.dev.svc.{DOMAIN}."
    assert addresses(ask(name, "A")) | addresses(ask(name, "AAAA")) == db
    own = f"db-0.db.dev.svc.{DOMAIN}."
    assert addresses(ask(own, "A")) | addresses(ask(own, "AAAA")) == db
    out = podnet("get", "services", "-n", "dev", "-C", CLUSTER).stdout
    assert "None" in next(line for line in out.splitlines() if line.startswith("db "))
    assert podnet("exec", "-C", CLUSTER, "-n", "dev", "db-0", "--", "hostname").stdout.strip() \
        == "db-0"
    hosts = podnet("exec", "-C", CLUSTER, "-n", "dev", "db-0", "--", "cat", "/etc/hosts").stdout
    assert f"\tdb-0.db.dev.svc.{DOMAIN}\tdb-0\n" in hosts  # kubelet's line for a subdomain
    graph = podnet("graph", "-C", CLUSTER, "-o", "svg").stdout
    assert "headless:5432/TCP" in graph
    # trace by the headless name: DNS answers the pod, the trace goes to it
    traced = json.loads(podnet("trace", "-C", CLUSTER, "client", "db.dev", "-o", "json",
                               "--timeout", "1", check=False).stdout)
    assert traced["destination"].startswith("pod dev/db-0 ")
    assert any("db.dev.svc." in line and "NOERROR" in line for line in traced["lookup"])


def test_glibc_resolves_through_the_pods_resolv_conf_and_search_path(lab: Path) -> None:
    conf = podnet("exec", "-C", CLUSTER, "client", "--", "cat", "/etc/resolv.conf").stdout
    assert conf == (f"search default.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}\n"
                    "nameserver 10.96.0.10\noptions ndots:5\n")
    hosts = podnet("exec", "-C", CLUSTER, "client", "--", "cat", "/etc/hosts").stdout
    assert "web" not in hosts and "client" in hosts  # no Service names: DNS has them
    found = podnet("exec", "-C", CLUSTER, "client", "--", "getent", "ahosts", "web.dev").stdout
    assert {line.split()[0] for line in found.splitlines()} == set(service("web")["cluster_ips"])  # type: ignore[arg-type]
    short = podnet("exec", "-C", CLUSTER, "-n", "dev", "db-0", "--", "getent", "hosts", "web")
    assert f"web.dev.svc.{DOMAIN}" in short.stdout
    missing = podnet("exec", "-C", CLUSTER, "client", "--", "getent", "hosts", "nothing.dev",
                     check=False)
    assert missing.returncode == 2  # glibc: not found


def test_check_asks_dns_from_every_pod(lab: Path) -> None:
    out = json.loads(podnet("check", "-C", CLUSTER, "-o", "json").stdout)
    lookups = [p for p in out["probes"] if p["kind"] == "dns"]
    sources = {p["from"] for p in lookups}
    assert sources == {f"{p['namespace']}/{p['name']}" for p in record()["pods"]  # type: ignore[attr-defined]
                       if p["namespace"] != "kube-system"}  # coredns pods: dnsPolicy Default
    assert all(p["ok"] and p["address"] == "10.96.0.10" for p in lookups), lookups


def test_clients_that_leave_mid_answer_do_not_end_the_servers(lab: Path) -> None:
    # check --mtu sends a full-size segment to every Service port, 53 and 9153 included, and
    # closes at once: the servers see EPIPE and resets, and must go on answering.
    podnet("check", "-C", CLUSTER, "--mtu", "-o", "json", check=False)
    listed = podnet("get", "pods", "-n", "kube-system", "-C", CLUSTER).stdout
    assert listed.count("Running") == 2, listed
    assert ask(f"web.dev.svc.{DOMAIN}.").rcode() == dns.rcode.NOERROR


def test_a_service_added_later_resolves_at_once_without_restarts(lab: Path, tmp_path: Path) -> None:
    before = pids()
    name = f"later.dev.svc.{DOMAIN}."
    assert ask(name).rcode() == dns.rcode.NXDOMAIN
    later = tmp_path / "later.yaml"
    later.write_text(LATER)
    podnet("up", "-q", "-f", str(later))
    try:
        ip = service("later")["cluster_ips"]
        assert addresses(ask(name)) == set(ip)  # type: ignore[arg-type]
        assert pids() == before  # no pod restarted, the DNS servers neither
    finally:
        podnet("delete", "-C", CLUSTER, "-f", str(later))
    assert ask(name).rcode() == dns.rcode.NXDOMAIN
    assert pids() == before


def test_delete_refuses_the_add_on(lab: Path) -> None:
    for args in (("service", "-n", "kube-system", "kube-dns"), ("namespace", "kube-system"),
                 ("deployment", "-n", "kube-system", "coredns")):
        result = podnet("delete", "-C", CLUSTER, *args, check=False)
        assert result.returncode != 0
        assert "cluster DNS" in result.stderr and "Traceback" not in result.stderr
    assert len([p for p in record()["pods"]  # type: ignore[attr-defined]
                if p["namespace"] == "kube-system"]) == 2
