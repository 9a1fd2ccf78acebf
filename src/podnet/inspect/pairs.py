"""Join veth ends into pairs across namespaces: pure logic, the kernel answers come in as data.

A veth reports its peer as (IFLA_LINK, IFLA_LINK_NETNSID): the peer's ifindex, and an id that
only means something inside the namespace being dumped (namespace A may call B "3" while C calls
B "0"). So pairing runs in two steps:

1. `Pairing.questions`: structural candidates. The peer of end E (in A) must be a veth in another
   namespace B whose ifindex is E's IFLA_LINK and whose own IFLA_LINK is E's ifindex. Usually
   one candidate remains; several remain when pods reuse the same small ifindexes. For each
   candidate pair, one nsid question settles it: "what does A call B?" (RTM_GETNSID with B's fd,
   asked inside A). It is asked from the busier side (the node, with hundreds of veths), so the
   questions group into few namespaces.
2. `Pairing.match`: a candidate pair is confirmed when the answer equals the id the veth reported.

Ends left over have a peer podnet could not find: the caller asks the kernel about them
(IFLA_TARGET_NETNSID) to tell a peer in a namespace it cannot see from a peer that is gone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["End", "Pairing"]


@dataclass(frozen=True, slots=True)
class End:
    """One veth as its namespace reports it."""

    inode: int  # the namespace it is in
    index: int
    peer_index: int | None
    peer_netnsid: int | None  # None: the peer is in the same namespace


def _candidates(ends: Iterable[End]) -> list[tuple[End, End]]:
    """Every (end, possible peer) pair, once per unordered pair.

    Indexed by (ifindex, peer ifindex), so each end finds its candidates in one lookup: a node
    with 1,000 pods has 1,000 ends of ifindex 2 (every pod's eth0), but one per peer ifindex.
    """
    by_link: dict[tuple[int, int], list[End]] = {}
    for end in ends:
        if end.peer_index is not None:
            by_link.setdefault((end.index, end.peer_index), []).append(end)
    seen: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    out = []
    for group in by_link.values():
        for end in group:
            assert end.peer_index is not None
            for other in by_link.get((end.peer_index, end.index), ()):
                same_ns = other.inode == end.inode
                if same_ns != (end.peer_netnsid is None):
                    continue  # a peer id means another namespace; none means this one
                if (other.peer_netnsid is None) != (end.peer_netnsid is None):
                    continue
                if other is end:
                    continue
                a, b = (end.inode, end.index), (other.inode, other.index)
                key = (a, b) if a < b else (b, a)
                if key not in seen:
                    seen.add(key)
                    out.append((end, other))
    return out


def _asker(a: End, b: End, degree: Counter[int]) -> tuple[End, End]:
    """Order a candidate pair so the first end's namespace is the one to ask."""
    if (degree[b.inode], -b.inode) > (degree[a.inode], -a.inode):
        return b, a
    return a, b


class Pairing:
    """The veth ends of a host, their structural candidates, and the questions that settle them."""

    def __init__(self, ends: Iterable[End]) -> None:
        self.ends = list(ends)
        degree = Counter(end.inode for end in self.ends)
        # Each candidate is stored asker first: (end in the namespace to ask in, its candidate).
        self.candidates = [_asker(a, b, degree) for a, b in _candidates(self.ends)]

    def questions(self) -> dict[int, set[int]]:
        """{namespace to ask in: {namespaces whose nsid to ask for}}, by inode."""
        asked: dict[int, set[int]] = {}
        for first, second in self.candidates:
            if first.peer_netnsid is not None:  # same namespace: nothing to ask
                asked.setdefault(first.inode, set()).add(second.inode)
        return asked

    def match(
        self, answers: Mapping[tuple[int, int], int | None]
    ) -> tuple[list[tuple[End, End]], list[End]]:
        """(confirmed pairs, ends with no confirmed peer). `answers[(A, B)]`: A's nsid for B."""
        paired: set[tuple[int, int]] = set()
        pairs = []
        for first, second in self.candidates:
            if (first.inode, first.index) in paired or (second.inode, second.index) in paired:
                continue
            if first.peer_netnsid is not None:
                answer = answers.get((first.inode, second.inode))
                if answer is None or answer != first.peer_netnsid:
                    continue
            paired.update({(first.inode, first.index), (second.inode, second.index)})
            pairs.append((first, second))
        left = [end for end in self.ends if (end.inode, end.index) not in paired]
        return pairs, left
