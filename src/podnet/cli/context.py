"""Which lab a command acts on, as kubectl picks its context, and the lookups lab commands share.

In order: `--cluster`/`-C` or PODNET_CLUSTER; else the current lab (`podnet labs use NAME`, or
the last one `podnet up` built), while it is up; else the one lab that is up; else `kind`. The
current lab is remembered in /run/podnet/.current (a name no lab can have), so it goes with a
reboot, as the labs do.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import click

from podnet import state as lab_state
from podnet.errors import StateError
from podnet.model.naming import CLUSTER_NAME_MAX, bad_cluster_name
from podnet.plan.layout import STATE_ROOT

__all__ = [
    "CURRENT_FILE",
    "check_lab_name",
    "cluster_option",
    "complete_labs",
    "complete_namespaces",
    "complete_nodes",
    "complete_pods",
    "current_lab",
    "find_pod",
    "forget_current",
    "pick_cluster",
    "record_for",
    "remember_current",
    "require_lab",
]

CURRENT_FILE = f"{STATE_ROOT}/.current"


def check_lab_name(name: str) -> str:
    """`name` if it can name a lab; else an error before it is used in any path. The one place
    lab names from the command line are checked."""
    problem = bad_cluster_name(name)
    if problem:
        raise StateError(
            f"{name!r} cannot name a lab: {problem}",
            hint=f"lab names are DNS labels of at most {CLUSTER_NAME_MAX} characters "
            "(lower-case letters, digits, '-'), as in kind's `name:`",
        )
    return name


def complete_labs(ctx: click.Context, param: click.Parameter,
                   incomplete: str) -> list[click.shell_completion.CompletionItem]:
    from click.shell_completion import CompletionItem

    return [CompletionItem(n) for n in lab_state.list_labs() if n.startswith(incomplete)]


def record_for(ctx: click.Context) -> lab_state.LabState | None:
    """The lab a command line being completed names; None rather than an error."""
    try:
        return lab_state.load(pick_cluster(ctx.params.get("cluster")))
    except Exception:  # completion must never break the shell
        return None


def complete_pods(ctx: click.Context, param: click.Parameter,
                  incomplete: str) -> list[click.shell_completion.CompletionItem]:
    from click.shell_completion import CompletionItem

    record = record_for(ctx)
    namespace = ctx.params.get("namespace")
    if record is None:
        return []
    names = [p.name if namespace else (p.name if p.namespace == "default" else p.key)
             for p in record.layout.pods if namespace in (None, p.namespace)]
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


def complete_nodes(ctx: click.Context, param: click.Parameter,
                   incomplete: str) -> list[click.shell_completion.CompletionItem]:
    from click.shell_completion import CompletionItem

    record = record_for(ctx)
    names = [n.name for n in record.layout.nodes] if record else []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_namespaces(ctx: click.Context, param: click.Parameter,
                        incomplete: str) -> list[click.shell_completion.CompletionItem]:
    from click.shell_completion import CompletionItem

    record = record_for(ctx)
    names = sorted({p.namespace for p in record.layout.pods}
                   | {s.namespace for s in record.layout.services}) if record else []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


cluster_option = click.option(
    "--cluster", "-C", envvar="PODNET_CLUSTER", default=None, shell_complete=complete_labs,
    help="Lab to act on (default: the current one, see `podnet labs`).",
)


def current_lab() -> str | None:
    """The remembered lab, whether or not it is up (None if none, or the file is not ours)."""
    try:
        fd = os.open(CURRENT_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd) as fh:
        name = fh.read(64).strip()
    return name if name and bad_cluster_name(name) is None else None


def remember_current(name: str) -> None:
    """Make `name` the current lab (atomically, 0600, never through a symlink)."""
    check_lab_name(name)
    os.makedirs(STATE_ROOT, mode=0o700, exist_ok=True)
    tmp = f"{CURRENT_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(name + "\n")
        os.replace(tmp, CURRENT_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def forget_current() -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(CURRENT_FILE)


def pick_cluster(name: str | None) -> str:
    if name:
        return check_lab_name(name)
    labs = lab_state.list_labs()
    current = current_lab()
    if current is not None and current in labs:
        return current
    if len(labs) > 1:
        raise StateError(
            f"{len(labs)} labs are up ({', '.join(labs)}) and none is current",
            hint="choose one with `podnet labs use NAME`, or --cluster NAME (PODNET_CLUSTER)",
        )
    return labs[0] if labs else "kind"


def require_lab(cluster: str | None) -> lab_state.LabState:
    name = pick_cluster(cluster)
    record = lab_state.load(name)
    if record is None:
        labs = lab_state.list_labs()
        hint = (f"labs that are up: {', '.join(labs)}" if labs
                else "bring it up with `podnet up`")
        raise StateError(f"no lab named {name} is up", hint=hint)
    return record


def find_pod(record: lab_state.LabState, name: str, namespace: str | None) -> Any:
    """The pod called NAME, pod/NAME or NAMESPACE/NAME (in `namespace` when given)."""
    prefix, _, rest = name.rpartition("/")
    if prefix and prefix not in ("pod", "pods", "po"):
        namespace = namespace or prefix
    name = rest
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
