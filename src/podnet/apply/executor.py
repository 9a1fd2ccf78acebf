"""Run planned steps through their handlers; on failure, undo what this run did, newest first."""

from __future__ import annotations

import os
from collections.abc import Callable

from podnet.apply.handlers import HANDLERS, Context, record_started, spawn_requests
from podnet.errors import ApplyError, PodnetError
from podnet.plan.steps import Action, Step
from podnet.runtime.spawner import Spawner

__all__ = ["FAIL_ENV", "Progress", "execute"]

# Test hook: "pod.create:dev/demo-x" makes that step fail, to prove the rollback.
FAIL_ENV = "PODNET_INJECT_FAILURE"

Progress = Callable[[Step], None]


def execute(
    ctx: Context,
    steps: list[Step],
    *,
    spawner: Spawner | None = None,
    progress: Progress | None = None,
) -> None:
    """Apply `steps` in order. Container starts are batched and spawned after the netlink work,
    in one pipelined exchange with the spawner (which runs on the other core meanwhile)."""
    inject = os.environ.get(FAIL_ENV, "")
    done: list[Step] = []
    try:
        for step in steps:
            if inject and inject == f"{step.action.value}:{step.target}":
                raise PodnetError(f"injected failure at {step.action.value} {step.target}")
            HANDLERS[step.action](ctx, step)
            done.append(step)
            if progress and step.action is not Action.POD_START:
                progress(step)
        _spawn_pending(ctx, spawner, progress, done)
    except PodnetError as exc:
        failed = _failed_step(steps, done)
        undone = _rollback(ctx, done)
        raise ApplyError(
            f"{failed.comment if failed else 'starting containers'}: {exc.message}",
            hint=(exc.hint + "; " if exc.hint else "")
            + f"podnet rolled back the {undone} step(s) this run had done",
            rolled_back=undone,
        ) from exc
    finally:
        ctx.close()


def _spawn_pending(
    ctx: Context, spawner: Spawner | None, progress: Progress | None, done: list[Step]
) -> None:
    if not ctx.pending_starts:
        return
    if spawner is None:
        raise PodnetError("containers to start but no spawner was given")
    pods = list(ctx.pending_starts)
    ctx.pending_starts.clear()
    requests = [spawn_requests(ctx, pod) for pod in pods]
    flat = [r for group in requests for r in group]
    refs = spawner.spawn_many(flat)
    cursor = 0
    for pod, group in zip(pods, requests, strict=True):
        record_started(ctx, pod, refs[cursor : cursor + len(group)])
        cursor += len(group)
        if progress:
            progress(Step(Action.POD_START, pod.key, f"started {pod.key}"))


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
