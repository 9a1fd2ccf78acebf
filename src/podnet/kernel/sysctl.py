"""Per-namespace sysctls (ip_forward, accept_ra, ...), written from inside the namespace.

/proc/sys/net answers for the network namespace of the thread that opens the file, so entering
the namespace in this thread is enough; no `ip netns exec sysctl` process is needed.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from podnet.errors import os_error
from podnet.kernel import netns

__all__ = ["read", "write"]


def _file(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def write(
    netns_path: str | None, settings: dict[str, str], *, optional: Collection[str] = ()
) -> None:
    """Apply `settings` ({"net.ipv4.ip_forward": "1", ...}) inside the namespace at `netns_path`
    (None: this thread's), entering it once. Keys in `optional` are skipped where the kernel has
    no such file (IPv6 turned off, an interface without IPv6 configuration)."""
    if netns_path is None:
        _write_here(settings, optional)
        return
    with netns.entered(netns_path):
        _write_here(settings, optional)


def _write_here(settings: dict[str, str], optional: Collection[str]) -> None:
    for key, value in settings.items():
        if key in optional and not os.path.exists(_file(key)):
            continue
        try:
            with open(_file(key), "w") as fh:
                fh.write(value)
        except OSError as exc:
            hint = ""
            if key.startswith("net.bridge.") and isinstance(exc, FileNotFoundError):
                hint = ("these settings come with the br_netfilter module: load it "
                        "(`modprobe br_netfilter`; it applies to this machine's bridges too)")
            raise os_error(exc, f"setting {key}={value}", hint=hint) from None


def read(netns_path: str, key: str) -> str:
    with netns.entered(netns_path), open(_file(key)) as fh:
        return fh.read().strip()
