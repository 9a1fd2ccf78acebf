"""The neighbour-table estimate behind `up`'s warning: pure arithmetic on the lab's size."""

from __future__ import annotations

from podnet.plan.neighbours import DEFAULT_LIMIT, table_entries, warning


def test_an_ipv4_pod_adds_entries_only_once_it_talks_an_ipv6_one_at_up_too() -> None:
    assert table_entries(100, 4) == 300
    assert table_entries(100, 6) == 500
    assert table_entries(0, 4) == table_entries(0, 6) == 0


def test_no_warning_while_the_lab_fits_well_under_the_limit() -> None:
    assert warning("lab", 100, (4,), {4: DEFAULT_LIMIT}) is None
    assert warning("lab", 250, (4,), {}) is None  # 750 of 1,024: under three quarters


def test_the_warning_names_the_table_the_limit_its_key_and_what_to_do() -> None:
    text = warning("big", 2000, (4,), {4: DEFAULT_LIMIT})
    assert text is not None
    assert "2000 pods may need about 6,000 ARP entries" in text
    assert "holds 1,024 for every namespace (net.ipv4.neigh.default.gc_thresh3)" in text
    assert "send traffic between a few pods only" in text


def test_ipv6_is_warned_of_sooner_and_a_raised_limit_is_respected() -> None:
    assert warning("lab", 200, (4,), {4: 1024}) is None  # 600 ARP entries
    text = warning("lab", 200, (4, 6), {4: 1024, 6: 1024})  # 1,000 NDP entries
    assert text is not None and "NDP" in text and "net.ipv6.neigh" in text
    assert warning("lab", 200, (4, 6), {4: 1024, 6: 8192}) is None
