"""Names as Kubernetes, kind, container runtimes and the kernel make and accept them. Pure
functions, no imports beyond the standard library's `re`, `hashlib` and `uuid`, so that anything
(the CNI plugin's start-up too) may call them cheaply.

Replica names follow the Deployment controller: `<deployment>-<pod-template-hash>-<suffix>`, as in
`demo-58465f467c-24bcq`. Kubernetes hashes the pod template with FNV-32a and spells the decimal
digits of the sum in its "safe" alphabet (no vowels, so no words; no 0/1/3, so no look-alikes); the
suffix is random. Here the suffix is derived from (hash, replica index) instead, so one file always
loads to the same names, and scaling up keeps the names of the replicas that were already there.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "CLUSTER_NAME_MAX",
    "CLUSTER_NAME_RULE",
    "NAME_MAX",
    "SAFE_ALPHABET",
    "bad_cluster_name",
    "bad_dns1035_label",
    "bad_dns1123_label",
    "bad_dns1123_subdomain",
    "bad_label_key",
    "bad_label_value",
    "bad_port_name",
    "canonical",
    "fnv1a_32",
    "kind_node_names",
    "link_mac",
    "pod_netns_name",
    "pod_suffix",
    "pod_template_hash",
    "replica_pod_names",
    "safe_encode",
    "suggest_label",
    "unique_veth",
    "vtep_mac",
]

# k8s.io/apimachinery/pkg/util/rand: "bcdfghjklmnpqrstvwxz2456789".
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
HASH_LEN = 10  # the decimal digits of a 32-bit sum, zero-padded so every hash has 10
SUFFIX_LEN = 5
NAME_MAX = 63  # DNS-1123 label; a pod's name is its hostname (the kernel allows 64 bytes)
GENERATED_BASE_MAX = NAME_MAX - SUFFIX_LEN  # apiserver's generateName truncates the base to 58
CLUSTER_NAME_MAX = 12  # the lab's bridge is `br-<cluster>`, and interface names hold 15 bytes
CLUSTER_NAME_RULE = (
    f"at most {CLUSTER_NAME_MAX} lowercase letters, digits and '-', so that the bridge "
    "br-<name> fits the kernel's 15-byte interface names"
)

_FNV32_OFFSET, _FNV32_PRIME = 0x811C9DC5, 0x01000193
_FNV64_OFFSET, _FNV64_PRIME = 0xCBF29CE484222325, 0x100000001B3
_MASK64 = (1 << 64) - 1

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9]|-(?!-))*[a-z0-9]|[a-z]")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def safe_encode(text: str) -> str:
    """Kubernetes' `rand.SafeEncodeString`: each byte picks a letter of the safe alphabet."""
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in text.encode())


def fnv1a_32(data: bytes) -> int:
    h = _FNV32_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def _mix64(data: bytes) -> int:
    """FNV-1a 64 then the splitmix64 finaliser, so that near-identical inputs scatter."""
    h = _FNV64_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV64_PRIME) & _MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
    return h ^ (h >> 31)


def canonical(value: object) -> str:
    """A text form of parsed YAML that ignores key order and layout: equal data, equal text."""
    if isinstance(value, Mapping):
        items = sorted((canonical(k), canonical(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    return repr(value)


def pod_template_hash(template: object) -> str:
    """The `pod-template-hash` of a Deployment's `spec.template`: 10 safe characters that stay
    the same while the template does and change when any field of it (image included) does."""
    digits = f"{fnv1a_32(canonical(template).encode()):0{HASH_LEN}d}"
    return safe_encode(digits)


def pod_suffix(template_hash: str, index: int, attempt: int = 0) -> str:
    """The 5-character suffix of replica `index`; `attempt` > 0 draws again after a clash."""
    x = _mix64(f"{template_hash}/{index}/{attempt}".encode())
    out = []
    for _ in range(SUFFIX_LEN):
        x, r = divmod(x, len(SAFE_ALPHABET))
        out.append(SAFE_ALPHABET[r])
    return "".join(out)


def replica_pod_names(
    deployment: str, template_hash: str, replicas: int, taken: Iterable[str] = ()
) -> tuple[str, ...]:
    """Names of a Deployment's pods, unique among themselves and `taken`. As the apiserver does
    for `generateName`, the base `<deployment>-<hash>-` is cut to 58 characters so every name
    fits in 63."""
    base = f"{deployment}-{template_hash}-"[:GENERATED_BASE_MAX]
    used = set(taken)
    names: list[str] = []
    for index in range(replicas):
        attempt = 0
        while (name := base + pod_suffix(template_hash, index, attempt)) in used:
            attempt += 1
        used.add(name)
        names.append(name)
    return tuple(names)


def kind_node_names(cluster: str, nodes: Sequence[tuple[str, str | None]]) -> list[str]:
    """Node names as kind gives them, from (role, explicit name or None) in file order:
    `kind-control-plane`, `kind-control-plane2`, ..., `kind-worker`, `kind-worker2`, ...
    Nodes that set `name:` keep it and do not take a number."""
    seen: dict[str, int] = {}
    names = []
    for role, explicit in nodes:
        if explicit is not None:
            names.append(explicit)
            continue
        n = seen[role] = seen.get(role, 0) + 1
        names.append(f"{cluster}-{role}{n if n > 1 else ''}")
    return names


# --- the kernel objects a lab names: derived from stable seeds (cluster, node, pod), so a second
# `up` decides the same ones and `podnet explain` can name each before it exists.

_NETNS_UUID_NAMESPACE = uuid.UUID("0b7f5a2e-4f4e-4c1b-9d8a-706f646e6574")


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


def pod_netns_name(cluster: str, pod_key: str) -> str:
    """`cni-<uuid>`, as container runtimes name a pod's namespace; the same for the same pod."""
    return f"cni-{uuid.uuid5(_NETNS_UUID_NAMESPACE, f'{cluster}/{pod_key}')}"


def unique_veth(seed: tuple[str, ...], taken: set[str]) -> str:
    """`veth` and 8 hex digits of a hash of `seed`, as the CNI plugins name a pod's host end;
    salted until it is not in `taken` (and then added to it)."""
    salt = 0
    while True:
        name = "veth" + _short_hash(*seed, str(salt))
        if name not in taken:
            taken.add(name)
            return name
        salt += 1


def link_mac(seed: str) -> str:
    """A stable, locally administered unicast MAC derived from `seed`: chosen by the plan, so
    `podnet explain` can name every neighbour entry that points at it before anything exists."""
    raw = bytearray(hashlib.sha256(seed.encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def vtep_mac(cluster: str, node: str, family: int = 4) -> str:
    """The MAC of a node's VXLAN device. flannel lets the kernel pick one and publishes it in a
    node annotation; deciding it here lets the plan name every neighbour and FDB entry."""
    return link_mac(f"vtep/{cluster}/{node}" + ("" if family == 4 else f"/{family}"))


def _bad_name(name: str, pattern: re.Pattern[str], rule: str, limit: int) -> str | None:
    if not name:
        return "is empty"
    if len(name) > limit:
        return f"'{name}' is {len(name)} characters, more than {limit}"
    if pattern.fullmatch(name) is None:
        return f"'{name}' is not a {rule}"
    return None


def bad_dns1123_label(name: str, limit: int = NAME_MAX) -> str | None:
    """Why `name` is not a DNS-1123 label (lowercase letters, digits, '-'), or None if it is."""
    return _bad_name(name, _DNS1123_LABEL, "DNS-1123 label", limit)


def bad_dns1123_subdomain(name: str) -> str | None:
    """DNS-1123 subdomains (labels joined by '.', at most 253): the names of most Kubernetes
    objects, NetworkPolicies among them."""
    return _bad_name(name, _DNS1123_SUBDOMAIN, "DNS-1123 subdomain", 253)


def bad_dns1035_label(name: str) -> str | None:
    """As `bad_dns1123_label`, and the name must start with a letter (Service names)."""
    return _bad_name(name, _DNS1035_LABEL, "DNS-1035 label", NAME_MAX)


def bad_cluster_name(name: str) -> str | None:
    """Why `name` cannot name a lab (CLUSTER_NAME_RULE), or None. The one check of a lab name:
    the loader, the CLI's --cluster and every path under /run/podnet go through it."""
    return _bad_name(name, _DNS1123_LABEL, "DNS-1123 label", CLUSTER_NAME_MAX)


def suggest_label(name: str, limit: int = NAME_MAX, *, letter_first: bool = False) -> str:
    """The nearest valid label to `name`, for hints; '' if there is no obvious one."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:limit].rstrip("-")
    if letter_first and not text[:1].isalpha():
        return ""
    return text


def bad_label_key(key: str) -> str | None:
    """Kubernetes label keys: an optional DNS subdomain prefix and '/', then a name of at most
    63 characters of letters, digits, '-', '_' and '.', starting and ending alphanumeric."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or _DNS1123_SUBDOMAIN.fullmatch(prefix) is None):
        return f"'{key}' has a prefix that is not a DNS subdomain"
    if not name or len(name) > NAME_MAX or _LABEL_NAME.fullmatch(name) is None:
        return f"'{key}' is not a valid label key"
    return None


def bad_label_value(value: str) -> str | None:
    if value and (len(value) > NAME_MAX or _LABEL_NAME.fullmatch(value) is None):
        return f"'{value}' is not a valid label value"
    return None


def bad_port_name(name: str) -> str | None:
    """Kubernetes port names (IANA service names): at most 15 lowercase letters, digits and
    '-', with at least one letter, no '--', not starting or ending with '-'."""
    if len(name) > 15 or _PORT_NAME.fullmatch(name) is None or not re.search("[a-z]", name):
        return f"'{name}' is not a port name (IANA service name)"
    return None
