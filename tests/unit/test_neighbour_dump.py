"""The neighbour dump `check` reads after each wave, unpacked by hand: the address of each entry."""

from __future__ import annotations

import socket
import struct

from podnet.kernel.netlink import _neigh_dst
from podnet.kernel.rtnl_requests import attr, ip, lladdr, ndmsg

NDA_DST, NDA_LLADDR, NDA_PROBES = 1, 2, 4


def _message(family: int, *attrs: bytes) -> bytes:
    return ndmsg(family, 3, state=0x02, flags=0) + b"".join(attrs)


def test_the_address_is_found_after_other_attributes_in_either_family() -> None:
    v4 = _message(socket.AF_INET, lladdr(NDA_LLADDR, "02:00:00:00:00:01"),
                  attr(NDA_PROBES, struct.pack("=I", 3)), ip(NDA_DST, "10.244.1.7"))
    v6 = _message(socket.AF_INET6, ip(NDA_DST, "fd00:10:244::7"))
    assert _neigh_dst(v4, 12, len(v4), socket.AF_INET) == "10.244.1.7"
    assert _neigh_dst(v6, 12, len(v6), socket.AF_INET6) == "fd00:10:244::7"


def test_an_entry_without_an_address_or_with_a_broken_attribute_gives_none() -> None:
    bare = _message(socket.AF_INET, lladdr(NDA_LLADDR, "02:00:00:00:00:01"))
    broken = _message(socket.AF_INET) + struct.pack("=HH", 2, NDA_DST)  # length under 4
    assert _neigh_dst(bare, 12, len(bare), socket.AF_INET) is None
    assert _neigh_dst(broken, 12, len(broken), socket.AF_INET) is None
