"""The floor under `podnet up`: a minimal netlink loop that builds what an IPv4 lab's pods are made
of, and nothing else. Run by bench/scale.py beside podnet, in the same sandbox.

    python bench/netlink_floor.py PODS NODES [--pyroute2] [--pause]
    (prints JSON: "up" and "down" in seconds, "built_at": the time.time() the build ended, so the
    caller can count the interpreter's start-up in as it does for podnet's)

Per node: a named namespace. Per pod, spread round-robin over the nodes: a named namespace (made as
`ip netns add` makes one, in this thread: unshare, bind mount, setns back) with IPv6 off before any
link exists, as in podnet's IPv4 pods (else each pod's link-local addresses would add entries to the
machine-wide NDP table), `lo` up, a veth pair born in the pod namespace with its peer in the node's,
the pod's /32 on `eth0`, both ends up, the gateway (169.254.1.1 on the node's end, kindnet-style)
and a default route in the pod, a /32 host route on the node. One netlink request per object in a
datagram of its own, each waiting for the kernel's answer, packed as podnet packs them
(`kernel.rtnl_requests`, through `Batch`'s builders; pyroute2 0.9 runs every call through an asyncio
loop: about 1 ms each, more than podnet's whole cost per pod, so it would be no floor). `--pyroute2`
sends the same requests through pyroute2's IPRoute instead, as the loop is usually written: the
floor a person reaches without writing netlink by hand. `--pause` adds what a pod needs beyond its
objects: a process holding each pod's namespace, as a pause container does (`sleep infinity` joined
to it by `nsenter`, spawned with posix_spawn: no copy of this process's memory). A machine whose
own agents do work per namespace that has a process in it (this project's VM: its PID 1 polls each
one) charges that work to every lab, podnet's or this floor's, and `--pause` shows how much.

What podnet's `up` does beyond this floor: parse and check the topology file, plan, the node
network (a bridge and each node's uplink), routes between nodes, its other sysctls (forwarding on
nodes), a pause process per pod and a responder per node, `/etc/hosts`, the cluster DNS and the
lab's record on disk. "down" here unmounts and removes each namespace, as `podnet down` does.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import time

from podnet.kernel.batch import Batch

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
NETNS_DIR = "/run/netns"
GATEWAY = ipaddress.IPv4Address("169.254.1.1")
POD_NET = ipaddress.IPv4Network("10.240.0.0/12")

SCOPE_LINK = 253
ETH0 = 2  # the pod's eth0 asks for this ifindex (lo is 1), the node's end for 1000 + pod

_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432
_FSCONFIG_CMD_CREATE = 6
PROC_RENEW = 128  # namespaces served by one proc instance

_libc = ctypes.CDLL(None, use_errno=True)


class Proc:
    """A proc instance attached to no mount namespace, renewed every PROC_RENEW namespaces: the
    machine's /proc makes each new namespace's first sysctl cost in proportion to the namespaces
    looked up through it before (a dentry hash chain), which would make this floor grow faster
    than the kernel's own work. podnet opens its sysctls the same way."""

    def __init__(self) -> None:
        self.fd, self.served = -1, 0

    def root(self) -> int:
        if self.fd < 0 or self.served >= PROC_RENEW:
            if self.fd >= 0:
                os.close(self.fd)
            fs = _libc.syscall(_SYS_FSOPEN, b"proc", 1)
            _check(0 if fs >= 0 else -1, "fsopen")
            try:
                _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0),
                       "fsconfig")
                self.fd = _libc.syscall(_SYS_FSMOUNT, fs, 1, 0)
                _check(0 if self.fd >= 0 else -1, "fsmount")
            finally:
                os.close(fs)
            self.served = 0
        self.served += 1
        return self.fd


PROC = Proc()


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def create_netns(name: str, home: int) -> str:
    """A named namespace, made in this thread; the thread returns to `home` after."""
    path = os.path.join(NETNS_DIR, name)
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o444))
    _check(_libc.unshare(CLONE_NEWNET), "unshare")
    root = PROC.root()
    for scope in ("all", "default"):  # before any link: no NDP entries in the machine's table
        fd = os.open(f"sys/net/ipv6/conf/{scope}/disable_ipv6", os.O_WRONLY, dir_fd=root)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
    _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), None, MS_BIND, None), "mount")
    _check(_libc.setns(home, CLONE_NEWNET), "setns")
    return path


def delete_netns(name: str) -> None:
    path = os.path.join(NETNS_DIR, name)
    _check(_libc.umount2(path.encode(), MNT_DETACH), "umount")
    os.unlink(path)


class Rtnl:
    """An rtnetlink socket of one namespace (a socket keeps the namespace it was made in),
    sending one request per datagram and waiting for each answer."""

    def __init__(self, path: str, home: int) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), "setns")
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            _check(_libc.setns(home, CLONE_NEWNET), "setns")
        finally:
            os.close(fd)
        self.seq = 0

    def call(self, batch: Batch) -> None:
        """Send the one request `batch` holds and wait for its acknowledgement."""
        (request,) = batch.messages
        self.seq += 1
        self.sock.send(request.encode(self.seq))
        answer = self.sock.recv(65536)
        error = struct.unpack_from("i", answer, 16)[0]
        if error:
            raise OSError(-error, f"{batch.notes[0]}: {os.strerror(-error)}")

    def up(self, index: int) -> None:
        self.call(Batch("").link_set(index))

    def veth(self, name: str, index: int, peer: str, peer_index: int, peer_ns: int) -> None:
        # One queue each way per end, as podnet makes them (one per CPU by default, cut to one
        # under the rtnl lock after an RCU grace period).
        self.call(Batch("").veth_add(name, index, peer, peer_index, peer_ns, 1500))

    def address(self, index: int, address: ipaddress.IPv4Address) -> None:
        self.call(Batch("").addr_add(index, f"{address}/32"))

    def route(self, dst: ipaddress.IPv4Address | None, index: int,
              gateway: ipaddress.IPv4Address | None = None) -> None:
        if gateway:
            self.call(Batch("").route_add("default", oif=index, gateway=str(gateway)))
        else:
            self.call(Batch("").route_add(f"{dst}/32", oif=index, scope="link"))

    def index_of(self, name: str, requested: int) -> int:
        """The index a link was asked to have, which the kernel gives."""
        return requested

    def close(self) -> None:
        self.sock.close()


class Pyroute2Rtnl:
    """The same requests through pyroute2's IPRoute, as a person would write the loop."""

    def __init__(self, path: str, home: int) -> None:
        from pyroute2 import IPRoute  # noqa: TID251  # the loop as people write it

        fd = os.open(path, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), "setns")
            self.ipr = IPRoute()
            _check(_libc.setns(home, CLONE_NEWNET), "setns")
        finally:
            os.close(fd)

    def up(self, index: int) -> None:
        self.ipr.link("set", index=index, state="up")

    def veth(self, name: str, index: int, peer: str, peer_index: int, peer_ns: int) -> None:
        self.ipr.link("add", ifname=name, index=index, kind="veth",
                      peer={"ifname": peer, "net_ns_fd": peer_ns})

    def index_of(self, name: str, requested: int) -> int:
        """The index the kernel gave (pyroute2's peer takes no index: looked up by name)."""
        return int(self.ipr.link_lookup(ifname=name)[0])

    def address(self, index: int, address: ipaddress.IPv4Address) -> None:
        self.ipr.addr("add", index=index, address=str(address), prefixlen=32)

    def route(self, dst: ipaddress.IPv4Address | None, index: int,
              gateway: ipaddress.IPv4Address | None = None) -> None:
        if gateway:
            self.ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=index)
        else:
            self.ipr.route("add", dst=f"{dst}/32", oif=index, scope=SCOPE_LINK)

    def close(self) -> None:
        self.ipr.close()


def pause(path: str) -> int:
    """A process that holds the namespace at `path`, as a pod's pause container does."""
    argv = ["nsenter", f"--net={path}", "sleep", "infinity"]
    return os.posix_spawn("/usr/bin/nsenter", argv, os.environ)


def build(pods: int, nodes: int, home: int, kind: type[Rtnl | Pyroute2Rtnl] = Rtnl,
          pauses: list[int] | None = None) -> list[str]:
    """The lab's namespaces, veths, addresses and routes; with `pauses`, a pause process per pod
    too (their PIDs are appended to it)."""
    names: list[str] = []
    node_rtnl, node_fds = [], []
    for n in range(nodes):
        names.append(f"floor-node-{n}")
        path = create_netns(names[-1], home)
        node_rtnl.append(kind(path, home))
        node_fds.append(os.open(path, os.O_RDONLY))
        node_rtnl[-1].up(1)
    for p in range(pods):
        node = p % nodes
        names.append(f"floor-pod-{p}")
        path = create_netns(names[-1], home)
        if pauses is not None:
            pauses.append(pause(path))
        pod = kind(path, home)
        address = POD_NET.network_address + 2 + p
        pod.up(1)
        veth = f"veth{p:08x}"
        pod.veth("eth0", ETH0, veth, 1000 + p, node_fds[node])
        pod.address(ETH0, address)
        pod.up(ETH0)
        pod.route(GATEWAY, ETH0)
        pod.route(None, ETH0, gateway=GATEWAY)
        pod.close()
        host = node_rtnl[node]
        index = host.index_of(veth, 1000 + p)
        host.address(index, GATEWAY)
        host.up(index)
        host.route(address, index)
    for fd in node_fds:
        os.close(fd)
    for rtnl in node_rtnl:
        rtnl.close()
    return names


def main() -> None:
    pods, nodes = int(sys.argv[1]), int(sys.argv[2])
    kind = Pyroute2Rtnl if "--pyroute2" in sys.argv[3:] else Rtnl
    pauses: list[int] | None = [] if "--pause" in sys.argv[3:] else None
    os.makedirs(NETNS_DIR, exist_ok=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    begun = time.perf_counter()
    names = build(pods, nodes, home, kind, pauses)
    up = time.perf_counter() - begun
    built_at = time.time()
    begun = time.perf_counter()
    for pid in pauses or ():
        os.kill(pid, signal.SIGKILL)
    for pid in pauses or ():
        os.waitpid(pid, 0)
    for name in names:
        delete_netns(name)
    print(json.dumps({"up": up, "down": time.perf_counter() - begun, "built_at": built_at}))


if __name__ == "__main__":
    main()
