"""`podnet`: the entry point. Registers the command groups and turns errors into messages.

What it adds to every command, in one place:

- a command that needs root says so in one line, exit status 1, before it reads anything (run
  without root, `inspect` showed empty namespaces, `tour` said no lab was up: wrong answers);
  (`--cluster`/`-C`/PODNET_CLUSTER is checked by `context.pick_cluster`, and again by every
  path builder of `podnet.state`, with the loader's own check of a cluster name);
- errors: podnet's own print their message and hint; an OSError, MemoryError or RecursionError
  from the machine or the input becomes one line that says what to do; anything else is a bug
  in podnet, and says so, with its traceback, for the report.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NoReturn

import click

from podnet import __version__
from podnet.errors import BUG_REPORT, NeedsRootError, PodnetError, kernel_error, os_error

__all__ = ["cli", "main"]

# Commands that need root, with why. `graph --from FILE` draws a file and needs nothing.
NEEDS_ROOT: dict[str, str] = {
    "up": "it builds network namespaces, veth pairs and routes",
    "down": "it removes the lab's namespaces and processes",
    "get": "it reads the lab's records in /run/podnet and its namespaces",
    "exec": "it enters a pod's namespaces",
    "node-exec": "it enters a node's namespaces",
    "check": "it sends packets from inside the pods' namespaces",
    "inspect": "it looks inside every network namespace of this host",
    "trace": "it reads the routing and nftables tables inside other namespaces",
    "graph": "it looks inside every network namespace of this host (--from FILE does not)",
    "tour": "it runs the lesson's commands inside the lab's namespaces",
    "delete": "it removes pods and Services from the lab's namespaces",
    "describe": "it reads the lab's records in /run/podnet and its namespaces",
    "logs": "it reads the containers' logs in /run/podnet",
    "capture": "it captures packets inside the lab's namespaces",
    "netem": "it changes the queueing disciplines of links inside the lab's namespaces",
}
_ROOT_EXEMPT: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "graph": lambda params: params.get("source") is not None,
}
_CAP_NET_ADMIN, _CAP_SYS_ADMIN = 12, 21


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
            return _guarded(command, name)
        return super().get_command(ctx, name)


def _guarded(command: click.Command, name: str) -> click.Command:
    """The command with, if it needs root, a check for root first. Done once per command
    object; `--help` still works for anyone."""
    if getattr(command, "_podnet_guarded", False):
        return command
    callback = command.callback
    if name in NEEDS_ROOT and callback is not None:

        @functools.wraps(callback)
        def checked(*args: Any, **kwargs: Any) -> Any:
            exempt = _ROOT_EXEMPT.get(name)
            if exempt is None or not exempt(kwargs):
                _require_root(name)
            return callback(*args, **kwargs)

        command.callback = checked
    command._podnet_guarded = True  # type: ignore[attr-defined]
    return command


def _effective_caps() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return -1 if os.geteuid() == 0 else 0  # no /proc: trust the user id


def _require_root(name: str) -> None:
    caps = _effective_caps()
    needed = (1 << _CAP_NET_ADMIN) | (1 << _CAP_SYS_ADMIN)
    if caps & needed == needed:
        return
    if os.geteuid() == 0:
        raise NeedsRootError(
            f"`podnet {name}` needs CAP_SYS_ADMIN and CAP_NET_ADMIN, which this root lacks "
            f"({NEEDS_ROOT[name]}): in a container, run it privileged"
        )
    raise NeedsRootError(f"`podnet {name}` needs root: {NEEDS_ROOT[name]} (run it with sudo)")


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


# What to do about an OSError that reached the top: the machine's state, not podnet's bug.
# (EEXIST, ENOENT, EPERM and EACCES get their hints from errors.kernel_error's classes.)
_OS_HINTS = {
    errno.ENOSPC: "the file system is full: free space there, then run the command again",
    errno.EDQUOT: "the disk quota is used up: free space, then run the command again",
    errno.EROFS: "the file system is read-only here",
    errno.EMFILE: "too many open files: raise the limit (`ulimit -n`)",
    errno.ENFILE: "the machine has too many open files: close some programs",
    errno.ENOMEM: "the machine is short of memory",
    errno.EADDRINUSE: "another program uses that address or port: pick another",
    errno.ENOTDIR: "a file stands where a directory is expected: remove it if it is not yours",
}


def _os_error(exc: OSError) -> PodnetError:
    hint = _OS_HINTS.get(exc.errno or 0, "")
    if exc.filename:
        return os_error(exc, str(exc.filename), hint=hint)
    return kernel_error(exc.errno, exc.strerror or str(exc), hint=hint)


def _bug(exc: BaseException) -> NoReturn:
    """An exception podnet did not expect: never hidden, never passed off as the user's."""
    import traceback  # only here: `podnet exec` starts without it

    traceback.print_exception(exc, file=sys.stderr)
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (in {os.path.basename(frame[0].filename)}:{frame[0].lineno})" if frame else ""
    click.echo(f"podnet: internal error: {type(exc).__name__}: {exc}{at}\n"
               f"  hint: this is a bug in podnet, not in your input: {BUG_REPORT}", err=True)
    sys.exit(70)  # EX_SOFTWARE


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
    except BrokenPipeError:
        # The reader went away (`podnet inspect | head`): nothing more to say, to anyone.
        # Python flushes stdout at exit: point it at /dev/null so that flush has nowhere to fail.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)  # as a shell reports a command ended by SIGPIPE
    except OSError as exc:
        fail(_os_error(exc))
    except MemoryError:
        fail(PodnetError("out of memory", hint="the input is too large for this machine, or the "
                         "machine is short of memory"))
    except RecursionError:
        fail(PodnetError("the input is nested too deeply to read",
                         hint="flatten it: podnet's files are a few levels deep"))
    except Exception as exc:
        _bug(exc)
