"""podnet-ipam's store: a file per address as host-local keeps them, owner files that make ADD,
CHECK and DEL independent of how many reservations exist, crash safety, static addresses and one
address per family. Files only: no root, no kernel objects."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from podnet.errors import CniError, StateError
from podnet.ipam.pool import Pool, PoolExhaustedError
from podnet.ipam.ranges import parse_ipam_config, requested_ips
from podnet.ipam.store import Store


def _sets(*subnets: str, **extra: Any) -> Any:
    ranges = [[{"subnet": s, **extra}] for s in (subnets or ("10.5.0.0/29",))]
    return parse_ipam_config({"type": "podnet-ipam", "ranges": ranges}).range_sets


def _want(text: str, source: str = "test") -> Any:
    return requested_ips({"IP": text}, {})


def test_allocates_distinct_and_is_idempotent(tmp_path: Path) -> None:
    store, sets = Store(str(tmp_path), "net"), _sets()
    a = store.allocate("c1", "eth0", sets)[0].ip
    b = store.allocate("c2", "eth0", sets)[0].ip
    assert a != b and str(a) == "10.5.0.2"  # .1 is the gateway
    assert store.allocate("c1", "eth0", sets)[0].ip == a  # a retried ADD gets the same
    assert store.allocate("c1", "net1", sets)[0].ip not in (a, b)


def test_files_are_host_locals(tmp_path: Path) -> None:
    store, sets = Store(str(tmp_path), "net"), _sets()
    store.allocate("c1", "eth0", sets)
    net = tmp_path / "net"
    assert (net / "10.5.0.2").read_bytes() == b"c1\r\neth0"
    assert (net / "last_reserved_ip.0").read_text() == "10.5.0.2"
    assert stat.S_IMODE((net / "10.5.0.2").stat().st_mode) == 0o600
    assert stat.S_IMODE(net.stat().st_mode) == 0o700
    # A reservation host-local made (no owner file) is respected and collected by GC.
    (net / "10.5.0.3").write_bytes(b"hl\r\neth0")
    assert str(store.allocate("c2", "eth0", sets)[0].ip) == "10.5.0.4"
    assert [a.container_id for a in store.gc({("c1", "eth0"), ("c2", "eth0")})] == ["hl"]


def test_round_robins_like_host_local(tmp_path: Path) -> None:
    store, sets = Store(str(tmp_path), "net"), _sets()
    first = store.allocate("c1", "eth0", sets)[0].ip
    store.release("c1", "eth0")
    assert store.allocate("c2", "eth0", sets)[0].ip != first


def test_exhaustion_reserves_nothing(tmp_path: Path) -> None:
    store = Store(str(tmp_path), "net")
    sets = _sets("10.5.0.0/30", "10.6.0.0/30")  # .1 gateway, .2 the only address
    store.allocate("c1", "eth0", sets)
    with pytest.raises(PoolExhaustedError) as info:
        store.allocate("c2", "eth0", sets)
    assert info.value.cni_code == 50
    assert store.held_by("c2", "eth0") == []
    assert store.free(sets) == [0, 0]
    store.release("c1", "eth0")
    store.release("c1", "eth0")  # twice is fine
    assert store.free(sets) == [1, 1]
    assert sorted(os.listdir(tmp_path / "net")) == ["last_reserved_ip.0", "last_reserved_ip.1"]


def test_exhaustion_of_a_later_set_gives_back_the_earlier(tmp_path: Path) -> None:
    store = Store(str(tmp_path), "net")
    store.allocate("c0", "eth0", _sets("10.6.0.0/30"))
    sets = _sets("10.5.0.0/29", "10.6.0.0/30")
    with pytest.raises(PoolExhaustedError):
        store.allocate("c1", "eth0", sets)
    assert store.held_by("c1", "eth0") == [] and not (tmp_path / "net" / "10.5.0.2").exists()


def test_release_frees_only_what_the_attachment_holds(tmp_path: Path) -> None:
    store, sets = Store(str(tmp_path), "net"), _sets("10.5.0.0/30")
    a = store.allocate("a", "eth0", sets)[0].ip
    store.release("a", "eth0")
    b = store.allocate("b", "eth0", sets)[0].ip
    assert a == b  # the only address: B now holds A's old one
    store.release("a", "eth0")  # A's DEL again (the spec allows it)
    assert [x.ip for x in store.held_by("b", "eth0")] == [b]


def test_gc_keeps_only_valid_attachments(tmp_path: Path) -> None:
    store, sets = Store(str(tmp_path), "net"), _sets()
    for c in ("c1", "c2", "c3"):
        store.allocate(c, "eth0", sets)
    leftover = tmp_path / "net" / ".tmp.123.abcd"
    leftover.write_text("half a file")
    gone = store.gc({("c2", "eth0")})
    assert sorted(a.container_id for a in gone) == ["c1", "c3"]
    assert [a.container_id for a in store.held_by("c2", "eth0")] == ["c2"]
    assert not leftover.exists()
    assert len([n for n in os.listdir(tmp_path / "net") if n.startswith("owner.")]) == 1


def test_an_add_killed_after_its_owner_file_converges(tmp_path: Path) -> None:
    """The owner file names the address before the address is taken: an ADD that died between
    the two, run again, takes that address; one that died after takes it back."""
    store, sets = Store(str(tmp_path), "net"), _sets()
    ip = store.allocate("c1", "eth0", sets)[0].ip
    (tmp_path / "net" / str(ip)).unlink()  # died before the address file appeared
    assert store.allocate("c1", "eth0", sets)[0].ip == ip
    assert [a.ip for a in store.held_by("c1", "eth0")] == [ip]
    store.release("c1", "eth0")
    assert store.all() == []


def test_adds_cost_the_same_with_thousands_of_reservations(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store, sets = Store(str(tmp_path), "big"), _sets("10.8.0.0/20")
    net = tmp_path / "big"
    store.allocate("seed", "eth0", sets)
    for i in range(3, 2003):  # 2,000 reservations, written as host-local would
        (net / str(ipaddress.IPv4Address("10.8.0.0") + i)).write_bytes(f"p{i}\r\neth0".encode())
    (net / "last_reserved_ip.0").write_text("10.8.7.210")  # 10.8.0.2002
    reads: list[str] = []
    real_open = os.open

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> int:
        reads.append(str(path))
        return real_open(path, *args, **kwargs)

    def no_listing(*_: Any) -> None:
        raise AssertionError("ADD, CHECK and DEL must not list the reservations")

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr(os, "scandir", no_listing)
    got = store.allocate("new", "eth0", sets)[0].ip
    assert str(got) == "10.8.7.211"
    assert store.held_by("new", "eth0")[0].ip == got
    store.release("new", "eth0")
    assert len(reads) < 40, reads


def test_refuses_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "net").symlink_to(target)
    with pytest.raises(StateError, match="symlink"):
        Store(str(tmp_path), "net").allocate("c1", "eth0", _sets())
    (tmp_path / "net2").mkdir(mode=0o700)
    (tmp_path / "net2" / "10.5.0.2").symlink_to(target / "victim")
    got = Store(str(tmp_path), "net2").allocate("c1", "eth0", _sets())[0].ip
    assert str(got) == "10.5.0.3"  # a planted name is taken, never followed
    assert not (target / "victim").exists()
    owner = next((tmp_path / "net2").glob("owner.*"))
    owner.unlink()
    owner.symlink_to(target / "victim2")
    with pytest.raises(StateError, match="symlink"):
        Store(str(tmp_path), "net2").held_by("c1", "eth0")
    assert not (target / "victim2").exists()


def test_refuses_a_shared_directory(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir(mode=0o777)
    os.chmod(tmp_path / "net", 0o777)
    with pytest.raises(StateError, match="not private"):
        Store(str(tmp_path), "net").allocate("c1", "eth0", _sets())


def test_imports_the_old_one_file_state(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir(mode=0o700)
    (net / "allocations.json").write_text(json.dumps({"allocations": [
        {"ip": "10.5.0.2", "containerID": "old", "ifname": "eth0", "rangeSet": 0}],
        "lastReserved": {"0": "10.5.0.2"}}))
    (net / "lock").write_text("")
    store = Store(str(tmp_path), "net")
    assert str(store.allocate("new", "eth0", _sets())[0].ip) == "10.5.0.3"
    assert [str(a.ip) for a in store.held_by("old", "eth0")] == ["10.5.0.2"]
    assert not (net / "allocations.json").exists() and not (net / "lock").exists()


def test_reports_foreign_old_state(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir(mode=0o700)
    (tmp_path / "net" / "allocations.json").write_text("garbage")
    with pytest.raises(StateError, match="not podnet-ipam state"):
        Store(str(tmp_path), "net").allocate("c1", "eth0", _sets())


# --- one address per family -------------------------------------------------------------------

def test_dual_stack_gives_one_address_per_family(tmp_path: Path) -> None:
    store = Store(str(tmp_path), "net")
    sets = _sets("10.5.0.0/24", "fd00:5::/64")
    got = store.allocate("c1", "eth0", sets)
    assert [str(a.ip) for a in got] == ["10.5.0.2", "fd00:5::2"]
    assert [a.pool.subnet.prefixlen for a in got if a.pool] == [24, 64]
    assert (tmp_path / "net" / "fd00:5::2").read_bytes() == b"c1\r\neth0"
    assert store.free(sets)[0] == 252
    store.release("c1", "eth0")
    assert store.all() == []


def test_pool_generic_over_families() -> None:
    v4 = Pool(ipaddress.IPv4Network("10.9.0.0/30"))
    assert v4.allocate([]) == ipaddress.IPv4Address("10.9.0.2")
    v6 = Pool(ipaddress.IPv6Network("fd00::/125"))
    assert v6.allocate([ipaddress.IPv6Address("fd00::2")]) == ipaddress.IPv6Address("fd00::3")
    with pytest.raises(PoolExhaustedError):
        v4.allocate([ipaddress.IPv4Address("10.9.0.2")])


# --- static addresses ---------------------------------------------------------------------------

def test_static_address_from_each_source() -> None:
    conf = {"args": {"cni": {"ips": ["10.5.0.9"]}}, "runtimeConfig": {"ips": ["fd00:5::9/64"]}}
    got = requested_ips({"IP": "10.5.0.7,10.5.0.9"}, conf)
    assert [(str(a), p, s) for a, p, s in got] == [
        ("10.5.0.7", None, "CNI_ARGS IP"), ("10.5.0.9", None, "CNI_ARGS IP"),
        ("fd00:5::9", 64, "runtimeConfig.ips")]


@pytest.mark.parametrize(("args", "conf"), [
    ({"IP": "10.5.0.300"}, {}), ({}, {"runtimeConfig": {"ips": "10.5.0.7"}}),
    ({}, {"runtimeConfig": {"ips": [7]}})])
def test_bad_static_address_is_code_7(args: dict[str, str], conf: dict[str, Any]) -> None:
    with pytest.raises(CniError) as info:
        requested_ips(args, conf)
    assert info.value.cni_code == 7


def test_static_address_is_honoured(tmp_path: Path) -> None:
    store, sets = Store(str(tmp_path), "net"), _sets("10.5.0.0/24", "fd00:5::/64")
    got = store.allocate("c1", "eth0", sets, _want("10.5.0.77"))
    assert [str(a.ip) for a in got] == ["10.5.0.77", "fd00:5::2"]
    assert [str(a.ip) for a in store.allocate("c1", "eth0", sets, _want("10.5.0.77"))] == \
        ["10.5.0.77", "fd00:5::2"]  # retried: the same


@pytest.mark.parametrize(("ask", "code", "needle"), [
    ("10.6.0.5", 7, "outside"), ("10.5.0.1", 7, "gateway"), ("10.5.0.8/16", 7, "prefix"),
    ("10.5.0.8,10.5.0.9", 7, "second address"), ("10.5.0.50", 11, "held by container c0")])
def test_static_address_refusals(tmp_path: Path, ask: str, code: int, needle: str) -> None:
    store, sets = Store(str(tmp_path), "net"), _sets("10.5.0.0/24")
    store.allocate("c0", "eth0", sets, _want("10.5.0.50"))
    before = sorted(os.listdir(tmp_path / "net"))
    with pytest.raises(CniError) as info:
        store.allocate("c1", "eth0", sets, _want(ask))
    assert info.value.cni_code == code and needle in info.value.message
    assert sorted(os.listdir(tmp_path / "net")) == before


def test_retry_asking_for_another_address_is_refused(tmp_path: Path) -> None:
    store, sets = Store(str(tmp_path), "net"), _sets("10.5.0.0/24")
    store.allocate("c1", "eth0", sets)
    with pytest.raises(CniError, match="already holds"):
        store.allocate("c1", "eth0", sets, _want("10.5.0.99"))


def test_an_upgrade_imports_the_old_default_directory(tmp_path: Path) -> None:
    """An older podnet kept reservations in /run/podnet/ipam: the first call after an upgrade
    takes them over, so no running pod's address is handed out again."""
    old = tmp_path / "run-podnet-ipam" / "net"
    old.mkdir(parents=True, mode=0o700)
    os.chmod(tmp_path / "run-podnet-ipam", 0o700)
    (old / "allocations.json").write_text(json.dumps({"allocations": [
        {"ip": "10.5.0.2", "containerID": "running", "ifname": "eth0"}]}))
    store = Store(str(tmp_path / "var-lib"), "net", legacy_dir=str(tmp_path / "run-podnet-ipam"))
    assert str(store.allocate("new", "eth0", _sets())[0].ip) == "10.5.0.3"
    assert [str(a.ip) for a in store.held_by("running", "eth0")] == ["10.5.0.2"]
    assert not (old / "allocations.json").exists()
