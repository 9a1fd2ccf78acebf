"""Which namespaces a large lab's check tidies, and when (`plan.neighbours`), pure. The kernel
test (tests/kernel/test_check_neighbours.py) sends the probes and reads the tables."""

from __future__ import annotations

from podnet.model.loader import load_topology
from podnet.plan.check import Result, probes
from podnet.plan.layout import Layout, layout
from podnet.plan.neighbours import BUDGET, PER_POD, Window, estimate, tidy_needed
from tests.kernel.topologies import web_lab


def lab(replicas: int, family: str = "ipv4") -> Layout:
    return layout(load_topology(web_lab("nb", f"{{ipFamily: {family}}}", replicas=replicas)))


def passed(lay: Layout) -> list[Result]:
    return [Result(p, True, "", 0.0) for p in probes(lay, targets=3)]


def test_only_a_lab_that_could_fill_a_quarter_of_the_tables_is_tidied() -> None:
    small, large = lab(4), lab(90)
    assert estimate(small) == PER_POD * len(small.pods) and not tidy_needed(small)
    assert estimate(large) > BUDGET and tidy_needed(large)
    dual = lab(45, "dual")
    assert estimate(dual) == PER_POD * len(dual.pods) * 2 and tidy_needed(dual)


def test_a_window_closes_once_its_pods_may_hold_the_budget() -> None:
    lay = lab(90)
    window = Window(lay)
    hosts = {n.netns for n in lay.nodes} | {lay.fabric_netns}
    assert lay.internet is not None
    hosts.add(lay.internet.netns)
    tidied: list[set[str]] = []
    results = passed(lay)
    for start in range(0, len(results), 128):
        found = window.add(results[start : start + 128])
        if found:
            tidied.append(found)
            pods = found - hosts
            assert PER_POD * len(pods) >= BUDGET  # no earlier than the budget allows
            assert hosts <= found  # every node's entries for those pods go too
    assert tidied, "a 90-replica lab's check tidies at least once"
    every_pod = {p.netns for p in lay.pods}
    left = window.rest() - hosts
    assert set().union(*tidied) | left >= every_pod, "every pod probed is tidied or pending"


def test_the_answering_backend_of_a_service_is_tidied_too() -> None:
    lay = lab(90)
    service = next(p for p in probes(lay) if p.kind == "service")
    backend = lay.pods[-1]
    window = Window(lay)
    window.add([Result(service, True, "", 0.0, answered_by=backend.key)])
    assert backend.netns in window.rest()
