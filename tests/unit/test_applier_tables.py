"""Every operation of a plan has exactly one way to run: a netlink message (`ENCODERS`) for the
operations netlink carries, a handler (`_HANDLERS`) for the rest. An operation added to
`podnet.plan.ops` without either would fail only when a plan first used it."""

from __future__ import annotations

import inspect

from podnet.apply import applier
from podnet.apply.netlink_ops import ENCODERS
from podnet.plan import ops as o


def _operations() -> set[type[o.Op]]:
    return {cls for _, cls in inspect.getmembers(o, inspect.isclass)
            if issubclass(cls, o.Op) and cls is not o.Op}


def test_every_operation_runs_one_way() -> None:
    handlers = set(applier._HANDLERS)
    encoders = set(ENCODERS)
    assert not handlers & encoders
    assert handlers | encoders == _operations() == set(applier.HANDLED)


def test_netlink_operations_are_encoded_and_the_rest_handled() -> None:
    assert {op for op in _operations() if op.netlink} == set(ENCODERS)
    assert len(_operations()) >= 26  # the ones a plan had when this test was written
