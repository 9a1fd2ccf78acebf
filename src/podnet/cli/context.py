"""Which lab a command acts on, and the lookups every lab command shares.

`--cluster`/`-C` (or PODNET_CLUSTER) names the lab; without it, the one lab that is up.
"""

from __future__ import annotations

from typing import Any

import click

from podnet import state as lab_state
from podnet.errors import StateError

__all__ = ["cluster_option", "find_pod", "pick_cluster", "require_lab"]

cluster_option = click.option(
    "--cluster", "-C", envvar="PODNET_CLUSTER", default=None,
    help="Lab to act on (default: the one that is up, else 'kind').",
)


def pick_cluster(name: str | None) -> str:
    if name:
        return name
    labs = lab_state.list_labs()
    if len(labs) > 1:
        raise StateError(
            f"{len(labs)} labs are up ({', '.join(labs)})",
            hint="choose one with --cluster NAME (or PODNET_CLUSTER)",
        )
    return labs[0] if labs else "kind"


def require_lab(cluster: str | None) -> lab_state.LabState:
    name = pick_cluster(cluster)
    record = lab_state.load(name)
    if record is None:
        raise StateError(f"no lab named {name} is up", hint="bring it up with `podnet up`")
    return record


def find_pod(record: lab_state.LabState, name: str, namespace: str | None) -> Any:
    name = name.rsplit("/", maxsplit=1)[-1]
    matches = [p for p in record.layout.pods
               if p.name == name and (namespace is None or p.namespace == namespace)]
    if namespace is None and len(matches) > 1:
        raise StateError(f"pod {name} exists in several namespaces",
                         hint="choose one with -n NAMESPACE")
    if not matches:
        where = f" in namespace {namespace}" if namespace else ""
        hint = "list pods with `podnet get pods`"
        if namespace is None and any(p.name == name for p in record.layout.pods):
            hint = "add -n NAMESPACE"
        raise StateError(f"pod {name} not found{where}", hint=hint)
    return matches[0]
