"""Join veth ends into pairs across namespaces: pure logic, the kernel answers come in as data.

A veth reports its peer as (IFLA_LINK, IFLA_LINK_NETNSID): the peer's ifindex, and an id that
only means something inside the namespace being dumped (namespace A may call B "3" while C calls
B "0"). So pairing runs in three steps:

1. Structural candidates. The peer of end E (in A) must be a veth in another namespace B whose
   ifindex is E's IFLA_LINK and whose own IFLA_LINK is E's ifindex. On a single node usually
   one candidate remains; several remain when namespaces reuse the same small ifindexes (a host
   with 10 kind nodes: every pod's eth0 is ifindex 2, and the nodes' ends repeat across nodes).
   Each candidate pair is stored asker first: the end in the busier namespace (the node, with
   hundreds of veths), so the kernel is asked in few namespaces.
2. `Pairing.looks`: for each asker end, one question in its own namespace: "show me link
   IFLA_LINK of the namespace you call IFLA_LINK_NETNSID" (RTM_GETLINK with
   IFLA_TARGET_NETNSID). That is the real peer; its MAC address names the candidate, when exactly
   one candidate has it. One question per pair, where asking "what does A call B?" for every
   candidate namespace took ten per pair on a 10-node host, each costing the kernel a walk of
   A's whole id table (hundreds of ids on a node).
3. `Pairing.questions`: for the asker ends a look did not settle (no answer, or candidates that
   share a MAC address), the old question: "what does A call B?" (RTM_GETNSID with B's fd, asked
   inside A), and `Pairing.match` confirms a candidate whose answer equals the id the veth
   reported.

Ends left over have a peer podnet could not find: the caller asks the kernel about them (the
same look) to tell a peer in a namespace it cannot see from a peer that is gone.
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
    mac: str | None = None


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


Key = tuple[int, int]  # (namespace inode, ifindex): one end


def _key(end: End) -> Key:
    return end.inode, end.index


class Pairing:
    """The veth ends of a host, their structural candidates, and the questions that settle them."""

    def __init__(self, ends: Iterable[End]) -> None:
        self.ends = list(ends)
        degree = Counter(end.inode for end in self.ends)
        # Each candidate is stored asker first: (end in the namespace to ask in, its candidate).
        self.candidates = [_asker(a, b, degree) for a, b in _candidates(self.ends)]
        self._askers: dict[Key, End] = {}  # ends whose peer is in another namespace
        self._of: dict[Key, list[End]] = {}  # asker end -> its candidates
        for first, second in self.candidates:
            if first.peer_netnsid is not None:
                self._askers[_key(first)] = first
                self._of.setdefault(_key(first), []).append(second)

    def looks(self) -> dict[int, list[End]]:
        """{namespace to ask in: its ends whose peer to look at}, by inode (step 2)."""
        out: dict[int, list[End]] = {}
        for end in self._askers.values():
            out.setdefault(end.inode, []).append(end)
        return out

    def _settled(self, seen: Mapping[Key, str | None]) -> dict[Key, End]:
        """{asker end: the one candidate whose MAC its look saw}, for the ends a look settled."""
        out = {}
        for key, candidates in self._of.items():
            mac = seen.get(key)
            same = [c for c in candidates if c.mac == mac] if mac else []
            if len(same) == 1:
                out[key] = same[0]
        return out

    def questions(self, seen: Mapping[Key, str | None] | None = None) -> dict[int, set[int]]:
        """{namespace to ask in: {namespaces whose nsid to ask for}}, by inode: for the ends
        that `seen` (each asker end's peer MAC, from the looks) leaves unsettled."""
        settled = self._settled(seen or {})
        asked: dict[int, set[int]] = {}
        for first, second in self.candidates:
            if first.peer_netnsid is not None and _key(first) not in settled:
                asked.setdefault(first.inode, set()).add(second.inode)
        return asked

    def match(
        self, answers: Mapping[tuple[int, int], int | None],
        seen: Mapping[Key, str | None] | None = None,
    ) -> tuple[list[tuple[End, End]], list[End]]:
        """(confirmed pairs, ends with no confirmed peer). `answers[(A, B)]`: A's nsid for B;
        `seen`: what each asker end's look saw."""
        settled = self._settled(seen or {})
        paired: set[Key] = set()
        pairs = []
        for first, second in self.candidates:
            if _key(first) in paired or _key(second) in paired:
                continue
            if first.peer_netnsid is not None:
                chosen = settled.get(_key(first))
                if chosen is not None:
                    if chosen is not second:
                        continue
                else:
                    answer = answers.get((first.inode, second.inode))
                    if answer is None or answer != first.peer_netnsid:
                        continue
            paired.update({_key(first), _key(second)})
            pairs.append((first, second))
        left = [end for end in self.ends if _key(end) not in paired]
        return pairs, left
