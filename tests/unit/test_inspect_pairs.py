"""Pair matching with hand-built veth ends and hand-written kernel answers."""

from __future__ import annotations

from podnet.inspect.pairs import End, Pairing

HOST, POD1, POD2, POD3 = 100, 201, 202, 203


def node_with_pods() -> list[End]:
    """A node (ifindexes 5, 6, 7) and three pods whose eth0 is ifindex 2, as on a kind node.
    The node calls the pods nsid 0, 1, 2; each pod calls the node nsid 0."""
    return [
        End(HOST, 5, 2, 0), End(HOST, 6, 2, 1), End(HOST, 7, 2, 2),
        End(POD1, 2, 5, 0), End(POD2, 2, 6, 0), End(POD3, 2, 7, 0),
    ]


def test_questions_are_asked_from_the_busiest_namespace() -> None:
    plan = Pairing(node_with_pods())
    assert plan.questions() == {HOST: {POD1, POD2, POD3}}


def test_confirmed_pairs_put_the_node_end_first() -> None:
    plan = Pairing(node_with_pods())
    pairs, left = plan.match({(HOST, POD1): 0, (HOST, POD2): 1, (HOST, POD3): 2})
    assert left == []
    assert sorted((a.inode, a.index, b.inode, b.index) for a, b in pairs) == [
        (HOST, 5, POD1, 2), (HOST, 6, POD2, 2), (HOST, 7, POD3, 2),
    ]


def test_an_answer_that_disagrees_leaves_both_ends_unpaired() -> None:
    plan = Pairing(node_with_pods())
    pairs, left = plan.match({(HOST, POD1): 0, (HOST, POD2): 7, (HOST, POD3): 2})
    assert len(pairs) == 2
    assert sorted((e.inode, e.index) for e in left) == [(HOST, 6), (POD2, 2)]


def test_colliding_ifindexes_are_told_apart_by_namespace_ids() -> None:
    """Four namespaces, two pairs, every end ifindex 2 with peer ifindex 2: the structure allows
    any left-right combination; only the nsids say which is real."""
    a1, b1, a2, b2 = 1, 2, 3, 4
    ends = [End(a1, 2, 2, 10), End(b1, 2, 2, 11), End(a2, 2, 2, 20), End(b2, 2, 2, 21)]
    plan = Pairing(ends)
    asked = plan.questions()
    assert sum(len(v) for v in asked.values()) == 6  # every unordered pair of the four
    # what each namespace calls the others (unassigned ids are absent)
    names = {(a1, b1): 10, (b1, a1): 11, (a2, b2): 20, (b2, a2): 21}
    answers = {(ask, other): names.get((ask, other)) for ask, others in asked.items()
               for other in others}
    pairs, left = plan.match(answers)
    assert left == []
    assert sorted(tuple(sorted((a.inode, b.inode))) for a, b in pairs) == [(a1, b1), (a2, b2)]


def test_same_namespace_pair_needs_no_question() -> None:
    ends = [End(HOST, 8, 9, None), End(HOST, 9, 8, None)]
    plan = Pairing(ends)
    assert plan.questions() == {}
    pairs, left = plan.match({})
    assert [tuple(sorted((a.index, b.index))) for a, b in pairs] == [(8, 9)]
    assert left == []


def test_a_veth_without_a_visible_peer_is_left_over() -> None:
    ends = [End(HOST, 5, 2, 3)]  # its peer's namespace was not found
    plan = Pairing(ends)
    assert plan.questions() == {}
    assert plan.match({}) == ([], ends)


def test_a_veth_whose_peer_is_gone_is_left_over() -> None:
    ends = [End(HOST, 5, None, 3), End(POD1, 2, 5, 0)]
    pairs, left = Pairing(ends).match({})
    assert pairs == [] and len(left) == 2


def test_unanswered_questions_confirm_nothing() -> None:
    plan = Pairing(node_with_pods())
    pairs, left = plan.match({})
    assert pairs == [] and len(left) == 6


# --- looks: one question per pair, its answer's MAC address names the peer ----------------------

NODE1, NODE2 = 110, 120
P1, P2, P3, P4 = 301, 302, 303, 304


def two_nodes() -> list[End]:
    """Two nodes whose ends reuse ifindexes 5 and 6, and four pods (eth0 ifindex 2): each node
    end has two structural candidates, one pod per node."""
    return [
        End(NODE1, 5, 2, 0, "aa:00:00:00:01:05"), End(NODE1, 6, 2, 1, "aa:00:00:00:01:06"),
        End(NODE2, 5, 2, 0, "aa:00:00:00:02:05"), End(NODE2, 6, 2, 1, "aa:00:00:00:02:06"),
        End(P1, 2, 5, 0, "02:00:00:00:00:01"), End(P2, 2, 6, 0, "02:00:00:00:00:02"),
        End(P3, 2, 5, 0, "02:00:00:00:00:03"), End(P4, 2, 6, 0, "02:00:00:00:00:04"),
    ]


REAL = {(NODE1, 5): P1, (NODE1, 6): P2, (NODE2, 5): P3, (NODE2, 6): P4}
MAC_OF = {P1: "02:00:00:00:00:01", P2: "02:00:00:00:00:02", P3: "02:00:00:00:00:03",
          P4: "02:00:00:00:00:04"}


def pod_pairs(pairs: list[tuple[End, End]]) -> dict[tuple[int, int], int]:
    return {(a.inode, a.index): b.inode for a, b in pairs}


def test_looks_are_asked_once_per_node_end_in_its_own_namespace() -> None:
    plan = Pairing(two_nodes())
    looks = plan.looks()
    assert {ns: sorted(e.index for e in ends) for ns, ends in looks.items()} == {
        NODE1: [5, 6], NODE2: [5, 6]}
    # Without looks, every candidate namespace would be asked about: two per end.
    assert sum(len(v) for v in plan.questions().values()) == 8


def test_the_peer_a_look_saw_settles_its_end_without_nsid_questions() -> None:
    plan = Pairing(two_nodes())
    seen = {key: MAC_OF[pod] for key, pod in REAL.items()}
    assert plan.questions(seen) == {}
    pairs, left = plan.match({}, seen)
    assert left == []
    assert pod_pairs(pairs) == REAL


def test_candidates_sharing_a_mac_fall_back_to_nsid_questions() -> None:
    ends = [e if e.inode != P3 else End(P3, 2, 5, 0, "02:00:00:00:00:01") for e in two_nodes()]
    plan = Pairing(ends)
    seen = {key: "02:00:00:00:00:01" if pod in (P1, P3) else MAC_OF[pod]
            for key, pod in REAL.items()}
    # P1 and P3 look alike: the ends that saw that MAC ask the old question; the others do not.
    assert plan.questions(seen) == {NODE1: {P1, P3}, NODE2: {P1, P3}}
    answers = {(NODE1, P1): 0, (NODE1, P3): None, (NODE2, P1): None, (NODE2, P3): 0}
    pairs, left = plan.match(answers, seen)
    assert left == [] and pod_pairs(pairs) == REAL


def test_a_look_that_saw_no_candidate_confirms_nothing_by_itself() -> None:
    plan = Pairing(two_nodes())
    seen = {key: MAC_OF[pod] for key, pod in REAL.items()}
    seen[(NODE1, 5)] = "02:ff:ff:ff:ff:ff"  # the real peer is somewhere podnet cannot see
    assert plan.questions(seen) == {NODE1: {P1, P3}}
    pairs, left = plan.match({}, seen)
    assert sorted((e.inode, e.index) for e in left) == [(NODE1, 5), (P1, 2)]
    assert pod_pairs(pairs) == {k: v for k, v in REAL.items() if k != (NODE1, 5)}
