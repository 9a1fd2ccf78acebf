"""A pool of addresses (either family) in one subnet: pure allocation, no storage.

The lab's planner and the CNI plugin's file store both allocate through `Pool.allocate`, so the
rules (skip network, gateway, broadcast and reserved addresses) live in one place.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from podnet.errors import CNI_PLUGIN_NOT_AVAILABLE, PodnetError
from podnet.model.addresses import IPAddress, IPNetwork

__all__ = ["Pool", "PoolExhaustedError"]


class PoolExhaustedError(PodnetError):
    cni_code = CNI_PLUGIN_NOT_AVAILABLE  # STATUS reports an exhausted range with code 50


@dataclass(frozen=True)
class Pool:
    subnet: IPNetwork
    gateway: IPAddress | None = None  # default: the first host address
    range_start: IPAddress | None = None
    range_end: IPAddress | None = None
    reserved: frozenset[IPAddress] = field(default_factory=frozenset)

    @property
    def gateway_address(self) -> IPAddress:
        return self.gateway or self.subnet.network_address + 1

    def _bounds(self) -> tuple[int, int]:
        first = int(self.range_start or self.subnet.network_address + 1)
        last = int(self.range_end or self.subnet.broadcast_address - 1)
        return first, last

    def _address(self, value: int) -> IPAddress:
        if self.subnet.version == 4:
            return ipaddress.IPv4Address(value)
        return ipaddress.IPv6Address(value)

    def capacity(self) -> int:
        first, last = self._bounds()
        skipped = sum(1 for a in {self.gateway_address, *self.reserved} if first <= int(a) <= last)
        return max(0, last - first + 1 - skipped)

    def allocate(
        self, used: Iterable[IPAddress], after: IPAddress | None = None
    ) -> IPAddress:
        """The first free address, searching round-robin from just after `after` (as host-local
        does, so a released address is not handed out again at once)."""
        taken = {int(a) for a in used} | {int(self.gateway_address)}
        taken |= {int(a) for a in self.reserved}
        first, last = self._bounds()
        start = int(after) + 1 if after is not None and first <= int(after) < last else first
        for value in itertools.chain(range(start, last + 1), range(first, start)):
            if value not in taken:
                return self._address(value)
        raise PoolExhaustedError(
            f"no free address left in {self.subnet} ({self.capacity()} usable)",
            hint="release addresses of deleted pods (CNI GC) or give the range a larger subnet",
        )
