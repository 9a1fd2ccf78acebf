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
