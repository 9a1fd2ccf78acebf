"""The reliability suite: the lab's promises under failure (issue 10).

Bad input gets one clear line and creates nothing; a crash at any point followed by `up` or
`down` converges; `down` removes only what podnet made. Tests here that build kernel objects are
marked `kernel` (sandbox only) and bring their labs down in a fixture, pass or fail, then check
that nothing of podnet's is left: no process, no namespace, no state.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.helpers import podnet


@pytest.fixture
def labs() -> Iterator[list[str]]:
    """Append the name of every lab a test brings up: each is brought down afterwards, pass or
    fail, so that no later test finds "2 labs are up"."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            podnet("down", "-q", "-C", name, check=False)
