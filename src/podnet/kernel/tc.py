"""Traffic control: the one place podnet drives `tc`. A link gets a shaping (delay, jitter and
loss through netem; a rate limit through tbf), which renders as the `tc` commands a person would
type, and those same commands are what runs: `explain` and `netem --dry-run` print exactly what
`apply` executes, so the two cannot drift.

    egress   packets leaving by the interface: its root qdisc (netem, with tbf under it for a
             rate; tbf alone for a rate only)
    ingress  packets arriving on it: an ingress qdisc redirects them to an ifb device, whose root
             qdisc shapes them (what the CNI bandwidth plugin does for a pod's egress-bandwidth)

Ownership: podnet's root qdiscs carry the handle `70d:`, its ifb devices the alias `podnet`;
`reset` removes only those and refuses a qdisc someone else added. Reading a link (`read`,
`read_link`) describes any qdisc, podnet's or not, for `trace`, `get links` and `graph`.

Kernels differ: a kernel without sch_netem (this project's own VMs have none) refuses delay,
jitter and loss with a clear error; rates still work through tbf.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from podnet.errors import KernelError, ObjectExistsError, ObjectMissingError
from podnet.kernel.tc_read import LinkQdiscs, Qdisc, check_ifname, read, read_link, summaries
from podnet.kernel.tc_shape import (
    HANDLE,
    INGRESS,
    LinkShaping,
    Shape,
    format_rate,
    format_time,
    ifb_name,
    parse_percent,
    parse_rate,
    parse_time,
    rate_from_quantity,
)

__all__ = [
    "HANDLE",
    "Command",
    "LinkQdiscs",
    "LinkShaping",
    "Qdisc",
    "Shape",
    "apply",
    "commands",
    "format_rate",
    "format_time",
    "ifb_name",
    "parse_percent",
    "parse_rate",
    "parse_time",
    "rate_from_quantity",
    "read",
    "read_link",
    "render",
    "reset",
    "reset_commands",
    "run",
    "summaries",
]

_CHILD = "70e:"
_IFB_ALIAS = "podnet"
# What a link has when nobody shaped it: replacing these takes nothing from anyone.
_DEFAULT_KINDS = frozenset({"noqueue", "pfifo_fast", "mq", "fq_codel", "noop", "pfifo", "bfifo",
                            "fq"})
_MIN_BURST = 16 * 1024  # bytes: above any MTU, so tbf never drops a packet for its size
_TBF_LATENCY = "50ms"  # how long a packet may queue behind the rate limit before tbf drops it

Command = tuple[str, ...]  # ("tc", "qdisc", "add", ...): what runs, and what people read


# --- the commands ------------------------------------------------------------------------------


def _netem_args(shape: Shape) -> list[str]:
    args = ["netem"]
    if shape.delay_ms:
        args += ["delay", format_time(shape.delay_ms)]
        if shape.jitter_ms:
            args.append(format_time(shape.jitter_ms))
    if shape.loss_pct:
        args += ["loss", f"{shape.loss_pct:g}%"]
    return args


def _tbf_args(rate_bps: int) -> list[str]:
    burst = max(_MIN_BURST, rate_bps // 8 // 100)  # 10 ms worth of the rate
    return ["tbf", "rate", format_rate(rate_bps), "burst", str(burst), "latency", _TBF_LATENCY]


def _root(dev: str, shape: Shape) -> list[Command]:
    """The root qdisc(s) of `dev` for `shape`: netem with tbf under it, or tbf alone."""
    head = ("tc", "qdisc", "add", "dev", dev, "root", "handle", HANDLE)
    if shape.netem:
        out = [(*head, *_netem_args(shape))]
        if shape.rate_bps is not None:
            out.append(("tc", "qdisc", "add", "dev", dev, "parent", HANDLE + "1", "handle",
                        _CHILD, *_tbf_args(shape.rate_bps)))
        return out
    if shape.rate_bps is not None:
        return [(*head, *_tbf_args(shape.rate_bps))]
    return []


def commands(shaping: LinkShaping) -> list[Command]:
    """The commands that give a link with no shaping of podnet's this shaping. Pure."""
    dev = check_ifname(shaping.ifname)
    for shape in (shaping.egress, shaping.ingress):
        problems = shape.problems()
        if problems:
            raise ValueError("; ".join(problems))
    out = _root(dev, shaping.egress)
    if not shaping.ingress.empty:
        ifb = ifb_name(dev)
        out += [
            ("ip", "link", "add", ifb, "type", "ifb"),
            ("ip", "link", "set", "dev", ifb, "alias", _IFB_ALIAS, "up"),
            ("tc", "qdisc", "add", "dev", dev, "handle", INGRESS, "ingress"),
            ("tc", "filter", "add", "dev", dev, "parent", INGRESS, "protocol", "all", "u32",
             "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb),
            *_root(ifb, shaping.ingress),
        ]
    return out


def render(shaping: LinkShaping, netns: str | None = None) -> list[str]:
    """The commands as a person types them (`tc -n NETNS ...` for a named namespace): what
    `explain` prints. Pure."""
    return [_text(c, netns) for c in commands(shaping)]


def _text(command: Command, netns: str | None) -> str:
    tool, *args = command
    return " ".join([tool, *(("-n", netns) if netns else ()), *args])


def reset_commands(link: LinkQdiscs) -> list[Command]:
    """The commands that remove podnet's shaping from a link as it is now (none if it has none).
    Raises ObjectExistsError for a qdisc podnet did not add."""
    _refuse_foreign(link)
    out: list[Command] = []
    if link.root is not None and link.root.handle == HANDLE:
        out.append(("tc", "qdisc", "del", "dev", link.ifname, "root"))
    if link.ingress_qdisc is not None:
        out.append(("tc", "qdisc", "del", "dev", link.ifname, "ingress"))
    if link.redirect is not None:
        out.append(("ip", "link", "del", link.redirect))
    return out


def _refuse_foreign(link: LinkQdiscs) -> None:
    root = link.root
    if root is not None and root.handle != HANDLE and root.kind not in _DEFAULT_KINDS:
        raise ObjectExistsError(
            f"{link.ifname} has a {root.kind} qdisc (handle {root.handle}) that podnet did not "
            "add", errno=None,
            hint=f"see it with `tc qdisc show dev {link.ifname}`; remove it with `tc qdisc del "
            f"dev {link.ifname} root` if it is stale, then try again")
    if link.ingress_qdisc is not None and link.redirect != ifb_name(link.ifname):
        raise ObjectExistsError(
            f"{link.ifname} has an ingress qdisc that podnet did not add",
            hint=f"see it with `tc filter show dev {link.ifname} ingress`; remove it with "
            f"`tc qdisc del dev {link.ifname} ingress` if it is stale")


# --- changing a link --------------------------------------------------------------------------


def _run(cmds: Sequence[Command], path: str | None) -> None:
    """Run the commands in order, consecutive ones of one tool in one `-batch` process."""
    from podnet.kernel.nsexec import find_tool, run_in

    groups: list[tuple[str, list[Command]]] = []
    for cmd in cmds:
        if groups and groups[-1][0] == cmd[0]:
            groups[-1][1].append(cmd)
        else:
            groups.append((cmd[0], [cmd]))
    for tool, batch in groups:
        script = "".join(" ".join(c[1:]) + "\n" for c in batch)
        done = run_in([find_tool(tool, "iproute2"), "-batch", "-"], path, stdin=script,
                      timeout=30)
        if done.code != 0:
            raise _tc_error(tool, batch, done.stderr)


def _tc_error(tool: str, batch: Sequence[Command], stderr: str) -> KernelError:
    failed = re.search(r"Command failed -:(\d+)", stderr)
    index = int(failed.group(1)) - 1 if failed else 0
    command = " ".join(batch[min(index, len(batch) - 1)])
    message = stderr.split("\n", maxsplit=1)[0].removeprefix("Error: ").strip() or f"{tool} failed"
    if "qdisc kind is unknown" in stderr:
        kind = next((w for w in ("netem", "tbf", "ingress") if w in command.split()), "that")
        return KernelError(
            f"this kernel has no {kind} qdisc (sch_{kind}): `{command}` was refused",
            hint=("delay, jitter and loss need netem: `modprobe sch_netem`, or a kernel built "
                  "with CONFIG_NET_SCH_NETEM; a --rate alone works through tbf")
            if kind == "netem" else f"load it with `modprobe sch_{kind}`")
    if "Cannot find device" in stderr:
        return ObjectMissingError(f"`{command}`: no such interface",
                                  hint="`podnet inspect` lists the interfaces")
    return KernelError(f"`{command}`: {message}")


def apply(path: str | None, shaping: LinkShaping) -> list[Command]:
    """Give the link `shaping.ifname` in the namespace at `path` this shaping, replacing
    podnet's earlier one; returns the commands that ran. When the kernel refuses part of it,
    the earlier shaping is put back and the error raised. An empty shaping is a reset."""
    wanted = commands(shaping)  # validates before anything changes
    current = read_link(path, shaping.ifname)
    undo = reset_commands(current)
    _run(undo, path)
    try:
        _run(wanted, path)
    except KernelError:
        _run(reset_commands(read_link(path, shaping.ifname)), path)
        if undo:  # podnet had shaped the link: give it back what it had
            _run(commands(LinkShaping(shaping.ifname, current.egress, current.ingress)), path)
        raise
    return [*undo, *wanted]


def run(path: str | None, cmds: Sequence[Command]) -> None:
    """Run `commands()` of links that have no shaping yet, as they are, in the namespace at
    `path` (several links' together: all their `ip` commands, then all their `tc` ones, is two
    processes). KernelError names the command the kernel refused."""
    ordered = [c for c in cmds if c[0] == "ip"] + [c for c in cmds if c[0] != "ip"]
    _run(ordered, path)


def reset(path: str | None, ifname: str) -> list[Command]:
    """Remove podnet's shaping from the link (nothing to do is not an error); the commands run."""
    undo = reset_commands(read_link(path, check_ifname(ifname)))
    _run(undo, path)
    return undo
