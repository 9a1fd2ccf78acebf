"""The cluster DNS in the lab's plan, without root: the add-on objects as kubeadm makes them on
kind, each pod's resolv.conf, the records step and when it runs, headless Services, the cluster
domain, pods recreated when their DNS names change, and `delete` refusing the add-on."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from podnet.dns.records import RecordSet
from podnet.errors import InputError, TopologyError
from podnet.model.loader import default_topology, load_topology
from podnet.plan.addons import DNS_NAMESPACE, records_path, with_addons
from podnet.plan.builds import Action
from podnet.plan.dns import lab_records, pod_resolv, resolv_text
from podnet.plan.layout import layout
from podnet.plan.ops import WriteFile
from podnet.plan.running import Named, removed
from podnet.plan.steps import Observed, plan, plan_down, seen_as_planned

LAB = """kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: names
networking: {{ipFamily: {family}{extra}}}
nodes: [{{role: control-plane}}, {{role: worker}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: db-0, namespace: dev, labels: {{app: db}}}}
spec:
  hostname: db-0
  subdomain: db
  containers: [{{name: c}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: quiet, namespace: dev}}
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: [192.0.2.53]
    searches: [corp.example]
    options: [{{name: ndots, value: "2"}}]
  containers: [{{name: c}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: dev}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: pg, port: 5432}}]
"""


def lab(family: str = "ipv4", extra: str = "") -> str:
    return LAB.format(family=family, extra=extra)


def test_every_lab_has_kube_dns_and_two_coredns_pods_on_the_control_plane() -> None:
    lay = layout(default_topology())
    dns = next(s for s in lay.services if s.key == "kube-system/kube-dns")
    assert [str(ip) for ip in dns.cluster_ips] == ["10.96.0.10"]
    assert [(p.name, p.protocol, p.port, p.target_port) for p in dns.ports] == [
        ("dns", "UDP", 53, 53), ("dns-tcp", "TCP", 53, 53), ("metrics", "TCP", 9153, 9153)]
    assert dns.selector == (("k8s-app", "kube-dns"),)
    coredns = [p for p in lay.pods if p.namespace == DNS_NAMESPACE]
    assert len(coredns) == 2 and set(dns.endpoints) == {p.key for p in coredns}
    assert {p.node for p in coredns} == {"kind-control-plane"}
    for pod in coredns:
        assert pod.owner == "coredns" and pod.name.startswith("coredns-")
        assert len(pod.name.split("-")[1]) == 10 and len(pod.name.split("-")[2]) == 5
        (container,) = pod.containers
        assert container.command == ("python3", "-m", "podnet.dns.server", "--records",
                                     records_path(lay.state_dir))
        assert pod.dns_policy == "Default"  # as kubeadm's coredns Deployment
    assert "kube-system" in {n.name for n in lay.namespaces}
    # The default lab: its 4 pods and Service, and the add-on's 2 pods and 1 Service.
    assert len(lay.pods) == 6 and len(lay.services) == 2


def test_the_add_on_is_laid_out_once_however_often_it_is_applied() -> None:
    spec = default_topology()
    once = with_addons(spec, "/run/podnet/kind")
    assert with_addons(once, "/run/podnet/kind") == once
    first = layout(spec)
    assert layout(spec, first) == first
    assert plan(layout(spec, first), first, seen_as_planned(first)) == []


@pytest.mark.parametrize(("family", "address"), [("ipv4", "10.96.0.10"),
                                                  ("ipv6", "fd00:10:96::a"),
                                                  ("dual", "10.96.0.10")])
def test_kube_dns_takes_the_10th_address_of_the_first_service_subnet(family: str,
                                                                      address: str) -> None:
    lay = layout(load_topology(lab(family)))
    dns = next(s for s in lay.services if s.name == "kube-dns")
    assert [str(ip) for ip in dns.cluster_ips] == [address]  # kubeadm's single-stack Service
    assert ipaddress.ip_address(address) in lay.service_subnets[0]


def test_each_pod_gets_kubelets_resolv_conf() -> None:
    lay = layout(load_topology(lab(extra=", dnsDomain: Corp.Lab")))
    assert lay.dns_domain == "corp.lab"
    db = lay.pod("dev/db-0")
    quiet = lay.pod("dev/quiet")
    coredns = next(p for p in lay.pods if p.namespace == DNS_NAMESPACE)
    assert db is not None and quiet is not None
    assert resolv_text(lay, db) == ("search dev.svc.corp.lab svc.corp.lab corp.lab\n"
                                    "nameserver 10.96.0.10\noptions ndots:5\n")
    assert pod_resolv(lay, quiet).render() == ("search corp.example\nnameserver 192.0.2.53\n"
                                               "options ndots:2\n")
    assert resolv_text(lay, coredns).startswith("# dnsPolicy Default: the node's resolv.conf")


def test_pod_create_writes_resolv_conf_and_hosts_without_service_names() -> None:
    lay = layout(default_topology())
    steps = plan(lay, None, Observed())
    jump = next(s for s in steps if s.action == Action.POD_CREATE and s.target == "default/jumpbox")
    files = {op.path: op.text for op in jump.ops if isinstance(op, WriteFile)}
    pod = lay.pod("default/jumpbox")
    assert pod is not None
    assert files[pod.resolv_file].startswith("search default.svc.cluster.local")
    assert pod.resolv_file.endswith("/pods/default_jumpbox.resolv")
    assert "demo" not in files[pod.hosts_file] and "jumpbox" in files[pod.hosts_file]
    assert list(files)[-1] == pod.hosts_file  # still last: a pod whose hosts file exists is whole


def test_the_records_are_written_before_any_pod_starts_and_removed_by_down() -> None:
    lay = layout(default_topology())
    steps = plan(lay, None, Observed())
    actions = [s.action for s in steps]
    records = steps[actions.index(Action.DNS_RECORDS)]
    assert actions.index(Action.DNS_RECORDS) < actions.index(Action.POD_START)
    (write,) = records.ops
    assert isinstance(write, WriteFile) and write.path == records_path(lay.state_dir)
    assert write.new  # a failed first `up` removes it with the rest
    assert RecordSet.from_json(write.text) == lab_records(lay)
    down = [op for s in plan_down(lay) for op in s.ops]
    assert any(write.path in getattr(op, "paths", ()) for op in down)


def test_a_headless_service_has_no_address_and_its_records_are_the_pods() -> None:
    lay = layout(load_topology(lab()))
    db = next(s for s in lay.services if s.key == "dev/db")
    assert db.headless and db.cluster_ips == () and db.endpoints == ("dev/db-0",)
    pod = lay.pod("dev/db-0")
    assert pod is not None
    ip = str(pod.ip.ip)
    text = lab_records(lay).zone_text()
    assert f"db.dev.svc.cluster.local.\t30\tIN\tA\t{ip}" in text
    assert f"db-0.db.dev.svc.cluster.local.\t30\tIN\tA\t{ip}" in text
    assert "_pg._tcp.db.dev.svc.cluster.local.\t30\tIN\tSRV\t0 100 5432 db-0.db.dev.svc" in text


def test_headless_is_clusterip_only_and_alone() -> None:
    for bad, words in (("clusterIP: None\n  type: NodePort", "None (headless) with type"),
                       ("clusterIPs: ['None', 10.96.5.5]", "None (headless) beside an address")):
        text = lab().replace("clusterIP: None", bad)
        with pytest.raises(TopologyError) as caught:
            load_topology(text)
        assert words in str(caught.value.problems)


def test_a_pod_whose_hostname_changes_is_recreated_and_records_follow() -> None:
    first = layout(load_topology(lab()))
    changed = layout(load_topology(lab().replace("hostname: db-0", "hostname: db-zero")), first)
    steps = plan(changed, first, seen_as_planned(first))
    mine = [(s.action, s.target) for s in steps if s.target in ("dev/db-0", "names")]
    assert mine == [(Action.POD_DELETE, "dev/db-0"), (Action.DNS_RECORDS, "names"),
                    (Action.POD_CREATE, "dev/db-0"), (Action.POD_START, "dev/db-0")]
    before, after = first.pod("dev/db-0"), changed.pod("dev/db-0")
    assert before is not None and after is not None and before.ips == after.ips


def test_a_pod_with_a_subdomain_has_its_full_name_in_etc_hosts_as_kubelet_writes_it() -> None:
    lay = layout(load_topology(lab()))
    pod = lay.pod("dev/db-0")
    assert pod is not None
    steps = plan(lay, None, Observed())
    create = next(s for s in steps if s.action == Action.POD_CREATE and s.target == pod.key)
    hosts = next(op.text for op in create.ops
                 if isinstance(op, WriteFile) and op.path == pod.hosts_file)
    assert hosts.endswith(f"{pod.ip.ip}\tdb-0.db.dev.svc.cluster.local\tdb-0\n")


def test_a_changed_dns_config_rewrites_resolv_conf_in_place() -> None:
    first = layout(load_topology(lab()))
    changed = layout(load_topology(lab().replace("192.0.2.53", "192.0.2.54")), first)
    steps = plan(changed, first, seen_as_planned(first))
    assert [s.action for s in steps] == [Action.PODS_FILES]
    (write,) = steps[0].ops
    quiet = changed.pod("dev/quiet")
    assert quiet is not None and isinstance(write, WriteFile)
    assert write.path == quiet.resolv_file and "192.0.2.54" in write.text


def test_the_dns_domain_is_checked() -> None:
    with pytest.raises(TopologyError) as caught:
        load_topology(lab(extra=", dnsDomain: 'a..b'"))
    assert "networking.dnsDomain" in str(caught.value.problems)


def test_delete_refuses_the_add_on_and_takes_user_objects() -> None:
    lay = layout(default_topology())
    coredns = next(p for p in lay.pods if p.namespace == DNS_NAMESPACE)
    for named in (Named(services=frozenset({"kube-system/kube-dns"})),
                  Named(namespaces=frozenset({"kube-system"})),
                  Named(deployments=frozenset({"kube-system/coredns"})),
                  Named(pods=frozenset({coredns.key}))):
        with pytest.raises(InputError) as caught:
            removed(lay, named)
        assert "cluster DNS" in caught.value.message
    spec, words = removed(lay, Named(services=frozenset({"dev/demo"})))
    assert words == ["service dev/demo"]
    after = layout(spec, lay)
    assert {s.key for s in after.services} == {"kube-system/kube-dns"}
    assert replace(after, services=()).pods == replace(lay, services=()).pods


ADDON_CLASH = """kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: clash
---
apiVersion: v1
kind: Service
metadata: {name: x}
spec: {clusterIP: 10.96.0.10, selector: {app: x}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec: {selector: {app: x}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: c}]}
"""


def test_a_file_never_replaces_the_cluster_dns_nor_takes_its_address() -> None:
    with pytest.raises(TopologyError) as caught:
        load_topology(ADDON_CLASH)
    text = str(caught.value) + "".join(str(p) for p in caught.value.problems)
    assert "10.96.0.10 is the cluster DNS's address" in text
    assert "Service kube-system/kube-dns is the lab's cluster DNS" in text
    assert "Deployment kube-system/coredns is the lab's cluster DNS" in text
