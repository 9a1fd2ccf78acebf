"""The peer look's request is patched from one template: byte for byte pyroute2's encoding."""

from __future__ import annotations

import pytest

from podnet.kernel import discover_schema as schema
from podnet.kernel.discover_netlink import peer_request


@pytest.mark.parametrize(("netnsid", "ifindex"), [(0, 2), (7, 1234), (65536, 2**31 - 1)])
def test_patched_request_matches_a_fresh_encoding(netnsid: int, ifindex: int) -> None:
    fresh = schema.request("link", dump=False, index=ifindex, attrs={
        "IFLA_EXT_MASK": schema.Rtnl.RTEXT_FILTER_SKIP_STATS, "IFLA_IF_NETNSID": netnsid})
    assert peer_request(netnsid, ifindex) == fresh
