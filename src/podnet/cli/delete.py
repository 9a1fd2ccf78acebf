"""`podnet delete`: remove objects from a running lab, as `kubectl delete` does.

    podnet delete -f policy.yaml                    # what the file names
    podnet delete networkpolicy -n dev deny-all     # one object by kind and name
    podnet delete namespace other                   # a namespace and everything in it

The lab converges on what is left, as `up --prune` would build it: pods' namespaces removed,
the nodes' rules rewritten, nothing else touched.
"""

from __future__ import annotations

import time

import click

from podnet.cli.context import cluster_option, require_lab
from podnet.errors import StateError
from podnet.plan.running import Named

__all__ = ["delete_command"]

KINDS = {
    "pod": "pods", "pods": "pods", "po": "pods",
    "deployment": "deployments", "deployments": "deployments", "deploy": "deployments",
    "service": "services", "services": "services", "svc": "services",
    "networkpolicy": "policies", "networkpolicies": "policies", "netpol": "policies",
    "namespace": "namespaces", "namespaces": "namespaces", "ns": "namespaces",
}


@click.command("delete")
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False),
              help="Delete every object this file names (- for standard input).")
@click.option("-n", "--namespace", default="default", show_default=True,
              help="Namespace of the object named on the command line.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@cluster_option
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
def delete_command(path: str | None, namespace: str, quiet: bool, cluster: str | None,
                   kind: str | None, names: tuple[str, ...]) -> None:
    """Delete pods, Deployments, Services, NetworkPolicies or namespaces from the lab."""
    record = require_lab(cluster)
    if path:
        from podnet.cli.lab import load_spec

        named = Named.in_spec(load_spec(path)[0], nodes=False)
    elif kind and names:
        named = _named(kind, names, namespace)
    else:
        raise click.UsageError("give -f FILE, or a kind and names (podnet delete pod web-0)")
    started = time.perf_counter()
    from podnet.apply.lab import delete as lab_delete
    from podnet.runtime.spawner import Spawner

    with Spawner() as spawner:
        outcome = lab_delete(record.layout.cluster, named, spawner=spawner)
    if not outcome.removed:
        raise StateError("nothing the lab has matches", hint="list the objects with "
                         "`podnet get pods,services,networkpolicies -A`")
    for gone in outcome.removed:
        click.echo(f"{gone} deleted")
    if not quiet:
        click.echo(f"lab {record.layout.cluster}: {len(outcome.steps)} steps in "
                   f"{time.perf_counter() - started:.2f}s", err=True)


def _named(kind: str, names: tuple[str, ...], namespace: str) -> Named:
    field = KINDS.get(kind.lower())
    if field is None:
        raise click.UsageError(f"cannot delete {kind!r}: podnet deletes "
                               "pods, deployments, services, networkpolicies and namespaces")
    keys = frozenset(n if field == "namespaces" or "/" in n else f"{namespace}/{n}"
                     for n in names)
    return Named(**{field: keys})
