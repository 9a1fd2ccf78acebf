"""Pure parts of the CNI plugin: env and config validation, results per spec version, the
podnet-ipam store, the agent protocol, the installer. No root, no kernel objects."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from podnet.cni import wire
from podnet.cni.dispatch import handle
from podnet.cni.install import InstallOptions, install, render_conflist
from podnet.cni.netconf import parse_netconf, parse_podnet
from podnet.cni.result import Result
from podnet.cni.spec import check_version, parse_cni_args, parse_request
from podnet.errors import CniError, StateError
from podnet.ipam.ranges import parse_ipam_config

GOOD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc-1.x_y", "CNI_NETNS": "/run/netns/p",
            "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni"}


def _code(fn: Any, *args: Any) -> CniError:
    with pytest.raises(CniError) as info:
        fn(*args)
    return info.value


# --- environment ----------------------------------------------------------------------------

def test_request_parses_a_good_environment() -> None:
    req = parse_request({**GOOD_ENV, "CNI_ARGS": "K8S_POD_NAME=web;IgnoreUnknown=1"})
    assert (req.command, req.container_id, req.ifname) == ("ADD", "abc-1.x_y", "eth0")
    assert req.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert req.args == {"K8S_POD_NAME": "web", "IgnoreUnknown": "1"}


@pytest.mark.parametrize(("key", "value"), [
    ("CNI_COMMAND", "ADDX"), ("CNI_CONTAINERID", "../x"), ("CNI_CONTAINERID", "-lead"),
    ("CNI_CONTAINERID", "a/b"), ("CNI_CONTAINERID", "x" * 201), ("CNI_IFNAME", "x" * 16),
    ("CNI_IFNAME", "."), ("CNI_IFNAME", "a b"), ("CNI_IFNAME", "a:b"), ("CNI_IFNAME", "a/b"),
    ("CNI_NETNS", ""), ("CNI_NETNS", "relative/path"), ("CNI_ARGS", "novalue"),
])
def test_bad_environment_names_the_variable(key: str, value: str) -> None:
    err = _code(parse_request, {**GOOD_ENV, key: value})
    assert err.cni_code == 4 and key in err.message


def test_ifname_of_15_bytes_is_fine_and_containerd_ids_are_long() -> None:
    req = parse_request({**GOOD_ENV, "CNI_IFNAME": "x" * 15, "CNI_CONTAINERID": "f" * 64})
    assert len(req.ifname) == 15


def test_version_needs_no_container() -> None:
    assert parse_request({"CNI_COMMAND": "VERSION"}).command == "VERSION"
    assert parse_cni_args("") == {}


@pytest.mark.parametrize("version", [None, "", "0.3.1", "2.0.0", "x"])
def test_unsupported_versions_are_code_1(version: str | None) -> None:
    assert _code(check_version, version).cni_code == 1


# --- configuration -------------------------------------------------------------------------

def _conf(**extra: Any) -> bytes:
    doc = {"cniVersion": "1.0.0", "name": "net", "type": "podnet-cni",
           "ipam": {"type": "podnet-ipam", "subnet": "10.1.0.0/24"}, **extra}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("extra", "code", "needle"), [
    ({"wat": 1}, 2, "wat"), ({"mode": "l3"}, 2, "mode"), ({"mtu": 10}, 7, "mtu"),
    ({"ipam": {}}, 7, "ipam"), ({"ipam": {"type": "../x"}}, 7, "ipam"),
    ({"hairpinMode": "yes"}, 7, "hairpinMode"), ({"bridge": "x" * 16}, 7, "bridge"),
    ({"stateDir": "rel"}, 7, "stateDir"),
])
def test_config_errors(extra: dict[str, Any], code: int, needle: str) -> None:
    err = _code(lambda: parse_podnet(parse_netconf(_conf(**extra))))
    assert err.cni_code == code and needle in err.message


def test_config_decode_and_name_errors() -> None:
    assert _code(parse_netconf, b"{").cni_code == 6
    assert _code(parse_netconf, b"[]").cni_code == 7
    assert _code(parse_netconf, _conf(name="../x")).cni_code == 7


def test_config_defaults() -> None:
    conf = parse_podnet(parse_netconf(_conf()))
    assert (conf.mode, conf.mtu, conf.ip_masq, conf.is_gateway) == ("ptp", 1500, False, True)


def test_ipam_ranges_as_host_local_reads_them() -> None:
    cfg = parse_ipam_config({"type": "podnet-ipam", "ranges": [
        [{"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.10", "rangeEnd": "10.2.0.20",
          "gateway": "10.2.0.254"}],
        [{"subnet": "10.3.0.0/24"}, {"subnet": "10.4.0.0/24"}]], "reserved": ["10.2.0.10"]})
    assert len(cfg.range_sets) == 2 and len(cfg.range_sets[1].pools) == 2
    pool = cfg.range_sets[0].pools[0]
    assert pool.gateway_address == ipaddress.IPv4Address("10.2.0.254")
    assert pool.capacity() == 10  # 11 addresses, one reserved


@pytest.mark.parametrize(("ipam", "code"), [
    ({"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.9.0.1"}]]}, 7),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.128/25"}]]}, 7),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}, 7),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}, 7),
    ({"ranges": [[{"subnet": "10.0.0.0/24", "exclude": "x"}]]}, 2),
    ({"ranges": []}, 7), ({"subnet": "10.0.0.0/24", "dataDir": "rel"}, 7),
])
def test_ipam_config_errors(ipam: dict[str, Any], code: int) -> None:
    assert _code(parse_ipam_config, {"type": "podnet-ipam", **ipam}).cni_code == code


# --- results per version -------------------------------------------------------------------

RESULT_11 = {"cniVersion": "1.1.0",
             "interfaces": [{"name": "veth1", "mac": "aa:bb:cc:dd:ee:ff"},
                            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:00", "sandbox": "/x",
                             "mtu": 1400}],
             "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 1}],
             "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "priority": 5}],
             "dns": {"nameservers": ["10.96.0.10"]}}


def test_result_round_trips_in_1_1() -> None:
    assert Result.from_json(RESULT_11).to_json("1.1.0") == RESULT_11


def test_result_written_for_older_versions() -> None:
    r = Result.from_json(RESULT_11)
    v1 = r.to_json("1.0.0")
    assert "mtu" not in v1["interfaces"][1] and "priority" not in v1["routes"][0]
    assert "version" not in v1["ips"][0]
    v04 = r.to_json("0.4.0")
    assert v04["ips"][0]["version"] == "4" and v04["cniVersion"] == "0.4.0"


def test_chaining_shifts_interface_indexes() -> None:
    prev = Result.from_json({"interfaces": [{"name": "a"}, {"name": "b"}],
                             "ips": [{"address": "192.0.2.1/24", "interface": 0}]})
    merged = Result.from_json(RESULT_11).merged_after(prev).to_json("1.0.0")
    assert [i["name"] for i in merged["interfaces"]] == ["a", "b", "veth1", "eth0"]
    assert [ip["interface"] for ip in merged["ips"]] == [0, 3]


def test_bad_prev_result_is_a_decode_error() -> None:
    assert _code(Result.from_json, {"ips": [{"address": "nope"}]}).cni_code == 6


# --- podnet-ipam through dispatch (files only: no kernel) ------------------------------------

def _ipam_conf(tmp_path: Path, version: str = "1.1.0", **extra: Any) -> bytes:
    return json.dumps({"cniVersion": version, "name": "n1", "type": "podnet-ipam", **extra,
                       "ipam": {"type": "podnet-ipam", "subnet": "10.7.0.0/30",
                                "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp_path)}}
                      ).encode()


def test_podnet_ipam_commands(tmp_path: Path) -> None:
    env = {**GOOD_ENV, "CNI_COMMAND": "ADD"}
    out = handle("podnet-ipam", env, _ipam_conf(tmp_path))
    assert out.code == 0, out
    doc = json.loads(out.stdout)
    assert doc["ips"] == [{"address": "10.7.0.2/30", "gateway": "10.7.0.1"}]
    assert doc["routes"] == [{"dst": "0.0.0.0/0"}]
    status = handle("podnet-ipam", {"CNI_COMMAND": "STATUS"}, _ipam_conf(tmp_path))
    assert json.loads(status.stdout)["code"] == 50
    assert handle("podnet-ipam", {**env, "CNI_COMMAND": "CHECK"}, _ipam_conf(tmp_path)).code == 0
    gc = _ipam_conf(tmp_path, **{"cni.dev/valid-attachments": []})
    assert handle("podnet-ipam", {"CNI_COMMAND": "GC"}, gc).code == 0
    assert handle("podnet-ipam", {"CNI_COMMAND": "STATUS"}, _ipam_conf(tmp_path)).code == 0
    check = handle("podnet-ipam", {**env, "CNI_COMMAND": "CHECK"}, _ipam_conf(tmp_path))
    assert check.code != 0
    assert handle("podnet-ipam", {**env, "CNI_COMMAND": "DEL"}, _ipam_conf(tmp_path)).code == 0


def test_status_and_gc_need_1_1(tmp_path: Path) -> None:
    out = handle("podnet-ipam", {"CNI_COMMAND": "STATUS"}, _ipam_conf(tmp_path, "1.0.0"))
    assert json.loads(out.stdout)["code"] == 1


def test_version_output() -> None:
    out = handle("podnet-cni", {"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"1.0.0"}')
    doc = json.loads(out.stdout)
    assert out.code == 0 and doc["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]


def test_errors_are_json_objects_with_the_config_version() -> None:
    out = handle("podnet-cni", {**GOOD_ENV, "CNI_IFNAME": ""}, _conf(cniVersion="0.4.0"))
    doc = json.loads(out.stdout)
    assert out.code == 1 and doc["code"] == 4 and "CNI_IFNAME" in doc["msg"]


# --- agent protocol and installed executables -------------------------------------------------

def test_wire_env_round_trip() -> None:
    env = {"A": "1", "B": "x=y", "C": ""}
    assert wire.decode_env(wire.encode_env(env)) == env


def test_agent_answers_a_client(tmp_path: Path) -> None:
    from podnet.cni.agent import Agent
    from podnet.cni.client import ask_agent

    agent = Agent(str(tmp_path / "run" / "a.sock"))
    agent.bind()
    server = threading.Thread(target=agent.serve_forever)
    server.start()
    try:
        got = ask_agent("podnet-cni", agent.socket_path, {"CNI_COMMAND": "VERSION"}, b"{}")
        assert got is not None and got[0] == 0 and b"supportedVersions" in got[1]
        assert stat.S_IMODE(os.stat(agent.socket_path).st_mode) == 0o600
    finally:
        agent.stop()
        server.join(10)
    assert ask_agent("podnet-cni", agent.socket_path, {}, b"") is None  # gone: caller runs it


def test_conflist_for_containerd_1_6() -> None:
    doc = render_conflist(InstallOptions(mode="bridge", subnet="10.9.0.0/24"))
    assert doc["cniVersion"] == "1.0.0" and doc["cniVersions"] == ["1.0.0", "1.1.0"]
    plugin = doc["plugins"][0]
    assert plugin["type"] == "podnet-cni" and plugin["mode"] == "bridge"
    assert plugin["ipam"]["ranges"] == [[{"subnet": "10.9.0.0/24"}]]
    assert plugin["capabilities"] == {"ips": True}
    # kubelet's hostPort and bandwidth: the reference plugins, after podnet-cni.
    assert [(p["type"], p["capabilities"]) for p in doc["plugins"][1:]] == [
        ("portmap", {"portMappings": True}), ("bandwidth", {"bandwidth": True})]
    # podman's CNI backend shows labels of any conflist (subnets only for bridge/macvlan).
    assert doc["args"]["podman_labels"]["podnet.subnets"] == "10.9.0.0/24"
    assert _code(render_conflist, InstallOptions(subnet="10.9.0.0/33")).cni_code == 7


@pytest.mark.parametrize("client", ["python", "c"])
def test_installed_plugin_runs_without_an_agent(tmp_path: Path, client: str) -> None:
    if client == "c" and not any(os.access(f"{d}/cc", os.X_OK) for d in ("/usr/bin", "/bin")):
        pytest.skip("no C compiler")
    done = install(InstallOptions(bin_dir=str(tmp_path / "bin"), conf_dir=str(tmp_path / "d"),
                                  socket=str(tmp_path / "nobody.sock"), agent="never",
                                  client=client))  # type: ignore[arg-type]
    assert done.client == client
    conf = json.loads((tmp_path / "d" / "10-podnet.conflist").read_text())
    assert conf["plugins"][0]["type"] == "podnet-cni"
    for exe in done.executables:
        assert os.access(exe, os.X_OK)
        # A runtime's environment: no virtualenv, no PYTHONPATH.
        proc = subprocess.run([exe], input=b'{"cniVersion":"1.0.0"}', capture_output=True,
                              env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
                              check=False, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"


def test_cli_install_and_uninstall(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from podnet.cli.cni import cni_group

    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    runner = CliRunner()
    sock = str(tmp_path / "agent.sock")
    result = runner.invoke(cni_group, ["install", "--bin-dir", str(bin_dir), "--conf-dir",
                                       str(conf_dir), "--mode", "bridge", "--subnet",
                                       "10.244.7.0/24", "--client", "python", "--socket", sock])
    assert result.exit_code == 0, result.output
    assert "starts the agent" in result.output
    assert (bin_dir / "portmap").resolve() == Path("/usr/lib/cni/portmap")
    conf = json.loads((conf_dir / "10-podnet.conflist").read_text())
    assert conf["plugins"][0]["mode"] == "bridge"
    script = (bin_dir / "podnet-cni").read_text()
    assert script.startswith("#!") and " -IS\n" in script.splitlines()[0] + "\n"
    result = runner.invoke(cni_group, ["uninstall", "--bin-dir", str(bin_dir), "--conf-dir",
                                       str(conf_dir), "--socket", sock])
    assert result.exit_code == 0 and not (bin_dir / "podnet-cni").exists()
    assert not (bin_dir / "portmap").exists() and Path("/usr/lib/cni/portmap").exists()


def test_install_refuses_without_the_reference_plugins(tmp_path: Path) -> None:
    opts = InstallOptions(bin_dir=str(tmp_path / "bin"), conf_dir=str(tmp_path / "d"),
                          reference_dir=str(tmp_path / "nowhere"), socket=str(tmp_path / "s"))
    with pytest.raises(StateError, match="portmap"):
        install(opts)
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())
    done = install(InstallOptions(**{**opts.__dict__, "portmap": False, "bandwidth": False}))
    plugins = json.loads(Path(done.conflist).read_text())["plugins"]
    assert [p["type"] for p in plugins] == ["podnet-cni"]


# --- odd input: never code 999, never a traceback ----------------------------------------------

def _add(stdin: bytes) -> dict[str, Any]:
    out = handle("podnet-cni", GOOD_ENV, stdin)
    assert out.code == 1 and not out.stderr, out
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


@pytest.mark.parametrize(("prev", "field"), [
    ({"ips": 5}, "prevResult.ips"), ({"ips": [7]}, "prevResult.ips[0]"),
    ({"interfaces": [{"name": "a", "mac": {}}]}, "prevResult.interfaces[0].mac"),
    ({"interfaces": [{"name": 1}]}, "prevResult.interfaces[0].name"),
    ({"ips": [{"address": "10.0.0.1/24", "interface": True}]}, "prevResult.ips[0].interface"),
    ({"routes": [{"dst": "0.0.0.0/0", "mtu": []}]}, "prevResult.routes[0].mtu"),
    ({"dns": {"nameservers": [1]}}, "prevResult.dns.nameservers"), ({"dns": 3}, "prevResult.dns"),
    (5, "prevResult"), ("x", "prevResult"),
])
def test_prev_result_of_the_wrong_shape_names_the_field(prev: Any, field: str) -> None:
    doc = _add(_conf(prevResult=prev))
    assert doc["code"] == 6 and doc["msg"].startswith(field + ":"), doc


def test_deep_nesting_is_code_6_naming_the_field() -> None:
    head = _conf().decode()[:-1]
    doc = _add((head + ', "prevResult": ' + "[" * 100_000 + "]" * 100_000 + "}").encode())
    assert doc["code"] == 6 and 'field "prevResult"' in doc["msg"]


def test_a_config_over_the_cap_says_too_large() -> None:
    doc = _add(b" " * ((16 << 20) + 1))
    assert doc["code"] == 6 and "too large" in doc["msg"]


@pytest.mark.parametrize(("path", "needle"), [
    ("/proc/self/ns/mnt", "mount namespace"), ("/proc/self/ns/uts", "UTS namespace"),
    ("/proc/self/ns/net", "own network namespace"), ("/etc/hostname", "not a namespace file"),
    ("/nonexistent/ns", "does not exist"),
])
def test_cni_netns_is_asked_of_the_kernel(path: str, needle: str) -> None:
    from podnet.cni.podns import pod_namespace

    with pytest.raises(CniError) as info, pod_namespace(path):
        pass
    assert "CNI_NETNS" in info.value.message and needle in info.value.message
    assert info.value.cni_code == (3 if needle == "does not exist" else 4)


def test_podnet_cni_refuses_ipv6_ranges_for_now() -> None:
    ipam = {"type": "podnet-ipam", "ranges": [[{"subnet": "10.1.0.0/24"}],
                                              [{"subnet": "fd00::/64"}]]}
    err = _code(lambda: parse_podnet(parse_netconf(_conf(ipam=ipam))))
    assert err.cni_code == 2 and "subnet" in err.message


def test_podnet_ipam_hands_out_one_address_per_family(tmp_path: Path) -> None:
    doc = json.dumps({"cniVersion": "1.0.0", "name": "ds", "type": "podnet-ipam", "ipam": {
        "type": "podnet-ipam", "dataDir": str(tmp_path),
        "ranges": [[{"subnet": "10.7.0.0/24"}], [{"subnet": "fd00:7::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]},
        "runtimeConfig": {"ips": ["fd00:7::77/64"]}}).encode()
    out = handle("podnet-ipam", GOOD_ENV, doc)
    assert out.code == 0, out
    got = json.loads(out.stdout)
    assert [ip["address"] for ip in got["ips"]] == ["10.7.0.2/24", "fd00:7::77/64"]
    assert [ip["gateway"] for ip in got["ips"]] == ["10.7.0.1", "fd00:7::1"]
    assert {r["dst"] for r in got["routes"]} == {"0.0.0.0/0", "::/0"}
