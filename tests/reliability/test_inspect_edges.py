"""inspect's edge cases that need no kernel objects: what a dying namespace's veth reports, and
text that looks like rich markup (issue 10, items 8 and 10)."""

from __future__ import annotations

from podnet.inspect.build import assemble
from podnet.inspect.model import Host, Namespace
from podnet.inspect.pairs import End
from podnet.kernel import discover_types as k
from podnet.render.inspect_text import render_table

HOST, NODE = 4026531840, 4026532300


def test_a_peer_netnsid_of_minus_one_is_gone_and_no_question_is_asked() -> None:
    """IFLA_LINK_NETNSID -1: the peer's namespace has no id here (it is being torn down).
    Asking the kernel about "id -1" packed -1 into a u32: struct.error, a traceback."""
    from podnet.kernel.discover_netlink import Session

    with Session() as session:  # a netlink socket in this namespace; no root needed
        assert session.peer_link(None, HOST, -1, 2) is None
        assert session.peer_link(None, HOST, 2**32, 2) is None


def test_a_dying_peer_is_shown_gone_with_no_netnsid() -> None:
    veth = k.Link(7, "veth1", "veth", "02:00:00:00:00:01", 1500, "UP", True, None, 2, -1)
    refs = [k.NamespaceRef.make(NODE, mounts=("/run/netns/node",))]
    dumps = {NODE: k.NamespaceDump(links=[veth])}
    end = End(NODE, 7, 2, -1)
    host = assemble(refs, dumps, [], [(end, None)])
    [pair] = host.veth_pairs
    assert (pair.status, pair.netnsid) == ("peer-gone", None)
    assert host.namespaces[0].interfaces[0].peer is not None
    assert host.namespaces[0].interfaces[0].peer.status == "peer-gone"


def test_error_text_is_shown_as_written_never_as_markup() -> None:
    """"[not read: ...]" was swallowed whole as a rich markup tag: inspect showed an empty
    cell where it should have said why (run without root, say)."""
    ns = Namespace(NODE, "cni-[odd]-name", name="cni-[odd]-name",
                   error="cannot enter network namespace: [Errno 1] Operation not permitted")
    text = render_table(Host((ns,), ()), width=300)
    assert "[not read: cannot enter network namespace: [Errno 1] Operation not permitted]" in text
    assert "cni-[odd]-name" in text
