"""Source NAT for pods (the CNI `ipMasq` option), in nftables, in a table only podnet writes.

    table ip podnet {
      set pods_<net> { type ipv4_addr; }                     # the network's pod addresses
      chain masq_<net> {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr @pods_<net> ip daddr != <subnet> ip daddr != 224.0.0.0/4 masquerade
      }
    }

Each change is one `nft -f -` transaction, applied whole or not at all. The chain is flushed and
its one rule re-added inside the same transaction, so concurrent ADDs converge on one rule; a pod
is one set element. Nothing outside `table ip podnet` is read or written.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable

from podnet.errors import KernelError

__all__ = ["TABLE", "masq_add", "masq_contains", "masq_remove", "names_for"]

TABLE = "podnet"


def _nft() -> str:
    # Runtimes start plugins with a minimal environment, often without /usr/sbin on PATH.
    found = shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)
    if found is None:
        raise KernelError("ipMasq needs the nft command, which is not installed",
                          hint="install nftables (apt-get install nftables)")
    return found


def names_for(network: str) -> tuple[str, str]:
    """(set, chain) names for a network: readable, unique, within nftables' identifier rules."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", network)[:40]
    digest = hashlib.sha256(network.encode()).hexdigest()[:8]
    return f"pods_{slug}_{digest}", f"masq_{slug}_{digest}"


def _apply(script: str, what: str) -> None:
    proc = subprocess.run([_nft(), "-f", "-"], input=script.encode(), capture_output=True,
                          check=False)
    if proc.returncode != 0:
        raise KernelError(
            f"{what}: nft refused the transaction: {proc.stderr.decode(errors='replace').strip()}",
            hint="nothing was changed (nft applies a transaction whole or not at all)",
        )


def _declare(set_name: str) -> str:
    return (f"add table ip {TABLE}\n"
            f"add set ip {TABLE} {set_name} {{ type ipv4_addr; }}\n")


def masq_add(network: str, ip: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> None:
    set_name, chain = names_for(network)
    script = (
        _declare(set_name)
        + f"add chain ip {TABLE} {chain} {{ type nat hook postrouting priority srcnat; "
        "policy accept; }\n"
        + f"flush chain ip {TABLE} {chain}\n"
        + f"add rule ip {TABLE} {chain} ip saddr @{set_name} ip daddr != {subnet} "
        f'ip daddr != 224.0.0.0/4 masquerade comment "podnet ipMasq: {network}"\n'
        + f"add element ip {TABLE} {set_name} {{ {ip} }}\n"
    )
    _apply(script, f"masquerading {ip} of network {network}")


def masq_remove(network: str, ips: Iterable[ipaddress.IPv4Address]) -> None:
    """Remove pod addresses from the set; removing what is not there succeeds."""
    addrs = ", ".join(str(ip) for ip in ips)
    if not addrs:
        return
    set_name, _ = names_for(network)
    # nft 1.0.6 has no `destroy`: adding first makes the delete succeed whether or not the
    # element (or the set) was there, all within one transaction.
    script = (_declare(set_name)
              + f"add element ip {TABLE} {set_name} {{ {addrs} }}\n"
              + f"delete element ip {TABLE} {set_name} {{ {addrs} }}\n")
    _apply(script, f"removing {addrs} from the ipMasq set of network {network}")


def masq_contains(network: str, ip: ipaddress.IPv4Address) -> bool:
    """Whether the pod's address is in the set and the chain still masquerades (one nft run)."""
    set_name, chain = names_for(network)
    proc = subprocess.run([_nft(), "-j", "list", "table", "ip", TABLE], capture_output=True,
                          check=False)
    if proc.returncode != 0:
        return False
    has_element = has_rule = False
    for item in json.loads(proc.stdout).get("nftables", []):
        found = item.get("set", {})
        if found.get("name") == set_name and str(ip) in found.get("elem", []):
            has_element = True
        rule = item.get("rule", {})
        if rule.get("chain") == chain and any("masquerade" in e for e in rule.get("expr", [])):
            has_rule = True
    return has_element and has_rule
