"""The iptables rules of a namespace as `iptables-nft-save` prints them, read-only.

Rules that iptables-nft writes (kube-proxy's, in its iptables mode) hold `xt` expressions: the
kernel runs iptables' own match and target modules (comment, statistic, conntrack, addrtype,
MARK, MASQUERADE, DNAT...), and `nft -j list ruleset` shows only their names. iptables-nft-save
decodes their options with libxtables; the tracer pairs its lines with nft's rules.
"""

from __future__ import annotations

__all__ = ["SAVE_TOOLS", "save"]

SAVE_TOOLS = {"ip": "iptables-nft-save", "ip6": "ip6tables-nft-save"}


def save(path: str | None, family: str) -> str | None:
    """`iptables-nft-save` (ip) or `ip6tables-nft-save` (ip6) in the namespace at `path`; None
    when the tool is missing or fails (the xt rules then stay "not evaluated")."""
    from podnet.errors import KernelError
    from podnet.kernel.nsexec import find_tool, run_in

    tool = SAVE_TOOLS.get(family)
    if tool is None:
        return None
    try:
        done = run_in([find_tool(tool, "iptables")], path, timeout=10)
    except (KernelError, OSError):
        return None
    return done.stdout if done.code == 0 else None
