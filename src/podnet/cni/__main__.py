"""`python -m podnet.cni [podnet-cni|podnet-ipam]`: run the plugin in this process.

What the installed shim executes when no agent answers; also handy by hand:
`CNI_COMMAND=VERSION python -m podnet.cni </dev/null`.
"""

from __future__ import annotations

import os
import sys

from podnet.cni.client import main
from podnet.cni.dispatch import IPAM_PLUGIN, MAIN_PLUGIN

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else os.path.basename(sys.argv[0])
    sys.exit(main(IPAM_PLUGIN if name == IPAM_PLUGIN else MAIN_PLUGIN, use_agent=False))
