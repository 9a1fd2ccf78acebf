"""`podnet tour`: the veth-pairs lesson, step by step, on the running lab."""

from __future__ import annotations

import sys
import textwrap

import click

__all__ = ["tour_command"]


def _rule(text: str) -> str:
    return f"── {text} " + "─" * max(4, 76 - len(text))


def _show(result: object, total: int, *, color: bool) -> None:
    from podnet.tour.runner import StepResult

    assert isinstance(result, StepResult)
    r = result.ready

    def style(text: str, **kw: object) -> str:
        return click.style(text, **kw) if color else text  # type: ignore[arg-type]

    click.echo(style(_rule(f"step {r.number}/{total} · {r.step.section}"), bold=True))
    click.echo(r.title)
    if r.diagram:
        click.echo(style(r.diagram, fg="cyan"))
    click.echo()
    for command in r.commands:
        click.echo(style(f"$ {command}", bold=True))
    lines = result.output.rstrip("\n").splitlines()
    limit = r.step.show_lines
    for line in lines[:limit] if limit else lines:
        click.echo(f"  {line}")
    if limit and len(lines) > limit:
        click.echo(f"  ... ({len(lines) - limit} more lines)")
    if result.ok:
        click.echo(style("✓ as the lesson expects", fg="green"))
    else:
        click.echo(style("✗ not what the lesson expects:", fg="red", bold=True))
        for problem in result.problems:
            click.echo(style(f"    {problem}", fg="red"))
    if r.explain:
        click.echo()
        click.echo(textwrap.fill(r.explain, width=88))
    click.echo()


@click.command("tour")
@click.option("--non-interactive", is_flag=True,
              help="Run every step without waiting; exit 1 if any output is not what the "
                   "lesson expects.")
@click.option("--list", "list_only", is_flag=True, help="List the steps, run nothing.")
@click.option("--step", "first", type=click.IntRange(min=1), default=1,
              help="Start at this step.")
@click.option("--cluster", "-C", envvar="PODNET_CLUSTER", default=None,
              help="Lab to tour (default: the one that is up).")
def tour_command(non_interactive: bool, list_only: bool, first: int,
                 cluster: str | None) -> None:
    """Walk the veth-pairs lesson on the running lab: loopback inside a pod, a pipe between
    two processes, the veth pairs of a node, a veth pair built by hand, and pods talking by
    address. Each step shows the command, runs it for real, checks the output, explains it,
    and draws it. Interactive by default: Enter goes on, q stops.
    """
    from podnet.tour.runner import TourSession, load_facts, prepare

    steps = prepare(load_facts(cluster))
    if list_only:
        for r in steps:
            click.echo(f"{r.number:>3}  {r.step.section.split('. ', 1)[-1]:<45} {r.title}")
        return
    steps = [s for s in steps if s.number >= first]
    color = sys.stdout.isatty()
    interactive = not non_interactive and sys.stdin.isatty()
    failed = 0
    total = len(steps) + first - 1
    with TourSession() as session:
        results = session.results(steps)
        for result in results:
            _show(result, total, color=color)
            failed += not result.ok
            if interactive and result.ready.number < total:
                answer = click.prompt("Enter for the next step, q to stop", default="",
                                      show_default=False, prompt_suffix=" ")
                if answer.strip().lower().startswith("q"):
                    results.close()  # runs the cleanup steps still ahead
                    break
    ran = "every step" if failed == 0 else f"{failed} of {len(steps)} steps differ"
    click.echo(f"tour: {len(steps)} steps on lab {load_facts(cluster)['cluster']}: "
               f"{'as the lesson expects' if failed == 0 else ran}")
    if failed:
        sys.exit(1)
