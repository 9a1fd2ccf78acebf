"""`podnet inspect`: map every namespace and veth pair on this host to its pod or process.

Start-up matters here (a script may call it in a loop): the command imports only click at load
time; the discovery code, and rich for tables, load when the command runs.
"""

from __future__ import annotations

import gc
import sys

import click

from podnet.cli.progress import spinner
from podnet.errors import ObjectMissingError, PodnetError

__all__ = ["inspect_command"]


@click.command("inspect")
@click.option("--netns", "netns", metavar="NAME",
              help="Only this namespace and what its veths connect to (a name, host, pid:N, "
                   "an inode, a pod as NAMESPACE/NAME, or a node).")
@click.option("--interface", "interface", metavar="IFNAME",
              help="One line per interface of this name: its peer, and who is behind it.")
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json", "mermaid"]),
              default="table", show_default=True, help="Output format.")
def inspect_command(netns: str | None, interface: str | None, output: str) -> None:
    """Every network namespace on this host, its interfaces and routes, and each veth pair
    joined end to end, with the processes and pods behind them. Read-only.

    \b
      podnet inspect
      podnet inspect -o json
      podnet inspect --netns cni-1234...
      podnet inspect --interface veth09e8e743
    """
    from podnet.inspect.build import inspect_host  # loads the netlink layer

    # A one-shot command that builds some 10^5 small objects and frees none before it exits:
    # the cyclic collector's passes would find nothing, yet cost a third of a 1,000-pod run.
    gc.disable()
    with spinner("reading this host's namespaces"):
        host = inspect_host()
    if netns is not None:
        found = host.find(netns)
        if not found:
            known = ", ".join(ns.label for ns in host.namespaces[:8])
            raise ObjectMissingError(
                f"no network namespace matches {netns!r}",
                hint=f"use a name, host, pid:N, an inode or a pod; this host has: {known}"
                + (", ..." if len(host.namespaces) > 8 else ""),
            )
        host = host.focus(found[0])

    if interface is not None:
        from podnet.render.inspect_text import describe_interface

        lines = describe_interface(host, interface)
        if not lines:
            raise ObjectMissingError(
                f"no interface named {interface!r}"
                + (f" in {netns}" if netns else " in any namespace podnet can see"),
                hint="`podnet inspect -o wide` lists every interface",
            )
        click.echo("\n".join(lines))
        return

    if output == "json":
        from podnet.render.inspect_text import render_json

        # Indented for people at a terminal; one line in a pipe (the C encoder: 4x faster).
        sys.stdout.write(render_json(host, indent=2 if sys.stdout.isatty() else None) + "\n")
    elif output == "mermaid":
        from podnet.render.inspect_mermaid import render_mermaid

        click.echo(render_mermaid(host))
    else:
        import shutil

        from podnet.render.inspect_text import render_table

        tty = sys.stdout.isatty()
        width = shutil.get_terminal_size().columns if tty else 200
        click.echo(render_table(host, wide=output == "wide", width=width, color=tty))


def _main() -> None:
    """`python -m podnet.cli.inspect`: the command alone, with podnet's error messages."""
    try:
        inspect_command.main(standalone_mode=False)
    except PodnetError as exc:
        click.echo(f"podnet: {exc.for_people()}", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    _main()
