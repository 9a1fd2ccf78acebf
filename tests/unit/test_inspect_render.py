"""Rendering a hand-built host: the JSON contract, the interface line, tables and Mermaid."""

from __future__ import annotations

import json

from podnet.inspect.model import (
    Holder,
    Host,
    Interface,
    Namespace,
    PairEnd,
    PeerRef,
    Route,
    VethPair,
)
from podnet.render.inspect_mermaid import render_mermaid
from podnet.render.inspect_text import describe_interface, render_json, render_table, to_json

NODE, POD = 4026531840, 4026532300
CNI = "cni-c5b8b5eb-b4e7-1254-9712-68d51dd52926"


def lesson_host() -> Host:
    """The lesson's kind-worker: one pod behind veth09e8e743, plus a peer that is gone."""
    veth = Interface("veth09e8e743", 2, "veth", "fa:ab:66:67:11:24", 1500, "UP", True,
                     ("10.244.3.1/32",), None, PeerRef(CNI, "eth0", 3))
    dead = Interface("vethdead", 9, "veth", "0a:ae:57:83:1e:16", 1500, "UP", True, (), None,
                     PeerRef(None, None, 3, "peer-gone"))
    eth0 = Interface("eth0", 3, "veth", "4e:8e:5d:9d:1a:9d", 1500, "UP", True,
                     ("10.244.3.5/24", "fe80::4c8e:5dff:fe9d:1a9d/64"), None,
                     PeerRef("host", "veth09e8e743", 2))
    lo = Interface("lo", 1, "loopback", "00:00:00:00:00:00", 65536, "UNKNOWN", True,
                   ("127.0.0.1/8",), None)
    node = Namespace(NODE, "host", current=True, holders=(Holder(1, "systemd"),),
                     interfaces=(lo, veth, dead),
                     routes=(Route("10.244.3.5/32", 4, dev="veth09e8e743", scope="host"),))
    pod = Namespace(POD, CNI, name=CNI, paths=(f"/run/netns/{CNI}",),
                    holders=(Holder(157, "nginx", "ab" * 32), Holder(6042, "curl")),
                    pod="dev/demo-58465f467c-24bcq", interfaces=(lo, eth0),
                    routes=(Route("default", 4, gateway="10.244.3.1", dev="eth0",
                                  protocol="static"),))
    ok = VethPair((
        PairEnd("host", NODE, "veth09e8e743", 2, veth.mac, 1500, "UP", ("10.244.3.1/32",)),
        PairEnd(CNI, POD, "eth0", 3, eth0.mac, 1500, "UP", eth0.addresses),
    ))
    gone = VethPair((PairEnd("host", NODE, "vethdead", 9, dead.mac, 1500, "UP", ()),
                     PairEnd(None, None, None, 3, addresses=None, state=None)),
                    "peer-gone", 4)
    return Host((node, pod), (ok, gone))


def test_json_has_the_documented_keys() -> None:
    doc = json.loads(render_json(lesson_host()))
    assert set(doc) == {"schema", "namespaces", "veth_pairs"}
    ns = doc["namespaces"][1]
    assert set(ns) == {"name", "label", "inode", "current", "paths", "pids", "holders", "pod",
                       "node", "error", "interfaces", "routes"}
    assert (ns["name"], ns["inode"], ns["pids"], ns["pod"]) == (
        CNI, POD, [157, 6042], "dev/demo-58465f467c-24bcq")
    assert ns["holders"][0] == {"pid": 157, "comm": "nginx", "container_id": "ab" * 32}
    assert set(ns["interfaces"][1]) == {"ifname", "ifindex", "kind", "mac", "mtu", "state", "up",
                                        "addresses", "master", "peer"}
    assert ns["interfaces"][1]["peer"] == {"netns": "host", "ifname": "veth09e8e743",
                                           "ifindex": 2, "status": "ok"}
    assert ns["routes"][0] == {"dst": "default", "family": 4, "gateway": "10.244.3.1",
                               "dev": "eth0", "src": None, "scope": "universe",
                               "protocol": "static", "type": "unicast", "metric": None,
                               "nexthops": []}
    pair = doc["veth_pairs"][0]
    assert set(pair) == {"ends", "status", "netnsid"}
    assert set(pair["ends"][0]) == {"netns", "inode", "ifname", "ifindex", "mac", "mtu", "state",
                                    "addresses", "master"}
    assert [(e["netns"], e["ifname"]) for e in pair["ends"]] == [
        ("host", "veth09e8e743"), (CNI, "eth0")]
    gone = doc["veth_pairs"][1]
    assert gone["status"] == "peer-gone" and gone["ends"][1]["addresses"] is None
    assert to_json(lesson_host()) == doc


def test_the_interface_line_answers_which_pod_is_behind_a_veth() -> None:
    host = lesson_host()
    assert describe_interface(host, "veth09e8e743") == [
        f"veth09e8e743 in host: peer is eth0 in {CNI}, held by PIDs 157 (nginx) and "
        "6042 (curl), pod dev/demo-58465f467c-24bcq"
    ]
    assert describe_interface(host, "eth0") == [
        f"eth0 in {CNI} (pod dev/demo-58465f467c-24bcq): peer is veth09e8e743 in host"
    ]
    assert describe_interface(host, "vethdead") == [
        "vethdead in host: peer is gone (it was ifindex 3 in a namespace that no longer exists)"
    ]
    assert describe_interface(host, "lo")[0] == "lo in host: loopback, UNKNOWN, 127.0.0.1/8"
    assert describe_interface(host, "nope") == []


def test_table_shows_namespaces_and_pairs() -> None:
    text = render_table(lesson_host(), width=200)
    assert "network namespaces" in text and "veth pairs" in text
    pairs = text.split("veth pairs")[1].splitlines()
    row = next(line for line in pairs if "veth09e8e743" in line)
    assert row.split()[:2] == ["host", "veth09e8e743"] and CNI in row and "eth0" in row
    first = text.split("veth pairs")[0].splitlines()
    assert any(line.split()[:2] == [CNI, "pod"] and "157 (nginx)" in line for line in first)
    assert "pod dev/demo-58465f467c-24bcq" in text
    assert "(gone)" in text
    wide = render_table(lesson_host(), wide=True, width=200)
    assert "10.244.3.5/32 dev veth09e8e743 scope host" in wide
    assert "fe80::4c8e:5dff:fe9d:1a9d/64" in wide and "fe80::" not in text


def test_mermaid_draws_namespaces_as_subgraphs_and_pairs_as_links() -> None:
    text = render_mermaid(lesson_host())
    lines = text.splitlines()
    assert lines[0] == "graph LR"
    assert 'subgraph ns0["host"]' in lines
    assert f'subgraph ns1["{CNI}<br>pod dev/demo-58465f467c-24bcq"]' in lines
    assert "ns0_if2 ===|veth pair| ns1_if3" in lines
    assert '  ns1_p157(("PID 157<br>nginx"))' in lines
    assert "ns1_p157 --> ns1_if3" in lines
    assert any(line.startswith("ns0_if9 -.-|veth pair, peer-gone|") for line in lines)
    assert '(("lo' not in text  # every namespace has a loopback: not drawn
    assert lines.count("end") == 2
