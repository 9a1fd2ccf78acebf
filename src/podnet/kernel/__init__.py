"""The only layer that talks to the kernel: namespaces, netlink (pyroute2), sysctls, nftables.

Submodules are imported on demand, and pyroute2 through a lazy stand-in for its package
(`pyroute2_light`): its own `__init__` imports every protocol it speaks (115 to 200 ms), while
podnet needs a few message classes (about 25 ms) and, for some commands, IPRoute.
"""

from podnet.kernel.pyroute2_light import install_stub

__all__: list[str] = []

install_stub()
