"""The neighbour dump `check` reads after each wave, unpacked through inspect's layouts: each
entry's address, whatever attributes come before it."""

from __future__ import annotations

import socket
import struct

from podnet.kernel import discover_schema as schema
from podnet.kernel.discover_netlink import attributes
from podnet.kernel.rtnl_requests import attr, ip, lladdr, ndmsg

NDA_DST, NDA_LLADDR, NDA_PROBES = 1, 2, 4


def _dst(family: int, *attrs: bytes) -> object:
    data = ndmsg(family, 3, state=0x02, flags=0) + b"".join(attrs)
    header = schema.NEIGH.header
    assert header.unpack_from(data, 0)[:3] == (family, 3, 0x02)
    return attributes(data, header.size, len(data), schema.NEIGH, family).get("NDA_DST")


def test_the_address_is_found_after_other_attributes_in_either_family() -> None:
    assert _dst(socket.AF_INET, lladdr(NDA_LLADDR, "02:00:00:00:00:01"),
                attr(NDA_PROBES, struct.pack("=I", 3)), ip(NDA_DST, "10.244.1.7")) == "10.244.1.7"
    assert _dst(socket.AF_INET6, ip(NDA_DST, "fd00:10:244::7")) == "fd00:10:244::7"


def test_an_entry_without_an_address_or_with_a_broken_attribute_has_none() -> None:
    assert _dst(socket.AF_INET, lladdr(NDA_LLADDR, "02:00:00:00:00:01")) is None
    assert _dst(socket.AF_INET, struct.pack("=HH", 2, NDA_DST)) is None  # length under 4
