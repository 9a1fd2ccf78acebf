"""Run planned steps through the applier; on any failure, undo what this run did, newest first.

`up` stops at the first failure and rolls back (a crash, Ctrl-C or a bug included: nothing of a
failed run stays behind unrecorded). `down` is best effort: it goes on past a step that fails and
reports everything it could not remove.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from podnet.apply.applier import Applier
from podnet.errors import ApplyError, PodnetError
from podnet.plan.builds import Step

__all__ = ["FAIL_ENV", "Progress", "execute", "execute_all"]

# Test hook: "pod.create:dev/demo-x" makes that step fail before it starts; with "@N" appended,
# after its first N operations took effect (a failure inside the step).
FAIL_ENV = "PODNET_INJECT_FAILURE"

Progress = Callable[[Step, int, int], None]  # (step just done, steps done, steps in all)


def _injected(step: Step) -> int | None:
    """How many operations of `step` to run before the injected failure (None: no failure)."""
    spec = os.environ.get(FAIL_ENV, "")
    where, _, count = spec.partition("@")
    if not spec or where != f"{step.action.value}:{step.target}":
        return None
    return int(count) if count.isdigit() else 0


def _run(app: Applier, step: Step) -> None:
    stop_after = _injected(step)
    if stop_after is None:
        app.run(step.ops)
        return
    app.run(step.ops[:stop_after])
    raise PodnetError(f"injected failure in {step.action.value} {step.target} after "
                      f"{stop_after} operation(s)")


def execute(app: Applier, steps: list[Step], *, progress: Progress | None = None) -> None:
    """Apply `steps` in order. On any failure, undo what this run did, newest first, then raise
    (ApplyError for podnet's own errors and unexpected ones; KeyboardInterrupt as it came)."""
    done = 0
    try:
        for step in steps:
            _run(app, step)
            done += 1
            if progress:
                progress(step, done, len(steps))
        app.finish()  # nft transactions and containers started along the way
    except BaseException as exc:
        failed = steps[done] if done < len(steps) else None
        what = failed.comment if failed else "finishing what the steps started"
        undone = app.undo()
        if not isinstance(exc, Exception):
            raise  # Ctrl-C, SystemExit: rolled back, now let it end the program
        rolled = f"podnet rolled back the {undone} change(s) this run had made"
        if isinstance(exc, PodnetError):
            raise ApplyError(f"{what}: {exc.message}",
                             hint=(exc.hint + "; " if exc.hint else "") + rolled,
                             rolled_back=undone) from exc
        raise ApplyError(f"{what}: {type(exc).__name__}: {exc}", hint=rolled,
                         rolled_back=undone) from exc
    finally:
        app.close()


def execute_all(app: Applier, steps: list[Step], *, progress: Progress | None = None) -> list[str]:
    """Apply every step that can be applied (`down`): a failing step does not stop the others.
    Returns what failed, for people (what was left alone on purpose is in `app.left_alone`)."""
    problems: list[str] = []
    try:
        for done, step in enumerate(steps, 1):
            try:
                _run(app, step)
            except PodnetError as exc:
                problems.append(f"{step.comment}: {exc.message}")
            if progress:
                progress(step, done, len(steps))
        try:
            app.finish()
        except PodnetError as exc:
            problems.append(exc.message)
    finally:
        app.close()
    return problems
