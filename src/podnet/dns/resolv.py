"""A pod's /etc/resolv.conf, as kubelet composes it and containerd writes it. Pure.

kubelet (pkg/kubelet/network/dns/dns.go, `GetPodDNS`):

    ClusterFirst   nameserver: the cluster DNS (kubelet's --cluster-dns, the kube-dns Service);
                   search: <ns>.svc.<domain> svc.<domain> <domain>, then the node's searches;
                   options: ndots:5 (the node's options are dropped)
    Default        the node's resolv.conf (kubelet's --resolv-conf), as read by kubelet
    None           nothing but dnsConfig
    ClusterFirstWithHostNet   ClusterFirst (lab pods are never on the host's network)

then dnsConfig is merged in (nameservers and searches appended without duplicates, options by
name with dnsConfig's winning) and the result cut to what resolvers take: 3 nameservers, 32
search domains of at most 253 characters, 2048 characters of search line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from podnet.model.types import DNSPolicy, PodDNSConfig

__all__ = [
    "DEFAULT_OPTIONS",
    "ResolvConf",
    "parse_resolv_conf",
    "pod_resolv_conf",
]

DEFAULT_OPTIONS = ("ndots:5",)  # kubelet's defaultDNSOptions
_MAX_NAMESERVERS = 3
_MAX_SEARCHES = 32
_MAX_SEARCH_CHARS = 2048
_MAX_DOMAIN = 253


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # "ndots:5", "edns0"
    trimmed: tuple[str, ...] = ()  # what the limits cut, as kubelet's DNSConfigForming event

    def render(self) -> str:
        """The file's text, line for line as containerd writes it (`parseDNSOptions`)."""
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines.extend(f"nameserver {ns}" for ns in self.nameservers)
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)


def parse_resolv_conf(text: str) -> ResolvConf:
    """A node's resolv.conf, read as kubelet reads it (`parseResolvConf`): nameserver lines add,
    the last search line wins (without final dots, '.' dropped), options merge by name."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, rest = words[0], words[1:]
        if key == "nameserver" and rest:
            nameservers.append(rest[0])
        elif key == "search":
            searches = [s.rstrip(".") for s in rest if s != "."]
        elif key == "options":
            options = list(_merge_options(options, [_split_option(o) for o in rest]))
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


def pod_resolv_conf(
    namespace: str,
    policy: DNSPolicy = "ClusterFirst",
    config: PodDNSConfig | None = None,
    *,
    cluster_dns: Sequence[str],
    domain: str = "cluster.local",
    node: ResolvConf | None = None,
) -> ResolvConf:
    """The resolv.conf of a pod of `namespace`.

    `cluster_dns`: the kube-dns Service's address (its IPv6 one in an IPv6-only lab), as
    kubelet's --cluster-dns; `node`: the node's resolv.conf (`parse_resolv_conf`), empty if None.
    With ClusterFirst and no cluster DNS, kubelet falls back to Default: so does this.
    """
    host = node or ResolvConf()
    domain = domain.rstrip(".")
    if policy == "None":
        base = ResolvConf()
    elif policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster_dns:
        search = (f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *host.searches)
        base = ResolvConf(tuple(cluster_dns), _unique(search), DEFAULT_OPTIONS)
    else:
        base = ResolvConf(host.nameservers, host.searches, host.options)
    if config is not None:
        base = ResolvConf(
            _unique((*base.nameservers, *config.nameservers)),
            _unique((*base.searches, *config.searches)),
            _merge_options(base.options, config.options),
        )
    return _fit(base)


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _split_option(option: str) -> tuple[str, str | None]:
    name, sep, value = option.partition(":")
    return (name, value if sep else None)


def _merge_options(
    existing: Sequence[str], extra: Sequence[tuple[str, str | None]]
) -> tuple[str, ...]:
    """By name, later ones winning; the order is first appearance (kubelet's is a Go map's)."""
    merged: dict[str, str | None] = dict(_split_option(o) for o in existing)
    for name, value in extra:
        merged[name] = value
    return tuple(name if not value else f"{name}:{value}" for name, value in merged.items())


def _fit(conf: ResolvConf) -> ResolvConf:
    """kubelet's formDNSConfigFitsLimits: cut, and say what was cut."""
    notes: list[str] = []
    nameservers = conf.nameservers
    if len(nameservers) > _MAX_NAMESERVERS:
        notes.append(f"nameservers beyond {_MAX_NAMESERVERS}: {' '.join(nameservers[3:])}")
        nameservers = nameservers[:_MAX_NAMESERVERS]
    searches = list(conf.searches)
    if len(searches) > _MAX_SEARCHES:
        notes.append(f"search domains beyond {_MAX_SEARCHES}: {' '.join(searches[32:])}")
        searches = searches[:_MAX_SEARCHES]
    long = [s for s in searches if len(s) > _MAX_DOMAIN]
    if long:
        notes.append(f"search domains longer than {_MAX_DOMAIN} characters: {len(long)}")
        searches = [s for s in searches if len(s) <= _MAX_DOMAIN]
    cut: list[str] = []
    while searches and len(" ".join(searches)) > _MAX_SEARCH_CHARS:
        cut.insert(0, searches.pop())
    if cut:
        notes.append(f"search line beyond {_MAX_SEARCH_CHARS} characters: {' '.join(cut)}")
    return ResolvConf(nameservers, tuple(searches), conf.options, tuple(notes))
