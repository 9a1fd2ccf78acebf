"""Running one CNI command against a plugin's handlers, shared by the main plugin and the IPAM.

ADD answers with a result; DEL, CHECK, GC and STATUS answer with nothing, or raise. A command
without a handler does nothing, as the spec allows (a plugin older than 1.1 has no GC).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podnet.cni.result import Result

__all__ = ["run_command"]


def run_command(
    command: str, add: Callable[[], Result], others: Mapping[str, Callable[[], object]]
) -> Result | None:
    """`add()`'s result for ADD; else run the handler `others` has for `command`, and None."""
    if command == "ADD":
        return add()
    handler = others.get(command)
    if handler is not None:
        handler()
    return None
