"""`podnet check` and the machine-wide neighbour tables (the failure-path issue, item 13).

The kernel's ARP and NDP tables hold 1,024 entries for every namespace of the machine; a probe
leaves entries in each namespace its packets are resolved in, about 3 per pod and family, so a
check of 300 pods once took the machine's ARP table to 918 of 1,024. A lab whose check could
leave more than a quarter of that removes what each window of probes learned; a small one (the
lesson's) keeps its entries for `ip neigh` to show. The sandbox cannot read the machine's own
counters (/proc/net/stat lives in the machine's namespace), so this reads every namespace of
the lab instead.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.plan.neighbours import BUDGET, PER_POD
from tests.kernel.test_lab import podnet
from tests.kernel.topologies import web_lab

pytestmark = pytest.mark.kernel

CLUSTER = "nb"


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Path]:
    try:
        yield tmp_path / "lab.yaml"
    finally:
        podnet("down", "-q", "-C", CLUSTER, check=False)


def learned() -> dict[str, int]:
    """Per namespace of this sandbox, the neighbour entries that are not permanent."""
    names = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout
    out = {}
    for ns in json.loads(names or "[]"):
        text = subprocess.run(["ip", "-n", ns["name"], "-j", "neigh", "show", "nud", "all"],
                              capture_output=True, text=True, check=True).stdout
        out[ns["name"]] = sum("PERMANENT" not in e.get("state", [])
                              for e in json.loads(text or "[]"))
    return out


def test_a_large_labs_check_leaves_at_most_a_window_of_entries(topo: Path) -> None:
    topo.write_text(web_lab(CLUSTER, replicas=90))
    podnet("up", "-q", "-f", str(topo))
    result = podnet("check", "-C", CLUSTER, check=False)
    assert result.returncode == 0, result.stdout[-1500:]
    left = learned()
    pods = sum(name.startswith("cni-") for name in left)
    assert PER_POD * pods > BUDGET, "the lab is large enough to be tidied"
    # Without tidying, every pod keeps its gateway's and `lo`'s entries and its node one for it.
    assert sum(left.values()) <= BUDGET + 2 * PER_POD * 10, left
    assert sum(left.values()) < 2 * pods


def test_a_small_labs_check_keeps_its_entries_for_ip_neigh(topo: Path) -> None:
    topo.write_text(web_lab(CLUSTER, replicas=3))
    podnet("up", "-q", "-f", str(topo))
    podnet("check", "-C", CLUSTER)
    left = learned()
    pods = [name for name in left if name.startswith("cni-")]
    assert all(left[name] >= 1 for name in pods), left  # its gateway, resolved
