"""kernel.nftables against the real kernel: transactions inside namespaces, atomic, side by side,
and never outside their table (sandbox only)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from podnet.errors import KernelError
from podnet.kernel import netns, nftables
from podnet.kernel.nftables import Table, Transaction

pytestmark = pytest.mark.kernel

BODY = """comment "podnet test, rules 0123456789abcdef"
chain nat-postrouting {
  type nat hook postrouting priority srcnat; policy accept;
  ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade
}
"""


def ruleset(ns: str | None) -> str:
    argv = ["nft", "list", "ruleset"]
    if ns:
        argv = ["ip", "netns", "exec", ns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_transactions_run_in_their_namespace_only(netns_factory: Callable[[str], str]) -> None:
    a, b = netns_factory("nft"), netns_factory("nft")
    here = ruleset(None)
    nftables.run_many([(Transaction(Table(), "a").replace(BODY), netns.path_of(a)),
                       (Transaction(Table(), "b").replace(BODY), netns.path_of(b))])
    for ns in (a, b):
        assert "masquerade" in ruleset(ns)
    assert ruleset(None) == here
    comments = nftables.read_comments(Table(), {"a": netns.path_of(a), "b": netns.path_of(b)})
    assert comments == {"a": "podnet test, rules 0123456789abcdef"} | {
        "b": "podnet test, rules 0123456789abcdef"}


def test_a_refused_transaction_changes_nothing(netns_factory: Callable[[str], str]) -> None:
    a, b = netns_factory("nft"), netns_factory("nft")
    nftables.run(Transaction(Table(), "first").replace(BODY), netns.path_of(b))
    before = ruleset(b)
    bad = BODY.replace("masquerade", "masquerade to nowhere")
    with pytest.raises(KernelError, match=r"the broken one in namespace nft-") as caught:
        nftables.run_many([(Transaction(Table(), "the good one").replace(BODY), netns.path_of(a)),
                           (Transaction(Table(), "the broken one").replace(bad),
                            netns.path_of(b))])
    assert "nothing of that transaction was applied" in caught.value.hint
    assert ruleset(b) == before  # the delete in that transaction did not happen either
    assert "masquerade" in ruleset(a)  # its neighbour's transaction stands on its own


def test_delete_is_idempotent_and_missing_tables_read_as_none(
    netns_factory: Callable[[str], str],
) -> None:
    a = netns_factory("nft")
    path = netns.path_of(a)
    nftables.run(Transaction(Table(), "delete").delete(), path)  # nothing there: still fine
    assert nftables.read_comments(Table(), {"a": path}) == {"a": None}
    nftables.run(Transaction(Table(), "make").replace(BODY), path)
    nftables.run(Transaction(Table(), "delete").delete(), path)
    assert ruleset(a).strip() == ""


def test_what_the_cni_ipmasq_needs(netns_factory: Callable[[str], str]) -> None:
    """kernel/nft.py's three operations, written with this module (how it can be rebuilt)."""
    path = netns.path_of(netns_factory("nft"))
    table = Table("ip", "podnet")
    add = (Transaction(table, "masquerading 10.22.0.5")
           .ensure().add_set("pods_net", "type ipv4_addr;")
           .add_chain("masq_net", "type nat hook postrouting priority srcnat; policy accept;")
           .flush_chain("masq_net")
           .add_rule("masq_net", 'ip saddr @pods_net ip daddr != 10.22.0.0/16 masquerade '
                     'comment "podnet ipMasq: net"')
           .add_element("pods_net", ["10.22.0.5"]))
    nftables.run(add, path)
    nftables.run(add, path)  # twice: still one rule
    chain = nftables.list_chain(table, "masq_net", path) or ""
    assert chain.count("masquerade") == 1
    assert nftables.has_element(table, "pods_net", "10.22.0.5", path)
    remove = (Transaction(table, "removing 10.22.0.5").ensure()
              .add_set("pods_net", "type ipv4_addr;")
              .add_element("pods_net", ["10.22.0.5"]).delete_element("pods_net", ["10.22.0.5"]))
    nftables.run(remove, path)
    nftables.run(remove, path)  # removing what is not there succeeds
    assert not nftables.has_element(table, "pods_net", "10.22.0.5", path)
    assert nftables.list_chain(table, "missing", path) is None
