"""pyroute2 without its 115-200 ms package import: only the submodules podnet uses.

`import pyroute2` runs a package `__init__` that imports every protocol pyroute2 speaks. Installing
a lazy stand-in for the package first lets `from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg`
load just those files (about 25 ms); the package's own `__init__` still runs, in full, the first
time anything asks for a top-level name such as `pyroute2.IPRoute`, so other code in the same
process sees the ordinary package. `podnet.kernel` installs the stand-in when it is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

__all__ = ["install_stub", "light_import"]


def light_import(name: str) -> ModuleType:
    """Import a pyroute2 submodule; pyroute2/__init__.py runs only when a top-level name is used."""
    install_stub()
    return importlib.import_module(name)


def install_stub() -> None:
    """Put the lazy stand-in for the pyroute2 package in sys.modules, unless pyroute2 is there."""
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.loader is None:
            # Not importable here (the container zygote runs without site-packages): code
            # that needs pyroute2 fails at its own import, with Python's usual message.
            return
        package = importlib.util.module_from_spec(spec)
        loader = spec.loader
        running = False

        where = list(spec.submodule_search_locations or [])

        def is_submodule(attr: str) -> bool:
            return any(
                os.path.exists(os.path.join(d, attr + ".py"))
                or os.path.exists(os.path.join(d, attr, "__init__.py"))
                for d in where
            )

        def __getattr__(attr: str) -> Any:  # noqa: N807  # the module-level hook, PEP 562
            nonlocal running
            # `from pyroute2 import config` asks for a submodule: AttributeError lets the
            # import system load just that file, as it would for any package.
            if running or attr.startswith("__") or is_submodule(attr):
                raise AttributeError(attr)
            running = True
            del package.__dict__["__getattr__"]
            loader.exec_module(package)
            return getattr(package, attr)

        package.__dict__["__getattr__"] = __getattr__
        sys.modules["pyroute2"] = package
