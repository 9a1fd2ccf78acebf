"""Source NAT for pods (the CNI `ipMasq` option), in nftables, in a table only podnet writes.

    table ip podnet {
      set pods_<net> { type ipv4_addr; }                     # the network's pod addresses
      chain masq_<net> {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr @pods_<net> ip daddr != <subnet> ip daddr != 224.0.0.0/4 masquerade
      }
    }

Each change is one `nft -f -` transaction (built and run by `kernel.nftables`, the one place that
drives nftables), applied whole or not at all. The chain is flushed and
its one rule re-added inside the same transaction, so concurrent ADDs converge on one rule; a pod
is one set element. Nothing outside `table ip podnet` is read or written.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable

from podnet.kernel import nftables
from podnet.kernel.nftables import Table, Transaction

__all__ = ["TABLE", "masq_add", "masq_contains", "masq_remove", "names_for"]

TABLE = "podnet"
_TABLE = Table("ip", TABLE)


def names_for(network: str) -> tuple[str, str]:
    """(set, chain) names for a network: readable, unique, within nftables' identifier rules."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", network)[:40]
    digest = hashlib.sha256(network.encode()).hexdigest()[:8]
    return f"pods_{slug}_{digest}", f"masq_{slug}_{digest}"


def _with_set(what: str, set_name: str) -> Transaction:
    return Transaction(_TABLE, what).ensure().add_set(set_name, "type ipv4_addr;")


def masq_add(network: str, ip: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> None:
    set_name, chain = names_for(network)
    tx = (
        _with_set(f"masquerading {ip} of network {network}", set_name)
        .add_chain(chain, "type nat hook postrouting priority srcnat; policy accept;")
        .flush_chain(chain)  # then one rule again: concurrent ADDs converge on one
        .add_rule(chain, f"ip saddr @{set_name} ip daddr != {subnet} ip daddr != 224.0.0.0/4 "
                  f'masquerade comment "podnet ipMasq: {network}"')
        .add_element(set_name, [str(ip)])
    )
    nftables.run(tx)


def masq_remove(network: str, ips: Iterable[ipaddress.IPv4Address]) -> None:
    """Remove pod addresses from the set; removing what is not there succeeds."""
    addrs = [str(ip) for ip in ips]
    if not addrs:
        return
    set_name, _ = names_for(network)
    # nft 1.0.6 has no `destroy`: adding first makes the delete succeed whether or not the
    # element (or the set) was there, all within one transaction.
    what = f"removing {', '.join(addrs)} from the ipMasq set of network {network}"
    nftables.run(_with_set(what, set_name).add_element(set_name, addrs)
                 .delete_element(set_name, addrs))


def masq_contains(network: str, ip: ipaddress.IPv4Address) -> bool:
    """Whether the pod's address is in the set and the chain still masquerades."""
    set_name, chain = names_for(network)
    rules = nftables.list_chain(_TABLE, chain)
    return bool(rules and "masquerade" in rules) and nftables.has_element(
        _TABLE, set_name, str(ip)
    )
