"""Everything the kernel holds for a lab, read with iproute2 and nft (not podnet), as JSON.

Run as a program inside a sandbox after a lab was built: it prints, for the sandbox's own network
namespace and every named one, the links (kind, MTU, up, alias, master, VXLAN settings), the
addresses, every routing table of both families, permanent neighbours, VXLAN forwarding entries,
routing rules, the sysctls a lab sets, the nftables ruleset, and the qdiscs of every link with
the filters of their ingress qdiscs (tc's own JSON). Two builds of one lab (podnet's
`up`, and `podnet explain | bash -e`) must print the same.

What the kernel chooses on its own is left out: interface indexes, random MACs (a MAC is kept
where something the lab made points at it: a VXLAN device, a permanent neighbour's target),
IPv6 link-local addresses (made from those MACs), counters and timers, qdisc reference counts
and the numbers tc gives filters and actions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

SYSCTLS = (
    "ipv4/ip_forward",
    "ipv6/conf/all/forwarding",
    "ipv6/conf/all/disable_ipv6",
    "ipv6/conf/default/disable_ipv6",
    "ipv6/conf/all/accept_dad",
    "ipv6/conf/default/accept_dad",
    "ipv6/conf/default/accept_ra",
    "bridge/bridge-nf-call-iptables",
    "bridge/bridge-nf-call-ip6tables",
)
PER_LINK = ("ipv4/conf/{}/proxy_arp", "ipv6/conf/{}/accept_ra", "ipv6/conf/{}/disable_ipv6")


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def ip(ns: str | None, *args: str) -> Any:
    where = ["-n", ns] if ns else []
    out = run("ip", *where, "-j", *args)
    return json.loads(out) if out.strip() else []


def inside(ns: str | None, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def links(ns: str | None, pinned: set[str]) -> list[dict[str, Any]]:
    out = []
    for link in ip(ns, "-d", "link", "show"):
        info = link.get("linkinfo", {})
        kind = info.get("info_kind")
        entry = {
            "name": link["ifname"],
            "kind": kind,
            "mtu": link["mtu"],
            "up": "UP" in link.get("flags", []),
            "alias": link.get("ifalias"),
            "master": link.get("master"),
        }
        mac = link.get("address")
        if kind == "vxlan" or mac in pinned:
            entry["mac"] = mac
        if kind == "vxlan":
            data = info.get("info_data", {})
            entry["vxlan"] = {k: data.get(k) for k in ("id", "local", "port", "learning", "link")}
        out.append(entry)
    return sorted(out, key=lambda e: e["name"])


def addresses(ns: str | None) -> list[list[Any]]:
    out = []
    for link in ip(ns, "addr", "show"):
        for a in link.get("addr_info", []):
            if a["family"] == "inet6" and a.get("scope") == "link":
                continue  # made from a random MAC
            flags = sorted(k for k in ("noprefixroute", "nodad", "tentative", "dadfailed")
                           if a.get(k))
            out.append([link["ifname"], f"{a['local']}/{a['prefixlen']}", a.get("scope"),
                        a.get("broadcast"), flags])
    return sorted(out)


def routes(ns: str | None) -> list[dict[str, Any]]:
    out = []
    for family in ("-4", "-6"):
        for r in ip(ns, family, "route", "show", "table", "all"):
            if r.get("dst", "").startswith("fe80::") and r.get("dst") != "fe80::/64":
                continue  # a link-local address's own route
            keep = {k: r.get(k) for k in ("dst", "gateway", "dev", "scope", "protocol",
                                          "prefsrc", "table", "type")}
            keep["flags"] = sorted(r.get("flags", []))
            out.append(keep)
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


def neighbours(ns: str | None) -> list[list[Any]]:
    out = []
    for family in ("-4", "-6"):
        for n in ip(ns, family, "neigh", "show", "nud", "permanent"):
            out.append([n.get("dev"), n.get("dst"), n.get("lladdr")])
    return sorted(out)


def fdb(ns: str | None) -> list[list[Any]]:
    where = ["-n", ns] if ns else []
    text = run("bridge", *where, "-j", "fdb", "show")
    entries = json.loads(text) if text.strip() else []
    return sorted([e.get("ifname"), e.get("mac"), e.get("dst")] for e in entries if e.get("dst"))


def rules(ns: str | None) -> list[dict[str, Any]]:
    out = []
    for family in ("-4", "-6"):
        out += ip(ns, family, "rule", "show")
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


def sysctls(ns: str | None, names: list[str]) -> dict[str, str]:
    keys = [*SYSCTLS, *(k.format(n) for n in names for k in PER_LINK)]
    paths = [f"/proc/sys/net/{k}" for k in keys]
    result = subprocess.run(inside(ns, "grep", "-Hs", ".", *paths), capture_output=True,
                            text=True, check=False)
    found = {}
    for line in result.stdout.splitlines():
        path, _, value = line.partition(":")
        found[path.removeprefix("/proc/sys/net/")] = value
    return found


def ruleset(ns: str | None) -> str:
    return run(*inside(ns, "nft", "list", "ruleset"))


def qdiscs(ns: str | None) -> list[dict[str, Any]]:
    out = []
    for q in json.loads(run(*inside(ns, "tc", "-j", "qdisc", "show")) or "[]"):
        entry = {k: q.get(k) for k in ("dev", "kind", "handle", "parent", "root", "options")}
        if q.get("kind") in ("ingress", "clsact"):
            entry["filters"] = ingress_filters(ns, str(q["dev"]))
        out.append(entry)
    return sorted(out, key=lambda e: json.dumps(e, sort_keys=True))


def ingress_filters(ns: str | None, dev: str) -> list[dict[str, Any]]:
    """What an ingress qdisc's filters match and do (a redirect to an ifb device)."""
    text = run(*inside(ns, "tc", "-j", "filter", "show", "dev", dev, "parent", "ffff:"))
    out = []
    for f in json.loads(text or "[]"):
        options = f.get("options") or {}
        actions = [{k: a.get(k) for k in ("kind", "mirred_action", "direction", "to_dev")}
                   for a in options.get("actions") or []]
        if actions:
            out.append({"protocol": f.get("protocol"), "kind": f.get("kind"),
                        "match": options.get("match"), "actions": actions})
    return out


def pinned_macs(names: list[str | None]) -> set[str]:
    """MACs the lab points at: targets of permanent neighbours and VXLAN forwarding entries."""
    out = set()
    for ns in names:
        out |= {n[2] for n in neighbours(ns) if n[2]}
        out |= {e[1] for e in fdb(ns)}
    return out


def dump() -> dict[str, Any]:
    names: list[str | None] = [None, *sorted(
        line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip())]
    pinned = pinned_macs(names)
    out = {}
    for ns in names:
        link_list = links(ns, pinned)
        out[ns or "(sandbox)"] = {
            "links": link_list,
            "addresses": addresses(ns),
            "routes": routes(ns),
            "neighbours": neighbours(ns),
            "fdb": fdb(ns),
            "rules": rules(ns),
            "sysctls": sysctls(ns, [link["name"] for link in link_list]),
            "nft": ruleset(ns),
            "qdiscs": qdiscs(ns),
        }
    return out


if __name__ == "__main__":
    json.dump(dump(), sys.stdout, indent=1, sort_keys=True)
