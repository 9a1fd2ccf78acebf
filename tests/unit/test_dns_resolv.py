"""A pod's resolv.conf (podnet.dns.resolv), golden against kubelet's and containerd's output."""

from __future__ import annotations

from podnet.dns.resolv import ResolvConf, parse_resolv_conf, pod_resolv_conf
from podnet.model.types import PodDNSConfig

KUBE_DNS = ("10.96.0.10",)
NODE = parse_resolv_conf(
    "# written by the node's DHCP client\n"
    "domain corp.example\n"
    "search old.example\n"
    "search corp.example. .\n"
    "nameserver 172.18.0.1 ; the docker host\n"
    "nameserver 172.18.0.2\n"
    "options timeout:2 attempts:3\n"
    "options timeout:1\n"
)


def test_cluster_first_is_the_issue_example_byte_for_byte() -> None:
    text = pod_resolv_conf("dev", cluster_dns=KUBE_DNS).render()
    assert text == (
        "search dev.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


def test_cluster_first_appends_the_node_searches_and_drops_its_options() -> None:
    conf = pod_resolv_conf("dev", "ClusterFirst", cluster_dns=KUBE_DNS, node=NODE)
    assert conf.searches == (
        "dev.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"
    )
    assert conf.nameservers == KUBE_DNS
    assert conf.options == ("ndots:5",)


def test_cluster_first_with_host_net_is_cluster_first_for_lab_pods() -> None:
    a = pod_resolv_conf("dev", "ClusterFirstWithHostNet", cluster_dns=KUBE_DNS, node=NODE)
    assert a == pod_resolv_conf("dev", "ClusterFirst", cluster_dns=KUBE_DNS, node=NODE)


def test_ipv6_only_lab_names_the_ipv6_service_address() -> None:
    text = pod_resolv_conf("kube-system", cluster_dns=("fd00:10:96::a",), domain="lab.example.")
    assert text.render() == (
        "search kube-system.svc.lab.example svc.lab.example lab.example\n"
        "nameserver fd00:10:96::a\n"
        "options ndots:5\n"
    )


def test_default_is_the_node_file_as_kubelet_reads_it() -> None:
    conf = pod_resolv_conf("dev", "Default", cluster_dns=KUBE_DNS, node=NODE)
    assert conf.render() == (
        "search corp.example\n"
        "nameserver 172.18.0.1\n"
        "nameserver 172.18.0.2\n"
        "options timeout:1 attempts:3\n"
    )
    assert pod_resolv_conf("dev", "Default", cluster_dns=KUBE_DNS).render() == ""


def test_cluster_first_without_cluster_dns_falls_back_to_default() -> None:
    assert pod_resolv_conf("dev", cluster_dns=(), node=NODE) == pod_resolv_conf(
        "dev", "Default", cluster_dns=(), node=NODE
    )


def test_none_takes_only_dns_config() -> None:
    config = PodDNSConfig(("192.0.2.53",), ("example.internal",), (("ndots", "1"),))
    conf = pod_resolv_conf("dev", "None", config, cluster_dns=KUBE_DNS, node=NODE)
    assert conf.render() == (
        "search example.internal\nnameserver 192.0.2.53\noptions ndots:1\n"
    )


def test_dns_config_merges_as_kubelet_does() -> None:
    config = PodDNSConfig(
        nameservers=("10.96.0.10", "192.0.2.53"),  # the duplicate goes
        searches=("svc.cluster.local", "extra.example"),
        options=(("ndots", "2"), ("edns0", None), ("single-request-reopen", "")),
    )
    conf = pod_resolv_conf("dev", "ClusterFirst", config, cluster_dns=KUBE_DNS)
    assert conf.render() == (
        "search dev.svc.cluster.local svc.cluster.local cluster.local extra.example\n"
        "nameserver 10.96.0.10\n"
        "nameserver 192.0.2.53\n"
        "options ndots:2 edns0 single-request-reopen\n"
    )
    assert conf.trimmed == ()


def test_limits_cut_as_kubelet_cuts_and_say_so() -> None:
    many = tuple(f"d{i}.example" for i in range(40))
    config = PodDNSConfig(("192.0.2.1", "192.0.2.2", "192.0.2.3"), many)
    conf = pod_resolv_conf("dev", "ClusterFirst", config, cluster_dns=KUBE_DNS)
    assert conf.nameservers == ("10.96.0.10", "192.0.2.1", "192.0.2.2")
    assert len(conf.searches) == 32
    assert conf.searches[-1] == "d28.example"
    assert any("192.0.2.3" in note for note in conf.trimmed)
    assert any("beyond 32" in note for note in conf.trimmed)


def test_a_search_line_over_2048_characters_loses_its_last_domains() -> None:
    long = tuple(f"{'x' * 60}.{'y' * 60}.d{i}" for i in range(20))  # 20 x 126 characters
    conf = pod_resolv_conf("dev", "None", PodDNSConfig(("192.0.2.1",), long), cluster_dns=())
    assert len(" ".join(conf.searches)) <= 2048
    assert conf.searches == long[: len(conf.searches)]
    assert len(conf.searches) == 16
    assert any("2048" in note for note in conf.trimmed)


def test_parse_reads_what_kubelet_reads() -> None:
    expected = ResolvConf(
        ("172.18.0.1", "172.18.0.2"), ("corp.example",), ("timeout:1", "attempts:3")
    )
    assert expected == NODE
    assert parse_resolv_conf("") == ResolvConf()
