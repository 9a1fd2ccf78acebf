"""The lab's record in /run/podnet/<cluster>/: what podnet made, so `down` removes just that.

The record is the layout plus the container processes started (PID and start time). It is written
atomically (temp file, fsync-free rename: /run is tmpfs and vanishes with the kernel objects at
reboot anyway), 0600, never through a symlink. It is read by `exec` on every call, so loading it
imports nothing heavy.

Every path here is built by `lab_dir`, which accepts only a name the topology loader accepts
(`naming.bad_cluster_name`): a `--cluster ../victim` never becomes a path. A full or read-only
/run is a `StateError` that says so, never a raw OSError.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import StateError
from podnet.model import codec, naming
from podnet.model.policies import NamespaceSpec, NetworkPolicySpec
from podnet.model.types import ContainerSpec, Impairment, PodDNSConfig
from podnet.plan.layout import (
    INTERNET_KEY,
    STATE_ROOT,
    InternetLayout,
    Layout,
    NodeLayout,
    PodLayout,
)
from podnet.plan.services import ServiceLayout, ServicePortLayout

__all__ = [
    "ContainerRecord",
    "LabState",
    "lab_dir",
    "list_labs",
    "load",
    "locked",
    "remove",
    "save",
    "state_path",
]

FORMAT = 2  # 2: addresses as lists per family, namespaces with their inodes


@dataclass(frozen=True)
class ContainerRecord:
    pod: str  # namespace/name
    name: str
    pid: int
    starttime: int
    restarts: int = 0  # times `up` started it again after its process was gone


@dataclass
class LabState:
    layout: Layout
    containers: list[ContainerRecord] = field(default_factory=list)
    topology: str = ""  # the file `up` was given ("" for the embedded default)
    complete: bool = False  # False while an `up` runs, or after it crashed: `down` still works
    # The namespaces podnet made, by name, with their inode: a namespace of that name is
    # podnet's only while it is that very one (someone else's is never replaced or deleted).
    owned: dict[str, int] = field(default_factory=dict)
    # When each object of the file was applied as it is now ("NetworkPolicy/dev/x" -> epoch
    # seconds): kubectl's AGE.
    applied: dict[str, float] = field(default_factory=dict)
    _index: tuple[tuple[int, int], dict[str, list[ContainerRecord]]] | None = field(
        default=None, init=False, repr=False, compare=False)

    def containers_of(self, pod_key: str) -> list[ContainerRecord]:
        return list(self._by_pod().get(pod_key, ()))

    def _by_pod(self) -> dict[str, list[ContainerRecord]]:
        """The records grouped by pod, built once per version of `containers` (a listing asks
        for every pod's: a scan per pod would make it quadratic). Callers append to the list
        or replace it, and either changes the key."""
        key = (id(self.containers), len(self.containers))
        if self._index is None or self._index[0] != key:
            index: dict[str, list[ContainerRecord]] = {}
            for c in self.containers:
                index.setdefault(c.pod, []).append(c)
            self._index = (key, index)
        return self._index[1]


def lab_dir(cluster: str) -> str:
    """/run/podnet/<cluster>, for a name the loader would accept; StateError for any other
    (`../victim`, `a/b`, `.`): no path is ever built from a name nobody checked."""
    why = naming.bad_cluster_name(cluster)
    if why is not None:
        raise StateError(f"lab name {why}", hint=naming.CLUSTER_NAME_RULE)
    return f"{STATE_ROOT}/{cluster}"


def journal_path(cluster: str) -> str:
    return f"{lab_dir(cluster)}/journal"


def record_netns(state: LabState, name: str, inode: int) -> None:
    """Note a namespace podnet just made, in the record and at once on disk (one appended
    line): if podnet dies before it saves the record, `down` still knows the namespace is its."""
    state.owned[name] = inode
    path = journal_path(state.layout.cluster)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, f"netns {name} {inode}\n".encode())
    finally:
        os.close(fd)


def _replay(cluster: str, state: LabState) -> None:
    """Add what the journal says was made since the record was last saved."""
    try:
        fd = os.open(journal_path(cluster), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    with os.fdopen(fd) as fh:
        for line in fh:
            words = line.split()
            if len(words) == 3 and words[0] == "netns" and words[2].isdigit():
                state.owned[words[1]] = int(words[2])


def state_path(cluster: str) -> str:
    return f"{lab_dir(cluster)}/state.json"


def list_labs() -> list[str]:
    try:
        entries = os.listdir(STATE_ROOT)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _state_error(exc, STATE_ROOT, "read") from None
    return sorted(
        d for d in entries
        if naming.bad_cluster_name(d) is None and os.path.isfile(state_path(d))
    )


@contextmanager
def locked(cluster: str) -> Iterator[None]:
    """One `up` or `down` at a time per lab. A lab left with no record and nothing in its
    journal (a dry run, an `up` refused before it made anything) leaves no directory behind."""
    directory = lab_dir(cluster)
    fd = _lock(directory, cluster)
    try:
        yield
    finally:
        try:
            if not os.path.lexists(f"{directory}/state.json") and not _journal_holds(cluster):
                remove(cluster)  # while we hold the lock: see _lock
        finally:
            os.close(fd)


def _journal_holds(cluster: str) -> bool:
    try:
        return os.stat(journal_path(cluster), follow_symlinks=False).st_size > 0
    except FileNotFoundError:
        return False


def _lock(directory: str, cluster: str) -> int:
    path = f"{directory}/lock"
    while True:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _state_error(exc, path, "create") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateError(
                f"another podnet command is changing lab {cluster}",
                hint="wait for it to finish; the lock is released when it exits",
            ) from None
        # The holder we waited for may have removed the file (`down`, or a lab that came to
        # nothing) after we opened it: a lock on a removed file locks nothing, so start again.
        try:
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def save(state: LabState) -> None:
    path = state_path(state.layout.cluster)
    tmp = f"{path}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        # Compact, so json's C encoder writes it (indenting takes its pure-Python path: 5x
        # slower, a twentieth of a large `up`); `jq . state.json` shows it indented.
        text = json.dumps(_encode(state), separators=(",", ":"))
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(tmp)  # half written: never leave it for a reader to trip on
        raise _state_error(exc, path, "write") from None
    with suppress(FileNotFoundError):  # what it noted is in the record now
        os.truncate(journal_path(state.layout.cluster), 0)


def load(cluster: str) -> LabState | None:
    path = state_path(cluster)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _state_error(exc, path, "read") from None
    with os.fdopen(fd) as fh:
        try:
            data = json.load(fh)
            if data.get("format") != FORMAT:
                raise StateError(
                    f"{path} was written by another version of podnet "
                    f"(format {data.get('format')}, this one reads {FORMAT})",
                    hint="bring the lab down with the podnet that made it, or remove its "
                    f"namespaces by hand (ip netns list) and then {os.path.dirname(path)}",
                )
            state = _decode(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"{path} is damaged ({exc})",
                hint=f"remove the lab's namespaces by hand (ip netns list) and then {path}",
            ) from None
    if state.layout.cluster != cluster:
        raise StateError(
            f"{path} records lab {state.layout.cluster!r}, not {cluster!r}",
            hint=f"it is not podnet's record of {cluster}: look at it, then remove it",
        )
    _replay(cluster, state)
    return state


def remove(cluster: str) -> None:
    """The lab's files, then its directories if nothing else is left in them."""
    from podnet.runtime.pod import sweep_leftovers  # `down` only: exec never pays for it

    directory = lab_dir(cluster)
    for sub in ("pods", "nodes", "dns", ""):
        sweep_leftovers(f"{directory}/{sub}".rstrip("/"))  # a kill mid-write leaves these
    for name in ("state.json", "state.json.tmp", "rules.nft", "journal", "lock"):
        with suppress(FileNotFoundError):
            os.unlink(f"{directory}/{name}")
    for sub in ("pods", "nodes", "logs", "dns", ""):
        with suppress(OSError):  # not empty (a file we did not make) or already gone: leave it
            os.rmdir(f"{directory}/{sub}".rstrip("/"))


def _state_error(exc: OSError, path: str, doing: str) -> StateError:
    """An OSError on podnet's own files, said for people: what, where, and what to do."""
    hints = {
        errno.ENOSPC: f"{STATE_ROOT} is full (a tmpfs, in memory): see `df {STATE_ROOT}`, free "
        "space there, then run the command again",
        errno.EDQUOT: f"the disk quota of {STATE_ROOT} is used up: free space there",
        errno.EROFS: f"{STATE_ROOT} is read-only here: podnet needs it writable",
        errno.EACCES: "podnet keeps its records under /run/podnet: run it as root",
        errno.EPERM: "podnet keeps its records under /run/podnet: run it as root",
        errno.ENOTDIR: "a file stands where podnet expects a directory: remove it if it is "
        "not yours",
        errno.EEXIST: "a file stands where podnet expects a directory: remove it if it is "
        "not yours",
        errno.ELOOP: "a symbolic link stands where podnet keeps its records: podnet never "
        "follows one there; remove it",
    }
    return StateError(f"cannot {doing} {path}: {exc.strerror}",
                      hint=hints.get(exc.errno or 0, ""))


# --- JSON shape (documented in the README; inspect and exec read it) ---------------------------
# Addresses are lists, one per family; the singular keys (ip, pod_cidr, cluster_ip) are the
# first of each, as kubectl shows podIP beside podIPs.


def _strs(values: Iterable[object]) -> list[str]:
    return [str(v) for v in values]


def _encode(state: LabState) -> dict[str, Any]:
    lay = state.layout
    by_pod: dict[str, list[ContainerRecord]] = {}
    for c in state.containers:
        by_pod.setdefault(c.pod, []).append(c)
    return {
        "format": FORMAT,
        "cluster": lay.cluster,
        "complete": state.complete,
        "topology": state.topology,
        "owned": dict(state.owned),
        "applied": dict(state.applied),
        "fabric": {
            "netns": lay.fabric_netns,
            "bridge": lay.bridge,
            "gateway": str(lay.fabric_gateway),
            "gateways": _strs(lay.fabric_gateways),
        },
        "attachment": lay.attachment,
        "routing": lay.routing,
        "mtu": lay.mtu,
        "pod_subnet": str(lay.pod_subnet),
        "pod_subnets": _strs(lay.pod_subnets),
        "service_subnet": str(lay.service_subnet),
        "service_subnets": _strs(lay.service_subnets),
        "vxlan": {"vni": lay.vxlan_vni, "port": lay.vxlan_port},
        "dns_domain": lay.dns_domain,
        "internet": _encode_internet(lay.internet, by_pod.get(INTERNET_KEY, [])),
        "services": [_encode_service(s) for s in lay.services],
        "namespaces": codec.to_json(lay.namespaces),
        "policies": codec.to_json(lay.policies),
        "nodes": [
            {
                "name": n.name,
                "role": n.role,
                "netns": n.netns,
                "ip": str(n.ip),
                "ips": _strs(n.ips),
                "pod_cidr": str(n.pod_cidr) if n.pod_cidr else None,
                "pod_cidrs": _strs(n.pod_cidrs),
                "uplink": n.uplink,
                "uts": n.uts,
                "hosts_file": n.hosts_file,
                "vtep_macs": list(n.vtep_macs),
                **_encode_impairment(n.impairment),
            }
            for n in lay.nodes
        ],
        "pods": [
            {
                "namespace": p.namespace,
                "name": p.name,
                "node": p.node,
                "netns": p.netns,
                "ip": str(p.ip),
                "ips": _strs(p.ips),
                "veth": p.veth,
                "hostname": p.name,
                "uts": p.uts,
                "hosts_file": p.hosts_file,
                "labels": dict(p.labels),
                "owner": p.owner,
                # Its node's namespace, addresses and files, when it runs in the node's network.
                "hostNetwork": p.host_network,
                **_encode_impairment(p.impairment),
                **_encode_pod_dns(p),
                "spec": [_encode_container(c) for c in p.containers],
                "containers": [
                    {"name": c.name, "pid": c.pid, "starttime": c.starttime,
                     "restarts": c.restarts}
                    for c in by_pod.get(p.key, [])
                ],
            }
            for p in lay.pods
        ],
    }


def _encode_internet(
    net: InternetLayout | None, records: list[ContainerRecord]
) -> dict[str, Any] | None:
    if net is None:
        return None
    return {
        "netns": net.netns,
        "link": net.link,
        "gateway": str(net.gateway),
        "gateways": _strs(net.gateways),
        "address": str(net.address),
        "addresses": _strs(net.addresses),
        "port": net.port,
        "log": net.log,
        "containers": [{"name": c.name, "pid": c.pid, "starttime": c.starttime} for c in records],
    }


def _decode_internet(
    d: dict[str, Any] | None,
) -> tuple[InternetLayout | None, list[ContainerRecord]]:
    if not d:
        return None, []
    net = InternetLayout(
        netns=d["netns"],
        link=d["link"],
        gateways=tuple(ipaddress.ip_interface(g) for g in d["gateways"]),
        addresses=tuple(ipaddress.ip_interface(a) for a in d["addresses"]),
        port=d["port"],
        log=d.get("log", ""),
    )
    records = [ContainerRecord(INTERNET_KEY, c["name"], c["pid"], c["starttime"])
               for c in d.get("containers", [])]
    return net, records


def _encode_service(s: ServiceLayout) -> dict[str, Any]:
    return {
        "namespace": s.namespace,
        "name": s.name,
        "type": s.type,
        "cluster_ip": str(s.cluster_ip) if s.cluster_ips else "None",  # headless: as the API
        "cluster_ips": _strs(s.cluster_ips),
        "ip_family_policy": s.ip_family_policy,
        "selector": dict(s.selector),
        "ports": [
            {"name": p.name, "protocol": p.protocol, "port": p.port,
             "target_port": p.target_port, "node_port": p.node_port}
            for p in s.ports
        ],
        "endpoints": list(s.endpoints),
    }


def _decode_service(d: dict[str, Any]) -> ServiceLayout:
    return ServiceLayout(
        namespace=d["namespace"],
        name=d["name"],
        type=d["type"],
        cluster_ips=tuple(ipaddress.ip_address(ip) for ip in d["cluster_ips"]),
        ports=tuple(
            ServicePortLayout(p["name"], p["protocol"], p["port"], p["target_port"],
                              p.get("node_port"))
            for p in d["ports"]
        ),
        selector=tuple(sorted(d["selector"].items())),
        endpoints=tuple(d["endpoints"]),
        # A record written before the policy was kept: what its addresses imply.
        ip_family_policy=d.get("ip_family_policy") or (
            "SingleStack" if len(d["cluster_ips"]) == 1 else "RequireDualStack"),
    )


def _encode_impairment(impairment: Impairment) -> dict[str, Any]:
    """A pod's or node's shaping, when it has one (no key: none, as older records say)."""
    return {} if impairment.empty else {"impairment": codec.to_json(impairment)}


def _decode_impairment(d: dict[str, Any]) -> Impairment:
    found = d.get("impairment")
    return Impairment() if found is None else codec.from_json(Impairment, found)


def _encode_pod_dns(p: PodLayout) -> dict[str, Any]:
    """A pod's DNS fields, when any differs from the default (older records have none)."""
    fields = {"hostname": p.hostname, "subdomain": p.subdomain,
              "dnsPolicy": None if p.dns_policy == "ClusterFirst" else p.dns_policy,
              "dnsConfig": codec.to_json(p.dns_config) if p.dns_config else None}
    kept = {k: v for k, v in fields.items() if v is not None}
    return {"dns": kept} if kept else {}


def _decode_pod_dns(d: dict[str, Any]) -> dict[str, Any]:
    config = d.get("dnsConfig")
    return {"hostname": d.get("hostname"), "subdomain": d.get("subdomain"),
            "dns_policy": d.get("dnsPolicy") or "ClusterFirst",
            "dns_config": codec.from_json(PodDNSConfig, config) if config else None}


def _encode_container(c: ContainerSpec) -> dict[str, Any]:
    encoded: dict[str, Any] = codec.to_json(c)
    return encoded


def _decode_container(d: dict[str, Any]) -> ContainerSpec:
    return codec.from_json(ContainerSpec, d)


def _decode(d: dict[str, Any]) -> LabState:
    nodes = tuple(
        NodeLayout(
            name=n["name"],
            role=n["role"],
            netns=n["netns"],
            ips=tuple(ipaddress.ip_interface(ip) for ip in n["ips"]),
            pod_cidrs=tuple(ipaddress.ip_network(c) for c in n["pod_cidrs"]),
            uplink=n["uplink"],
            uts=n["uts"],
            hosts_file=n["hosts_file"],
            vtep_macs=tuple(n["vtep_macs"]),
            impairment=_decode_impairment(n),
        )
        for n in d["nodes"]
    )
    pods = []
    containers = []
    for p in d["pods"]:
        pods.append(
            PodLayout(
                namespace=p["namespace"],
                name=p["name"],
                node=p["node"],
                netns=p["netns"],
                ips=tuple(ipaddress.ip_interface(ip) for ip in p["ips"]),
                veth=p["veth"],
                uts=p["uts"],
                hosts_file=p["hosts_file"],
                containers=tuple(_decode_container(c) for c in p["spec"]),
                labels=tuple(sorted(p["labels"].items())),
                owner=p.get("owner"),
                impairment=_decode_impairment(p),
                host_network=bool(p.get("hostNetwork", False)),
                **_decode_pod_dns(p.get("dns") or {}),
            )
        )
        key = f"{p['namespace']}/{p['name']}"
        containers += [ContainerRecord(key, c["name"], c["pid"], c["starttime"],
                                       c.get("restarts", 0))
                       for c in p["containers"]]
    fabric = d["fabric"]
    internet, records = _decode_internet(d.get("internet"))
    containers += records
    vxlan = d.get("vxlan") or {}
    lay = Layout(
        cluster=d["cluster"],
        fabric_netns=fabric["netns"],
        bridge=fabric["bridge"],
        fabric_gateways=tuple(ipaddress.ip_interface(g) for g in fabric["gateways"]),
        attachment=d["attachment"],
        routing=d["routing"],
        mtu=d["mtu"],
        nodes=nodes,
        pods=tuple(pods),
        state_dir=lab_dir(d["cluster"]),
        pod_subnets=tuple(ipaddress.ip_network(n) for n in d["pod_subnets"]),
        service_subnets=tuple(ipaddress.ip_network(n) for n in d["service_subnets"]),
        vxlan_vni=vxlan.get("vni", 1),
        vxlan_port=vxlan.get("port", 8472),
        services=tuple(_decode_service(s) for s in d.get("services", [])),
        internet=internet,
        namespaces=codec.from_json(tuple[NamespaceSpec, ...], d.get("namespaces", [])),
        policies=codec.from_json(tuple[NetworkPolicySpec, ...], d.get("policies", [])),
        dns_domain=d.get("dns_domain", "cluster.local"),
    )
    owned = {str(k): int(v) for k, v in d.get("owned", {}).items()}
    applied = {str(k): float(v) for k, v in d.get("applied", {}).items()}
    return LabState(lay, containers, topology=d.get("topology", ""), complete=d["complete"],
                    owned=owned, applied=applied)
