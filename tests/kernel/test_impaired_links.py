"""Which links a qdisc delays, drops or rate-limits (`graph` marks them): read with `tc` only in
the namespaces whose link dump shows anything but the default qdisc, so a lab of thousands of
plain pods costs no `tc` process per pod (2,000 pods: `graph -o json` 10.6 s, then 2.4 s)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from podnet.inspect.build import inspect_host
from podnet.kernel import tc_read
from podnet.trace import world

pytestmark = pytest.mark.kernel


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def test_only_namespaces_with_more_than_default_qdiscs_are_read(
        netns_factory: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    plain, shaped, idle = netns_factory("plain"), netns_factory("shaped"), netns_factory("idle")
    for ns in (plain, shaped, idle):
        ip("-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        ip("-n", ns, "link", "set", "va", "up")
        ip("-n", ns, "link", "set", "vb", "up")
    subprocess.run(["ip", "netns", "exec", shaped, "tc", "qdisc", "add", "dev", "va", "root",
                    "tbf", "rate", "10mbit", "burst", "32kbit", "latency", "50ms"], check=True)
    # A link that is down lists `noop` in the dump whatever it has: it must still be read.
    subprocess.run(["ip", "netns", "exec", idle, "tc", "qdisc", "add", "dev", "vb", "root",
                    "tbf", "rate", "20mbit", "burst", "32kbit", "latency", "50ms"], check=True)
    ip("-n", idle, "link", "set", "vb", "down")

    host = inspect_host(names=[plain, shaped, idle])
    by_name = {ns.name: ns for ns in host.namespaces}
    assert {i.ifname: i.qdisc for i in by_name[plain].interfaces} == {
        "lo": "noqueue", "va": "noqueue", "vb": "noqueue"}
    assert by_name[shaped].interface("va").qdisc == "tbf"  # type: ignore[union-attr]

    read: list[str | None] = []
    real = tc_read.read

    def counted(path: str | None) -> dict[str, tc_read.LinkQdiscs]:
        read.append(path)
        return real(path)

    monkeypatch.setattr(tc_read, "read", counted)
    found = world.impaired_links(host)
    assert found == {(shaped, "va"): "rate 10mbit", (idle, "vb"): "rate 20mbit"}, found
    assert sorted(p.rsplit("/", 1)[-1] for p in read if p) == sorted([shaped, idle])
