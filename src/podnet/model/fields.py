"""Reading the fields of one document: each wrong field adds a `Problem` and reads as absent."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Mapping
from typing import Any

from podnet.errors import Problem
from podnet.model import naming
from podnet.model.addresses import IPNetwork
from podnet.model.drafts import KIND_SUBNETS, Origin, did_you_mean

__all__ = [
    "SPECIAL_RANGES",
    "Reader",
    "describe",
    "read_cidrs",
    "read_strings",
    "read_target_port",
    "unusable_range",
]

_net = ipaddress.ip_network
# Ranges the kernel will not give a pod, a node or a Service as an ordinary address (RFC 6890's
# special-purpose blocks that routing itself treats apart), with why.
SPECIAL_RANGES: tuple[tuple[IPNetwork, str], ...] = (
    (_net("0.0.0.0/8"), "'this network' (RFC 1122): only a source while a host has no address"),
    (_net("127.0.0.0/8"), "loopback: every network namespace keeps it to itself"),
    (_net("169.254.0.0/16"), "link-local: never routed beyond one link"),
    (_net("224.0.0.0/4"), "multicast: it names groups, not hosts"),
    (_net("240.0.0.0/4"), "reserved, with the broadcast address 255.255.255.255"),
    (_net("::/128"), "the unspecified address"),
    (_net("::1/128"), "loopback: every network namespace keeps it to itself"),
    (_net("::ffff:0:0/96"), "IPv4-mapped: the kernel reads it as IPv4"),
    (_net("fe80::/10"), "link-local: never routed beyond one link"),
    (_net("ff00::/8"), "multicast: it names groups, not hosts"),
)
_PRIVATE = {
    4: f"pick a private range; {KIND_SUBNETS}",
    6: "pick a unique local range (fc00::/7), as kind's fd00:10:244::/56 for pods",
}



def describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


class Reader:
    """Reads the fields of one document; each wrong field adds a problem and reads as absent."""

    def __init__(self, origin: Origin, problems: list[Problem]) -> None:
        self.origin = origin
        self.problems = problems

    def add(self, path: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.origin.where, path, message, hint))

    def mapping(self, value: object, path: str, *, required: str = "") -> dict[Any, Any]:
        """The mapping at `path`; `required` is the hint for when it is missing."""
        if value is None:
            if required:
                self.add(path, "is missing", required)
            return {}
        if isinstance(value, dict):
            return value
        self.add(path, f"must be a mapping, not {describe(value)}", "write key: value lines")
        return {}

    def items(self, value: object, path: str) -> list[Any]:
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.add(path, f"must be a list, not {describe(value)}", "start each item with '- '")
        return []

    def text(self, value: object, path: str, *, required: str = "") -> str | None:
        if value is None:
            if required:
                self.add(path, "is missing", required)
            return None
        if isinstance(value, str):
            return value
        self.add(path, f"must be a string, not {describe(value)}", "put the value in quotes")
        return None

    def integer(self, value: object, path: str, low: int, high: int, hint: str) -> int | None:
        """An integer in low..high, or None (absent, or wrong and reported)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            quoted = isinstance(value, str) and value.strip().isdigit()
            self.add(
                path,
                f"must be an integer, not {describe(value)}",
                "write the number without quotes" if quoted else hint,
            )
            return None
        if not low <= value <= high:
            self.add(path, f"{value} is outside {low}..{high}", hint)
            return None
        return value

    def choice(
        self, value: object, path: str, choices: Collection[str], hint: str = ""
    ) -> str | None:
        text = self.text(value, path)
        if text is None or text in choices:
            return text
        listed = ", ".join(choices)
        self.add(path, f"'{text}' is not one of {listed}", did_you_mean(text, choices, hint))
        return None

    def known(
        self,
        m: dict[Any, Any],
        path: str,
        keys: Collection[str],
        ignored: Collection[str] = (),
        refused: Mapping[str, str] | None = None,
    ) -> None:
        """Report every key of `m` the loader does not read: `refused` ones (fields the lab does
        not model, see `unmodelled`) with their hint, the rest as unknown. `ignored` pass."""
        for key in m:
            if key in keys or key in ignored:
                continue
            where = f"{path}.{key}" if path else str(key)
            if refused is not None and key in refused:
                self.add(where, "is not modelled by podnet's lab", refused[key])
                continue
            self.add(
                where,
                "unknown field",
                did_you_mean(str(key), keys, f"known fields: {', '.join(keys)}"),
            )

    def name(
        self,
        value: object,
        path: str,
        bad: Callable[[str], str | None],
        why: str,
        *,
        required: str = "",
        letter_first: bool = False,
    ) -> str | None:
        """The name at `path`, checked by `bad`. A bad name is reported and still returned,
        so that checks across objects (pinned pods, duplicates) see the name as written."""
        text = self.text(value, path, required=required)
        if text is None:
            return None
        problem = bad(text)
        if problem is not None:
            fixed = naming.suggest_label(text, letter_first=letter_first)
            self.add(path, problem, f"{why}: try '{fixed}'" if fixed and fixed != text else why)
        return text

    def labels(self, value: object, path: str) -> tuple[tuple[str, str], ...]:
        out = []
        for key, val in self.mapping(value, path).items():
            if not isinstance(key, str):
                self.add(path, f"label key {describe(key)} is not a string", "quote the key")
                continue
            if not isinstance(val, str):
                self.add(
                    f"{path}.{key}",
                    f"must be a string, not {describe(val)}",
                    f'label values are strings: write {key}: "{val}"',
                )
                continue
            bad = naming.bad_label_key(key) or naming.bad_label_value(val)
            if bad:
                self.add(
                    f"{path}.{key}",
                    bad,
                    "labels: at most 63 letters, digits, '-', '_' and '.', "
                    "starting and ending with a letter or digit",
                )
                continue
            out.append((key, val))
        return tuple(out)


def read_cidrs(r: Reader, value: object, path: str) -> tuple[IPNetwork, ...] | None:
    """One network, or one per family separated by a comma as kind writes a dual-stack range
    (`10.244.0.0/16,fd00:10:244::/56`): the order is kept, it says which family comes first."""
    example = "write a network and prefix length, such as 10.244.0.0/16 or fd00:10:244::/56"
    text = r.text(value, path, required=example)
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    nets = [_read_network(r, part, path, example) for part in parts]
    if any(net is None for net in nets):
        return None
    found = tuple(net for net in nets if net is not None)
    if len(found) > 2 or len({net.version for net in found}) != len(found):
        r.add(path, f"{text}: give at most one network per family", "such as "
              "10.244.0.0/16,fd00:10:244::/56")
        return None
    return found


def _read_network(r: Reader, text: str, path: str, example: str) -> IPNetwork | None:
    if "/" not in text:
        r.add(path, f"{text} has no prefix length", f"add one: {text}/16, for example")
        return None
    kind = ipaddress.IPv6Network if ":" in text else ipaddress.IPv4Network
    try:
        net = kind(text)
    except ValueError as exc:
        if "host bits set" in str(exc):
            network = kind(text, strict=False)
            r.add(path, f"{text} has host bits set", f"write the network address: {network}")
        else:
            r.add(path, f"'{text}' is not a CIDR: {exc}", example)
        return None
    why = unusable_range(net)
    if why is not None:
        r.add(path, why, _PRIVATE[net.version])
        return None
    return net


def unusable_range(net: IPNetwork) -> str | None:
    """Why the kernel cannot use `net` for the lab's addresses (None: it can)."""
    for special, why in SPECIAL_RANGES:
        if net.version == special.version and net.overlaps(special):
            verb = "lies in" if net.subnet_of(special) else "overlaps"  # type: ignore[arg-type]
            return f"{net} {verb} {special}, {why}"
    return None


def read_target_port(r: Reader, value: object, path: str) -> int | str | None:
    if isinstance(value, str):
        bad = naming.bad_port_name(value)
        if bad:
            r.add(path, bad, "give a port number, or the name of a container port")
        return value
    return r.integer(value, path, 1, 65535, "a port number is 1..65535, or a container port's name")


def read_strings(r: Reader, value: object, path: str) -> list[str]:
    if isinstance(value, str):
        key = path.rsplit(".", 1)[-1]
        # A command line with shell syntax needs a shell to mean what it says.
        shell = key == "command" and any(c in value for c in "|&;<>$`'\"*?")
        flow = f'[sh, -c, "{value}"]' if shell else f"[{', '.join(value.split())}]"
        r.add(path, "must be a list of strings, not a string", f"write {key}: {flow}")
        return []
    words = []
    for i, word in enumerate(r.items(value, path)):
        text = r.text(word, f"{path}[{i}]")
        if text is not None:
            words.append(text)
    return words
