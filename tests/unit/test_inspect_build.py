"""Assembling the Host model from hand-built discovery records (no kernel)."""

from __future__ import annotations

import socket

from podnet.inspect.build import assemble, label_of, veth_ends
from podnet.inspect.model import Host
from podnet.inspect.pairs import End, Pairing
from podnet.inspect.pods import Attribution
from podnet.kernel.discover_types import (
    Address,
    Holder,
    Link,
    NamespaceDump,
    NamespaceRef,
    Nexthop,
    Route,
)

HOST, POD, GONE, LOCKED = 4026531840, 4026532300, 4026532400, 4026532500


def link(index: int, ifname: str, kind: str, *, master: int | None = None,
         peer: int | None = None, nsid: int | None = None) -> Link:
    return Link(index, ifname, kind, f"02:00:00:00:00:{index:02x}", 1500, "UP", True, master,
                peer, nsid)


def route(dst: str | None, dst_len: int, *, gateway: str | None = None, oif: int | None = None,
          family: int = socket.AF_INET, nexthops: tuple[Nexthop, ...] = ()) -> Route:
    return Route(family, dst, dst_len, gateway, oif, None, "universe", "static", "unicast", None,
                 254, nexthops)


def host_records() -> tuple[list[NamespaceRef], dict[int, NamespaceDump]]:
    refs = [
        NamespaceRef.make(HOST, holders=(Holder(1, "systemd", None), Holder(7, "kubelet", None)),
                          current=True),
        NamespaceRef.make(POD, mounts=("/run/netns/cni-1234",),
                          holders=(Holder(157, "nginx", "ab" * 32), Holder(6042, "curl", None))),
        NamespaceRef.make(GONE, holders=(Holder(900, "sleep", None),)),
        NamespaceRef.make(LOCKED, mounts=("/run/docker/netns/5f2e",)),
    ]
    dumps = {
        HOST: NamespaceDump(
            links=[link(1, "lo", "loopback"), link(2, "cni0", "bridge"),
                   link(3, "veth09e8e743", "veth", master=2, peer=2, nsid=0),
                   link(4, "vethdead", "veth", peer=None, nsid=5),
                   link(5, "vethaway", "veth", peer=3, nsid=6)],
            addresses=[Address(2, socket.AF_INET, "10.244.3.1", 24, 0),
                       Address(2, socket.AF_INET6, "fe80::1", 64, 253)],
            routes=[route("10.244.3.0", 24, oif=2),
                    route("10.50.0.0", 16, nexthops=(Nexthop(2, "10.244.3.9"),))],
        ),
        POD: NamespaceDump(
            links=[link(1, "lo", "loopback"), link(2, "eth0", "veth", peer=3, nsid=0)],
            addresses=[Address(2, socket.AF_INET, "10.244.3.5", 24, 0)],
            routes=[route(None, 0, gateway="10.244.3.1", oif=2)],
        ),
        GONE: NamespaceDump(links=[link(1, "lo", "loopback")]),
        LOCKED: NamespaceDump(error="cannot enter network namespace: Operation not permitted"),
    }
    return refs, dumps


def build() -> Host:
    refs, dumps = host_records()
    plan = Pairing(veth_ends(dumps))
    assert plan.questions() == {HOST: {POD}}
    matched, left = plan.match({(HOST, POD): 0})
    hidden = link(3, "eth0", "veth", peer=5, nsid=1)
    probes = [(e, hidden if e.index == 5 else None) for e in left]
    claims = [(POD, Attribution(pod="dev/demo-58465f467c-24bcq", netns_name="cni-1234"))]
    return assemble(refs, dumps, matched, probes, claims)


def test_labels_say_what_people_call_a_namespace() -> None:
    refs, _ = host_records()
    assert [label_of(r) for r in refs] == ["host", "cni-1234", "pid:900",
                                           "/run/docker/netns/5f2e"]
    assert label_of(NamespaceRef.make(42)) == "inode:42"


def test_veth_pair_ends_carry_addresses_masters_and_names() -> None:
    host = build()
    pair = next(p for p in host.veth_pairs if p.status == "ok")
    near, far = pair.ends
    assert (near.netns, near.ifname, near.master, near.addresses) == (
        "host", "veth09e8e743", "cni0", ())
    assert (far.netns, far.inode, far.ifname, far.addresses) == (
        "cni-1234", POD, "eth0", ("10.244.3.5/24",))
    eth0 = host.by_inode[POD].interface("eth0")
    assert eth0 is not None and eth0.peer is not None
    assert (eth0.peer.netns, eth0.peer.ifname) == ("host", "veth09e8e743")


def test_peers_that_are_hidden_or_gone_are_reported_as_such() -> None:
    host = build()
    by_name = {p.ends[0].ifname: p for p in host.veth_pairs}
    hidden = by_name["vethaway"]
    assert hidden.status == "peer-hidden" and hidden.netnsid == 6
    assert (hidden.ends[1].netns, hidden.ends[1].ifname, hidden.ends[1].addresses) == (
        None, "eth0", None)
    gone = by_name["vethdead"]
    assert gone.status == "peer-gone" and gone.ends[1].ifname is None
    iface = host.by_inode[HOST].interface("vethdead")
    assert iface is not None and iface.peer is not None and iface.peer.status == "peer-gone"


def test_namespaces_routes_holders_pods_and_errors() -> None:
    host = build()
    assert [ns.label for ns in host.namespaces] == [
        "host", "cni-1234", "/run/docker/netns/5f2e", "pid:900"]
    pod = host.by_inode[POD]
    assert pod.pod == "dev/demo-58465f467c-24bcq" and pod.name == "cni-1234"
    assert [(h.pid, h.comm) for h in pod.holders] == [(157, "nginx"), (6042, "curl")]
    assert [(r.dst, r.gateway, r.dev) for r in pod.routes] == [("default", "10.244.3.1", "eth0")]
    node = host.by_inode[HOST]
    assert [(r.dst, r.dev, r.nexthops) for r in node.routes] == [
        ("10.244.3.0/24", "cni0", ()), ("10.50.0.0/16", None, (("10.244.3.9", "cni0"),))]
    cni0 = node.interface("cni0")
    assert cni0 is not None and cni0.addresses == ("10.244.3.1/24", "fe80::1/64")
    locked = host.by_inode[LOCKED]
    assert locked.error is not None and "not permitted" in locked.error
    assert locked.interfaces == ()


def test_focus_keeps_one_namespace_and_what_it_connects_to() -> None:
    host = build()
    focused = host.focus(host.find("cni-1234")[0])
    assert [ns.label for ns in focused.namespaces] == ["host", "cni-1234"]
    assert len(focused.veth_pairs) == 1
    assert host.find("dev/demo-58465f467c-24bcq") == host.find(str(POD))
    assert host.find("pid:900")[0].inode == GONE


def test_veth_ends_are_taken_from_veths_only() -> None:
    _, dumps = host_records()
    assert {(e.inode, e.index) for e in veth_ends(dumps)} == {
        (HOST, 3), (HOST, 4), (HOST, 5), (POD, 2)}
    assert End(HOST, 3, 2, 0, "02:00:00:00:00:03") in veth_ends(dumps)  # with its MAC
