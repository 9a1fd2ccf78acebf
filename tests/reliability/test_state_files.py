"""podnet's files under /run/podnet after a crash (issue 10, item 3): a kill -9 between writing a
file and renaming it over its name leaves a temporary file, which `down` must remove too (and
nothing that is not podnet's)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from podnet import state

pytestmark = pytest.mark.kernel  # writes under /run/podnet: sandbox only


def test_down_sweeps_what_a_kill_mid_write_left_and_nothing_else() -> None:
    lab = Path(state.lab_dir("leftover"))
    try:
        (lab / "pods").mkdir(parents=True)
        (lab / "nodes").mkdir()
        left = [lab / "pods/.dev_web-1.hosts.0123456789ab.tmp",
                lab / "nodes/.kind-worker.hosts.ba9876543210.tmp", lab / "state.json.tmp"]
        for path in left:
            path.write_text("half")
        state.remove("leftover")
        assert not lab.exists(), "nothing of podnet's is left, so neither is its directory"

        (lab / "pods").mkdir(parents=True)
        mine = lab / "pods/notes.txt"  # not podnet's name for anything: never removed
        mine.write_text("someone's")
        (lab / "pods/.dev_web-1.hosts.0123456789ab.tmp").write_text("half")
        state.remove("leftover")
        assert sorted(os.listdir(lab / "pods")) == ["notes.txt"]
    finally:
        shutil.rmtree(lab, ignore_errors=True)
