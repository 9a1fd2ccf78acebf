"""kernel/tc.py's pure half: units as tc writes them, the commands a shaping renders to (what
`explain` prints and `apply` runs), and links read back from `tc -j` output (recorded from
iproute2 6.1; the netem record follows q_netem.c's JSON, since these VMs have no netem)."""

from __future__ import annotations

import pytest

from podnet.errors import ObjectExistsError
from podnet.kernel import tc, tc_read
from podnet.kernel.tc import LinkQdiscs, LinkShaping, Qdisc, Shape


@pytest.mark.parametrize(("text", "ms"), [("50ms", 50.0), ("500us", 0.5), ("1.5s", 1500.0),
                                          ("2 msec", 2.0)])
def test_times(text: str, ms: float) -> None:
    assert tc.parse_time(text) == ms


@pytest.mark.parametrize(("text", "bps"), [("10mbit", 10_000_000), ("512kbit", 512_000),
                                           ("1gbit", 10**9), ("1mbps", 8_000_000),
                                           ("100bit", 100), ("1.5Mbit", 1_500_000)])
def test_rates(text: str, bps: int) -> None:
    assert tc.parse_rate(text) == bps


def test_bad_units_say_how_to_write_them() -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 50ms"):
        tc.parse_time("50")
    with pytest.raises(ValueError, match=r"e\.g\. 10mbit"):
        tc.parse_rate("10M")
    with pytest.raises(ValueError, match="with %"):
        tc.parse_percent("1")


def test_kubernetes_quantities_are_bits_per_second() -> None:
    assert tc.rate_from_quantity("10M") == 10_000_000
    assert tc.rate_from_quantity("1Gi") == 2**30
    assert tc.rate_from_quantity("512k") == 512_000
    with pytest.raises(ValueError):
        tc.rate_from_quantity("10 Mbit")


def test_formatting_round_trips() -> None:
    for bps in (10_000_000, 512_000, 10**9, 1_500_000, 7):
        assert tc.parse_rate(tc.format_rate(bps)) == bps
    for ms in (50.0, 0.5, 1500.0):
        assert tc.parse_time(tc.format_time(ms)) == ms


def test_netem_with_a_rate_is_netem_over_tbf() -> None:
    shaping = LinkShaping("veth1", Shape(50, 5, 1, 10_000_000))
    assert tc.render(shaping) == [
        "tc qdisc add dev veth1 root handle 70d: netem delay 50ms 5ms loss 1%",
        "tc qdisc add dev veth1 parent 70d:1 handle 70e: tbf rate 10mbit burst 16384 "
        "latency 50ms",
    ]


def test_a_rate_alone_is_tbf_and_a_named_namespace_is_named() -> None:
    assert tc.render(LinkShaping("eth0", Shape(rate_bps=2 * 10**9)), "kind-worker") == [
        "tc -n kind-worker qdisc add dev eth0 root handle 70d: tbf rate 2gbit burst 2500000 "
        "latency 50ms"]


def test_ingress_goes_through_an_ifb_device_of_podnets() -> None:
    ifb = tc.ifb_name("veth1a2b3c4d")
    assert len(ifb) <= 15 and ifb == tc.ifb_name("veth1a2b3c4d") != tc.ifb_name("veth2")
    lines = tc.render(LinkShaping("veth1a2b3c4d", ingress=Shape(rate_bps=5_000_000)))
    assert lines == [
        f"ip link add {ifb} type ifb",
        f"ip link set dev {ifb} alias podnet up",
        "tc qdisc add dev veth1a2b3c4d handle ffff: ingress",
        "tc filter add dev veth1a2b3c4d parent ffff: protocol all u32 match u32 0 0 action "
        f"mirred egress redirect dev {ifb}",
        f"tc qdisc add dev {ifb} root handle 70d: tbf rate 5mbit burst 16384 latency 50ms",
    ]


def test_nothing_renders_nothing_and_bad_shapes_are_refused() -> None:
    assert tc.render(LinkShaping("eth0")) == []
    for shape, words in ((Shape(jitter_ms=5), "give --delay too"),
                         (Shape(loss_pct=101), "between 0% and 100%"),
                         (Shape(rate_bps=100), "below tbf's useful range")):
        with pytest.raises(ValueError, match=words):
            tc.commands(LinkShaping("eth0", shape))
    with pytest.raises(ValueError, match="not an interface name"):
        tc.commands(LinkShaping("a-name-far-too-long", Shape(rate_bps=10**6)))


# --- reading back -----------------------------------------------------------------------------

NETEM = {"kind": "netem", "handle": "70d:", "dev": "veth1", "root": True, "refcnt": 2,
         "options": {"limit": 1000, "delay": {"delay": 0.05, "jitter": 0.005,
                                              "correlation": 0},
                     "loss-random": {"loss": 0.01, "correlation": 0}, "ecn": False, "gap": 0}}
TBF_CHILD = {"kind": "tbf", "handle": "70e:", "dev": "veth1", "parent": "70d:1",
             "options": {"rate": 1250000, "burst": 16383, "lat": 50000}}
FOREIGN = {"kind": "tbf", "handle": "8006:", "dev": "eth0", "root": True,
           "options": {"rate": 125000, "burst": 32767, "lat": 50000}}


def test_netem_and_tbf_read_back_as_the_shape_they_render_from() -> None:
    rows = tc_read._qdiscs([NETEM, TBF_CHILD])["veth1"]
    link = LinkQdiscs("veth1", tuple(rows))
    assert link.egress == Shape(50, 5, 1, 10_000_000)
    assert link.ours and link.impaired
    assert link.summary() == ("netem delay 50ms +/- 5ms, loss 1% + tbf rate 10mbit")
    assert tc.reset_commands(link) == [("tc", "qdisc", "del", "dev", "veth1", "root")]


def test_a_default_qdisc_is_no_impairment_and_needs_no_reset() -> None:
    link = LinkQdiscs("eth0", (Qdisc("noqueue", "0:", None),))
    assert not link.impaired and not link.ours and link.summary() == "noqueue"
    assert tc.reset_commands(link) == []


def test_someone_elses_qdisc_is_described_but_never_removed() -> None:
    link = LinkQdiscs("eth0", tuple(tc_read._qdiscs([FOREIGN])["eth0"]))
    assert link.egress == Shape(rate_bps=1_000_000) and not link.ours
    with pytest.raises(ObjectExistsError, match=r"tbf qdisc \(handle 8006:\) that podnet did"):
        tc.reset_commands(link)


def test_an_ingress_redirect_is_followed_to_the_ifb() -> None:
    ifb = tc.ifb_name("eth0")
    filters = [{"protocol": "all", "kind": "u32", "options": {"actions": [
        {"order": 1, "kind": "mirred", "mirred_action": "redirect", "direction": "egress",
         "to_dev": ifb}]}}]
    assert tc_read._redirect(filters) == ifb
    link = tc_read._link("eth0", [Qdisc("ingress", "ffff:", "ffff:fff1")], ifb,
                    [Qdisc("tbf", "70d:", None, {"rate": 625000})])
    assert link.ingress == Shape(rate_bps=5_000_000) and link.ours
    assert link.summary() == f"noqueue; ingress via {ifb}: rate 5mbit"
    assert tc.reset_commands(link) == [("tc", "qdisc", "del", "dev", "eth0", "ingress"),
                                       ("ip", "link", "del", ifb)]
