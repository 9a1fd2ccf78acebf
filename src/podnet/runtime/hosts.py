"""A pod's /etc/hosts, byte for byte as kubelet writes it (pkg/kubelet/kubelet_pods.go).

Pure: no files, no kernel. `podnet.runtime.pod.write_hosts_file` puts the text on disk.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["HOSTNAME_MAX", "node_hosts", "pod_hostname", "render_hosts", "resolv_path"]

# sethostname(2) takes 64 bytes; kubelet keeps 63 so the name fits with its terminating NUL.
HOSTNAME_MAX = 63

_HEADER = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def pod_hostname(pod_name: str) -> str:
    """The hostname kubelet gives a pod: its name, cut to 63 characters without a trailing - or .

    Raises ValueError when nothing is left (kubelet refuses such a pod too).
    """
    if len(pod_name) <= HOSTNAME_MAX:
        return pod_name
    cut = pod_name[:HOSTNAME_MAX].rstrip("-.")
    if not cut:
        raise ValueError(f"pod name {pod_name!r} leaves no valid hostname after truncation")
    return cut


def resolv_path(hosts_file: str) -> str:
    """A pod's resolv.conf file: beside its hosts file (`.../dev_web.hosts` ->
    `.../dev_web.resolv`), so whatever enters a pod with its hosts file finds both."""
    base = hosts_file[: -len(".hosts")] if hosts_file.endswith(".hosts") else hosts_file
    return base + ".resolv"


def render_hosts(
    pod_ip: str | Sequence[str],
    hostname: str,
    extra: Sequence[tuple[str, Sequence[str]]] = (),
    fqdn: str | None = None,
) -> str:
    """The text of a pod's hosts file.

    `pod_ip` is the pod's address (or every address, for a dual-stack pod: one line each, as
    kubelet writes `podIPs`); `hostname` is `pod_hostname(pod name)`; `extra` holds (ip, names)
    entries, written the way kubelet writes a pod's hostAliases; `fqdn`, a pod with a hostname
    and a subdomain's full name (`db-0.db.dev.svc.cluster.local`), which kubelet writes before
    the hostname.
    """
    ips = [pod_ip] if isinstance(pod_ip, str) else list(pod_ip)
    own = (fqdn, hostname) if fqdn else (hostname,)
    for value in (*ips, *own):
        _check_field(value)
    lines = [_HEADER, *(f"{ip}\t{chr(9).join(own)}\n" for ip in ips)]
    if extra:
        lines.append("\n# Entries added by HostAliases.\n")
        for ip, names in extra:
            if not names:
                raise ValueError(f"hosts entry for {ip} names no host")
            for value in (ip, *names):
                _check_field(value)
            lines.append("\t".join((ip, *names)) + "\n")
    return "".join(lines)


def _check_field(value: str) -> None:
    # A newline or tab would let one entry write another line into every resolver's view.
    if not value or any(c.isspace() for c in value) or "#" in value:
        raise ValueError(
            f"invalid hosts file field {value!r}: it must be non-empty, without spaces, tabs, "
            "newlines or '#'"
        )


def node_hosts(node: str, ips: Sequence[str]) -> str:
    """A kind node's /etc/hosts, as docker writes it (the lesson's `cat /etc/hosts` on
    kind-worker): the loopback and IPv6 names, then the node's own addresses."""
    for value in (*ips, node):
        _check_field(value)
    return (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n" + "".join(f"{ip}\t{node}\n" for ip in ips)
    )
