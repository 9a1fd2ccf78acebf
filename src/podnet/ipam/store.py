"""podnet-ipam's reservations: a file per address, as host-local keeps them, crash-safe.

    <dataDir>/<network>/                       flock(2) on the directory for every change
    <dataDir>/<network>/10.244.1.5             "<containerID>\\r\\n<ifname>": who holds it
    <dataDir>/<network>/last_reserved_ip.0     where the round-robin search goes on (per range set)
    <dataDir>/<network>/owner.<sha256[:32]>    {"containerID", "ifname", "ips"}: what one
                                               attachment holds, so ADD, CHECK and DEL never list
                                               the directory

The default dataDir is host-local's, /var/lib/cni/networks: reservations survive a reboot, as the
runtime's cached results in /var/lib/cni do, so an address an old sandbox still holds is never
handed to a new pod. The address files and the lock are host-local's own, so the two plugins can
share a directory.

Cost does not grow with the number of reservations: an ADD reads one owner file and tries
addresses from the last one handed out (the next is nearly always free); DEL and CHECK read the
owner file and the address files it names. Only GC and STATUS list the directory.

Crash safety: an address file appears complete or not at all (written aside, then hard-linked:
link(2) fails on any existing name and follows no symlink); the owner file is replaced by rename
and written BEFORE the address it names is taken, so an ADD killed at any point and run again
finds what it took. Files are 0600 and opened with O_NOFOLLOW relative to the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from podnet.errors import CNI_INVALID_CONFIG, CNI_TRY_AGAIN, CniError, StateError
from podnet.ipam.files import (
    TMP_PREFIX,
    link_new,
    open_child_dir,
    open_dir_safely,
    read_small,
    write_atomically,
)
from podnet.ipam.pool import Address, PoolExhaustedError
from podnet.ipam.ranges import AnyPool, RangeSet

__all__ = ["Allocation", "Requested", "Store"]

_LAST = "last_reserved_ip."
_OWNER = "owner."
_LEGACY = "allocations.json"  # podnet-ipam's one-file state before reservations moved to disk
_SEP = "\r\n"  # host-local's separator between container ID and interface name

Requested = tuple[Address, int | None, str]  # address, prefix length, where it was asked for


@dataclass(frozen=True)
class Allocation:
    ip: Address
    container_id: str
    ifname: str
    range_set: int
    pool: AnyPool | None = None  # the range it came from, when known (for the result's prefix)


def _owner_name(container_id: str, ifname: str) -> str:
    return _OWNER + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:32]


def _parse_ip(name: str) -> Address | None:
    if name.startswith(".") or (name[:1].isalpha() and ":" not in name):
        return None
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


class Store:
    """Reservations of one network; every method holds the lock for its whole operation."""

    def __init__(self, data_dir: str, network: str, legacy_dir: str | None = None) -> None:
        """`legacy_dir`: where an older podnet kept this network's state (/run/podnet/ipam, the
        old default); what is found there is imported once, so an upgrade never hands out an
        address a running pod holds."""
        if not network or "/" in network or network in (".", ".."):
            raise StateError(f"network name {network!r} cannot name a state directory")
        self.data_dir = data_dir
        self.network = network
        self.path = os.path.join(data_dir, network)
        self.legacy_dir = legacy_dir

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        base = open_dir_safely(self.data_dir)
        try:
            fd = open_child_dir(base, self.network, self.path)
        finally:
            os.close(base)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # host-local locks the same directory the same way
            if _exists(fd, _LEGACY):
                self._import_legacy(fd, fd)
            if self.legacy_dir and os.path.exists(os.path.join(self.legacy_dir, self.network,
                                                               _LEGACY)):
                self._import_from(self.legacy_dir, fd)
            yield fd
        finally:
            os.close(fd)  # closing releases the flock

    # --- reading ------------------------------------------------------------------------------

    def _holder(self, dir_fd: int, ip: Address) -> tuple[str, str] | None:
        raw = read_small(dir_fd, str(ip))
        if raw is None:
            return None
        cid, _, ifname = raw.decode(errors="replace").strip().partition(_SEP)
        return cid.strip(), ifname.strip()

    def _listed(self, dir_fd: int, container_id: str, ifname: str) \
            -> tuple[list[Address], list[Address]]:
        """What the owner file lists: (addresses the attachment holds, addresses nobody holds,
        which an ADD that died meant to take)."""
        raw = read_small(dir_fd, _owner_name(container_id, ifname))
        if raw is None:
            return [], []
        try:
            listed = [ipaddress.ip_address(str(a)) for a in json.loads(raw)["ips"]]
        except (ValueError, KeyError, TypeError):
            return [], []  # unreadable: holds nothing GC would not find
        holders = {ip: self._holder(dir_fd, ip) for ip in listed}
        return ([ip for ip, h in holders.items() if h == (container_id, ifname)],
                [ip for ip, h in holders.items() if h is None])

    def _owned(self, dir_fd: int, container_id: str, ifname: str) -> list[Address]:
        return self._listed(dir_fd, container_id, ifname)[0]

    def _write_owner(self, dir_fd: int, container_id: str, ifname: str,
                     ips: Sequence[Address]) -> None:
        doc = {"containerID": container_id, "ifname": ifname, "ips": [str(ip) for ip in ips]}
        write_atomically(dir_fd, _owner_name(container_id, ifname), json.dumps(doc).encode())

    @staticmethod
    def _tag(ips: Iterable[Address], container_id: str, ifname: str,
             sets: Sequence[RangeSet]) -> list[Allocation]:
        out = []
        for ip in ips:
            index = next((i for i, s in enumerate(sets) if s.pool_of(ip)), -1)
            pool = sets[index].pool_of(ip) if index >= 0 else None
            out.append(Allocation(ip, container_id, ifname, index, pool))
        return out

    # --- ADD -----------------------------------------------------------------------------------

    def allocate(self, container_id: str, ifname: str, range_sets: Iterable[RangeSet],
                 requested: Sequence[Requested] = ()) -> list[Allocation]:
        """One address from each range set for (container_id, ifname): the requested one where
        one was asked for, else the next free one. A retried ADD gets what it already holds.
        Nothing new is kept if any set is exhausted or a requested address cannot be had."""
        sets = list(range_sets)
        wanted = _match_requests(sets, requested)
        with self._locked() as dir_fd:
            held, meant = self._listed(dir_fd, container_id, ifname)
            _refuse_other_requests(held, wanted, container_id, ifname)
            taken: list[Address] = list(held)
            try:
                for index, range_set in enumerate(sets):
                    if any(range_set.pool_of(ip) for ip in held):
                        continue
                    want = wanted.get(index)
                    if want is None:  # an earlier ADD of this attachment died before taking it
                        ip = next((m for m in meant if range_set.pool_of(m)), None)
                        want = (ip, None, "an interrupted ADD") if ip is not None else None
                    ip = self._reserve(dir_fd, index, range_set, want,
                                       (container_id, ifname), taken)
                    taken.append(ip)
            except BaseException:
                self._give_back(dir_fd, container_id, ifname, [t for t in taken if t not in held],
                                held)
                raise
            os.fsync(dir_fd)  # the new names survive a power cut (a no-op on tmpfs)
            return self._tag(taken, container_id, ifname, sets)

    def _reserve(self, dir_fd: int, index: int, range_set: RangeSet, want: Requested | None,
                 owner: tuple[str, str], taken: list[Address]) -> Address:
        content = f"{owner[0]}{_SEP}{owner[1]}".encode()
        if want is not None:
            ip = want[0]
            self._write_owner(dir_fd, *owner, [*taken, ip])  # intent first: see the docstring
            if not link_new(dir_fd, str(ip), content, sync=True):
                holder = self._holder(dir_fd, ip)
                if holder != owner:
                    raise CniError(
                        CNI_TRY_AGAIN,
                        f"requested address {ip} ({want[2]}) is held by container "
                        f"{holder[0] if holder else '?'} interface {holder[1] if holder else '?'}"
                        f" in network {self.network}",
                        details="it becomes free when that attachment is deleted; ask again then",
                    )
            return ip
        last = read_small(dir_fd, f"{_LAST}{index}")
        after = _parse_ip(last.decode(errors="replace").strip()) if last else None
        for pool in range_set.pools:
            start = after if after is not None and pool.contains(after) else None
            for ip in pool.candidates(start):
                if _exists(dir_fd, str(ip)):
                    continue  # cheap look first: the owner file is written only for a free one
                self._write_owner(dir_fd, *owner, [*taken, ip])
                if link_new(dir_fd, str(ip), content, sync=True):
                    write_atomically(dir_fd, f"{_LAST}{index}", str(ip).encode())
                    return ip
        raise PoolExhaustedError(
            f"no free address left in {range_set.describe()} of network {self.network}",
            hint="release addresses of deleted pods (CNI GC) or give the range a larger subnet",
        )

    def _give_back(self, dir_fd: int, container_id: str, ifname: str, new: list[Address],
                   held: list[Address]) -> None:
        for ip in new:
            if self._holder(dir_fd, ip) == (container_id, ifname):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(ip), dir_fd=dir_fd)
        if held:
            self._write_owner(dir_fd, container_id, ifname, held)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_owner_name(container_id, ifname), dir_fd=dir_fd)

    # --- DEL, CHECK, GC, STATUS -----------------------------------------------------------------

    def release(self, container_id: str, ifname: str) -> list[Allocation]:
        """Free what (container_id, ifname) holds, and nothing else; releasing nothing succeeds
        (DEL twice)."""
        with self._locked() as dir_fd:
            mine = self._owned(dir_fd, container_id, ifname)
            for ip in mine:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(ip), dir_fd=dir_fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_owner_name(container_id, ifname), dir_fd=dir_fd)
            return [Allocation(ip, container_id, ifname, -1) for ip in mine]

    def held_by(self, container_id: str, ifname: str) -> list[Allocation]:
        with self._locked() as dir_fd:
            mine = self._owned(dir_fd, container_id, ifname)
        return [Allocation(ip, container_id, ifname, -1) for ip in mine]

    def _scan(self, dir_fd: int) -> tuple[list[Allocation], list[str]]:
        """Every reservation (reading each file) and every other name: GC and listings only."""
        with os.scandir(dir_fd) as entries:
            names = [e.name for e in entries]
        out = []
        for name in names:
            ip = _parse_ip(name)
            if ip is None:
                continue
            holder = self._holder(dir_fd, ip)
            if holder is not None:
                out.append(Allocation(ip, holder[0], holder[1], -1))
        return out, names

    def all(self) -> list[Allocation]:
        with self._locked() as dir_fd:
            return self._scan(dir_fd)[0]

    def gc(self, valid: set[tuple[str, str]]) -> list[Allocation]:
        """Free every reservation whose (containerID, ifname) is not in `valid`, with the owner
        files nobody valid holds and the leftovers of crashed writes."""
        return self._drop(lambda a: (a.container_id, a.ifname) not in valid, valid)

    def _drop(self, doomed: Callable[[Allocation], bool], valid: set[tuple[str, str]]) \
            -> list[Allocation]:
        with self._locked() as dir_fd:
            current, names = self._scan(dir_fd)
            gone = [a for a in current if doomed(a)]
            for a in gone:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(a.ip), dir_fd=dir_fd)
            keep = {_owner_name(c, i) for c, i in valid}
            for name in names:
                if name.startswith(TMP_PREFIX) or (name.startswith(_OWNER) and name not in keep):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dir_fd)
            return gone

    def free(self, range_sets: Iterable[RangeSet]) -> list[int]:
        """How many addresses each range set can still hand out (lists names, reads none)."""
        with self._locked() as dir_fd, os.scandir(dir_fd) as entries:
            used = [ip for ip in (_parse_ip(e.name) for e in entries) if ip is not None]
        out = []
        for range_set in range_sets:
            total = 0
            for pool in range_set.pools:
                taken = sum(1 for ip in used if pool.contains(ip) and not pool.skipped(ip))
                total += max(0, pool.capacity() - taken)
            out.append(total)
        return out

    # --- the state podnet-ipam kept before -------------------------------------------------------

    def _import_from(self, legacy_dir: str, dir_fd: int) -> None:
        base = open_dir_safely(legacy_dir)
        try:
            source = open_child_dir(base, self.network, os.path.join(legacy_dir, self.network))
        finally:
            os.close(base)
        try:
            fcntl.flock(source, fcntl.LOCK_EX)  # an older podnet-ipam may still be running
            self._import_legacy(source, dir_fd)
        finally:
            os.close(source)

    def _import_legacy(self, source_fd: int, dir_fd: int) -> None:
        """allocations.json (one file for the whole network) becomes address and owner files in
        `dir_fd`; then it is removed from `source_fd`."""
        raw = read_small(source_fd, _LEGACY, limit=64 << 20) or b"{}"
        try:
            items = json.loads(raw).get("allocations") or []
        except (ValueError, AttributeError):
            raise StateError(f"{self.path}/{_LEGACY} is not podnet-ipam state",
                             hint="move it away (pods keep their addresses but podnet-ipam "
                             "forgets them)") from None
        owners: dict[tuple[str, str], list[Address]] = {}
        for item in items:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                ip = ipaddress.ip_address(item["ip"])
                owner = (str(item["containerID"]), str(item["ifname"]))
                if link_new(dir_fd, str(ip), f"{owner[0]}{_SEP}{owner[1]}".encode()):
                    owners.setdefault(owner, []).append(ip)
        for (cid, ifname), ips in owners.items():
            self._write_owner(dir_fd, cid, ifname, ips)
        for name in (_LEGACY, "lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=source_fd)


def _match_requests(sets: list[RangeSet], requested: Sequence[Requested]) \
        -> dict[int, Requested]:
    """Which range set each requested address belongs to; refuses what fits none (code 7)."""
    out: dict[int, Requested] = {}
    for want in requested:
        ip, prefix, source = want
        index = next((i for i, s in enumerate(sets) if s.pool_of(ip)), None)
        if index is None:
            ranges = "; ".join(s.describe() for s in sets)
            raise CniError(CNI_INVALID_CONFIG,
                           f"requested address {ip} ({source}) is outside the network's ranges "
                           f"({ranges})", details="ask for an address inside a configured range")
        pool = sets[index].pool_of(ip)
        assert pool is not None
        problem = ""
        if index in out:
            problem = f"asks for a second address in range set {index} (one per family)"
        elif pool.skipped(ip):
            problem = "is the gateway or a reserved address"
        elif prefix is not None and prefix != pool.subnet.prefixlen:
            problem = f"has prefix /{prefix}, but its range is {pool.subnet}"
        if problem:
            raise CniError(CNI_INVALID_CONFIG, f"requested address {ip} ({source}) {problem}",
                           details="ask for one free host address per range set")
        out[index] = want
    return out


def _refuse_other_requests(held: list[Address], wanted: dict[int, Requested],
                           container_id: str, ifname: str) -> None:
    """A retried ADD may ask again for what it holds, not for something else."""
    for ip, _, source in wanted.values():
        same_family = [h for h in held if h.version == ip.version]
        if same_family and ip not in same_family:
            raise CniError(
                CNI_INVALID_CONFIG,
                f"container {container_id} interface {ifname} already holds "
                f"{same_family[0]}, not the requested {ip} ({source})",
                details="delete the attachment first (CNI DEL), then add it with the address",
            )


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
