"""The desired cluster as pure data (`types`), and the topology loader that builds it.

The loader is imported on first use of one of its names, so that code needing only the types
(the CNI plugin, the planner) does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podnet.model.types import (
    ClusterSpec,
    ContainerSpec,
    NodeSpec,
    PodSpec,
    ServicePort,
    ServiceSpec,
)

if TYPE_CHECKING:
    from podnet.model.loader import (
        DEFAULT_TOPOLOGY_TEXT,
        default_topology,
        load_file,
        load_topology,
    )

__all__ = [
    "DEFAULT_TOPOLOGY_TEXT",
    "ClusterSpec",
    "ContainerSpec",
    "NodeSpec",
    "PodSpec",
    "ServicePort",
    "ServiceSpec",
    "default_topology",
    "load_file",
    "load_topology",
]

_LOADER_NAMES = frozenset(
    {"DEFAULT_TOPOLOGY_TEXT", "default_topology", "load_file", "load_topology"}
)


def __getattr__(name: str) -> object:  # PEP 562: resolved on first access
    if name in _LOADER_NAMES:
        from podnet.model import loader  # lazily, see the module docstring

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
