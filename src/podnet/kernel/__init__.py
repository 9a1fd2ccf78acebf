"""The only layer that talks to the kernel: namespaces, netlink (pyroute2), sysctls, nftables.

Submodules are imported on demand: `podnet.kernel.netlink` pulls in pyroute2 (115 to 200 ms), which
commands such as `podnet exec` never need.
"""

__all__: list[str] = []
