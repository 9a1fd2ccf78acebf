"""What reaches the top of `podnet` (issue 10, item 8): the machine's errors are one line with
what to do; a genuine bug is never hidden and never passed off as the user's."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from podnet.cli import main as entry
from podnet.errors import StateError


def _run(raised: BaseException, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    def boom(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(entry.cli, "main", boom)
    with pytest.raises(SystemExit) as ended:
        entry.main()
    return int(ended.value.code or 0), capsys.readouterr().err


USER_ERRORS: list[tuple[Callable[[], BaseException], str]] = [
    (lambda: OSError(errno.ENOSPC, "No space left on device", "/run/podnet/kind/logs/x.log"),
     "the file system is full"),
    (lambda: OSError(errno.EADDRINUSE, "Address already in use"), "pick another"),
    (lambda: FileExistsError(errno.EEXIST, "File exists", "/run/podnet/kind/logs"),
     "/run/podnet/kind/logs: File exists"),
    (lambda: PermissionError(errno.EACCES, "Permission denied", "/run/podnet"), "as root"),
    (MemoryError, "out of memory"),
    (lambda: RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
    (lambda: StateError("lab name '../x' is not a DNS-1123 label"), "lab name"),
]


@pytest.mark.parametrize(("make", "says"), USER_ERRORS, ids=lambda v: getattr(v, "__name__", v))
def test_a_users_error_is_said_plainly(make: Callable[[], BaseException], says: str,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(make(), monkeypatch, capsys)
    assert code == 1
    assert err.startswith("podnet: ") and says in err
    assert "Traceback" not in err and "bug" not in err
    assert len(err.splitlines()) <= 2  # the message, and at most its hint


def test_a_bug_says_so_with_its_traceback(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(KeyError("pod_cidr"), monkeypatch, capsys)
    assert code == 70
    assert "Traceback (most recent call last)" in err
    last = err.strip().splitlines()[-2:]
    assert last[0].startswith("podnet: internal error: KeyError: 'pod_cidr' (in test_main_errors")
    assert "this is a bug in podnet, not in your input" in last[1] and "report it" in last[1]


def test_a_closed_stdout_ends_quietly(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`podnet inspect | head -1`: the reader went away; nothing to say to anyone."""
    code, err = _run(BrokenPipeError(errno.EPIPE, "Broken pipe"), monkeypatch, capsys)
    assert code == 141 and err == ""
