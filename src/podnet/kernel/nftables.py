"""nftables from one place: atomic `nft -f -` transactions on a table podnet owns, any namespace.

    tx = Transaction(Table("ip", "podnet"), "Services of node kind-worker").replace(body)
    run(tx, netns_path)      # one `nft -f -` inside that namespace: applied whole or not at all

Every statement a `Transaction` can hold names its own table, and a table body is checked not to
close the table early, so nothing outside the table is ever read or written: no `flush ruleset`,
no other table's chain. `replace` swaps the whole table in one transaction (add, delete, define:
the add makes the delete succeed on the first run), which is how `up` converges the rules; a
namespace's deletion takes its table with it, which is how `down` removes them.

The statement builders (`add_set`, `add_chain`, `add_rule`, `add_element`, ...) and the two
readers (`list_chain`, `has_element`) cover what `kernel/nft.py` (the CNI plugin's ipMasq) does
today, so it can be rebuilt on this module with `netns_path=None` (the plugin's own namespace).
`nft` runs in the namespace because the child process inherits the calling thread's network
namespace: `netns.entered` is enough, no `ip netns exec`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from podnet.errors import KernelError, ObjectMissingError
from podnet.kernel import libnft, netns

__all__ = [
    "TABLE",
    "Pending",
    "Table",
    "Transaction",
    "find_nft",
    "has_element",
    "list_chain",
    "list_elements",
    "read_comments",
    "run",
    "run_many",
    "start_many",
]

TABLE = "podnet"
_TIMEOUT = 20.0  # seconds: nft answers in milliseconds; more means something is stuck
# nft's identifiers, as its scanner reads them (kube-proxy's chain names have / and .)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]{0,255}\Z")
_COMMENT = re.compile(r'^\s*comment\s+"([^"]*)"', re.MULTILINE)


@dataclass(frozen=True)
class Table:
    family: str = "ip"  # ip, ip6 or inet
    name: str = TABLE

    def __post_init__(self) -> None:
        if self.family not in ("ip", "ip6", "inet"):
            raise ValueError(f"nftables family {self.family!r}: podnet uses ip, ip6 or inet")
        _check_name(self.name)

    def __str__(self) -> str:
        return f"{self.family} {self.name}"


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not an nftables identifier podnet writes")
    return name


def _check_text(text: str, what: str) -> str:
    """A rule, set spec or element list: one line, no statement separator, balanced braces, so
    it cannot end its own statement and start another elsewhere."""
    if "\n" in text or ";" in _unquoted(text) or not _balanced(text):
        raise ValueError(f"{what} {text!r} must be one statement of its own")
    return text


def _check_inner(spec: str) -> str:
    """What goes between a set's or chain's braces: `;` separates its parts there, and balanced
    braces keep it from closing them."""
    if "\n" in spec or not _balanced(spec):
        raise ValueError(f"{spec!r} must be one line with balanced braces")
    return spec


def _unquoted(text: str) -> str:
    return re.sub(r'"[^"]*"', '""', text)


def _balanced(text: str) -> bool:
    depth = 0
    for char in _unquoted(text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


class Transaction:
    """Statements on one table, sent to the kernel as one nftables transaction."""

    def __init__(self, table: Table, what: str) -> None:
        self.table = table
        self.what = what  # for errors: "the Service rules of node kind-worker"
        self._lines: list[str] = []

    @property
    def script(self) -> str:
        return "".join(line + "\n" for line in self._lines)

    def _add(self, line: str) -> Transaction:
        self._lines.append(line)
        return self

    # --- the table as a whole ----------------------------------------------------------------

    def ensure(self) -> Transaction:
        return self._add(f"add table {self.table}")

    def replace(self, body: str) -> Transaction:
        """The table becomes exactly `body` (what goes between its braces), atomically."""
        if not _balanced(body):
            raise ValueError(f"{self.what}: the table body's braces do not balance")
        self.delete()
        self._add(f"table {self.table} {{")
        self._lines.extend(f"  {line}" if line else "" for line in body.rstrip("\n").split("\n"))
        return self._add("}")

    def delete(self) -> Transaction:
        """Remove the table; succeeds whether or not it was there (nft 1.0.6 has no `destroy`)."""
        return self.ensure()._add(f"delete table {self.table}")

    # --- statements inside the table: what kernel/nft.py needs ---------------------------------

    def add_set(self, name: str, spec: str) -> Transaction:
        """`add set ip podnet NAME { SPEC }`, e.g. spec `type ipv4_addr;`."""
        return self._add(f"add set {self.table} {_check_name(name)} {{ {_check_inner(spec)} }}")

    def add_chain(self, name: str, spec: str = "") -> Transaction:
        """`add chain ip podnet NAME [{ SPEC }]`, e.g. spec `type nat hook postrouting priority
        srcnat; policy accept;` (semicolons allowed here: a chain's spec is a list)."""
        _check_name(name)
        if not spec:
            return self._add(f"add chain {self.table} {name}")
        return self._add(f"add chain {self.table} {name} {{ {_check_inner(spec)} }}")

    def flush_chain(self, name: str) -> Transaction:
        return self._add(f"flush chain {self.table} {_check_name(name)}")

    def add_rule(self, chain: str, rule: str) -> Transaction:
        return self._add(f"add rule {self.table} {_check_name(chain)} {_check_text(rule, 'rule')}")

    def add_element(self, set_name: str, elements: Iterable[str]) -> Transaction:
        items = ", ".join(_check_text(e, "element") for e in elements)
        return self._add(f"add element {self.table} {_check_name(set_name)} {{ {items} }}")

    def delete_element(self, set_name: str, elements: Iterable[str]) -> Transaction:
        items = ", ".join(_check_text(e, "element") for e in elements)
        return self._add(f"delete element {self.table} {_check_name(set_name)} {{ {items} }}")


# --- running nft -------------------------------------------------------------------------------


def find_nft() -> str:
    """The nft binary. Container runtimes start CNI plugins with a minimal environment, often
    without /usr/sbin on PATH: look there too."""
    found = shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise KernelError(
            "nftables rules need the nft command, which is not installed",
            hint="install nftables (apt-get install nftables)",
        )
    return found


def _start(argv: list[str], netns_path: str | None) -> subprocess.Popen[bytes]:
    if netns_path is None:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    # The child is forked from this thread, so it is born in the namespace the thread entered.
    with netns.entered(netns_path):
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[bytes], stdin: bytes | None) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(stdin, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return -1, "", f"nft gave no answer within {_TIMEOUT:.0f} s"
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace").strip()


def _where(netns_path: str | None) -> str:
    return f"namespace {os.path.basename(netns_path)}" if netns_path else "this namespace"


def run(tx: Transaction, netns_path: str | None = None) -> None:
    """Apply `tx` in the namespace at `netns_path` (None: this thread's), whole or not at all."""
    run_many([(tx, netns_path)])


def run_many(jobs: Iterable[tuple[Transaction, str | None]]) -> None:
    """Apply several transactions, each in its namespace, all at once (one nft process each).

    Each is atomic on its own. Raises for the first that failed, after all have finished.
    """
    start_many(jobs).wait()


class Pending:
    """Transactions whose nft processes run while the caller goes on; `wait` collects them."""

    def __init__(self, started: list[tuple[Transaction, str | None,
                                           subprocess.Popen[bytes] | tuple[int, str]]]):
        self._started = started

    def wait(self) -> None:
        """Wait for every process; raise for the first transaction nft refused."""
        started, self._started = self._started, []
        failures = []
        for tx, path, proc in started:
            code, err = proc if isinstance(proc, tuple) else _finish(proc, None)[::2]
            if code != 0:
                failures.append(f"{tx.what} in {_where(path)}: nft refused the transaction: {err}")
        if failures:
            raise KernelError(
                failures[0] + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""),
                hint="nothing of that transaction was applied (nft applies one whole or not at "
                "all)",
            )


def start_many(jobs: Iterable[tuple[Transaction, str | None]]) -> Pending:
    """Start one nft process per transaction, each in its namespace, and return at once.

    The kernel answers an nftables commit in well under a millisecond, but an nft process then
    spends 10-20 ms mostly asleep (its netlink socket's release waits for an RCU grace period):
    started early and collected late, that time overlaps other work.
    """
    nft = find_nft()
    started: list[tuple[Transaction, str | None, subprocess.Popen[bytes] | tuple[int, str]]] = []
    for tx, path in jobs:
        done = libnft.run(tx.script) if path is None else None  # in-process: 0.1 ms
        if done is not None:
            started.append((tx, path, (done[0], done[2])))
            continue
        proc = _start([nft, "-f", "-"], path)
        assert proc.stdin is not None
        proc.stdin.write(tx.script.encode())  # a few kB: fits the pipe, never blocks
        proc.stdin.close()
        proc.stdin = None  # so that communicate() does not flush the closed pipe
        started.append((tx, path, proc))
    return Pending(started)


def _read(argv: list[str], netns_path: str | None) -> tuple[int, str]:
    if netns_path is None:
        json_output = argv[:1] == ["-j"]
        done = libnft.run(" ".join(argv[1:] if json_output else argv), json_output=json_output)
        if done is not None:
            return done[0], done[1]
    code, out, _ = _finish(_start([find_nft(), *argv], netns_path), None)
    return code, out


def list_chain(table: Table, chain: str, netns_path: str | None = None) -> str | None:
    """`nft list chain FAMILY TABLE CHAIN`: the chain's text, None if it does not exist."""
    code, out = _read(["list", "chain", table.family, table.name, _check_name(chain)],
                      netns_path)
    return out if code == 0 else None


def has_element(table: Table, set_name: str, element: str, netns_path: str | None = None) -> bool:
    """`nft get element FAMILY TABLE SET { ELEMENT }` succeeds."""
    argv = ["get", "element", table.family, table.name, _check_name(set_name),
            f"{{ {_check_text(element, 'element')} }}"]
    return _read(argv, netns_path)[0] == 0


def list_elements(table: Table, set_name: str, netns_path: str | None = None) -> list[str] | None:
    """The elements of a set of plain values (addresses, ports), None if the set does not exist."""
    code, out = _read(["-j", "list", "set", table.family, table.name, _check_name(set_name)],
                      netns_path)
    if code != 0:
        return None
    found: list[str] = []
    for item in json.loads(out or "{}").get("nftables", ()):
        for elem in item.get("set", {}).get("elem", ()):
            value = elem.get("elem", {}).get("val") if isinstance(elem, dict) else elem
            if isinstance(value, str):
                found.append(value)
    return found


def read_comments(table: Table, netns_paths: Mapping[str, str]) -> dict[str, str | None]:
    """The comment of `table` in each namespace ({key: path}), read in parallel; None where the
    table does not exist. podnet keeps a digest of the table's rules there."""
    nft = find_nft()
    procs: dict[str, subprocess.Popen[bytes] | None] = {}
    for key, path in netns_paths.items():
        try:
            procs[key] = _start([nft, "-t", "list", "table", table.family, table.name], path)
        except ObjectMissingError:
            procs[key] = None
    out: dict[str, str | None] = {}
    for key, proc in procs.items():
        if proc is None:
            out[key] = None
            continue
        code, text, _ = _finish(proc, None)
        found = _COMMENT.search(text) if code == 0 else None
        out[key] = found.group(1) if found else ("" if code == 0 else None)
    return out
