"""Golden tests for what the loader accepts with a warning (as Kubernetes does): every
`policies/<case>.yaml` loads, and its warnings, in file order, equal `policies/<case>.txt`.

    PODNET_UPDATE_GOLDEN=1 python -m pytest tests/golden/test_policy_warnings.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podnet.model import load_topology

HERE = Path(__file__).parent / "policies"
CASES = sorted(p.stem for p in HERE.glob("*.yaml"))
UPDATE = os.environ.get("PODNET_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("case", CASES)
def test_warnings_match_golden(case: str) -> None:
    spec = load_topology((HERE / f"{case}.yaml").read_text(), source=f"{case}.yaml")
    assert spec.warnings, "a warnings case that warns of nothing"
    actual = "".join(f"{w}\n" for w in spec.warnings)
    expected = HERE / f"{case}.txt"
    if UPDATE:
        expected.write_text(actual)
    assert actual == expected.read_text()
    for w in spec.warnings:
        assert w.where and w.field and w.message and w.hint, w
