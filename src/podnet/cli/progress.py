"""Progress on standard error for work that takes more than a moment: a bar where the work is
counted (`up`, `down`, `check`), a spinner with words where it is not (reading a host's
namespaces, a trace's probe). Shown only on a terminal, gone when the work ends, so output and
pipes stay clean."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["Update", "spinner", "with_progress"]

T = TypeVar("T")
Update = Callable[[Any, int, int | None], None]  # (what was just done, done so far, in all)


def with_progress(quiet: bool, label: str, run: Callable[[Update | None], T]) -> T:
    """`run(update)` with a bar labelled `label` that `update` moves; `run(None)` when quiet or
    when standard error is no terminal."""
    if quiet or not sys.stderr.isatty():
        return run(None)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), transient=True, console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(label, total=None)
        return run(lambda _what, done, total: bar.update(task, completed=done, total=total))


@contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner saying `text` while the block runs, only when standard error is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield
