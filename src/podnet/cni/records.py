"""What each attachment made, so DEL and GC can undo it without the netns or a prevResult.

    <stateDir>/<network>/<sha256(containerID/ifname)[:32]>.json   (0600, written atomically)

The record names the host end of the veth (which carries podnet's ifalias), the mode, the
addresses and their gateways: enough to build the attachment's operations again
(`podnet.cni.podlink`), so DEL removes what they made and CHECK compares them with the kernel,
without the pod's namespace or a prevResult. It is written before the veth exists, so an ADD
run again after one killed at any point knows the host end it may take back. (The addresses
come from here and the IPAM's reservation, never from a prevResult, which may name an address
another pod holds by now.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass

from podnet.errors import StateError
from podnet.ipam.files import open_child_dir, open_dir_safely, read_small, write_atomically

__all__ = ["Record", "all_records", "read_record", "remove_record", "write_record"]


@dataclass(frozen=True)
class Record:
    containerID: str  # noqa: N815  # the spec's spelling, as in the file
    ifname: str
    netns: str
    hostIfname: str  # noqa: N815
    mode: str
    ips: tuple[str, ...]
    masq: bool
    gateways: tuple[str, ...] = ()  # one per address, in order (none in older records)


def _name(container_id: str, ifname: str) -> str:
    return hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:32] + ".json"


def _dir(state_dir: str, network: str) -> int:
    base = open_dir_safely(state_dir)
    try:
        return open_child_dir(base, network, os.path.join(state_dir, network))
    finally:
        os.close(base)


def write_record(state_dir: str, network: str, rec: Record) -> None:
    fd = _dir(state_dir, network)
    try:
        write_atomically(fd, _name(rec.containerID, rec.ifname), json.dumps(asdict(rec)).encode())
    finally:
        os.close(fd)


def _load(fd: int, name: str) -> Record | None:
    try:
        raw = read_small(fd, name)
        if raw is None:
            return None
        doc = json.loads(raw)
        doc["ips"] = tuple(doc.get("ips") or ())
        doc["gateways"] = tuple(doc.get("gateways") or ())
        return Record(**doc)
    except (StateError, ValueError, TypeError):
        return None  # not a record of ours: it owns nothing


def read_record(state_dir: str, network: str, container_id: str, ifname: str) -> Record | None:
    fd = _dir(state_dir, network)
    try:
        return _load(fd, _name(container_id, ifname))
    finally:
        os.close(fd)


def remove_record(state_dir: str, network: str, container_id: str, ifname: str) -> None:
    fd = _dir(state_dir, network)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_name(container_id, ifname), dir_fd=fd)
    finally:
        os.close(fd)


def all_records(state_dir: str, network: str) -> list[Record]:
    fd = _dir(state_dir, network)
    try:
        with os.scandir(fd) as entries:
            names = [e.name for e in entries if e.name.endswith(".json")
                     and not e.name.startswith(".")]
        return [r for r in (_load(fd, n) for n in names) if r is not None]
    finally:
        os.close(fd)
