"""Where names come from: mountinfo, cgroup paths, podnet's lab state and libcni's cache."""

from __future__ import annotations

import json
from pathlib import Path

from podnet.inspect.pods import attribute, read_cni_cache, read_lab_state
from podnet.kernel.discover import container_id_from_cgroup, parse_mountinfo
from podnet.kernel.discover_types import Holder, NamespaceRef

SANDBOX = "5f2e6c0a" * 8

MOUNTINFO = """\
24 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
66 65 0:4 net:[4026532248] /run/netns/cni-c5b8 rw shared:2 - nsfs nsfs rw
67 65 0:4 net:[4026532317] /run/netns/my\\040ns rw shared:3 - nsfs nsfs rw
68 29 0:4 net:[4026532248] /var/run/docker/netns/5f2e rw shared:4 - nsfs nsfs rw
69 29 0:4 mnt:[4026532400] /run/some/mnt rw - nsfs nsfs rw
70 29 0:4 net:[4026532248] /run/netns/cni-c5b8 rw shared:2 - nsfs nsfs rw
"""


def test_mountinfo_yields_every_network_namespace_mount_by_inode() -> None:
    assert parse_mountinfo(MOUNTINFO) == {
        4026532248: ["/run/netns/cni-c5b8", "/var/run/docker/netns/5f2e"],
        4026532317: ["/run/netns/my ns"],
    }


def test_container_ids_from_each_runtimes_cgroup_path() -> None:
    cid = "0123456789abcdef" * 4
    for text in (
        f"0::/system.slice/docker-{cid}.scope\n",
        f"0::/docker/{cid}\n",
        f"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        f"kubelet-kubepods-besteffort-pod0a1b_2c3d.slice/cri-containerd-{cid}.scope\n",
        f"12:pids:/kubepods/besteffort/pod3e1f1a32-bd6a-4c60-8dbc-1e6d0c6e0f11/{cid}\n"
        "0::/\n",
        f"0::/machine.slice/libpod-{cid}.scope/container\n",
    ):
        assert container_id_from_cgroup(text) == cid
    assert container_id_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n") is None


def test_lab_state_names_pods_and_nodes(tmp_path: Path) -> None:
    (tmp_path / "kind").mkdir()
    (tmp_path / "kind" / "state.json").write_text(json.dumps({
        "cluster": "kind",
        "nodes": [{"name": "kind-worker", "netns": "kind-worker", "ip": "172.18.0.3",
                   "pod_cidr": "10.244.3.0/24"}],
        "pods": [{"namespace": "dev", "name": "demo-1", "node": "kind-worker",
                  "netns": "kind-dev-demo-1", "ip": "10.244.3.5", "containers": []}],
    }))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "state.json").write_text("{not json")
    found = read_lab_state(str(tmp_path))
    assert [(a.pod, a.node, a.netns_name) for a in found] == [
        (None, "kind-worker", "kind-worker"), ("dev/demo-1", None, "kind-dev-demo-1")]
    assert read_lab_state(str(tmp_path / "missing")) == []


def write_cache(directory: Path, name: str, **fields: object) -> None:
    entry = {"kind": "cniCacheV1", "ifName": "eth0", "networkName": "kindnet", **fields}
    (directory / name).write_text(json.dumps(entry))


def test_cni_cache_entries_name_kubernetes_pods(tmp_path: Path) -> None:
    args = [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "dev"],
            ["K8S_POD_NAME", "demo-58465f467c-24bcq"], ["K8S_POD_INFRA_CONTAINER_ID", SANDBOX]]
    write_cache(tmp_path, f"kindnet-{SANDBOX}-eth0", containerId=SANDBOX,
                netns="/var/run/netns/cni-c5b8", cniArgs=args)
    write_cache(tmp_path, "kindnet-old-eth0", containerId="ab" * 32,
                cniArgs=[["K8S_POD_NAMESPACE", "kube-system"], ["K8S_POD_NAME", "coredns-1"]])
    write_cache(tmp_path, "kindnet-nopod-eth0", containerId="cd" * 32)  # not a pod: skipped
    (tmp_path / "garbage").write_text("\x00")
    found = read_cni_cache(str(tmp_path))
    assert [(a.pod, a.netns_path, a.container_id) for a in found] == [
        ("dev/demo-58465f467c-24bcq", "/var/run/netns/cni-c5b8", SANDBOX),
        ("kube-system/coredns-1", None, "ab" * 32),
    ]


def test_attribution_by_name_path_pid_and_container_id(tmp_path: Path) -> None:
    write_cache(tmp_path, "a", containerId=SANDBOX, netns="/var/run/netns/cni-c5b8",
                cniArgs=[["K8S_POD_NAMESPACE", "dev"], ["K8S_POD_NAME", "by-path"]])
    write_cache(tmp_path, "b", containerId="ab" * 32,
                cniArgs=[["K8S_POD_NAMESPACE", "dev"], ["K8S_POD_NAME", "by-sandbox-id"]])
    write_cache(tmp_path, "c", containerId="ef" * 32, netns="/proc/4242/ns/net",
                cniArgs=[["K8S_POD_NAMESPACE", "dev"], ["K8S_POD_NAME", "by-pid"]])
    refs = [
        NamespaceRef.make(1, mounts=("/run/netns/cni-c5b8",)),
        NamespaceRef.make(2, holders=(Holder(99, "pause", "ab" * 32),)),
        NamespaceRef.make(3, holders=(Holder(4242, "pause", None),)),
        NamespaceRef.make(4, mounts=("/run/netns/kind-worker",)),
    ]
    sources = read_cni_cache(str(tmp_path))
    claims = {inode: who.pod for inode, who in attribute(refs, sources)}
    assert claims == {1: "dev/by-path", 2: "dev/by-sandbox-id", 3: "dev/by-pid"}
