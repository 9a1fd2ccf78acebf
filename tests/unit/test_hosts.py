"""A pod's /etc/hosts must read exactly as kubelet writes it (pkg/kubelet/kubelet_pods.go)."""

from __future__ import annotations

import pytest

from podnet.runtime.hosts import pod_hostname, render_hosts
from podnet.runtime.procs import parse_stat

KUBELET_HEADER = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def test_plain_pod_matches_kubelet_byte_for_byte() -> None:
    text = render_hosts("10.244.1.32", "tomcat7-deployment-76744f6846-7v5lr")
    assert text == KUBELET_HEADER + "10.244.1.32\ttomcat7-deployment-76744f6846-7v5lr\n"


def test_extra_entries_follow_as_host_aliases() -> None:
    # The example of the Kubernetes documentation (hostAliases-pod), as `kubectl logs` shows it.
    text = render_hosts(
        "10.200.0.5",
        "hostaliases-pod",
        [("127.0.0.1", ["foo.local", "bar.local"]), ("10.1.2.3", ["foo.remote", "bar.remote"])],
    )
    assert text == (
        KUBELET_HEADER + "10.200.0.5\thostaliases-pod\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "127.0.0.1\tfoo.local\tbar.local\n"
        "10.1.2.3\tfoo.remote\tbar.remote\n"
    )


def test_dual_stack_pod_gets_one_line_per_address() -> None:
    text = render_hosts(["10.244.0.7", "fd00:10:244::7"], "web")
    assert text.endswith("10.244.0.7\tweb\nfd00:10:244::7\tweb\n")


@pytest.mark.parametrize(
    ("ip", "name", "extra"),
    [
        ("10.0.0.1", "evil\n10.6.6.6\tbank", ()),
        ("10.0.0.1 10.0.0.2", "web", ()),
        ("10.0.0.1", "", ()),
        ("10.0.0.1", "web", [("10.0.0.9", ["svc #comment"])]),
        ("10.0.0.1", "web", [("10.0.0.9", [])]),
    ],
)
def test_fields_that_would_forge_lines_are_refused(
    ip: str, name: str, extra: list[tuple[str, list[str]]]
) -> None:
    with pytest.raises(ValueError, match="hosts"):
        render_hosts(ip, name, extra)


def test_long_pod_names_are_cut_as_kubelet_cuts_them() -> None:
    assert pod_hostname("web-1") == "web-1"
    name = "a" * 62 + "-b" + "c" * 10  # the 63rd character is '-': kubelet trims it
    assert pod_hostname(name) == "a" * 62
    assert pod_hostname("x" * 63) == "x" * 63
    with pytest.raises(ValueError, match="no valid hostname"):
        pod_hostname("-" * 70)


def test_stat_parsing_counts_fields_after_the_last_parenthesis() -> None:
    # A command name may hold spaces and parentheses: `comm` is "a) (b c".
    fields = " ".join(str(n) for n in range(4, 53))
    raw = f"4242 (a) (b c) S {fields}\n".encode()
    state, starttime = parse_stat(raw)
    assert state == "S"
    assert starttime == 22  # field 22 of proc(5)
