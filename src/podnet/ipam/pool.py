"""A pool of addresses in one subnet, IPv4 or IPv6: pure allocation, no storage.

The lab's planner and the CNI plugin's file store both allocate through `Pool`, so the rules (skip
the network address, the gateway, IPv4's broadcast and reserved addresses; search round-robin from
the last address handed out) live in one place. `candidates` walks the range lazily, so the cost
of finding a free address depends on how many taken ones follow the last one handed out, never on
the size of the subnet or the number of reservations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar, overload

from podnet.errors import CNI_PLUGIN_NOT_AVAILABLE, PodnetError

__all__ = ["Address", "Pool", "PoolExhaustedError"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
N = TypeVar("N", ipaddress.IPv4Network, ipaddress.IPv6Network)


class PoolExhaustedError(PodnetError):
    cni_code = CNI_PLUGIN_NOT_AVAILABLE  # STATUS reports an exhausted range with code 50


@dataclass(frozen=True)
class Pool(Generic[N]):
    subnet: N
    gateway: Address | None = None  # default: the first host address
    range_start: Address | None = None
    range_end: Address | None = None
    reserved: frozenset[Address] = field(default_factory=frozenset)

    @property
    def gateway_address(self) -> Address:
        return self.gateway or self.subnet.network_address + 1

    def _bounds(self) -> tuple[int, int]:
        first = int(self.range_start or self.subnet.network_address + 1)
        # IPv4's last address is the broadcast; IPv6 has none, but host-local skips it too.
        last = int(self.range_end or self.subnet.broadcast_address - 1)
        return first, last

    def contains(self, address: Address) -> bool:
        """Whether `address` lies in this range (subnet and rangeStart..rangeEnd)."""
        first, last = self._bounds()
        return address.version == self.subnet.version and first <= int(address) <= last

    def skipped(self, address: Address) -> bool:
        """Never handed out: the gateway and the reserved addresses."""
        return address == self.gateway_address or address in self.reserved

    def capacity(self) -> int:
        first, last = self._bounds()
        skipped = sum(1 for a in {self.gateway_address, *self.reserved} if first <= int(a) <= last)
        return max(0, last - first + 1 - skipped)

    def _address(self, value: int) -> Address:
        if self.subnet.version == 4:
            return ipaddress.IPv4Address(value)
        return ipaddress.IPv6Address(value)

    def candidates(self, after: Address | None = None) -> Iterator[Address]:
        """Every address that may be handed out, round-robin from just after `after` (as
        host-local does, so a released address is not handed out again at once)."""
        first, last = self._bounds()
        start = first
        if after is not None and after.version == self.subnet.version \
                and first <= int(after) < last:
            start = int(after) + 1
        skip = {int(self.gateway_address)} | {int(a) for a in self.reserved}
        for lo, hi in ((start, last), (first, start - 1)):
            value = lo
            while value <= hi:
                if value not in skip:
                    yield self._address(value)
                value += 1

    @overload
    def allocate(self: Pool[ipaddress.IPv4Network], used: Iterable[ipaddress.IPv4Address],
                 after: ipaddress.IPv4Address | None = None) -> ipaddress.IPv4Address: ...

    @overload
    def allocate(self: Pool[ipaddress.IPv6Network], used: Iterable[ipaddress.IPv6Address],
                 after: ipaddress.IPv6Address | None = None) -> ipaddress.IPv6Address: ...

    def allocate(self, used: Iterable[Address], after: Address | None = None) -> Address:
        """The first free address after `after` that is not in `used`."""
        taken = {int(a) for a in used}
        for candidate in self.candidates(after):
            if int(candidate) not in taken:
                return candidate
        raise self.exhausted()

    def exhausted(self, held: int | None = None) -> PoolExhaustedError:
        count = f"{self.capacity()} usable" + (f", {held} reserved" if held is not None else "")
        return PoolExhaustedError(
            f"no free address left in {self.subnet} ({count})",
            hint="release addresses of deleted pods (CNI GC) or give the range a larger subnet",
        )
