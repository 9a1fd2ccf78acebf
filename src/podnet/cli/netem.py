"""`podnet netem`: make a link slow, lossy or narrow (tc's netem and tbf), show it, undo it.

Thin: the target is resolved as `trace` resolves a source (pods, nodes, netns names, pid:N),
the shaping is `podnet.kernel.tc`'s, and the commands printed are the ones that ran.
"""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["netem_command"]


def _parse(kind: str, text: str | None, parse: Any) -> Any:
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{kind}") from None


@click.command("netem")
@click.argument("target")
@click.option("-n", "--namespace", default=None,
              help="Kubernetes namespace of a pod named without one.")
@click.option("-i", "--interface", default=None, metavar="IF",
              help="The interface to shape (default: the one its default route uses: a pod's "
                   "eth0, a node's uplink).")
@click.option("--delay", metavar="TIME", help="Added to every packet, e.g. 50ms (netem).")
@click.option("--jitter", metavar="TIME", help="+/- this much around the delay, e.g. 5ms.")
@click.option("--loss", metavar="PERCENT", help="Packets dropped at random, e.g. 1%.")
@click.option("--rate", metavar="RATE", help="Rate limit, e.g. 10mbit (tbf).")
@click.option("--ingress", is_flag=True,
              help="Shape packets arriving on the interface (through an ifb device), not the "
                   "ones leaving it.")
@click.option("--reset", is_flag=True, help="Remove podnet's shaping from the interface.")
@click.option("--dry-run", is_flag=True, help="Print the tc commands; change nothing.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def netem_command(target: str, namespace: str | None, interface: str | None, delay: str | None,
                  jitter: str | None, loss: str | None, rate: str | None, ingress: bool,
                  reset: bool, dry_run: bool, output: str) -> None:
    """Delay, drop or rate-limit the packets of one link, as `tc qdisc ... netem` would.

    TARGET is a pod (NAMESPACE/NAME or NAME), a node, or any network namespace `podnet
    inspect` finds. Without options, shows what the link has. Each call replaces podnet's
    earlier shaping of that direction; --reset removes all of it. A qdisc podnet did not add is
    never touched.

    \b
      podnet netem dev/demo-58465f467c-24bcq --delay 50ms --jitter 5ms
      podnet netem kind-worker --interface veth1a2b3c4d --loss 1%
      podnet netem jumpbox --rate 10mbit
      podnet netem jumpbox --reset
    """
    from podnet.inspect.build import inspect_host
    from podnet.kernel import tc
    from podnet.trace.target import resolve_link
    from podnet.trace.world import namespace_path

    link = resolve_link(inspect_host(), target, namespace, interface)
    path = namespace_path(link.namespace)
    changing = any(v is not None for v in (delay, jitter, loss, rate))
    if reset and changing:
        raise click.UsageError("--reset removes the shaping: give it without --delay, --jitter, "
                               "--loss or --rate")
    current = tc.read_link(path, link.ifname)
    if not reset and not changing:
        _show(link.text, current, output)
        return
    if reset:
        wanted = tc.LinkShaping(link.ifname)
    else:
        shape = tc.Shape(
            _parse("delay", delay, tc.parse_time) or 0.0,
            _parse("jitter", jitter, tc.parse_time) or 0.0,
            _parse("loss", loss, tc.parse_percent) or 0.0,
            _parse("rate", rate, tc.parse_rate),
        )
        problems = shape.problems()
        if problems:
            raise click.UsageError("; ".join(problems))
        kept_egress = current.egress if current.ours else tc.Shape()
        wanted = (tc.LinkShaping(link.ifname, kept_egress, shape) if ingress
                  else tc.LinkShaping(link.ifname, shape, current.ingress))
    if dry_run:
        commands = [*tc.reset_commands(current), *tc.commands(wanted)]
    elif reset:
        commands = tc.reset(path, link.ifname)
    else:
        commands = tc.apply(path, wanted)
    _report(link, wanted, commands, output, dry_run=dry_run)


def _command_text(link: Any, command: tuple[str, ...]) -> str:
    from podnet.trace.words import ns_exec

    ns = link.namespace
    tool, *args = command
    if ns.name and not ns.current:
        return " ".join([tool, "-n", ns.name, *args])
    return ns_exec(ns, " ".join(command))


def _report(link: Any, wanted: Any, commands: list[tuple[str, ...]], output: str, *,
            dry_run: bool) -> None:
    texts = [_command_text(link, c) for c in commands]
    if output == "json":
        click.echo(json.dumps({
            "link": link.ifname, "namespace": link.namespace.label,
            "egress": wanted.egress.words(), "ingress": wanted.ingress.words(),
            "commands": texts, "applied": not dry_run,
        }, indent=2))
        return
    what = []
    if not wanted.egress.empty:
        what.append(f"leaving: {wanted.egress.words()}")
    if not wanted.ingress.empty:
        what.append(f"arriving: {wanted.ingress.words()}")
    head = "; ".join(what) or ("podnet's shaping removed" if texts else
                               "no shaping of podnet's: nothing to do")
    click.echo(f"{link.text}: {head}" + (" (dry run: nothing changed)" if dry_run else ""))
    for text in texts:
        click.echo(f"  $ {text}")


def _show(text: str, current: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps({
            "link": current.ifname, "qdiscs": [q.kind for q in current.qdiscs],
            "summary": current.summary(), "egress": current.egress.words(),
            "ingress": current.ingress.words(), "ours": current.ours,
        }, indent=2))
        return
    state = "impaired" if current.impaired else "no impairment"
    click.echo(f"{text}: {current.summary()} ({state})")
