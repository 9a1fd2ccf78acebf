"""The operations that build a lab, as typed values: one description that both acts and explains.

The planner emits these; `podnet.apply` executes each through `podnet.kernel` and `podnet
explain` prints each as the command a person would type to do the same by hand (`render`). A
step of the plan is a list of them, so what `up` does and what `explain` says cannot drift:
they are the same objects.

`ns` names where an operation acts: a named namespace (`kind-worker`, rendered `ip -n
kind-worker ...`), a namespace file (`/proc/123/ns/net`, rendered through `nsenter`), or None for
the namespace podnet runs in.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import ClassVar

from podnet.model.shape import Shape

__all__ = [
    "ALL_PODS",
    "OWNER_ALIAS",
    "AddAddress",
    "AddBridge",
    "AddRoute",
    "AddRule",
    "AddVeth",
    "AddVxlan",
    "CreateNetns",
    "DeleteFdb",
    "DeleteNeighbour",
    "DeleteNetns",
    "DeleteRoute",
    "DeleteRule",
    "DeleteUts",
    "LoadNftTable",
    "MakeDirs",
    "Op",
    "RemoveFiles",
    "SetBridgePort",
    "SetFdb",
    "SetHostname",
    "SetLink",
    "SetNeighbour",
    "SetSysctls",
    "ShapeLink",
    "StartContainer",
    "StopContainers",
    "WriteFile",
    "render_all",
]

# Every link podnet creates carries this ifalias: `down` and GC remove only what carries it.
OWNER_ALIAS = "podnet"
ALL_PODS = "*"  # StopContainers of every pod of the lab


def _tool(tool: str, ns: str | None) -> str:
    """`ip`, `ip -n NS` or `nsenter --net=PATH ip`: the same tool, aimed at `ns`."""
    if ns is None:
        return tool
    if ns.startswith("/"):
        return f"nsenter --net={ns} {tool}"
    return f"{tool} -n {ns}"


def _inside(ns: str | None) -> str:
    """The prefix that runs a command inside `ns`."""
    if ns is None:
        return ""
    if ns.startswith("/"):
        return f"nsenter --net={ns} "
    return f"ip netns exec {ns} "


def _ip(ns: str | None, family: int = 4) -> str:
    return _tool("ip", ns) + (" -6" if family == 6 else "")


class Op:
    """One change to the kernel or the files of a lab."""

    # Operations that netlink carries: consecutive ones in one namespace share a datagram.
    netlink: ClassVar[bool] = False

    def render(self) -> tuple[str, ...]:
        raise NotImplementedError

    def undo(self) -> Op | None:
        """What removes this operation's work when a later one fails (None: it goes with the
        namespace or file it lives in)."""
        return None


# --- namespaces, sysctls, files ----------------------------------------------------------------


@dataclass(frozen=True)
class CreateNetns(Op):
    name: str
    # Set inside the new namespace before anything else exists in it, so its first links
    # inherit them (net.ipv6.conf.default.*): no extra trip into the namespace.
    sysctls: tuple[tuple[str, str], ...] = ()

    def render(self) -> tuple[str, ...]:
        out = [f"ip netns add {self.name}"]
        if self.sysctls:
            out.append(SetSysctls(self.name, self.sysctls, optional=True).render()[0])
        return tuple(out)

    def undo(self) -> Op:
        return DeleteNetns(self.name)


@dataclass(frozen=True)
class DeleteNetns(Op):
    name: str

    def render(self) -> tuple[str, ...]:
        return (f"ip netns del {self.name}",)


@dataclass(frozen=True)
class SetSysctls(Op):
    ns: str | None
    settings: tuple[tuple[str, str], ...]
    optional: bool = False  # skip keys this kernel lacks (IPv6 off, no br_netfilter...)

    def render(self) -> tuple[str, ...]:
        flags = "-qew" if self.optional else "-qw"
        pairs = " ".join(f"{k}={v}" for k, v in self.settings)
        return (f"{_inside(self.ns)}sysctl {flags} {pairs}",)


@dataclass(frozen=True)
class SetHostname(Op):
    """A UTS namespace kept at `uts` (a bind-mounted file, like `ip netns`), named `hostname`."""

    uts: str
    hostname: str

    def render(self) -> tuple[str, ...]:
        return (f"touch {self.uts} && unshare --uts={self.uts} hostname {self.hostname}",)

    def undo(self) -> Op:
        return DeleteUts(self.uts)


@dataclass(frozen=True)
class DeleteUts(Op):
    uts: str

    def render(self) -> tuple[str, ...]:
        return (f"umount {self.uts}; rm -f {self.uts}",)


@dataclass(frozen=True)
class MakeDirs(Op):
    paths: tuple[str, ...]
    mode: int = 0o700

    def render(self) -> tuple[str, ...]:
        return (f"mkdir -p -m {self.mode:o} {' '.join(self.paths)}",)


@dataclass(frozen=True)
class WriteFile(Op):
    path: str
    text: str
    mode: int = 0o644
    new: bool = False  # made by this step: a rollback removes it

    def render(self) -> tuple[str, ...]:
        body = self.text if self.text.endswith("\n") or not self.text else self.text + "\n"
        out = (f"cat > {self.path} <<'EOF'", *body.rstrip("\n").split("\n"), "EOF")
        if self.mode != 0o644:
            return (*out, f"chmod {self.mode:o} {self.path}")
        return out

    def undo(self) -> Op | None:
        return RemoveFiles((self.path,)) if self.new else None


@dataclass(frozen=True)
class RemoveFiles(Op):
    paths: tuple[str, ...]

    def render(self) -> tuple[str, ...]:
        return (f"rm -f {' '.join(self.paths)}",)


# --- links ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddBridge(Op):
    ns: str | None
    name: str
    mtu: int
    # A host others share (the CNI plugin's): made only when missing, an existing one kept as
    # it is, as the reference bridge plugin does.
    exist_ok: bool = False
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        add = f"{_ip(self.ns)} link add {self.name} mtu {self.mtu} type bridge"
        if self.exist_ok:
            return (f"{_ip(self.ns)} link show {self.name} >/dev/null 2>&1 || {add}",)
        return (add,)


@dataclass(frozen=True)
class AddVeth(Op):
    """A veth pair whose peer is born in `peer_ns`, both ends with MTU `mtu` (and the host end
    with `mac`, when the plan must know it: a pod's neighbour entry may point at it), and one
    queue each way per end (the kernel's default, one per CPU cut down to one, waits for an RCU
    grace period per veth)."""

    ns: str | None
    name: str
    peer: str
    peer_ns: str
    mtu: int
    mac: str = ""
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        mac = f" address {self.mac}" if self.mac else ""
        queues = "numtxqueues 1 numrxqueues 1"
        return (
            f"{_ip(self.ns)} link add {self.name}{mac} mtu {self.mtu} {queues} type veth"
            f" peer name {self.peer} mtu {self.mtu} {queues} netns {self.peer_ns}",
        )


@dataclass(frozen=True)
class AddVxlan(Op):
    """flannel's VXLAN device: no learning, remotes come from our FDB entries."""

    ns: str | None
    name: str
    mac: str
    mtu: int
    vni: int
    local: str
    dev: str
    port: int
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        return (
            f"{_ip(self.ns)} link add {self.name} address {self.mac} mtu {self.mtu} type vxlan"
            f" id {self.vni} local {self.local} dev {self.dev} dstport {self.port} nolearning",
        )


@dataclass(frozen=True)
class SetLink(Op):
    """`ip link set DEV [master M] [alias podnet] up`: `owned` marks a link podnet made."""

    ns: str | None
    dev: str
    master: str | None = None
    owned: bool = False
    up: bool = True
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        master = f" master {self.master}" if self.master else ""
        alias = f" alias {OWNER_ALIAS}" if self.owned else ""
        state = " up" if self.up else " down"
        return (f"{_ip(self.ns)} link set {self.dev}{master}{alias}{state}",)


@dataclass(frozen=True)
class SetBridgePort(Op):
    ns: str | None
    dev: str
    hairpin: bool
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        state = "on" if self.hairpin else "off"
        return (f"{_tool('bridge', self.ns)} link set dev {self.dev} hairpin {state}",)


# --- addresses, routes, neighbours, rules ------------------------------------------------------


@dataclass(frozen=True)
class AddAddress(Op):
    ns: str | None
    dev: str
    cidr: str  # 10.244.1.5/24, fd00:10:244:1::5/64
    noprefixroute: bool = False
    nodad: bool = False  # IPv6: usable at once, no duplicate address detection
    replace: bool = False  # `ip addr replace`: there already is fine (a shared bridge's gateway)
    netlink: ClassVar[bool] = True

    @property
    def family(self) -> int:
        return 6 if ":" in self.cidr else 4

    @property
    def broadcast(self) -> bool:
        """IPv4 below /31 gets its broadcast address, as docker and kind set it."""
        return self.family == 4 and int(self.cidr.rsplit("/", 1)[1]) < 31

    def render(self) -> tuple[str, ...]:
        brd = " brd +" if self.broadcast else ""
        flags = (" noprefixroute" if self.noprefixroute else "") + (
            " nodad" if self.nodad else "")
        verb = "replace" if self.replace else "add"
        return (f"{_ip(self.ns)} addr {verb} {self.cidr}{brd} dev {self.dev}{flags}",)


@dataclass(frozen=True)
class AddRoute(Op):
    """`ip route add|replace DST [via GW] [dev DEV] [scope S] [src SRC] [onlink]`."""

    ns: str | None
    dst: str  # a CIDR, or "default"
    family: int = 4
    via: str | None = None
    dev: str | None = None
    scope: str | None = None  # "link" or "host"
    src: str | None = None
    onlink: bool = False
    replace: bool = False
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        verb = "replace" if self.replace else "add"
        parts = [f"{_ip(self.ns, self.family if self.dst == 'default' else 4)} route {verb}",
                 self.dst]
        if self.via:
            parts.append(f"via {self.via}")
        if self.dev:
            parts.append(f"dev {self.dev}")
        if self.scope:
            parts.append(f"scope {self.scope}")
        if self.src:
            parts.append(f"src {self.src}")
        if self.onlink:
            parts.append("onlink")
        return (" ".join(parts),)


@dataclass(frozen=True)
class DeleteRoute(Op):
    ns: str | None
    dst: str
    family: int = 4
    dev: str | None = None
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        dev = f" dev {self.dev}" if self.dev else ""
        return (f"{_ip(self.ns)} route del {self.dst}{dev}",)


@dataclass(frozen=True)
class SetNeighbour(Op):
    """A permanent neighbour entry: `ip neigh replace IP lladdr MAC dev DEV nud permanent`."""

    ns: str | None
    dev: str
    ip: str
    mac: str
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        return (f"{_ip(self.ns)} neigh replace {self.ip} lladdr {self.mac} dev {self.dev}"
                " nud permanent",)


@dataclass(frozen=True)
class DeleteNeighbour(Op):
    ns: str | None
    dev: str
    ip: str
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        return (f"{_ip(self.ns)} neigh del {self.ip} dev {self.dev}",)


@dataclass(frozen=True)
class SetFdb(Op):
    """`bridge fdb replace MAC dev DEV dst REMOTE self permanent`: frames for MAC go to the
    VXLAN endpoint REMOTE."""

    ns: str | None
    dev: str
    mac: str
    dst: str
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        return (f"{_tool('bridge', self.ns)} fdb replace {self.mac} dev {self.dev}"
                f" dst {self.dst} self permanent",)


@dataclass(frozen=True)
class DeleteFdb(Op):
    ns: str | None
    dev: str
    mac: str
    dst: str
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        return (f"{_tool('bridge', self.ns)} fdb del {self.mac} dev {self.dev}"
                f" dst {self.dst} self",)


@dataclass(frozen=True)
class AddRule(Op):
    """A policy routing rule: `ip rule add [from SRC] [to DST] lookup TABLE priority PRIO`."""

    ns: str | None
    priority: int
    table: str = "main"
    src: str | None = None
    dst: str | None = None
    family: int = 4
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        return (_rule(self, "add"),)

    def undo(self) -> Op:
        # A rule goes with no link: on a host that outlives the pod (the CNI plugin's) only
        # this removes it.
        return DeleteRule(self.ns, self.priority, self.table, self.src, self.dst, self.family)


@dataclass(frozen=True)
class DeleteRule(Op):
    """`ip rule del [from SRC] [to DST] lookup TABLE priority PRIO`."""

    ns: str | None
    priority: int
    table: str = "main"
    src: str | None = None
    dst: str | None = None
    family: int = 4
    netlink: ClassVar[bool] = True

    def render(self) -> tuple[str, ...]:
        return (_rule(self, "del"),)


def _rule(op: AddRule | DeleteRule, verb: str) -> str:
    sel = (f" from {op.src}" if op.src else "") + (f" to {op.dst}" if op.dst else "")
    return f"{_ip(op.ns, op.family)} rule {verb}{sel} lookup {op.table} priority {op.priority}"


# --- traffic control ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeLink(Op):
    """The tc shaping of one link (`podnet.kernel.tc`): `egress` shapes what leaves by it (its
    root qdisc: netem, tbf), `ingress` what arrives on it (redirected to an ifb device shaped
    the same way). `was_egress` and `was_ingress` are podnet's shaping of the link before (none
    for a new link), removed first; both empty here means "remove podnet's shaping"."""

    ns: str | None
    ifname: str
    egress: Shape = field(default_factory=Shape)
    ingress: Shape = field(default_factory=Shape)
    was_egress: Shape = field(default_factory=Shape)
    was_ingress: Shape = field(default_factory=Shape)

    def render(self) -> tuple[str, ...]:
        from podnet.kernel import tc

        wanted = tc.LinkShaping(self.ifname, self.egress, self.ingress)
        if self.ns is not None and self.ns.startswith("/"):  # tc -n takes a name only
            lines = [f"{_tool(c[0], self.ns)} {' '.join(c[1:])}" for c in tc.commands(wanted)]
        else:
            lines = tc.render(wanted, self.ns)
        return (*self._removal(), *lines)

    def _removal(self) -> list[str]:
        """What takes the earlier shaping away: `tc.reset_commands` of the link as it was."""
        from podnet.kernel import tc
        from podnet.kernel.tc_shape import HANDLE, INGRESS, ifb_name

        qdiscs = []
        if not self.was_egress.empty:
            qdiscs.append(tc.Qdisc("tbf", HANDLE, None))
        if not self.was_ingress.empty:
            qdiscs.append(tc.Qdisc("ingress", INGRESS, "ffff:fff1"))
        redirect = ifb_name(self.ifname) if not self.was_ingress.empty else None
        was = tc.LinkQdiscs(self.ifname, tuple(qdiscs), redirect)
        return [f"{_tool(c[0], self.ns)} {' '.join(c[1:])}" for c in tc.reset_commands(was)]

    def undo(self) -> Op:
        """Shape the link as it was (a new link: remove the ifb device the shaping made, which
        outlives a pod's namespace)."""
        return ShapeLink(self.ns, self.ifname, self.was_egress, self.was_ingress, self.egress,
                         self.ingress)


# --- nftables and processes ----------------------------------------------------------------


@dataclass(frozen=True)
class LoadNftTable(Op):
    """Make table `table` (`inet podnet`) in `ns` exactly `body`, in one atomic transaction.
    `script` is where the plan writes the transaction for people (a `WriteFile` before it)."""

    ns: str | None
    table: str
    body: str
    script: str

    def render(self) -> tuple[str, ...]:
        return (f"{_inside(self.ns)}nft -f {self.script}",)


@dataclass(frozen=True)
class StartContainer(Op):
    """One container of a pod: a process in the pod's network and UTS namespaces, with the
    pod's /etc/hosts. `argv` None with `ports`: podnet's HTTP responder; neither: a pause."""

    pod: str  # namespace/name: the record's key
    container: str
    netns: str  # the pod's network namespace (a name)
    uts: str | None
    hosts_file: str | None
    log: str
    node: str
    ip: str
    argv: tuple[str, ...] | None = None
    ports: tuple[int, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=())

    @property
    def identity(self) -> str:
        """namespace/name the container's pages answer as: the pod's key, or for a lab's own
        process (the internet's web server, keyed "internet") that key and the container."""
        return self.pod if "/" in self.pod else f"{self.pod}/{self.container}"

    def command(self) -> tuple[str, ...]:
        if self.argv:
            return self.argv
        if self.ports:
            ports = [arg for p in self.ports for arg in ("--port", str(p))]
            return ("python3", "-m", "podnet.runtime.responder", *ports, "--pod", self.identity,
                    "--node", self.node, "--ip", self.ip, "--container", self.container)
        return ("sleep", "infinity")

    def render(self) -> tuple[str, ...]:
        uts = f"nsenter --uts={self.uts} " if self.uts else ""
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in self.env)
        env = f"env {env}" if env else ""
        argv = " ".join(shlex.quote(a) for a in self.command())
        return (f"{_inside(self.netns)}{uts}{env}{argv} >>{self.log} 2>&1 &"
                f"  # container {self.container} of {self.pod}",)

    def undo(self) -> Op:
        return StopContainers(self.pod)


@dataclass(frozen=True)
class StopContainers(Op):
    """Stop the recorded processes of a pod (or, with "*", of the whole lab), by PID checked
    against its start time: never by name."""

    pod: str

    def render(self) -> tuple[str, ...]:
        what = ("every container of the lab" if self.pod == ALL_PODS
                else f"the containers of {self.pod}")
        return (f"# podnet stops {what}: the processes it recorded, by PID",)


def render_all(ops: tuple[Op, ...] | list[Op]) -> list[str]:
    return [line for op in ops for line in op.render()]
