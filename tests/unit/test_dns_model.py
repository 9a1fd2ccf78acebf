"""Pods' DNS fields in the topology (hostname, subdomain, dnsPolicy, dnsConfig); bad ones are in
tests/golden/topologies/bad-pod-dns.yaml."""

from __future__ import annotations

from podnet.model import load_topology
from podnet.model.types import PodDNSConfig

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: dev}
spec:
  hostname: client-0
  subdomain: clients
  dnsPolicy: "None"
  dnsConfig:
    nameservers: [10.96.0.10, "fd00:10:96:0::a"]
    searches: [dev.svc.cluster.local., example.internal]
    options:
      - {name: ndots, value: "2"}
      - {name: edns0}
  containers: [{name: c, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers: [{name: c, command: [sleep, infinity]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: dev}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      subdomain: web
      dnsPolicy: Default
      dnsConfig: {searches: [corp.example]}
      containers: [{name: web, ports: [{containerPort: 80}]}]
"""


def test_pod_dns_fields_are_read() -> None:
    pods = {p.key: p for p in load_topology(PODS).pods}
    client = pods["dev/client"]
    assert (client.hostname, client.subdomain, client.dns_policy) == ("client-0", "clients", "None")
    assert client.dns_config == PodDNSConfig(
        nameservers=("10.96.0.10", "fd00:10:96::a"),
        searches=("dev.svc.cluster.local", "example.internal"),
        options=(("ndots", "2"), ("edns0", None)),
    )


def test_defaults_are_kubernetes_defaults() -> None:
    plain = next(p for p in load_topology(PODS).pods if p.name == "plain")
    assert (plain.hostname, plain.subdomain, plain.dns_policy, plain.dns_config) == (
        None, None, "ClusterFirst", None,
    )


def test_deployment_replicas_carry_the_template_dns_fields() -> None:
    replicas = [p for p in load_topology(PODS).pods if p.owner == "web"]
    assert len(replicas) == 2
    for pod in replicas:
        assert pod.name.startswith("web-")
        assert (pod.subdomain, pod.dns_policy) == ("web", "Default")
        assert pod.dns_config == PodDNSConfig(searches=("corp.example",))
        assert pod.label_dict() == {"app": "web"}
