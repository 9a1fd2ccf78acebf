"""`podnet trace --capture` on real labs (sandbox only): a tcpdump on each hop's interface while
the probe runs. The captures (pcaps read back with dpkt) hold the probe's packets on every hop,
with the addresses the walk says they have there: the Service address before the DNAT and the
backend's after it, the node's address after the masquerade, the VXLAN packet's outer
addresses on the underlay; and where a rule drops the probe, it is seen before and not after.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

PODNET = [sys.executable, "-m", "podnet"]
DEFAULT = Path(__file__).parents[2] / "src/podnet/model/default.yaml"


def podnet(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODNET, *args], capture_output=True, text=True, timeout=120,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"podnet {' '.join(args)} -> {done.returncode}\n{done.stderr}")
    return done


def trace(*args: str) -> tuple[int, dict[str, Any]]:
    done = podnet("trace", "--capture", "-o", "json", "--timeout", "1", *args, check=False)
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, json.loads(done.stdout)


def captured(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in report["forward"]["hops"] if h["seen"] is not None]


def lab(tmp: Path, routing: str = "static") -> Iterator[dict[str, Any]]:
    path = tmp / f"{routing}.yaml"
    path.write_text(DEFAULT.read_text().replace("routing: static  ", f"routing: {routing}  "))
    podnet("up", "-q", "-f", str(path))
    try:
        items = json.loads(podnet("get", "pods", "-o", "json").stdout)["items"]
        yield {p["metadata"]["name"]: p for p in items}
    finally:
        podnet("down", "-q")


@pytest.fixture(scope="module")
def ptp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from lab(tmp_path_factory.mktemp("wire"))


def test_a_service_is_seen_before_and_after_its_dnat(ptp: dict[str, Any]) -> None:
    code, report = trace("jumpbox", "demo.dev")
    assert code == 0, report["summary"]
    hops = report["forward"]["hops"]
    nat = next(i for i, h in enumerate(hops) if h["step"] == "nat")
    vip, backend = report["destination"].split()[2], report["forward"]["packet"]["dst"]
    seen = captured(report)
    assert seen and all(h["seen"] for h in seen), [h["wire"] for h in seen]
    for i, hop in enumerate(hops):
        if hop["seen"]:
            expected = vip if i < nat else backend
            assert f"> {expected}:80 [S]" in hop["wire"], (i, hop["wire"])
    assert hops[-1]["seen"] and hops[-1]["owner"] == next(
        f"pod dev/{n}" for n, p in ptp.items() if p["status"]["podIP"] == backend)


def test_egress_is_seen_with_the_nodes_address_after_the_masquerade(ptp: dict[str, Any]) -> None:
    code, report = trace("jumpbox", "internet")
    assert code == 0, report["summary"]
    hops = report["forward"]["hops"]
    masq = next(h for h in hops if h["step"] == "nat")
    node_ip = masq["text"].split(" -> ")[1].split()[0]
    pod_ip = ptp["jumpbox"]["status"]["podIP"]
    for hop in captured(report):  # the node masquerades as the packet leaves it
        assert hop["seen"], hop
        source = pod_ip if hop["owner"] == "pod default/jumpbox" else node_ip
        assert hop["wire"].split(": ", 1)[1].startswith(f"{source}:"), hop["wire"]


def test_a_drop_rule_is_proven_by_where_the_probe_stops(ptp: dict[str, Any]) -> None:
    node = ptp["jumpbox"]["spec"]["nodeName"]
    far = next(n for n, p in ptp.items() if n.startswith("demo-")
               and p["spec"]["nodeName"] != node)
    far_ip = ptp[far]["status"]["podIP"]
    nft = ["ip", "netns", "exec", node, "nft"]
    subprocess.run([*nft, "add", "table", "ip", "wire_test"], check=True)
    try:
        subprocess.run([*nft, "add", "chain", "ip", "wire_test", "blocker",
                        "{ type filter hook forward priority 0; policy accept; }"], check=True)
        subprocess.run([*nft, "add", "rule", "ip", "wire_test", "blocker", "ip", "daddr", far_ip,
                        "drop"], check=True)
        code, report = trace("jumpbox", f"dev/{far}", "--port", "80")
    finally:
        subprocess.run([*nft, "delete", "table", "ip", "wire_test"], check=True)
    assert code == 1
    hops = report["forward"]["hops"]
    broken = hops[report["forward"]["broken"]]
    assert broken["reason"] == "rule drop" and broken["seen"] is False
    assert broken["wire"].startswith(f"NOT seen on {broken['dev']}")
    assert hops[0]["seen"] is True and hops[0]["owner"] == "pod default/jumpbox"
    assert report["probe"]["outcome"] == "timeout"


def test_the_underlay_carries_the_probe_inside_vxlan(tmp_path: Path, ptp: dict[str, Any]) -> None:
    podnet("down", "-q")  # one lab at a time: both are called kind
    for pods in lab(tmp_path, "vxlan"):
        node = pods["jumpbox"]["spec"]["nodeName"]
        far = next(n for n, p in pods.items() if n.startswith("demo-")
                   and p["spec"]["nodeName"] != node)
        code, report = trace("jumpbox", f"dev/{far}", "--port", "80")
        assert code == 0, report["summary"]
        hops = report["forward"]["hops"]
        vx = next(i for i, h in enumerate(hops) if h["step"] == "vxlan")
        decap = next(i for i, h in enumerate(hops) if h["step"] == "decap")
        underlay = [h for h in hops[vx + 1 : decap] if h["seen"] is not None]
        assert underlay and all(h["seen"] and ", in VXLAN 172.18.0." in h["wire"]
                                for h in underlay), [h["wire"] for h in underlay]
        assert all(h["seen"] for h in captured(report))
    podnet("up", "-q", "-f", str(DEFAULT))  # the module's lab again, for its teardown
