"""Names as Kubernetes, kind and the kernel make them (podnet.model.naming)."""

from __future__ import annotations

import re

import pytest

from podnet.model import naming

SAFE = f"[{naming.SAFE_ALPHABET}]"


def test_safe_encode_spells_the_lessons_hash() -> None:
    # The lesson's pod demo-58465f467c-24bcq: Kubernetes spelled the FNV sum 1402190237.
    assert naming.safe_encode("1402190237") == "58465f467c"


def test_fnv1a_32_known_vectors() -> None:
    assert naming.fnv1a_32(b"") == 0x811C9DC5
    assert naming.fnv1a_32(b"a") == 0xE40C292C
    assert naming.fnv1a_32(b"foobar") == 0xBF9CF968


def test_template_hash_is_ten_safe_characters() -> None:
    h = naming.pod_template_hash({"metadata": {"labels": {"app": "demo"}}})
    assert re.fullmatch(f"{SAFE}{{10}}", h)


def test_template_hash_ignores_key_order_but_not_content() -> None:
    a = {"metadata": {"labels": {"app": "demo", "tier": "web"}}, "spec": {"containers": []}}
    b = {"spec": {"containers": []}, "metadata": {"labels": {"tier": "web", "app": "demo"}}}
    c = {"spec": {"containers": []}, "metadata": {"labels": {"tier": "api", "app": "demo"}}}
    assert naming.pod_template_hash(a) == naming.pod_template_hash(b)
    assert naming.pod_template_hash(a) != naming.pod_template_hash(c)


def test_template_hash_tells_a_number_from_a_string() -> None:
    assert naming.pod_template_hash({"port": 80}) != naming.pod_template_hash({"port": "80"})


def test_suffix_is_deterministic_and_depends_on_index() -> None:
    first = naming.pod_suffix("58465f467c", 0)
    assert re.fullmatch(f"{SAFE}{{5}}", first)
    assert naming.pod_suffix("58465f467c", 0) == first
    suffixes = {naming.pod_suffix("58465f467c", i) for i in range(200)}
    assert len(suffixes) == 200
    assert naming.pod_suffix("58465f467c", 0, attempt=1) != first


def test_replica_names_keep_their_names_when_scaled_up() -> None:
    three = naming.replica_pod_names("demo", "58465f467c", 3)
    five = naming.replica_pod_names("demo", "58465f467c", 5)
    assert five[:3] == three
    assert len(set(five)) == 5
    for name in five:
        assert re.fullmatch(f"demo-58465f467c-{SAFE}{{5}}", name)


def test_replica_names_avoid_taken_names() -> None:
    (first,) = naming.replica_pod_names("demo", "58465f467c", 1)
    (other,) = naming.replica_pod_names("demo", "58465f467c", 1, taken={first})
    assert other != first
    assert other.startswith("demo-58465f467c-")


def test_long_deployment_names_are_cut_like_generate_name() -> None:
    deployment = "a" * 63
    (name,) = naming.replica_pod_names(deployment, "58465f467c", 1)
    assert len(name) == 63
    assert name.startswith("a" * 58)
    assert naming.bad_dns1123_label(name) is None


def test_kind_node_names() -> None:
    roles: list[tuple[str, str | None]] = [
        ("control-plane", None),
        ("worker", None),
        ("worker", None),
        ("control-plane", None),
        ("worker", "gpu"),
        ("worker", None),
    ]
    assert naming.kind_node_names("kind", roles) == [
        "kind-control-plane",
        "kind-worker",
        "kind-worker2",
        "kind-control-plane2",
        "gpu",
        "kind-worker3",
    ]


@pytest.mark.parametrize("name", ["a", "web", "kind-worker2", "0abc", "a" * 63])
def test_good_dns1123_labels(name: str) -> None:
    assert naming.bad_dns1123_label(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "is empty"),
        ("Web", "not a DNS-1123 label"),
        ("web_1", "not a DNS-1123 label"),
        ("-web", "not a DNS-1123 label"),
        ("web-", "not a DNS-1123 label"),
        ("a.b", "not a DNS-1123 label"),
        ("a" * 64, "64 characters, more than 63"),
    ],
)
def test_bad_dns1123_labels(name: str, why: str) -> None:
    problem = naming.bad_dns1123_label(name)
    assert problem is not None and why in problem


def test_dns1035_needs_a_leading_letter() -> None:
    assert naming.bad_dns1035_label("web") is None
    assert naming.bad_dns1035_label("1web") is not None


def test_cluster_names_leave_room_for_the_bridge() -> None:
    assert naming.bad_cluster_name("a" * 12) is None
    assert len("br-" + "a" * 12) == 15
    problem = naming.bad_cluster_name("a" * 13)
    assert problem is not None and "more than 12" in problem


def test_suggest_label() -> None:
    assert naming.suggest_label("My_Web Server") == "my-web-server"
    assert naming.suggest_label("--x--") == "x"
    assert naming.suggest_label("a" * 70) == "a" * 63
    assert naming.suggest_label("1st", letter_first=True) == ""


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("app.kubernetes.io/name", True),
        ("a_b.c-d", True),
        ("-app", False),
        ("Example.com/app", False),
        ("a/", False),
        ("x" * 64, False),
    ],
)
def test_label_keys(key: str, ok: bool) -> None:
    assert (naming.bad_label_key(key) is None) is ok


def test_label_values() -> None:
    assert naming.bad_label_value("") is None
    assert naming.bad_label_value("v1.2_3") is None
    assert naming.bad_label_value("not ok") is not None


@pytest.mark.parametrize(
    ("name", "ok"),
    [("http", True), ("h2c", True), ("80", False), ("a--b", False), ("x" * 16, False)],
)
def test_port_names(name: str, ok: bool) -> None:
    assert (naming.bad_port_name(name) is None) is ok


# --- the kernel objects a lab names -------------------------------------------------------------


def test_pod_netns_name_is_a_runtimes_name_and_stable() -> None:
    name = naming.pod_netns_name("kind", "default/web-1")
    assert re.fullmatch(r"cni-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", name)
    assert name == naming.pod_netns_name("kind", "default/web-1")
    assert name != naming.pod_netns_name("kind2", "default/web-1")


def test_unique_veth_fits_an_interface_name_and_salts_a_taken_one() -> None:
    taken: set[str] = set()
    first = naming.unique_veth(("kind", "kind-worker", "default/web-1"), taken)
    again = naming.unique_veth(("kind", "kind-worker", "default/web-1"), taken)
    assert re.fullmatch(r"veth[0-9a-f]{8}", first) and len(first) <= 15
    assert again != first and taken == {first, again}
    assert naming.unique_veth(("kind", "kind-worker", "default/web-1"), set()) == first


@pytest.mark.parametrize("seed", ["kind/kind-worker/veth0a1b2c3d", "x", ""])
def test_link_mac_is_locally_administered_unicast(seed: str) -> None:
    mac = naming.link_mac(seed)
    first = int(mac[:2], 16)
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
    assert first & 0x02 and not first & 0x01  # local, not a multicast group
    assert naming.vtep_mac("kind", "kind-worker") != naming.vtep_mac("kind", "kind-worker", 6)
