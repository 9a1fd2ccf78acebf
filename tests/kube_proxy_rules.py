"""A ruleset shaped as kube-proxy's iptables mode writes it (v1.28 and later), for one ClusterIP
Service: KUBE-SERVICES, a KUBE-SVC-* chain spreading connections over KUBE-SEP-* chains with
`-m statistic --mode random`, KUBE-MARK-MASQ and KUBE-POSTROUTING's masquerade of marked
packets, and KUBE-FORWARD's conntrack rules. Loaded with iptables-restore (iptables-nft)."""

from __future__ import annotations

import hashlib

__all__ = ["chain_name", "ruleset"]


def chain_name(prefix: str, *parts: str) -> str:
    """KUBE-SVC-/KUBE-SEP- and 16 characters of a hash, as kube-proxy names its chains."""
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest().upper()
    return f"{prefix}-{digest[:16]}"


def ruleset(service: str, vip: str, port: int, endpoints: list[str], pod_cidr: str) -> str:
    """iptables-restore input: `service` is "ns/name:portname"."""
    svc = chain_name("KUBE-SVC", service)
    seps = [chain_name("KUBE-SEP", service, ep) for ep in endpoints]
    nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-POSTROUTING - [0:0]",
           ":KUBE-MARK-MASQ - [0:0]", ":KUBE-NODEPORTS - [0:0]", f":{svc} - [0:0]",
           *(f":{sep} - [0:0]" for sep in seps),
           '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
           '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
           '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" '
           "-j KUBE-POSTROUTING",
           "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
           "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
           "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
           '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT"'
           " -j MASQUERADE --random-fully",
           f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "{service} cluster IP" '
           f"-m tcp --dport {port} -j {svc}",
           '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must '
           'be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
           f'-A {svc} ! -s {pod_cidr} -d {vip}/32 -p tcp -m comment --comment "{service} cluster '
           f'IP" -m tcp --dport {port} -j KUBE-MARK-MASQ']
    for i, (ep, sep) in enumerate(zip(endpoints, seps, strict=True)):
        left = len(endpoints) - i
        chance = f" -m statistic --mode random --probability {1 / left:.11f}" if left > 1 else ""
        nat.append(f'-A {svc} -m comment --comment "{service} -> {ep}"{chance} -j {sep}')
    for ep, sep in zip(endpoints, seps, strict=True):
        ip = ep.rsplit(":", 1)[0]
        nat += [f'-A {sep} -s {ip}/32 -m comment --comment "{service}" -j KUBE-MARK-MASQ',
                f'-A {sep} -p tcp -m comment --comment "{service}" -m tcp -j DNAT '
                f"--to-destination {ep}"]
    nat.append("COMMIT")
    filt = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
            ":KUBE-FORWARD - [0:0]",
            '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
            '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark '
            "0x4000/0x4000 -j ACCEPT",
            '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m '
            "conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "COMMIT"]
    return "\n".join([*nat, *filt]) + "\n"
