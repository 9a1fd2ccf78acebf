"""Address families in the nftables evaluator: an `inet` table sees IPv4 and IPv6 packets
alike, and its `ip` matches hold only for IPv4 packets, `ip6` ones only for IPv6, as in the
kernel (the implicit `meta nfproto` check); `icmpv6` matches only ICMPv6 packets.

`nft_values` asks `inet_payload` first for every payload expression, and `inet_meta` for the
meta keys that depend on the family; what they leave (`UNHANDLED`) it evaluates as before.
"""

from __future__ import annotations

from podnet.trace.nft_types import Packet

__all__ = ["MISMATCH", "UNHANDLED", "family_of", "inet_meta", "inet_payload"]


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISMATCH = _Sentinel("MISMATCH")  # the packet has no such header: the match fails
UNHANDLED = _Sentinel("UNHANDLED")  # not an expression of this module's

_HEADERS = {"ip": 4, "ip6": 6}


def family_of(packet: Packet) -> int:
    return 6 if ":" in packet.dst else 4  # the destination is always known


def inet_payload(packet: Packet, protocol: str, field: str) -> object:
    """`ip saddr`, `ip6 daddr`, `icmpv6 type`...: the value, MISMATCH, or UNHANDLED."""
    if protocol in _HEADERS:
        if family_of(packet) != _HEADERS[protocol]:
            return MISMATCH
        fields = {"saddr": packet.src, "daddr": packet.dst, "protocol": packet.proto,
                  "nexthdr": packet.proto}
        return fields.get(field, UNHANDLED)
    if protocol == "icmpv6" and packet.proto != "icmpv6":
        return MISMATCH
    return UNHANDLED


def inet_meta(packet: Packet) -> dict[str, str]:
    """The meta keys that say the packet's family."""
    if family_of(packet) == 6:
        return {"nfproto": "ipv6", "protocol": "ip6"}
    return {"nfproto": "ipv4", "protocol": "ip"}
