"""The topology loader (podnet.model.loader): its happy paths, and the bounds it puts on input
before parsing; the wording of errors is golden (tests/golden)."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from podnet.errors import CNI_INVALID_CONFIG, TopologyError
from podnet.model import (
    DEFAULT_TOPOLOGY_TEXT,
    default_topology,
    load_file,
    load_topology,
    yaml_docs,
)
from podnet.model.types import ContainerSpec, NamedPort, NodeSpec, ServicePort

SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
REPLICA = re.compile(f"^demo-{SAFE}{{10}}-{SAFE}{{5}}$")

CUSTOM = """
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: lab
featureGates: {}                  # kind's own keys are accepted and ignored
nodes:
  - role: control-plane
  - role: control-plane           # several control-plane nodes are fine
  - role: worker
    name: edge                    # podnet's extension: an explicit name
    image: kindest/node:v1.31.0
  - role: worker
networking:
  podSubnet: 10.32.0.0/16
  serviceSubnet: 10.33.0.0/20
  nodeSubnet: 192.168.50.0/24
  attachment: bridge
  routing: vxlan
  mtu: 1450
  vxlan: {vni: 42, port: 4789}
  nodeCIDRPrefix: 26
  kubeProxyMode: iptables
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  labels: {role: client}
spec:
  nodeName: edge
  containers:
    - name: shell
      image: busybox
      command: [sh, -c]
      args: ["sleep 3600"]
      env:
        - {name: TARGET, value: "http://web.shop"}
        - {name: EMPTY}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      containers:
        - name: web
          ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]
        - name: metrics
          ports: [{containerPort: 9100}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.33.0.20
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: http, nodePort: 30080}
    - {name: dns, port: 53, protocol: UDP}
"""


def test_default_topology_nodes_and_networks() -> None:
    spec = default_topology()
    assert spec.name == "kind"
    assert spec.nodes == (
        NodeSpec("kind-control-plane", "control-plane"),
        NodeSpec("kind-worker", "worker"),
        NodeSpec("kind-worker2", "worker"),
    )
    assert spec.pod_subnet == ipaddress.IPv4Network("10.244.0.0/16")
    assert spec.service_subnet == ipaddress.IPv4Network("10.96.0.0/16")
    assert spec.node_subnet == ipaddress.IPv4Network("172.18.0.0/16")
    assert (spec.attachment, spec.routing, spec.mtu, spec.node_cidr_prefix) == (
        "ptp",
        "static",
        1500,
        24,
    )


def test_default_topology_pods_and_service() -> None:
    spec = default_topology()
    assert len(spec.pods) == 4
    jumpbox = spec.pods[0]
    assert (jumpbox.key, jumpbox.labels, jumpbox.owner, jumpbox.node) == (
        "default/jumpbox",
        (("run", "jumpbox"),),
        None,
        None,
    )
    assert jumpbox.containers == (ContainerSpec("nginx", None, (80,)),)
    replicas = spec.pods[1:]
    assert len({p.name for p in replicas}) == 3
    for pod in replicas:
        assert REPLICA.match(pod.name), pod.name
        assert (pod.namespace, pod.owner, pod.label_dict()) == ("dev", "demo", {"app": "demo"})
        assert pod.containers == (ContainerSpec("demo", None, (80,)),)
    # One Deployment template, one hash.
    assert len({p.name.split("-")[1] for p in replicas}) == 1
    (service,) = spec.services
    assert (service.key, service.type, service.selector) == (
        "dev/demo",
        "ClusterIP",
        (("app", "demo"),),
    )
    assert service.ports == (ServicePort(80, 80, "TCP", None, "http"),)
    assert service.cluster_ips == () and service.ip_families == (4,)


def test_replica_names_are_stable_across_loads() -> None:
    first = load_topology(DEFAULT_TOPOLOGY_TEXT)
    second = load_topology(DEFAULT_TOPOLOGY_TEXT)
    assert [p.name for p in first.pods] == [p.name for p in second.pods]
    assert first == second == default_topology()


def test_replica_names_follow_the_template_not_the_replica_count() -> None:
    base = [p.name for p in default_topology().pods if p.owner]
    scaled = load_topology(DEFAULT_TOPOLOGY_TEXT.replace("replicas: 3", "replicas: 5"))
    assert [p.name for p in scaled.pods if p.owner][:3] == base
    changed = load_topology(DEFAULT_TOPOLOGY_TEXT.replace("image: nginx\n", "image: httpd\n"))
    new = [p.name for p in changed.pods if p.owner]
    assert len(new) == 3 and not set(new) & set(base)


def test_default_text_is_commented_yaml() -> None:
    assert DEFAULT_TOPOLOGY_TEXT.splitlines().count("---") == 3
    assert DEFAULT_TOPOLOGY_TEXT.lstrip().startswith("#")


def test_custom_topology() -> None:
    spec = load_topology(CUSTOM)
    assert spec.name == "lab"
    assert [(n.name, n.role) for n in spec.nodes] == [
        ("lab-control-plane", "control-plane"),
        ("lab-control-plane2", "control-plane"),
        ("edge", "worker"),
        ("lab-worker", "worker"),
    ]
    assert (spec.pod_subnet, spec.service_subnet, spec.node_subnet) == (
        ipaddress.IPv4Network("10.32.0.0/16"),
        ipaddress.IPv4Network("10.33.0.0/20"),
        ipaddress.IPv4Network("192.168.50.0/24"),
    )
    assert (spec.attachment, spec.routing, spec.mtu) == ("bridge", "vxlan", 1450)
    assert (spec.vxlan_vni, spec.vxlan_port, spec.node_cidr_prefix) == (42, 4789, 26)

    client = spec.pods[0]
    assert (client.key, client.node, client.owner) == ("default/client", "edge", None)
    assert client.containers == (
        ContainerSpec(
            "shell",
            ("sh", "-c", "sleep 3600"),
            (),
            (("TARGET", "http://web.shop"), ("EMPTY", "")),
        ),
    )
    web = [p for p in spec.pods if p.owner == "web"]
    assert len(web) == 2
    for pod in web:
        assert re.fullmatch(f"web-{SAFE}{{10}}-{SAFE}{{5}}", pod.name)
        assert pod.namespace == "shop"
        assert pod.label_dict() == {"app": "web", "tier": "front"}
        assert pod.containers == (
            ContainerSpec("web", None, (8080, 53)),
            ContainerSpec("metrics", None, (9100,)),
        )
        assert pod.containers[0].named_ports == (NamedPort("http", 8080, "TCP"),)

    (svc,) = spec.services
    assert (svc.key, svc.type, svc.cluster_ips) == ("shop/web", "NodePort", ("10.33.0.20",))
    assert svc.ports == (
        ServicePort(80, 8080, "TCP", 30080, "http"),  # targetPort http -> containerPort 8080
        ServicePort(53, 53, "UDP", None, "dns"),  # targetPort defaults to port
    )
    assert spec.node("edge") == NodeSpec("edge", "worker")


def test_an_empty_file_is_refused_not_a_lab_of_nothing() -> None:
    """`> topo.yaml` then `up -f topo.yaml` once tore a running lab down to one node."""
    for text in ("", "\n# nothing\n", "---\n---\n", "# a\n---\n# b\n"):
        with pytest.raises(TopologyError) as info:
            load_topology(text, source="topo.yaml")
        [problem] = info.value.problems
        assert (problem.where, problem.field) == ("file", "topo.yaml")
        assert "is empty" in problem.message and "podnet down" in problem.hint


def test_a_file_with_only_a_cluster_document_is_not_empty() -> None:
    spec = load_topology("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n")
    assert spec.nodes == (NodeSpec("kind-control-plane", "control-plane"),)
    assert spec.pods == () and spec.services == ()


def test_cluster_without_nodes_gets_one_control_plane() -> None:
    spec = load_topology("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: solo\n")
    assert spec.nodes == (NodeSpec("solo-control-plane", "control-plane"),)


def test_manifests_without_a_cluster_document() -> None:
    spec = load_topology(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
        "spec: {containers: [{name: c, command: [sleep, infinity]}]}\n"
    )
    assert spec.nodes == (NodeSpec("kind-control-plane", "control-plane"),)
    assert spec.pods[0].containers == (ContainerSpec("c", ("sleep", "infinity")),)


def test_yaml_anchors_and_merge_keys_are_not_duplicates() -> None:
    text = """
apiVersion: v1
kind: Pod
metadata: {name: a, labels: &labels {app: x, tier: y}}
spec:
  containers:
    - &box {name: box, command: [sleep, infinity]}
    - <<: *box
      name: box2
"""
    spec = load_topology(text)
    assert [c.name for c in spec.pods[0].containers] == ["box", "box2"]
    assert spec.pods[0].containers[1].command == ("sleep", "infinity")


def test_load_file_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "lab.yaml"
    good.write_text(CUSTOM)
    assert load_file(str(good)) == load_topology(CUSTOM)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking: {mtu: 9}\n")
    with pytest.raises(TopologyError) as info:
        load_file(str(bad))
    assert str(info.value).startswith(f"{bad}: 1 problem, nothing was created")


def test_unreadable_file_is_a_topology_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(TopologyError, match="cannot be read: No such file or directory"):
        load_file(str(missing))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00kind")
    with pytest.raises(TopologyError, match="not UTF-8"):
        load_file(str(binary))


def test_capacity_counts_pods_as_the_planner_places_them() -> None:
    # /29: 5 pod addresses per node. 2 pods pinned to kind-worker, 8 placed on the least-loaded
    # worker: 5 and 5, which fits (an even share of 4 each plus the 2 pinned would not).
    text = """
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes: [{role: control-plane}, {role: worker}, {role: worker}]
networking: {nodeCIDRPrefix: 29}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: pinned}
spec:
  replicas: 2
  selector: {matchLabels: {app: pinned}}
  template:
    metadata: {labels: {app: pinned}}
    spec: {nodeName: kind-worker, containers: [{name: c, command: [sleep, infinity]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: free}
spec:
  replicas: 8
  selector: {matchLabels: {app: free}}
  template:
    metadata: {labels: {app: free}}
    spec: {containers: [{name: c, command: [sleep, infinity]}]}
"""
    assert len(load_topology(text).pods) == 10
    with pytest.raises(TopologyError, match="node kind-worker gets 6 pods"):
        load_topology(text.replace("replicas: 8", "replicas: 9"))


def test_topology_error_is_a_value_error_with_cni_code() -> None:
    with pytest.raises(ValueError, match=r"networking\.mtu") as info:
        load_topology("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking: {mtu: 9}\n")
    assert isinstance(info.value, TopologyError)
    assert info.value.cni_code == CNI_INVALID_CONFIG
    (problem,) = info.value.problems
    assert (problem.where, problem.field) == ("document 1 (Cluster kind)", "networking.mtu")


def test_plain_python_yaml_loader_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml, "__with_libyaml__", False)
    yaml_docs._parser_class.cache_clear()
    try:
        parser = yaml_docs._parser_class()
        assert isinstance(parser, type) and not issubclass(parser, yaml.CSafeLoader)
        assert load_topology(DEFAULT_TOPOLOGY_TEXT) == default_topology()
        assert load_topology(CUSTOM) == load_topology(CUSTOM)
    finally:
        yaml_docs._parser_class.cache_clear()


def test_default_loads_in_a_few_milliseconds() -> None:
    load_topology(DEFAULT_TOPOLOGY_TEXT)  # PyYAML imported, parser class made
    best = min(_timed(DEFAULT_TOPOLOGY_TEXT) for _ in range(5))
    assert best < 0.005, f"{best * 1000:.2f} ms"


def _timed(text: str) -> float:
    start = time.perf_counter()
    load_topology(text)
    return time.perf_counter() - start


def test_importing_the_model_does_not_import_yaml() -> None:
    code = "import sys, podnet.model; assert 'yaml' not in sys.modules, 'yaml imported'"
    src = str(Path(__file__).resolve().parents[2] / "src")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src})


# --- bounds on what a file may ask of the machine (issue 10, item 8) ------------------------


def test_input_is_bounded_before_parsing() -> None:
    """/dev/zero used to be read until memory ran out (MemoryError)."""
    begun = time.perf_counter()
    with pytest.raises(TopologyError, match="larger than 8 MiB"):
        load_file("/dev/zero")
    assert time.perf_counter() - begun < 2


def test_deep_nesting_is_refused_not_a_crash() -> None:
    """25,000 nested lists overflowed the C composer's stack: SIGSEGV, so run it apart."""
    code = (
        "from podnet.model import load_topology\n"
        "from podnet.errors import TopologyError\n"
        "try:\n"
        "    load_topology('nodes: ' + '[' * 25000 + ']' * 25000)\n"
        "except TopologyError as exc:\n"
        "    print(exc.problems[0].message)\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": src}, timeout=60, check=False)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-300:]}"
    assert done.stdout.strip() == f"nests deeper than {yaml_docs.MAX_DEPTH} levels"


def test_depth_within_the_bound_is_fine() -> None:
    inner = yaml_docs.MAX_DEPTH - 2  # under the document's mapping and the `nodes` list
    deep = "[" * inner + "]" * inner
    with pytest.raises(TopologyError) as info:  # a wrong shape, but read and reported as such
        load_topology(f"kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: [{deep}]\n")
    assert "nests deeper" not in str(info.value)


def test_an_alias_bomb_is_refused_at_once() -> None:
    """A 700-byte 'billion laughs' in a template's annotations took 58 s and 940 MB."""
    lines = ["apiVersion: v1", "kind: Pod", "metadata:", "  name: p", "  annotations:",
             "    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"    {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    begun = time.perf_counter()
    with pytest.raises(TopologyError, match="aliases expand it to more than"):
        load_topology("\n".join(lines) + "\nspec: {containers: [{name: c}]}\n")
    assert time.perf_counter() - begun < 1


def test_ordinary_anchors_are_fine() -> None:
    """Anchors that save typing (a shared container, a merge key) expand a little: accepted."""
    text = "\n---\n".join(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}}}\nspec:\n  containers:\n"
        "    - &c {name: a, ports: [{containerPort: 80}], env: [{name: X, value: '1'}]}\n"
        "    - {<<: *c, name: b, ports: [{containerPort: 81}]}\n"
        for i in range(50)
    )
    spec = load_topology(text)
    assert len(spec.pods) == 50 and spec.pods[0].containers[1].env == (("X", "1"),)


@pytest.mark.parametrize(("subnet", "why"), [
    ("127.0.0.0/16", "loopback"),
    ("224.0.0.0/16", "multicast"),
    ("169.254.0.0/16", "link-local"),
    ("240.0.0.0/16", "reserved"),
    ("255.255.255.255/32", "broadcast"),
    ("0.0.0.0/0", "this network"),
    ("::1/128", "loopback"),
    ("::/128", "unspecified"),
    ("ff02::/16", "multicast"),
    ("fe80::/64", "link-local"),
    ("::ffff:10.0.0.0/104", "IPv4-mapped"),
])
def test_special_ranges_are_unusable(subnet: str, why: str) -> None:
    """Both families: the loader reads IPv4 today, and the check is ready for dual-stack."""
    from podnet.model.fields import unusable_range

    reason = unusable_range(ipaddress.ip_network(subnet))
    assert reason is not None and why in reason


@pytest.mark.parametrize("subnet", ["10.244.0.0/16", "172.18.0.0/16", "192.168.0.0/24",
                                    "100.64.0.0/10", "fd00:10:244::/56", "2001:db8::/32"])
def test_ordinary_ranges_are_usable(subnet: str) -> None:
    from podnet.model.fields import unusable_range

    assert unusable_range(ipaddress.ip_network(subnet)) is None


def test_every_unmodelled_field_has_a_hint_and_is_not_also_read() -> None:
    from podnet.model import containers, unmodelled, workloads

    read = {
        "POD_SPEC": containers.POD_SPEC_KEYS, "CONTAINER": containers.CONTAINER_KEYS,
        "CONTAINER_PORT": containers.PORT_KEYS, "DEPLOYMENT_SPEC": workloads.DEPLOYMENT_KEYS,
        "SERVICE_SPEC": workloads.SERVICE_KEYS, "SERVICE_PORT": workloads.SERVICE_PORT_KEYS,
        "DOCUMENT": workloads.DOCUMENT_KEYS,
    }
    for name, keys in read.items():
        refused = getattr(unmodelled, name)
        assert all(hint for hint in refused.values()), name
        assert not set(refused) & set(keys), f"{name}: both read and refused"


def test_image_is_accepted_and_ignored() -> None:
    spec = load_topology("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
                         "  containers: [{name: c, image: nginx:1.27, imagePullPolicy: Always}]\n")
    assert spec.pods[0].containers == (ContainerSpec("c"),)
