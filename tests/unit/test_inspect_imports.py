"""What the `inspect -o json` path imports, in a fresh interpreter: start-up is most of its time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "src")

PROBE = """
import json, sys
import podnet.cli.inspect, podnet.inspect.build, podnet.kernel.discover
import podnet.render.inspect_text, podnet.render.inspect_mermaid
loaded = sorted(sys.modules)
import pyroute2
from pyroute2 import IPRoute
from pyroute2.iproute.linux import IPRoute as Same
print(json.dumps({"loaded": loaded, "same": IPRoute is Same, "version": pyroute2.__version__}))
"""


def probe() -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, env=env)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_json_path_loads_only_the_pyroute2_message_classes() -> None:
    result = probe()
    loaded = set(result["loaded"])  # type: ignore[arg-type]
    assert "pyroute2.netlink.rtnl.ifinfmsg" in loaded
    # pyroute2/__init__ would have loaded all of these (115 to 200 ms)
    for heavy in ("pyroute2.ndb.main", "pyroute2.ipdb", "pyroute2.iproute.linux",
                  "pyroute2.conntrack", "pyroute2.nftables", "asyncio"):
        assert heavy not in loaded, heavy
    assert "rich" not in loaded and "yaml" not in loaded


def test_the_lazy_package_becomes_the_real_one_on_first_use() -> None:
    result = probe()
    assert result["same"] is True and result["version"] == "0.9.7"
