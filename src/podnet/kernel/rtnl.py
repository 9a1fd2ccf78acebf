"""podnet's one rtnetlink socket: batches of changes, single requests and dumps.

pyroute2 0.9 runs every request through an asyncio loop, which costs more than the kernel's own work
for small changes. Batches need none of it: their requests come packed (`kernel.rtnl_requests`), are
sent in one datagram, and the kernel's answers are acknowledgements, read here by their fixed header
(struct nlmsgerr: a netlink header, then the error number). Dumps come back as raw messages
(`messages`) for readers that unpack only what they print (`kernel.discover_netlink`) or decoded by
pyroute2's classes (`dump`). """

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from podnet.errors import kernel_error
from podnet.kernel.batch import Batch

__all__ = ["RawRtnl"]

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acks without a copy of the request
NETLINK_EXT_ACK = 11  # the kernel's own words on what was wrong
NETLINK_GET_STRICT_CHK = 12  # dumps filtered by the kernel (by link, by table)
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
RTM_NEWLINK = 16
RTM_GETLINK = 18
NLMSGERR_ATTR_MSG = 1
RTEXT_FILTER_SKIP_STATS = 8  # a link's counters: the largest part of its answer, never needed
_HEADER = struct.Struct("=IHHII")
_ERROR = struct.Struct("=i")


class RawRtnl:
    """A NETLINK_ROUTE socket in the namespace it was created in. With `strict`, the kernel
    filters dumps by what the request names (Linux 4.20+; `strict` tells whether it does)."""

    def __init__(self, *, strict: bool = False) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self._sock.bind((0, 0))
        self._seq = 0
        self.strict = False
        if strict:
            try:
                self._sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
                self.strict = True
            except OSError:
                pass  # an old kernel: callers filter the dump themselves
        self.interrupted = False  # a dump's answer was marked NLM_F_DUMP_INTR

    def close(self) -> None:
        self._sock.close()

    def messages(self, request: bytes | bytearray) -> Iterator[tuple[bytes, int, int, int]]:
        """Send one request; yield (buffer, body offset, end, type) for each answer message.
        An error answer raises OSError; an acknowledgement or the end of a dump ends it."""
        self._sock.send(request)
        recv = self._sock.recv
        while True:
            data = recv(1 << 16)
            pos = 0
            size = len(data)
            while pos + _HEADER.size <= size:
                length, mtype, flags, _seq, _pid = _HEADER.unpack_from(data, pos)
                if length < _HEADER.size:
                    return
                if flags & NLM_F_DUMP_INTR:
                    self.interrupted = True
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    code = -_ERROR.unpack_from(data, pos + _HEADER.size)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return  # an acknowledgement
                yield data, pos + _HEADER.size, pos + length, mtype
                if not flags & NLM_F_MULTI:  # a single answer
                    return
                pos += (length + 3) & ~3

    def send(self, batch: Batch, where: str) -> None:
        """Send the batch in one datagram; raise for the first request the kernel refused."""
        chunks = []
        first = self._seq + 1
        for request in batch.messages:
            self._seq += 1
            chunks.append(request.encode(self._seq))
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
                    if code and -code in batch.tolerated[seq - first]:
                        code = 0  # the outcome the caller accepts ("it exists already")
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

    def get_link(self, where: str, *, index: int = 0, ifname: str | None = None) -> Any:
        """One link, by index or name, as pyroute2's decoded message (`ip link show DEV`, one
        request; no dump). ObjectMissingError when there is none."""
        msg = ifinfmsg()
        msg["index"] = index
        attrs: list[list[Any]] = [["IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS]]
        if ifname is not None:
            attrs.append(["IFLA_IFNAME", ifname])
        msg["attrs"] = attrs
        self._seq += 1
        msg["header"]["type"] = RTM_GETLINK
        msg["header"]["flags"] = NLM_F_REQUEST
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, kind, _flags, seq, _pid = _HEADER.unpack_from(data, offset)
                if seq == self._seq and kind == NLMSG_ERROR:
                    (code,) = _ERROR.unpack_from(data, offset + _HEADER.size)
                    text = os.strerror(-code) + (f" ({detail})" if (
                        detail := _ext_ack(data, offset, length)) else "")
                    raise kernel_error(-code, f"looking up {ifname or index} in {where}: {text}")
                if seq == self._seq and kind == RTM_NEWLINK:
                    found = ifinfmsg(data[offset:offset + length])
                    found.decode()
                    return found
                if length == 0:
                    break
                offset += (length + 3) & ~3

    def links(self, where: str) -> list[Any]:
        """Every link, as pyroute2's decoded messages (`ip link show`; one dump on this socket,
        where IPRoute's import alone costs more than the dump)."""
        request = ifinfmsg()
        request["attrs"] = [["IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS]]
        return self.dump(where, request, RTM_GETLINK)

    def dump(self, where: str, request: Any, kind: int) -> list[Any]:
        """Every answer to a dump request (`request`, a pyroute2 message whose header fields and
        attributes the kernel filters on under strict checking), decoded as the request's
        class."""
        self._seq += 1
        request["header"]["type"] = kind
        request["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        request["header"]["sequence_number"] = self._seq
        request.encode()
        self._sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        try:
            self._sock.send(request.data)
            return self._read_dump(where, type(request))
        finally:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, int(self.strict))

    def _read_dump(self, where: str, cls: Any) -> list[Any]:
        found: list[Any] = []
        while True:
            data = self._sock.recv(1 << 17)
            offset = 0
            while offset < len(data):
                length, kind, _flags, seq, _pid = _HEADER.unpack_from(data, offset)
                if length == 0:
                    break
                if seq == self._seq:
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        (code,) = _ERROR.unpack_from(data, offset + _HEADER.size)
                        if code:
                            raise kernel_error(-code, f"listing in {where}: {os.strerror(-code)}")
                        return found
                    else:
                        msg = cls(data[offset:offset + length])
                        msg.decode()
                        found.append(msg)
                offset += (length + 3) & ~3


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
