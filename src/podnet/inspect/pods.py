"""Which pod (or lab node) is behind a namespace, from what runtimes leave on disk.

Two sources, both read-only:

- podnet's lab state, /run/podnet/<cluster>/state.json: each pod and node names its netns;
- the CNI result cache that libcni (containerd's CRI, CRI-O, podman) writes for every attachment,
  /var/lib/cni/results/<network>-<containerId>-<ifName>: a JSON object with `kind`
  "cniCacheV1", `containerId`, `ifName`, `networkName`, `netns` (libcni 1.1 and later: the
  namespace path the plugin was given, e.g. /var/run/netns/cni-...) and `cniArgs`, where
  containerd's CRI puts K8S_POD_NAMESPACE and K8S_POD_NAME. This is what a kind node exposes.
  Without `netns` (older libcni), the `containerId` is the pod sandbox's id, which is also the id
  in the cgroup path of the sandbox's pause process, a holder of the namespace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from podnet.kernel.discover_types import NamespaceRef

__all__ = [
    "CNI_CACHE_DIR",
    "STATE_DIR",
    "Attribution",
    "attribute",
    "read_cni_cache",
    "read_lab_state",
]

STATE_DIR = "/run/podnet"
CNI_CACHE_DIR = "/var/lib/cni/results"


@dataclass(frozen=True)
class Attribution:
    """A pod or node claiming a namespace, found by netns name, path or container id."""

    pod: str | None = None  # "namespace/name"
    node: str | None = None
    netns_name: str | None = None
    netns_path: str | None = None
    container_id: str | None = None


def _load(path: str) -> object:
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):
        return None  # unreadable or half-written: an attribution is a hint, not a must


def read_lab_state(state_dir: str = STATE_DIR) -> list[Attribution]:
    """Pods and nodes of every podnet lab on this host."""
    try:
        clusters = sorted(os.listdir(state_dir))
    except OSError:
        return []
    found = []
    for cluster in clusters:
        state = _load(os.path.join(state_dir, cluster, "state.json"))
        if not isinstance(state, dict):
            continue
        for node in state.get("nodes") or []:
            if isinstance(node, dict) and node.get("netns"):
                found.append(Attribution(node=str(node.get("name")), netns_name=node["netns"]))
        for pod in state.get("pods") or []:
            # A hostNetwork pod runs in its node's namespace, which is the node's.
            if isinstance(pod, dict) and pod.get("netns") and not pod.get("hostNetwork"):
                key = f"{pod.get('namespace', 'default')}/{pod.get('name')}"
                found.append(Attribution(pod=key, netns_name=pod["netns"]))
    return found


def read_cni_cache(cache_dir: str = CNI_CACHE_DIR) -> list[Attribution]:
    """Kubernetes pods from libcni's result cache (only entries that name a pod)."""
    try:
        names = sorted(os.listdir(cache_dir))
    except OSError:
        return []
    found = []
    for name in names:
        entry = _load(os.path.join(cache_dir, name))
        if not isinstance(entry, dict) or entry.get("kind") != "cniCacheV1":
            continue
        args = {
            str(pair[0]): str(pair[1])
            for pair in entry.get("cniArgs") or []
            if isinstance(pair, list) and len(pair) == 2
        }
        pod_name = args.get("K8S_POD_NAME")
        if not pod_name:
            continue
        found.append(Attribution(
            pod=f"{args.get('K8S_POD_NAMESPACE', 'default')}/{pod_name}",
            netns_path=entry.get("netns") or None,
            container_id=entry.get("containerId") or None,
        ))
    return found


def _same_path(a: str, b: str) -> bool:
    """/var/run is /run on every current distribution; compare without resolving links."""
    def norm(p: str) -> str:
        p = os.path.normpath(p)
        return "/run" + p[len("/var/run"):] if p.startswith("/var/run/") else p
    return norm(a) == norm(b)


def _claims(ref: NamespaceRef, who: Attribution) -> bool:
    if who.netns_name is not None and ref.name == who.netns_name:
        return True
    if who.netns_path is not None:
        if any(_same_path(who.netns_path, mount) for mount in ref.mounts):
            return True
        parts = who.netns_path.strip("/").split("/")  # /proc/PID/ns/net
        if len(parts) == 4 and parts[0] == "proc" and parts[1].isdigit():
            return any(h.pid == int(parts[1]) for h in ref.holders)
        return False
    if who.container_id is not None:
        return any(h.container_id == who.container_id for h in ref.holders)
    return False


def attribute(
    refs: Iterable[NamespaceRef], sources: Iterable[Attribution]
) -> Iterator[tuple[int, Attribution]]:
    """(namespace inode, attribution) for each source that claims a namespace in `refs`."""
    refs = list(refs)
    by_name = {ref.name: ref for ref in refs if ref.name}
    for who in sources:
        if who.netns_name is not None:
            ref = by_name.get(who.netns_name)
            if ref is not None:
                yield ref.inode, who
            continue
        for ref in refs:
            if _claims(ref, who):
                yield ref.inode, who
                break
