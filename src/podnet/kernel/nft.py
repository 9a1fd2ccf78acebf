"""Source NAT for pods (the CNI `ipMasq` option), in nftables, in a table only the plugin writes.

    table inet podnet-cni {
      set pods4_<net> { type ipv4_addr; }                     # the network's IPv4 pod addresses
      chain masq4_<net> {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr @pods4_<net> ip daddr != <subnet> ip daddr != 224.0.0.0/4 masquerade
      }
      (pods6_<net> and masq6_<net> the same for IPv6, when a network has IPv6 pods)
    }

The table is the plugin's own: the lab's rules live in `table inet podnet` inside its node
namespaces, and nothing outside `inet podnet-cni` is read or written here. Each change is one
transaction (`kernel.nftables`, the one place that drives nftables; in-process through
libnftables where installed), applied whole or not at all. A chain is flushed and its one rule
re-added inside the same transaction, so concurrent ADDs converge on one rule; a pod is one set
element, which the plugin adds and removes only for the attachment that owns the address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable

from podnet.kernel import nftables
from podnet.kernel.nftables import Table, Transaction

__all__ = ["TABLE", "masq_add", "masq_contains", "masq_members", "masq_remove", "names_for"]

TABLE = Table("inet", "podnet-cni")
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_FAMILY = {4: ("ip", "ipv4_addr", "224.0.0.0/4"), 6: ("ip6", "ipv6_addr", "ff00::/8")}


def names_for(network: str, version: int = 4) -> tuple[str, str]:
    """(set, chain) names for a network and family: readable, unique, valid nftables names."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", network)[:40]
    digest = hashlib.sha256(network.encode()).hexdigest()[:8]
    return f"pods{version}_{slug}_{digest}", f"masq{version}_{slug}_{digest}"


def _with_set(what: str, network: str, version: int) -> Transaction:
    set_name, _ = names_for(network, version)
    return Transaction(TABLE, what).ensure().add_set(set_name, f"type {_FAMILY[version][1]};")


def masq_add(network: str, ip: IP,
             subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
    set_name, chain = names_for(network, ip.version)
    proto, _, multicast = _FAMILY[ip.version]
    tx = (
        _with_set(f"masquerading {ip} of network {network}", network, ip.version)
        .add_chain(chain, "type nat hook postrouting priority srcnat; policy accept;")
        .flush_chain(chain)  # then one rule again: concurrent ADDs converge on one
        .add_rule(chain, f"{proto} saddr @{set_name} {proto} daddr != {subnet} "
                  f'{proto} daddr != {multicast} masquerade comment "podnet ipMasq: {network}"')
        .add_element(set_name, [str(ip)])
    )
    nftables.run(tx)


def masq_remove(network: str, ips: Iterable[IP]) -> None:
    """Remove pod addresses from the sets; removing what is not there succeeds."""
    by_family: dict[int, list[str]] = {}
    for ip in ips:
        by_family.setdefault(ip.version, []).append(str(ip))
    for version, addrs in sorted(by_family.items()):
        set_name, _ = names_for(network, version)
        # nft 1.0.6 has no `destroy`: adding first makes the delete succeed whether or not the
        # element (or the set) was there, all within one transaction.
        what = f"removing {', '.join(addrs)} from the ipMasq set of network {network}"
        nftables.run(_with_set(what, network, version).add_element(set_name, addrs)
                     .delete_element(set_name, addrs))


def masq_contains(network: str, ip: IP) -> bool:
    """Whether the pod's address is in the set and the chain still masquerades."""
    set_name, chain = names_for(network, ip.version)
    rules = nftables.list_chain(TABLE, chain)
    return bool(rules and "masquerade" in rules) and nftables.has_element(TABLE, set_name, str(ip))


def masq_members(network: str) -> list[IP]:
    """Every address in the network's ipMasq sets (what GC reconciles)."""
    found: list[IP] = []
    for version in _FAMILY:
        for value in nftables.list_elements(TABLE, names_for(network, version)[0]) or ():
            try:
                found.append(ipaddress.ip_address(value))
            except ValueError:
                continue  # a range or prefix someone added by hand: not a pod of ours
    return found
