"""A pod's DNS fields: hostname, subdomain, dnsPolicy and dnsConfig, checked as the API server
checks them (pkg/apis/core/validation: validateDNSPolicy, validatePodDNSConfig)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, cast

from podnet.model import naming
from podnet.model.fields import Reader
from podnet.model.types import DNSPolicy, PodDNSConfig

__all__ = [
    "DNS_CONFIG_KEYS",
    "DNS_KEYS",
    "DNS_POLICIES",
    "MAX_DNS_NAMESERVERS",
    "MAX_DNS_SEARCHES",
    "MAX_DNS_SEARCH_CHARS",
    "PodDNS",
    "read_pod_dns",
]

DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
DNS_CONFIG_KEYS = ("nameservers", "searches", "options")
DNS_KEYS = ("hostname", "subdomain", "dnsPolicy", "dnsConfig")  # of a pod's spec, read here
MAX_DNS_NAMESERVERS = 3  # glibc reads three (MAXNS)
MAX_DNS_SEARCHES = 32  # the API's limits since Kubernetes 1.28 (ExpandedDNSConfig)
MAX_DNS_SEARCH_CHARS = 2048
_POLICY_HINT = (
    "ClusterFirst: the cluster's DNS (the default); Default: the node's resolv.conf; "
    "None: only dnsConfig"
)


@dataclass(frozen=True)
class PodDNS:
    hostname: str | None = None
    subdomain: str | None = None
    policy: DNSPolicy = "ClusterFirst"
    config: PodDNSConfig | None = None


def read_pod_dns(r: Reader, spec: dict[Any, Any], path: str) -> PodDNS:
    """hostname, subdomain, dnsPolicy and dnsConfig of a Pod's (or a template's) spec."""
    why = "a DNS-1123 label: lowercase letters, digits and '-', at most 63"
    hostname = r.name(spec.get("hostname"), f"{path}.hostname", naming.bad_dns1123_label, why)
    subdomain = r.name(spec.get("subdomain"), f"{path}.subdomain", naming.bad_dns1123_label, why)
    policy = cast(
        DNSPolicy,
        r.choice(spec.get("dnsPolicy"), f"{path}.dnsPolicy", DNS_POLICIES, _POLICY_HINT)
        or "ClusterFirst",
    )
    config = _dns_config(r, spec.get("dnsConfig"), f"{path}.dnsConfig")
    if policy == "None" and spec.get("dnsPolicy") == "None":
        if "dnsConfig" not in spec:
            r.add(
                f"{path}.dnsConfig",
                "is missing: dnsPolicy None takes every setting from dnsConfig",
                "add dnsConfig: {nameservers: [10.96.0.10]}",
            )
        elif config is not None and not config.nameservers:
            r.add(
                f"{path}.dnsConfig.nameservers",
                "is empty: with dnsPolicy None a pod needs at least one nameserver",
                "add nameservers: [10.96.0.10] (the kube-dns Service), or another policy",
            )
    return PodDNS(hostname, subdomain, policy, config)


def _dns_config(r: Reader, value: object, path: str) -> PodDNSConfig | None:
    if value is None:
        return None
    m = r.mapping(value, path)
    r.known(m, path, DNS_CONFIG_KEYS)
    return PodDNSConfig(
        nameservers=tuple(_nameservers(r, m.get("nameservers"), f"{path}.nameservers")),
        searches=tuple(_searches(r, m.get("searches"), f"{path}.searches")),
        options=tuple(_options(r, m.get("options"), f"{path}.options")),
    )


def _at_most(r: Reader, items: list[Any], path: str, limit: int, noun: str, hint: str) -> None:
    if len(items) > limit:
        r.add(path, f"has {len(items)} {noun}, more than {limit}", hint)


def _nameservers(r: Reader, value: object, path: str) -> list[str]:
    items = r.items(value, path)
    hint = "the resolver reads three nameservers: keep three"
    _at_most(r, items, path, MAX_DNS_NAMESERVERS, "addresses", hint)
    out = []
    for i, item in enumerate(items):
        text = r.text(item, f"{path}[{i}]")
        if text is None:
            continue
        try:
            out.append(str(ipaddress.ip_address(text)))
        except ValueError:
            r.add(f"{path}[{i}]", f"'{text}' is not an IP address", "give an IPv4 or IPv6 address")
    return out


def _searches(r: Reader, value: object, path: str) -> list[str]:
    items = r.items(value, path)
    hint = f"keep at most {MAX_DNS_SEARCHES} search domains"
    _at_most(r, items, path, MAX_DNS_SEARCHES, "domains", hint)
    out = []
    for i, item in enumerate(items):
        text = r.text(item, f"{path}[{i}]")
        if text is None:
            continue
        domain = text[:-1] if text.endswith(".") else text  # a final dot is allowed
        bad = naming.bad_dns1123_subdomain(domain)
        if bad:
            r.add(f"{path}[{i}]", bad, "a domain: lowercase labels joined by '.', such as dev.svc")
            continue
        out.append(domain)
    if len(" ".join(out)) > MAX_DNS_SEARCH_CHARS:
        r.add(
            path,
            f"is {len(' '.join(out))} characters long, more than {MAX_DNS_SEARCH_CHARS}",
            "use fewer or shorter search domains",
        )
    return out


def _options(r: Reader, value: object, path: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for i, item in enumerate(r.items(value, path)):
        ipath = f"{path}[{i}]"
        m = r.mapping(item, ipath)
        r.known(m, ipath, ("name", "value"))
        name = r.text(m.get("name"), f"{ipath}.name", required="give the option's name: ndots")
        raw = m.get("value")
        if isinstance(raw, int) and not isinstance(raw, bool):
            r.add(f"{ipath}.value", f"must be a string, not the number {raw}", f'write "{raw}"')
            continue
        text = r.text(raw, f"{ipath}.value")
        if name:
            out.append((name, text))
    return out
