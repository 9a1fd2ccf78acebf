"""`podnet`: the entry point. Registers the command groups and turns errors into messages."""

from __future__ import annotations

import sys
from typing import ClassVar, NoReturn

import click

from podnet import __version__
from podnet.errors import PodnetError

__all__ = ["cli", "main"]


class _LazyGroup(click.Group):
    """Each command's module loads only when that command runs: `podnet inspect` never pays
    for the lab's planner, nor `podnet exec` for inspect."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "up": ("podnet.cli.lab", "up"),
        "down": ("podnet.cli.lab", "down"),
        "get": ("podnet.cli.get", "get"),
        "exec": ("podnet.cli.exec", "exec_command"),
        "node-exec": ("podnet.cli.exec", "node_exec"),
        "explain": ("podnet.cli.lab", "explain"),
        "delete": ("podnet.cli.delete", "delete_command"),
        "describe": ("podnet.cli.describe", "describe_command"),
        "logs": ("podnet.cli.logs", "logs_command"),
        "labs": ("podnet.cli.labs", "labs_group"),
        "check": ("podnet.cli.check", "check_command"),
        "inspect": ("podnet.cli.inspect", "inspect_command"),
        "cni": ("podnet.cli.cni", "cni_group"),
        "trace": ("podnet.cli.trace", "trace_command"),
        "graph": ("podnet.cli.graph", "graph_command"),
        "tour": ("podnet.cli.tour", "tour_command"),
        "capture": ("podnet.cli.capture", "capture_command"),
        "netem": ("podnet.cli.netem", "netem_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="podnet")
def cli() -> None:
    """podnet: Kubernetes pod networking, built from real namespaces, veth pairs and routes.

    \b
    lab:      up, get, describe, logs, exec, node-exec, explain, check, down, labs
    see:      trace, graph, tour (the lesson, step by step, on the live lab)
    wire:     capture (packets on a link), netem (delay, loss, rate on a link)
    inspect:  map every namespace and veth pair on this host to its pod or process
    cni:      install podnet as the CNI plugin of a real container runtime
    """


def fail(exc: PodnetError) -> NoReturn:
    click.echo(f"podnet: {exc.for_people()}", err=True)
    # `exec` of a missing command exits 127 and of a non-executable file 126, as a shell does.
    sys.exit(getattr(exc, "exit_status", 1))


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except PodnetError as exc:
        fail(exc)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
