"""podnet-ipam's reservations: one JSON file per network, which a crash cannot corrupt.

    <dataDir>/<network>/lock               flock(2) held for every read-modify-write
    <dataDir>/<network>/allocations.json   {"allocations": [...], "lastReserved": {...}}

Every change writes a new file (0600, O_EXCL, fsync) and renames it over the old one, so a reader
or a crash sees the old state or the new one, never half of either. Every file below the network
directory is opened relative to a directory descriptor with O_NOFOLLOW: a symlink planted there is
refused, never followed, and so is a symlink in place of the network directory. Directories on
the way to dataDir may be symlinks only when root owns them and their parent is writable by root
alone (/var/run -> /run).

One file (not host-local's file per address) because an ADD must know what the container already
holds and what is taken: one read answers both, where host-local reads every reservation.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from podnet.errors import StateError
from podnet.ipam.pool import Pool, PoolExhaustedError
from podnet.ipam.ranges import RangeSet
from podnet.model.addresses import IPAddress

__all__ = ["Allocation", "Store", "open_child_dir", "open_dir_safely"]

_STATE = "allocations.json"
_LOCK = "lock"
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Allocation:
    ip: ipaddress.IPv4Address
    container_id: str
    ifname: str
    range_set: int
    pool: Pool | None = None  # the range it came from, when known (for the result's prefix)

    def to_json(self) -> dict[str, Any]:
        return {"ip": str(self.ip), "containerID": self.container_id, "ifname": self.ifname,
                "rangeSet": self.range_set}


def _trusted_link(parent_fd: int, name: str) -> bool:
    parent = os.fstat(parent_fd)
    link = os.lstat(name, dir_fd=parent_fd)
    return parent.st_uid == 0 and not parent.st_mode & 0o022 and link.st_uid == 0


def open_dir_safely(path: str, create_mode: int = 0o700) -> int:
    """Open (creating what is missing) the directory `path` without following untrusted links."""
    if not path.startswith("/"):
        raise StateError(f"state directory {path!r} is not an absolute path")
    fd = os.open("/", _NOFOLLOW_DIR)
    try:
        for part in [p for p in path.split("/") if p]:
            if part in (".", ".."):
                raise StateError(f"state directory {path!r} must not contain '.' or '..'")
            try:
                nxt = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, create_mode, dir_fd=fd)
                nxt = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not _trusted_link(fd, part):
                    raise StateError(
                        f"refusing to follow {part!r} in state directory {path}: "
                        "it is a symlink or not a directory",
                        hint="remove it; podnet creates its state directories itself",
                    ) from None
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    _check_private(fd, path)
    return fd


def _check_private(fd: int, path: str) -> None:
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise StateError(
            f"state directory {path} is not private to this user (owner {st.st_uid}, "
            f"mode {stat.filemode(st.st_mode)})",
            hint=f"chown it to uid {os.geteuid()} and chmod 0700",
        )


def open_child_dir(parent_fd: int, name: str, where: str) -> int:
    """Open (creating) the directory `name` under `parent_fd`; a symlink there is refused."""
    if not name or "/" in name or name in (".", ".."):
        raise StateError(f"{name!r} cannot name a state directory")
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    try:
        fd = os.open(name, _NOFOLLOW_DIR, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StateError(f"refusing to follow {where}: it is a symlink or not a directory",
                             hint="remove it; podnet creates its state directories itself") \
                from None
        raise StateError(f"cannot open {where}: {exc.strerror}") from None
    _check_private(fd, where)
    return fd


class Store:
    """Reservations of one network; every method takes the lock for its whole read-modify-write."""

    def __init__(self, data_dir: str, network: str) -> None:
        if not network or "/" in network or network in (".", ".."):
            raise StateError(f"network name {network!r} cannot name a state directory")
        self.data_dir = data_dir
        self.network = network
        self.path = os.path.join(data_dir, network)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        base = open_dir_safely(self.data_dir)
        try:
            fd = open_child_dir(base, self.network, self.path)
        finally:
            os.close(base)
        try:
            lock = os.open(_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                           dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot open the lock in {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(lock)  # closing releases the flock
            os.close(fd)

    # --- the state file ----------------------------------------------------------------------

    def _read(self, dir_fd: int) -> dict[str, Any]:
        try:
            fd = os.open(_STATE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return {"allocations": [], "lastReserved": {}}
        except OSError as exc:
            raise StateError(
                f"cannot read {self.path}/{_STATE}: {exc.strerror}",
                hint="it must be a regular file; remove it if it is a symlink",
            ) from None
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read()
        try:
            doc = json.loads(raw)
            if not isinstance(doc.get("allocations"), list):
                raise ValueError("no allocations list")
        except (ValueError, AttributeError) as exc:
            raise StateError(
                f"{self.path}/{_STATE} is not podnet-ipam state: {exc}",
                hint="it was written by something else; move it away (pods keep their addresses "
                "but podnet-ipam forgets them)",
            ) from None
        return doc  # type: ignore[no-any-return]

    def _write(self, dir_fd: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc, separators=(",", ":")).encode() + b"\n"  # C encoder: no indent
        tmp = f".{_STATE}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, _STATE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)  # the rename itself survives a power cut (a no-op on tmpfs)

    @staticmethod
    def _allocations(doc: dict[str, Any]) -> list[Allocation]:
        out = []
        for item in doc["allocations"]:
            try:
                out.append(Allocation(ipaddress.IPv4Address(item["ip"]), str(item["containerID"]),
                                      str(item["ifname"]), int(item.get("rangeSet", 0))))
            except (KeyError, TypeError, ValueError):
                continue  # an unreadable entry holds no address
        return out

    # --- operations --------------------------------------------------------------------------

    def allocate(self, container_id: str, ifname: str,
                 range_sets: Iterable[RangeSet]) -> list[Allocation]:
        """One address from each range set for (container_id, ifname); the same ones again if it
        already holds them (a retried ADD). Nothing is reserved if any set is exhausted."""
        sets = list(range_sets)
        with self._locked() as dir_fd:
            doc = self._read(dir_fd)
            current = self._allocations(doc)
            mine = [a for a in current if (a.container_id, a.ifname) == (container_id, ifname)]
            if mine:
                return [self._with_pool(a, sets) for a in mine]
            used = {a.ip for a in current}
            last = doc.get("lastReserved") or {}
            made: list[Allocation] = []
            for index, range_set in enumerate(sets):
                picked, pool = self._pick(range_set, used, last.get(str(index)))
                ip = ipaddress.IPv4Address(int(picked))  # the CNI store is IPv4 today
                used.add(ip)
                made.append(Allocation(ip, container_id, ifname, index, pool))
                last[str(index)] = str(ip)
            doc["allocations"] = [a.to_json() for a in current + made]
            doc["lastReserved"] = last
            self._write(dir_fd, doc)
            return made

    @staticmethod
    def _pick(range_set: RangeSet, used: set[ipaddress.IPv4Address],
              last: str | None) -> tuple[IPAddress, Pool]:
        after = ipaddress.IPv4Address(last) if last else None
        for pool in range_set.pools:
            in_pool = after if after is not None and after in pool.subnet else None
            with contextlib.suppress(PoolExhaustedError):
                return pool.allocate(used, after=in_pool), pool
        subnets = ", ".join(str(p.subnet) for p in range_set.pools)
        raise PoolExhaustedError(
            f"no free address left in {subnets} ({len(used)} reserved)",
            hint="release addresses of deleted pods (CNI GC) or give the range a larger subnet",
        )

    @staticmethod
    def _with_pool(a: Allocation, sets: list[RangeSet]) -> Allocation:
        if a.range_set < len(sets):
            for pool in sets[a.range_set].pools:
                if a.ip in pool.subnet:
                    return Allocation(a.ip, a.container_id, a.ifname, a.range_set, pool)
        return a

    def release(self, container_id: str, ifname: str) -> list[Allocation]:
        """Free what (container_id, ifname) holds; releasing nothing succeeds (DEL twice)."""
        return self._drop(lambda a: (a.container_id, a.ifname) == (container_id, ifname))

    def gc(self, valid: set[tuple[str, str]]) -> list[Allocation]:
        """Free every reservation whose (containerID, ifname) is not in `valid`."""
        return self._drop(lambda a: (a.container_id, a.ifname) not in valid)

    def _drop(self, doomed: Any) -> list[Allocation]:
        with self._locked() as dir_fd:
            doc = self._read(dir_fd)
            current = self._allocations(doc)
            gone = [a for a in current if doomed(a)]
            if gone:
                doc["allocations"] = [a.to_json() for a in current if not doomed(a)]
                self._write(dir_fd, doc)
            self._sweep_temporaries(dir_fd)
            return gone

    @staticmethod
    def _sweep_temporaries(dir_fd: int) -> None:
        # A crash between creating and renaming a new state file leaves it behind; it holds
        # nothing that the real file does not.
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                if entry.name.startswith(f".{_STATE}."):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.name, dir_fd=dir_fd)

    def held_by(self, container_id: str, ifname: str) -> list[Allocation]:
        with self._locked() as dir_fd:
            current = self._allocations(self._read(dir_fd))
        return [a for a in current if (a.container_id, a.ifname) == (container_id, ifname)]

    def free(self, range_sets: Iterable[RangeSet]) -> list[int]:
        """How many addresses each range set can still hand out."""
        with self._locked() as dir_fd:
            used = {a.ip for a in self._allocations(self._read(dir_fd))}
        out = []
        for range_set in range_sets:
            total = 0
            for pool in range_set.pools:
                first = int(pool.range_start or pool.subnet.network_address + 1)
                last = int(pool.range_end or pool.subnet.broadcast_address - 1)
                taken = sum(1 for ip in used if first <= int(ip) <= last)
                total += max(0, pool.capacity() - taken)
            out.append(total)
        return out
