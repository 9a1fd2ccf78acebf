"""`podnet tour`: the veth-pairs lesson, step by step, on the running lab."""

from __future__ import annotations

import sys
import textwrap

import click

from podnet.cli.context import cluster_option, pick_cluster

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


def _next_key() -> bool:
    """Wait for one key: Enter (or space) goes on; q, Esc, Ctrl-C or Ctrl-D stops. No Enter is
    needed after q. The terminal leaves line mode before the prompt shows, and keeps what was
    typed ahead (TCSANOW, not a flush)."""
    import os
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        click.echo("Enter for the next step, q to stop ", nl=False)
        while True:
            try:
                key = os.read(fd, 1).decode(errors="replace")
            except KeyboardInterrupt:
                key = "q"
            if key in ("\r", "\n", " "):
                click.echo()
                return True
            if key.lower() in ("q", "\x1b", "\x03", "\x04", ""):
                click.echo("q")
                return False
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


@click.command("tour")
@click.option("--non-interactive", is_flag=True,
              help="Run every step without waiting; exit 1 if any output is not what the "
                   "lesson expects.")
@click.option("--list", "list_only", is_flag=True, help="List the steps, run nothing.")
@click.option("--step", "first", type=click.IntRange(min=1), default=1,
              help="Start at this step.")
@cluster_option
def tour_command(non_interactive: bool, list_only: bool, first: int,
                 cluster: str | None) -> None:
    """Walk the veth-pairs lesson on the running lab: loopback inside a pod, a pipe between
    two processes, the veth pairs of a node, a veth pair built by hand, and pods talking by
    address. Each step shows the command, runs it for real, checks the output, explains it,
    and draws it. Interactive by default: Enter goes on, q stops (no Enter needed).

    Exit status: 0 when every step ran as the lesson expects, 1 when a step differs, 2 when
    the tour was stopped before its end.
    """
    from podnet.tour.runner import TourSession, load_facts, prepare

    facts = load_facts(pick_cluster(cluster))
    steps = prepare(facts)
    if list_only:
        for r in steps:
            click.echo(f"{r.number:>3}  {r.step.section.split('. ', 1)[-1]:<45} {r.title}")
        return
    if first > len(steps):
        raise click.BadParameter(f"the tour has {len(steps)} steps: choose 1 to {len(steps)}",
                                 param_hint="--step")
    steps = [s for s in steps if s.number >= first]
    color = sys.stdout.isatty()
    interactive = not non_interactive and sys.stdin.isatty()
    failed = 0
    ran = 0
    total = len(steps) + first - 1
    with TourSession() as session:
        results = session.results(steps)
        for result in results:
            _show(result, total, color=color)
            ran += 1
            failed += not result.ok
            if interactive and result.ready.number < total and not _next_key():
                results.close()  # runs the cleanup steps still ahead
                break
    where = f"lab {facts['cluster']}"
    if ran < len(steps):
        last = steps[ran - 1].number
        click.echo(f"tour: stopped after step {last} of {total} on {where}: steps "
                   f"{last + 1}-{total} did not run"
                   + (f"; {failed} of {ran} run differ from the lesson" if failed else ""))
        sys.exit(2)
    verdict = ("as the lesson expects" if failed == 0
               else f"{failed} of {len(steps)} steps differ")
    click.echo(f"tour: {len(steps)} steps on {where}: {verdict}")
    if failed:
        sys.exit(1)
