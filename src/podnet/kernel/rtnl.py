"""A plain rtnetlink socket for batches: pyroute2 encodes the messages, this only carries them.

pyroute2 0.9 runs every request through an asyncio loop, which costs more than the kernel's own
work for small changes. Batches need none of it: the messages are encoded by pyroute2's classes,
sent in one datagram, and the kernel's answers are acknowledgements, read here by their fixed
header (struct nlmsgerr: a netlink header, then the error number).
"""

from __future__ import annotations

import os
import socket
import struct

from podnet.errors import kernel_error
from podnet.kernel.batch import Batch

__all__ = ["RawRtnl"]

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acks without a copy of the request
NETLINK_EXT_ACK = 11  # the kernel's own words on what was wrong
NLMSG_ERROR = 2
NLMSGERR_ATTR_MSG = 1
_HEADER = struct.Struct("=IHHII")
_ERROR = struct.Struct("=i")


class RawRtnl:
    """A NETLINK_ROUTE socket in the namespace it was created in."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def send(self, batch: Batch, where: str) -> None:
        """Send the batch in one datagram; raise for the first request the kernel refused."""
        chunks = []
        first = self._seq + 1
        for msg in batch.messages:
            self._seq += 1
            msg["header"]["sequence_number"] = self._seq
            msg.reset()
            msg.encode()
            chunks.append(msg.data)
        self._sock.send(b"".join(chunks))
        pending = len(chunks)
        failure: tuple[int, int, str] | None = None
        while pending:
            data = self._sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, kind, _flags, seq, _pid = _HEADER.unpack_from(data, offset)
                if kind == NLMSG_ERROR and first <= seq <= self._seq:
                    pending -= 1
                    (code,) = _ERROR.unpack_from(data, offset + _HEADER.size)
                    if code and failure is None:
                        failure = (seq - first, -code, _ext_ack(data, offset, length))
                offset += (length + 3) & ~3
                if length == 0:
                    break
        if failure is not None:
            index, code, detail = failure
            step = batch.notes[index]
            text = os.strerror(code) + (f" ({detail})" if detail else "")
            what = f"{batch.what}: " if batch.what else ""
            error = kernel_error(code, f"{what}{step} in {where}: {text}")
            error.failed_at = index  # the requests before it took effect
            raise error


def _ext_ack(data: bytes, offset: int, length: int) -> str:
    """The kernel's extended-ack message (NLMSGERR_ATTR_MSG), when it gave one."""
    # With NETLINK_CAP_ACK the request is not echoed: attributes follow the nlmsgerr struct.
    pos = offset + _HEADER.size + _ERROR.size + _HEADER.size
    end = offset + length
    while pos + 4 <= end:
        alen, atype = struct.unpack_from("=HH", data, pos)
        if alen < 4:
            break
        if atype & 0x3FFF == NLMSGERR_ATTR_MSG:
            return data[pos + 4 : pos + alen].split(b"\0", 1)[0].decode(errors="replace")
        pos += (alen + 3) & ~3
    return ""
