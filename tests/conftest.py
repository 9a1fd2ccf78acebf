"""Shared fixtures. Tests marked `kernel` build real namespaces and veths, so they refuse to run
anywhere but a sandbox (`./podnet.sh test` or `./podnet.sh sandbox pytest ...`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest


def in_sandbox() -> bool:
    """Entered through podnet.sh's sandbox, and the network namespace holds nothing but `lo`
    (checked at collection, before any test made anything): never the machine's own network."""
    if os.environ.get("PODNET_SANDBOX") != "1":
        return False
    with open("/proc/net/dev") as fh:  # answers for this process's network namespace
        names = {line.split(":")[0].strip() for line in fh.readlines()[2:]}
    return names == {"lo"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if in_sandbox():
        return
    guard = pytest.mark.skip(
        reason="creates kernel objects: run inside the sandbox (./podnet.sh test)"
    )
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(guard)


@pytest.fixture
def netns_factory() -> Iterator[Callable[[str], str]]:
    """Create throw-away named namespaces (lo up); all are deleted after the test."""
    from podnet.kernel import netns
    from podnet.kernel.netlink import Netlink

    made: list[str] = []

    def make(prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        path = netns.create(name)
        made.append(name)
        with Netlink.open(path) as nl:
            nl.set_link("lo", up=True)
        return name

    yield make
    for name in made:
        netns.delete(name)
