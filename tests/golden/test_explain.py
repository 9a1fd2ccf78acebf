"""Golden plan: the `ip` commands `podnet explain` prints for a small lab, compared whole."""

from __future__ import annotations

import os
from pathlib import Path

from podnet.model.types import ClusterSpec, ContainerSpec, NodeSpec, PodSpec
from podnet.plan.layout import layout
from podnet.plan.steps import Observed, plan

HERE = Path(__file__).parent / "plans"


def render(spec: ClusterSpec) -> str:
    out = []
    for step in plan(layout(spec), None, Observed()):
        out.append(f"# {step.action.value} {step.target}: {step.comment}")
        out.extend(step.commands)
    return "\n".join(out) + "\n"


def check(name: str, text: str) -> None:
    path = HERE / f"{name}.txt"
    if os.environ.get("PODNET_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text()


def small(attachment: str) -> ClusterSpec:
    return ClusterSpec(
        name="kind",
        nodes=(NodeSpec("kind-control-plane", "control-plane"), NodeSpec("kind-worker"),
               NodeSpec("kind-worker2")),
        pods=(PodSpec("jumpbox", containers=(ContainerSpec("nginx", ports=(80,)),)),
              PodSpec("client", "dev", containers=(ContainerSpec("c", ("sleep", "infinity")),))),
        attachment=attachment,  # type: ignore[arg-type]
    )


def test_ptp_plan() -> None:
    check("ptp", render(small("ptp")))


def test_bridge_plan() -> None:
    check("bridge", render(small("bridge")))
