"""Executes planned operations (`podnet.plan.ops`) through `podnet.kernel`: one handler per kind.

The operations are the same objects `podnet explain` prints, so what runs here is what the
explanation says. Speed comes from how they run, not from what they are:

- Consecutive netlink operations in one namespace go out in one datagram (`kernel.batch`; each
  operation's message is made by `netlink_ops`): a pod's veth, addresses and routes cost one
  round trip per side.
- Interfaces are addressed by index: the applier chooses the index of every link it creates, so
  later messages of the same datagram can name it, and reads a namespace's links at most once.
  In a namespace others change at the same time (`shared`: the real host under the CNI plugin,
  where concurrent ADDs create links) nothing is dumped or chosen: the kernel numbers each new
  link, and the applier asks for that one link (and any other it names) by name.
- nftables transactions and containers start at once and are waited for at the end (`finish`),
  while the next pods are built. The tc shaping of links this run made waits for `finish` too,
  and goes out in two processes per namespace, whatever the number of links.

Every operation that took effect is kept in `done`, in order, so a failure can be undone
(`Op.undo`) from the newest back. Namespaces are podnet's only when their inode is the one the
record holds: a namespace of the same name made by someone else is never replaced or deleted.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Collection, Iterable
from typing import Any

from podnet import state as lab_state
from podnet.apply.netlink_ops import ENCODERS, Pending
from podnet.errors import KernelError, ObjectExistsError, ObjectMissingError, ProcessError
from podnet.kernel import netns, nftables, sysctl, tc
from podnet.kernel.netlink import Netlink
from podnet.plan import ops as o
from podnet.runtime import pod as pod_files
from podnet.runtime.container import SpawnRequest
from podnet.runtime.procs import ProcessRef, stop
from podnet.runtime.spawner import Spawner

__all__ = ["Applier", "FailedOpError"]


class FailedOpError(KernelError):
    """An operation the kernel refused, with the operation itself (for the rollback's report)."""

    def __init__(self, cause: KernelError, op: o.Op) -> None:
        super().__init__(cause.message, errno=cause.errno, hint=cause.hint)
        self.op = op


class Applier:
    """Runs operations for one `up` or `down`, updating the lab's record as it goes; or, with
    no record (`state` None: the CNI plugin), operations on links, addresses, routes and
    sysctls alone."""

    def __init__(self, state: lab_state.LabState | None = None, spawner: Spawner | None = None,
                 *, shared: Collection[str | None] = ()) -> None:
        self._state = state
        self.spawner = spawner
        self.shared = frozenset(shared)
        self.done: list[o.Op] = []
        self.left_alone: list[str] = []  # what `down` found and would not touch, for people
        self._sockets: dict[str | None, Netlink] = {}
        self._names: dict[str | None, dict[str, int]] = {}  # namespace -> ifname -> ifindex
        self._next: dict[str | None, int] = {}  # namespace -> next free ifindex
        self._fresh: set[str] = set()  # namespaces made by this run
        self._fresh_base: int | None = None  # first free ifindex of a new namespace
        self._pending: Pending | None = None
        self._nft: list[nftables.Pending] = []
        self._submitted: list[tuple[str, str]] = []  # (pod key, container) being started
        self._made: set[tuple[str | None, str]] = set()  # (namespace, link) made by this run
        self._shaping: dict[str | None, list[tc.Command]] = {}  # their tc, run by `finish`
        self._restarts: dict[tuple[str, str], int] = {}  # stopped containers' restart counts

    # --- running ------------------------------------------------------------------------------

    def run(self, ops: Iterable[o.Op]) -> None:
        """Execute `ops` in order; raise for the first that fails (what took effect is in
        `done`)."""
        try:
            for op in ops:
                if op.netlink:
                    self._queue(op)
                else:
                    self.flush()
                    _HANDLERS[type(op)](self, op)
                    self.done.append(op)
            self.flush()
        except BaseException:
            self._discard()  # queued, never sent: nothing of it took effect
            raise

    def _discard(self) -> None:
        if self._pending is not None:
            self._pending.close()
            self._pending = None

    def flush(self) -> None:
        """Send the netlink operations queued so far, in one datagram."""
        pending, self._pending = self._pending, None
        if pending is None or not pending.ops:
            return
        try:
            self.nl(pending.ns).send(pending.batch)
        except KernelError as exc:
            failed_at = exc.failed_at
            self.done.extend(pending.ops[:failed_at])
            raise FailedOpError(exc, pending.ops[failed_at]) from None
        finally:
            pending.close()
        self.done.extend(pending.ops)
        for op, ns, name, peer_ns, peer in pending.learn:
            link = self.nl(ns).link(name)
            kind = "veth" if isinstance(op, o.AddVeth) else "bridge"
            if link["kind"] != kind:  # "made only when missing" found something else there
                found = link["kind"] or "device"
                cause = ObjectExistsError(
                    f"{name} in {ns or 'this namespace'} exists and is a {found}, not a {kind}",
                    hint="remove or rename it, or have podnet use another name")
                raise FailedOpError(cause, op)
            self._links(ns)[name] = int(link["index"])
            if peer is not None:  # a veth's answer names its peer's index too
                self._links(peer_ns)[peer] = int(link["link"])

    def finish(self) -> None:
        """Wait for the work left running: nft transactions, then containers; shape the new
        links meanwhile."""
        self.flush()
        jobs, self._nft = self._nft, []
        try:
            self._shape_new_links()
            for job in jobs:
                job.wait()
        finally:
            self.collect_started()

    def _shape_new_links(self) -> None:
        pending, self._shaping = self._shaping, {}
        for ns, commands in pending.items():
            try:
                tc.run(self.path(ns), commands)
            except KernelError as exc:
                raise KernelError(f"shaping the new links of {ns or 'this namespace'}: "
                                  f"{exc.message}", errno=exc.errno, hint=exc.hint) from None
            for command in commands:  # the kernel numbered the ifb devices itself
                if command[:3] == ("ip", "link", "add"):
                    self.taken(ns, command[3])

    def collect_started(self) -> None:
        """Wait for the containers submitted so far and record them (PID and start time)."""
        if not self._submitted or self.spawner is None:
            return
        owners, self._submitted = self._submitted, []
        refs = self.spawner.collect()
        for (key, name), ref in zip(owners, refs, strict=True):
            # Started again after this run stopped it: one restart more than it had.
            restarts = self._restarts.pop((key, name), -1) + 1
            self.state.containers.append(lab_state.ContainerRecord(key, name, ref.pid,
                                                                   ref.starttime, restarts))

    def undo(self) -> int:
        """Undo what took effect, newest first; returns how many operations were undone.
        Best effort: an undo that fails is skipped (`down` removes what is left)."""
        self._shaping = {}  # links about to go: no need to shape them first
        with contextlib.suppress(Exception):
            self.finish()  # learn the PIDs of what did start, so it can be stopped
        done, self.done = self.done, []
        undone = 0
        for op in reversed(done):
            inverse = op.undo()
            if inverse is None:
                continue
            with contextlib.suppress(Exception):  # keep undoing the rest; `down` ends the job
                self.run([inverse])
                undone += 1
        self.done = []
        return undone

    def close(self) -> None:
        self._discard()
        for ns in list(self._sockets):
            self.forget(ns)

    # --- namespaces, sockets, interface indexes -------------------------------------------------

    @staticmethod
    def path(ns: str | None) -> str | None:
        if ns is None or ns.startswith("/"):
            return ns
        return netns.path_of(ns)

    def nl(self, ns: str | None) -> Netlink:
        sock = self._sockets.get(ns)
        if sock is None:
            sock = self._sockets[ns] = Netlink.open(self.path(ns), label=ns or "host")
        return sock

    def forget(self, ns: str | None) -> None:
        """Close our socket in `ns` (a socket holds its namespace alive) and what we knew."""
        sock = self._sockets.pop(ns, None)
        if sock is not None:
            sock.close()
        self._names.pop(ns, None)
        self._next.pop(ns, None)

    def _links(self, ns: str | None) -> dict[str, int]:
        names = self._names.get(ns)
        if names is None:
            if ns in self.shared:
                names = {"lo": 1}  # the loopback is ifindex 1 in every namespace
            elif ns in self._fresh:
                names = {"lo": 1}
                self._next[ns] = self._fresh_index(ns)
            else:
                links = self.nl(ns).links()
                names = {str(link["ifname"]): int(link["index"]) for link in links}
                self._next[ns] = max(names.values(), default=0) + 1
            self._names[ns] = names
        return names

    def _fresh_index(self, ns: str | None) -> int:
        """The first free ifindex of a namespace made by this run: after lo and whatever
        fallback devices this kernel's modules put in every new namespace (tunl0, sit0...).
        Asked of the first new namespace only: every new one starts the same."""
        if self._fresh_base is None:
            links = self.nl(ns).links()
            self._fresh_base = max(int(link["index"]) for link in links) + 1
        return self._fresh_base

    def index(self, ns: str | None, ifname: str) -> int:
        names = self._links(ns)
        found = names.get(ifname)
        if found is None and ns in self.shared:
            found = names[ifname] = int(self.nl(ns).link(ifname)["index"])
        if found is None:
            where = ns or "this namespace"
            raise ObjectMissingError(f"no interface {ifname} in {where}")
        return found

    def claim(self, ns: str | None, ifname: str) -> int:
        """Choose the index of a link about to be created in `ns`; 0 (the kernel chooses,
        and the applier asks once it is made) in a shared namespace."""
        names = self._links(ns)
        if ns in self.shared:
            names.pop(ifname, None)
            return 0
        index = self._next[ns]
        self._next[ns] = index + 1
        names[ifname] = index
        self._made.add((ns, ifname))
        return index

    def unclaim(self, ns: str | None, ifname: str) -> None:
        """Let the kernel number a link about to be created (it may exist already, at an index
        of its own): forget any index chosen for it, and ask for it once it is made."""
        self._links(ns).pop(ifname, None)

    def taken(self, ns: str | None, ifname: str) -> None:
        """Note a link the kernel numbered itself (`ip link add` in a tc script): the indexes
        this run chooses later must pass it."""
        self._links(ns)
        index = int(self.nl(ns).link(ifname)["index"])
        self._names[ns][ifname] = index
        self._next[ns] = max(self._next[ns], index + 1)

    def _queue(self, op: o.Op) -> None:
        ns: str | None = getattr(op, "ns", None)
        if self._pending is not None and self._pending.ns != ns:
            self.flush()
        if self._pending is None:
            self._pending = Pending(ns)
        pending = self._pending
        before = len(pending.batch.messages)
        ENCODERS[type(op)](self, op, pending)
        if len(pending.batch.messages) != before + 1:
            raise AssertionError(f"{type(op).__name__} must add one netlink message")
        pending.ops.append(op)
        if pending.learn:
            self.flush()  # later messages need the index the kernel gives it

    # --- the record -----------------------------------------------------------------------------

    @property
    def state(self) -> lab_state.LabState:
        """The lab's record: only runs that create namespaces or containers keep one."""
        if self._state is None:
            raise AssertionError("this applier keeps no record: it runs link operations only")
        return self._state

    def owns(self, name: str) -> bool:
        """Whether namespace `name` exists and is the very one podnet recorded making."""
        inode = self.state.owned.get(name)
        try:
            return inode is not None and netns.exists(name) and netns.inode(
                netns.path_of(name)) == inode
        except OSError:
            return False


# --- handlers: namespaces, sysctls, files, processes -------------------------------------------


def _discard_placeholder(name: str) -> None:
    """Remove the empty file that a kill between the two steps of `netns.create` (the file, then
    the mount on it) leaves at one of the lab's names: no namespace, but `ip netns list` shows it
    and the next create finds the name taken."""
    path = netns.path_of(name)
    with contextlib.suppress(OSError):
        found = os.lstat(path)
        if stat.S_ISREG(found.st_mode) and found.st_size == 0 and not netns.exists(name):
            os.unlink(path)


def _create_netns(app: Applier, op: o.CreateNetns) -> None:
    _discard_placeholder(op.name)
    if netns.exists(op.name):
        if not app.owns(op.name):
            netns.create(op.name)  # raises ObjectExistsError with a hint: someone else's
        app.forget(op.name)  # ours, left half-built by a crash: start it clean
        _drop_veths(op.name)
        netns.delete(op.name)
    settings = dict(op.sysctls)

    def prepare() -> None:
        # Noted (by inode) inside the new namespace, before it gets its name: a kill -9 right
        # after the name exists must not leave a namespace that no journal line calls podnet's.
        lab_state.record_netns(app.state, op.name, netns.inode("/proc/thread-self/ns/net"))
        sysctl.write(None, settings, optional=settings)

    netns.create(op.name, prepare=prepare)
    app.forget(op.name)
    app._fresh.add(op.name)  # the applier's own bookkeeping


def _drop_veths(name: str) -> None:
    """Delete the veths of a namespace about to be deleted. Deleting one end of a veth takes the
    other at once; deleting the namespace frees them only when its last holder lets go (a
    container still running in it keeps them for as long as it lives), and the rebuild needs
    their names on the node again."""
    with Netlink.open(netns.path_of(name), label=name) as nl:
        for link in nl.links():
            if link["kind"] == "veth":
                nl.delete_link(str(link["ifname"]))


def _delete_netns(app: Applier, op: o.DeleteNetns) -> None:
    if not netns.exists(op.name):
        _discard_placeholder(op.name)
        app.state.owned.pop(op.name, None)
        return
    if not app.owns(op.name):
        app.left_alone.append(f"namespace {op.name}: not the one podnet made (its inode "
                              "differs from the record), so it was left alone")
        return
    app.forget(op.name)
    netns.delete(op.name)
    app.state.owned.pop(op.name, None)


def _set_sysctls(app: Applier, op: o.SetSysctls) -> None:
    settings = dict(op.settings)
    sysctl.write(app.path(op.ns), settings, optional=settings if op.optional else ())


def _set_hostname(app: Applier, op: o.SetHostname) -> None:
    if os.path.exists(op.uts):
        pod_files.delete_pod_uts(op.uts)  # in podnet's own directory: left by a crash
    pod_files.create_pod_uts(op.uts, op.hostname)


def _delete_uts(app: Applier, op: o.DeleteUts) -> None:
    pod_files.delete_pod_uts(op.uts)


def _make_dirs(app: Applier, op: o.MakeDirs) -> None:
    for path in op.paths:
        pod_files.make_dir(path, op.mode)


def _write_file(app: Applier, op: o.WriteFile) -> None:
    pod_files.write_file_atomic(op.path, op.text, mode=op.mode)


def _remove_files(app: Applier, op: o.RemoveFiles) -> None:
    for path in op.paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(path)


def _load_nft(app: Applier, op: o.LoadNftTable) -> None:
    family, name = op.table.split(" ", 1)
    tx = nftables.Transaction(nftables.Table(family, name), f"the nftables table of {op.ns}")
    # The nft process finishes while the next steps run; `finish` waits for it.
    app._nft.append(nftables.start_many([(tx.replace(op.body), app.path(op.ns))]))


def _shape_link(app: Applier, op: o.ShapeLink) -> None:
    """`tc.apply`: the link gets exactly this shaping, podnet's earlier one replaced (and put
    back if the kernel refuses part of the new one, netem on a kernel without it). A link this
    run made waits for `finish`, with the others of its namespace."""
    path, ifb = app.path(op.ns), tc.ifb_name(op.ifname)
    fresh = (op.ns, op.ifname) in app._made and op.was_egress.empty and op.was_ingress.empty
    if fresh and not (op.egress.netem or op.ingress.netem):
        # A link this run made has no qdisc of anyone's yet: nothing to read or replace, and
        # its rates go out with the others of its namespace when the run finishes. (netem,
        # which kernels may lack, runs at once, so a refusal names the pod or node it shapes.)
        wanted = tc.commands(tc.LinkShaping(op.ifname, op.egress, op.ingress))
        app._shaping.setdefault(op.ns, []).extend(wanted)
        return
    try:
        tc.apply(path, tc.LinkShaping(op.ifname, op.egress, op.ingress))
    except ObjectMissingError:
        # Removing the shaping of a link that is gone already (its pod's namespace went with
        # it) is done, but for the ifb that shaped its arrivals on this side: dropped below.
        if not (op.egress.empty and op.ingress.empty):
            raise
    if op.ingress.empty:  # no ifb wanted: none may stay (one half made by a failed run either)
        _drop_ifb(app, op.ns, ifb)
    app._names.get(op.ns, {}).pop(ifb, None)
    if not op.ingress.empty:
        app.taken(op.ns, ifb)


def _drop_ifb(app: Applier, ns: str | None, name: str) -> None:
    try:
        link = app.nl(ns).link(name)
    except ObjectMissingError:
        return
    if link["kind"] == "ifb" and link["alias"] == o.OWNER_ALIAS:  # podnet's, never another's
        app.nl(ns).delete_link(name)


def _start_container(app: Applier, op: o.StartContainer) -> None:
    if app.spawner is None:
        raise ProcessError(f"cannot start container {op.container} of {op.pod}: no spawner")
    app.spawner.submit(
        SpawnRequest(
            netns_path=netns.path_of(op.netns),
            uts_path=op.uts,
            hosts_file=op.hosts_file,
            argv=list(op.argv) if op.argv else None,
            ports=list(op.ports),
            log_path=op.log,
            pod_name=op.identity.split("/", 1)[1],
            pod_namespace=op.identity.split("/", 1)[0],
            node_name=op.node,
            pod_ip=op.ip,
            container_name=op.container,
            env=list(op.env),
        )
    )
    app._submitted.append((op.pod, op.container))


def _stop_containers(app: Applier, op: o.StopContainers) -> None:
    app.collect_started()  # a container still starting is stopped too
    every = op.pod == o.ALL_PODS
    records = [c for c in app.state.containers if every or c.pod == op.pod]
    app._restarts.update({(r.pod, r.name): r.restarts for r in records})
    if records:
        stop([ProcessRef(r.pid, r.starttime) for r in records])
    app.state.containers = [c for c in app.state.containers if not every and c.pod != op.pod]


_HANDLERS: dict[type[Any], Callable[[Applier, Any], None]] = {
    o.CreateNetns: _create_netns,
    o.DeleteNetns: _delete_netns,
    o.SetSysctls: _set_sysctls,
    o.SetHostname: _set_hostname,
    o.DeleteUts: _delete_uts,
    o.MakeDirs: _make_dirs,
    o.WriteFile: _write_file,
    o.RemoveFiles: _remove_files,
    o.LoadNftTable: _load_nft,
    o.ShapeLink: _shape_link,
    o.StartContainer: _start_container,
    o.StopContainers: _stop_containers,
}


# Every operation has exactly one way to run: tests/unit/test_applier_tables.py holds it.
HANDLED = frozenset(_HANDLERS) | frozenset(ENCODERS)
