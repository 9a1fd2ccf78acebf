"""Files people hand to podnet, read with a bound on their size before any parser sees them.

`podnet up -f /dev/zero` used to read until memory ran out. A topology of 5,000 pods written as
separate Pod documents is about 1.3 MB; the bounds leave room for several times that.
"""

from __future__ import annotations

import errno
import sys

__all__ = ["MAX_INSPECT_JSON", "MAX_TOPOLOGY", "read_bounded"]

MAX_TOPOLOGY = 8 << 20  # bytes of a topology file
MAX_INSPECT_JSON = 64 << 20  # bytes of an `inspect -o json` document (a 5,000-pod host: ~10 MB)


def read_bounded(path: str, limit: int) -> bytes:
    """The bytes of `path` ("-": standard input), or OSError(EFBIG) as soon as it holds more
    than `limit` (a device or a pipe that never ends included: at most limit + 1 bytes are
    read)."""
    if path == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit >> 20} MiB, podnet's limit for it", path)
    return data

