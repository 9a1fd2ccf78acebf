"""The networks around a node, for tests: a peer on the node network and a host outside it, and
TCP probes that report the source address the far end saw (a real packet each way)."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["NodeNets", "node_networks", "tcp_reach", "tcp_server"]

SERVER = ("import socket,sys;six=sys.argv[2]=='6';"
          "s=socket.socket(socket.AF_INET6 if six else socket.AF_INET);"
          "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
          "s.bind(('::' if six else '0.0.0.0',int(sys.argv[1])));s.listen();"
          "print('up',flush=True);\nwhile True:\n c,a=s.accept();c.sendall(a[0].encode());"
          "c.close()")


@dataclass(frozen=True)
class NodeNets:
    peer: str  # a namespace on the node network (another node)
    outside: str  # a namespace outside, routed through the node
    node_ip: str = "192.0.2.1"  # the node's address on the node network
    peer_ip: str = "192.0.2.2"
    router_ip: str = "198.51.100.1"  # the node's address towards the outside
    outside_ip: str = "198.51.100.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def node_networks(netns_factory: Callable[[str], str]) -> Iterator[NodeNets]:
    tag = uuid.uuid4().hex[:6]
    peer, outside = netns_factory("peer"), netns_factory("outside")
    links = [f"vn{tag}", f"vo{tag}"]
    try:
        for link, ns, host_ip, far_ip in ((links[0], peer, "192.0.2.1", "192.0.2.2"),
                                          (links[1], outside, "198.51.100.1", "198.51.100.2")):
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("addr", "add", f"{host_ip}/24", "dev", link)
            _ip("link", "set", link, "up")
            _ip("-n", ns, "addr", "add", f"{far_ip}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", host_ip)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as fh:
            fh.write("1")
        yield NodeNets(peer, outside)
    finally:
        for link in links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)


@contextlib.contextmanager
def tcp_server(ns: str, port: int, family: int = 4) -> Iterator[None]:
    """A server in `ns` that answers each connection with the peer address it saw (IPv4, or
    with `family` 6 IPv6 only)."""
    server = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", SERVER, str(port),
                               str(family)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        yield
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


def tcp_reach(client_ns: str | None, ip: str, port: int, timeout: float = 5) -> str:
    """Connect from `client_ns` (None: the node itself); the source address the server saw,
    or "" when no connection could be made."""
    code = (f"import socket;s=socket.create_connection(('{ip}',{port}),timeout={timeout});"
            "print(s.recv(100).decode())")
    argv = ["python3", "-c", code]
    if client_ns is not None:
        argv = ["ip", "netns", "exec", client_ns, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 15,
                          check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""
