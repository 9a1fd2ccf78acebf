"""Golden tests for the topology loader's error messages: every `topologies/<case>.yaml` must
fail to load, and the whole text of the error must equal `topologies/<case>.txt`.

After a deliberate change of wording, rewrite the expected files and review the diff:

    PODNET_UPDATE_GOLDEN=1 python -m pytest tests/golden/test_topology_errors.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podnet.errors import TopologyError
from podnet.model import load_topology

HERE = Path(__file__).parent / "topologies"
CASES = sorted(p.stem for p in HERE.glob("*.yaml"))
UPDATE = os.environ.get("PODNET_UPDATE_GOLDEN") == "1"


def error_text(case: str) -> str:
    text = (HERE / f"{case}.yaml").read_text()
    with pytest.raises(TopologyError) as info:
        load_topology(text, source=f"{case}.yaml")
    return f"{info.value}\n"


@pytest.mark.parametrize("case", CASES)
def test_error_text_matches_golden(case: str) -> None:
    actual = error_text(case)
    expected_file = HERE / f"{case}.txt"
    if UPDATE:
        expected_file.write_text(actual)
    assert expected_file.exists(), f"no {expected_file.name}: run with PODNET_UPDATE_GOLDEN=1"
    assert actual == expected_file.read_text()


@pytest.mark.parametrize("case", CASES)
def test_every_problem_has_a_hint(case: str) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology((HERE / f"{case}.yaml").read_text(), source=case)
    assert info.value.problems
    for problem in info.value.problems:
        assert problem.where and problem.field and problem.message and problem.hint, problem


def test_every_expected_file_has_an_input() -> None:
    orphans = sorted(p.name for p in HERE.glob("*.txt") if p.stem not in CASES)
    assert orphans == []


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(TopologyError) as info:
        load_topology((HERE / "many-problems.yaml").read_text())
    fields = [(p.where.split(" (")[0], p.field) for p in info.value.problems]
    assert ("document 1", "name") in fields
    assert ("document 1", "networking.serviceSubnet") in fields
    assert ("document 2", "spec.nodeName") in fields
    assert ("document 3", "spec.replicas") in fields
    assert ("document 4", "spec.ports[0].nodePort") in fields
    assert ("document 5", "kind") in fields
    assert len(info.value.problems) >= 10
