"""The lab's commands: up, down, explain (get, exec and node-exec have modules of their own).

Thin: each parses its options and calls the library. Heavy imports (pyroute2 through apply, rich)
happen inside the commands that need them, so `podnet exec` starts in tens of milliseconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import click

from podnet.cli.context import cluster_option, pick_cluster, remember_current
from podnet.cli.progress import with_progress
from podnet.model.types import ClusterSpec

__all__ = ["down", "explain", "load_spec", "up"]


def load_spec(path: str | None) -> tuple[ClusterSpec, str]:
    from podnet.model.loader import default_topology, load_file

    if path == "-":  # kubectl's `-f -`: the manifests on standard input (bounded, as a file)
        spec, source = load_file("-"), ""
    elif path:
        spec, source = load_file(path), os.path.abspath(path)
    else:
        spec, source = default_topology(), ""
    for warning in spec.warnings:  # what Kubernetes accepts but warns about
        click.echo(f"podnet: warning: {warning}", err=True)
    return spec, source


@click.command()
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False), help="Topology file "
              "(kind Cluster + Pod/Deployment/Service/NetworkPolicy YAML; - for standard input). "
              "Default: the embedded lab.")
@click.option("--dry-run", is_flag=True, help="Print the steps, change nothing.")
@click.option("--prune", is_flag=True, help="Also remove the running lab's nodes, Pods, "
              "Deployments and Services that FILE does not name (as kubectl apply --prune).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def up(path: str | None, dry_run: bool, prune: bool, quiet: bool) -> None:
    """Build the lab (or converge a running one on FILE): namespaces, veths, routes, containers.

    On a running lab, what FILE does not name stays unless --prune is given; replicas of a
    Deployment FILE names follow its template and replica count.
    """
    started = time.perf_counter()
    spec, source = load_spec(path)
    if not spec.cluster_given:
        # Objects alone (a NetworkPolicy, a Pod): they go to the lab in use, as kubectl applies
        # a manifest to its current context.
        spec = replace(spec, name=pick_cluster(None))
    _warn_neighbours(spec)
    from podnet.runtime.spawner import Spawner

    # The spawner starts first: its process warms up on the other core while netlink work runs.
    with Spawner() as spawner:
        from podnet.apply.lab import up as lab_up

        outcome = with_progress(
            quiet or dry_run,
            "building lab " + spec.name,
            lambda progress: lab_up(
                spec, topology=source, spawner=spawner, progress=progress, dry_run=dry_run,
                prune=prune,
            ),
        )
    elapsed = time.perf_counter() - started
    if not dry_run:
        remember_current(spec.name)  # as kind makes a new cluster kubectl's context
    if outcome.kept:
        click.echo(f"kept what {path or 'the file'} does not name: {', '.join(outcome.kept)} "
                   "(podnet up --prune removes them)", err=True)
    if dry_run:
        for step in outcome.steps:
            click.echo(f"{step.action.value:<13} {step.target}  # {step.comment}")
        click.echo(_dry_run_summary(outcome.steps))
        return
    if not outcome.steps:
        click.echo(f"lab {spec.name} is up to date: nothing to do ({elapsed:.2f}s)")
        return
    pods = sum(1 for s in outcome.steps if s.action.value == "pod.create")
    lay = outcome.layout
    assert lay is not None
    click.echo(
        f"lab {spec.name} up: {len(lay.nodes)} nodes, {len(lay.pods)} pods "
        f"({pods} created, {len(outcome.steps)} steps) in {elapsed:.2f}s"
    )


def _warn_neighbours(spec: ClusterSpec) -> None:
    """Say so when the lab's pods could fill the machine-wide neighbour tables."""
    from podnet.kernel import sysctl
    from podnet.plan.neighbours import DEFAULT_LIMIT, warning

    limits: dict[int, int] = {}
    for family in spec.families:
        try:
            limits[family] = int(sysctl.read(None, f"net.ipv{family}.neigh.default.gc_thresh3"))
        except (OSError, ValueError):  # only the machine's own namespace has them
            limits[family] = DEFAULT_LIMIT
    text = warning(spec.name, len(spec.pods), spec.families, limits)
    if text is not None:
        click.echo(f"podnet: warning: {text}", err=True)


def _dry_run_summary(steps: list[Any]) -> str:
    """What the plan would create and remove, removals always named."""
    from podnet.plan.builds import Action

    def named(action: Action) -> list[str]:
        return [s.target for s in steps if s.action == action]

    created = named(Action.POD_CREATE)
    removed = named(Action.POD_DELETE)
    rebuilt = sorted(set(created) & set(removed))
    gone_pods = [p for p in removed if p not in rebuilt]
    gone_nodes = named(Action.NODE_DELETE)
    parts = [f"{len(steps)} steps: {len(created) - len(rebuilt)} pods to create"]
    if rebuilt:
        parts.append(f"{len(rebuilt)} to rebuild")
    parts.append(f"{len(gone_pods)} pods to remove" + (f" ({', '.join(gone_pods)})"
                                                       if gone_pods else ""))
    if gone_nodes:
        parts.append(f"{len(gone_nodes)} nodes to remove ({', '.join(gone_nodes)})")
    return "dry run: " + ", ".join(parts) + "; nothing was changed"


@click.command()
@cluster_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def down(cluster: str | None, quiet: bool) -> None:
    """Remove everything the lab made: containers, pods, nodes, the node network, its state."""
    from podnet.apply.lab import down as lab_down

    name = pick_cluster(cluster)
    started = time.perf_counter()
    outcome = with_progress(
        quiet, f"removing lab {name}", lambda progress: lab_down(name, progress=progress)
    )
    if outcome.layout is None:
        click.echo(f"lab {name}: nothing to remove")
        return
    for problem in outcome.problems:
        click.echo(f"podnet: left alone: {problem}", err=True)
    click.echo(
        f"lab {name} down: {len(outcome.layout.pods)} pods, {len(outcome.layout.nodes)} nodes "
        f"removed in {time.perf_counter() - started:.2f}s"
    )


# --- explain -----------------------------------------------------------------------------------


@click.command()
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False), help="Topology file.")
def explain(path: str | None) -> None:
    """Print the commands that build the same lab by hand, in order. Changes nothing.

    They are the very operations `up` executes, rendered as `ip`, `bridge`, `sysctl` and `nft`
    commands: `podnet explain | bash -e`, as root in an empty network namespace, builds the lab.
    """
    from podnet.plan.layout import layout
    from podnet.plan.steps import Observed, plan

    spec, _ = load_spec(path)
    lay = layout(spec)  # with the cluster DNS's pods, as `up` builds them
    steps = plan(lay, None, Observed())
    click.echo(f"# podnet explain: lab {lay.cluster}, {len(lay.nodes)} nodes, {len(lay.pods)} pods")
    for step in steps:
        click.echo(f"\n# {step.comment}")
        for command in step.commands:
            click.echo(command)
