"""Truth tables, as the upstream network-policy conformance tests keep them: for one port and
protocol, every (source pod, destination pod) pair expected allowed or denied; and the comparison
of such a table with what real probes observed, mismatches counted in both directions.

    table = truth_table(world, Probe(80))
    print(table.text())          # rows: sources, columns: destinations; '.' allowed, 'X' denied
    result = table.compare(observed)   # {(src, dst): bool} from real packets
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from podnet.model.policies import Protocol
from podnet.policy.verdict import Verdict, verdict
from podnet.policy.world import World

__all__ = ["Comparison", "Mismatch", "Probe", "TruthTable", "truth_table", "truth_tables"]

Pair = tuple[str, str]  # (source pod key, destination pod key)


@dataclass(frozen=True)
class Probe:
    """What one truth table is about: a destination port and protocol, over one family."""

    port: int
    protocol: Protocol = "TCP"
    family: int = 4

    def text(self) -> str:
        suffix = " IPv6" if self.family == 6 else ""
        return f"{self.port}/{self.protocol}{suffix}"


@dataclass(frozen=True)
class Mismatch:
    src: str
    dst: str
    expected: bool
    observed: bool
    verdict: Verdict  # why the policies expect what they expect


@dataclass(frozen=True)
class Comparison:
    probe: Probe
    checked: int
    mismatches: tuple[Mismatch, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def denied_but_expected_allowed(self) -> tuple[Mismatch, ...]:
        return tuple(m for m in self.mismatches if m.expected)

    @property
    def allowed_but_expected_denied(self) -> tuple[Mismatch, ...]:
        return tuple(m for m in self.mismatches if not m.expected)


@dataclass(frozen=True)
class TruthTable:
    probe: Probe
    pods: tuple[str, ...]
    cells: Mapping[Pair, Verdict]  # pairs where both pods have an address of the family

    def expected(self, src: str, dst: str) -> bool:
        return self.cells[(src, dst)].allowed

    def allowed_count(self) -> int:
        return sum(v.allowed for v in self.cells.values())

    def text(self) -> str:
        """The matrix, one row per source: '.' allowed, 'X' denied, ' ' no such pair."""
        width = max([len(self.probe.text()), *(len(p) for p in self.pods)])
        head = f"{self.probe.text():<{width}} " + " ".join(self.pods)
        rows = [head]
        for src in self.pods:
            marks = []
            for dst in self.pods:
                cell = self.cells.get((src, dst))
                mark = " " if cell is None else "." if cell.allowed else "X"
                marks.append(f"{mark:>{len(dst)}}")
            rows.append(f"{src:<{width}} " + " ".join(marks))
        return "\n".join(rows)

    def compare(self, observed: Mapping[Pair, bool]) -> Comparison:
        """Set `observed` (real probes) against this table, in both directions: allowed that
        should be denied, and denied that should be allowed. Pairs not observed are skipped."""
        mismatches = tuple(
            Mismatch(src, dst, v.allowed, observed[(src, dst)], v)
            for (src, dst), v in self.cells.items()
            if (src, dst) in observed and observed[(src, dst)] != v.allowed
        )
        checked = sum(1 for pair in self.cells if pair in observed)
        return Comparison(self.probe, checked, mismatches)


def truth_table(world: World, probe: Probe, pods: Sequence[str] | None = None) -> TruthTable:
    """Every ordered pair of `pods` (default: all of the world's) for `probe`."""
    keys = tuple(pods) if pods is not None else tuple(p.key for p in world.pods)
    members = [world.pod(k) for k in keys]
    unknown = [k for k, m in zip(keys, members, strict=True) if m is None]
    if unknown:
        raise ValueError(f"no such pod: {', '.join(unknown)}")
    cells: dict[Pair, Verdict] = {}
    for a in members:
        for b in members:
            assert a is not None and b is not None
            if a.ip(probe.family) is None or b.ip(probe.family) is None:
                continue
            cells[(a.key, b.key)] = verdict(world, a, b, probe.port, probe.protocol,
                                            family=probe.family)
    return TruthTable(probe, keys, cells)


def truth_tables(
    world: World, probes: Sequence[Probe], pods: Sequence[str] | None = None
) -> list[TruthTable]:
    """One table per probe: every (source, destination, port) the policies expect."""
    return [truth_table(world, probe, pods) for probe in probes]
