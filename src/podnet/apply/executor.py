"""Run planned steps through their handlers; on failure, undo what this run did, newest first."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from podnet.apply.handlers import HANDLERS, Context
from podnet.errors import ApplyError, PodnetError
from podnet.plan.steps import Step

__all__ = ["FAIL_ENV", "Progress", "execute"]

# Test hook: "pod.create:dev/demo-x" makes that step fail, to prove the rollback.
FAIL_ENV = "PODNET_INJECT_FAILURE"

Progress = Callable[[Step, int, int], None]  # (step just done, steps done, steps in all)


def execute(ctx: Context, steps: list[Step], *, progress: Progress | None = None) -> None:
    """Apply `steps` in order. On failure, undo what this run did, newest first."""
    inject = os.environ.get(FAIL_ENV, "")
    done: list[Step] = []
    try:
        for step in steps:
            if inject and inject == f"{step.action.value}:{step.target}":
                raise PodnetError(f"injected failure at {step.action.value} {step.target}")
            HANDLERS[step.action](ctx, step)
            done.append(step)
            if progress:
                progress(step, len(done), len(steps))
        ctx.finish()  # nft transactions and containers started along the way
    except PodnetError as exc:
        failed = _failed_step(steps, done)
        with contextlib.suppress(PodnetError):
            ctx.finish()  # learn the PIDs of what did start, so rollback can stop it
        undone = _rollback(ctx, done)
        raise ApplyError(
            f"{failed.comment if failed else 'finishing what the steps started'}: {exc.message}",
            hint=(exc.hint + "; " if exc.hint else "")
            + f"podnet rolled back the {undone} step(s) this run had done",
            rolled_back=undone,
        ) from exc
    finally:
        ctx.close()


def _failed_step(steps: list[Step], done: list[Step]) -> Step | None:
    return steps[len(done)] if len(done) < len(steps) else None


def _rollback(ctx: Context, done: list[Step]) -> int:
    undone = 0
    for step in reversed(done):
        inverse = step.inverse()
        if inverse is None:
            continue
        try:
            HANDLERS[inverse.action](ctx, inverse)
            undone += 1
        except PodnetError:
            continue  # keep undoing the rest; `down` removes whatever is left
    return undone
