"""`podnet check --mtu`: each path that worked, probed again with a full-size packet.

A new TCP connection from the same source (DF set) sends one segment that fills the MTU of the
link it leaves by (the kernel's, read per source: what the pod really has, whatever the lab
meant it to have) and must see it acknowledged, with no hop answering 'fragmentation needed' on
the way (`podnet.kernel.sockopts.FullSegment`). Where the target's port is closed (a reset), an ICMP
echo of that size goes instead and must be answered at full size. As in `podnet.apply.probe`,
each socket is made while this thread visits the source's namespace, and every probe of a wave
runs at once in one selector loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from podnet.kernel import echo, netns
from podnet.kernel.sockopts import FullSegment, dont_fragment
from podnet.plan.check import Probe, Result

__all__ = ["run_full_size"]

_POLL = 0.005  # seconds between looks at the segments waiting for their acknowledgement


@dataclass
class _Full:
    probe: Probe
    seq: int
    mtu: int
    sock: socket.socket | None = None
    segment: FullSegment | None = None
    echoing: bool = False
    verdict: tuple[bool | None, str] | None = None  # (None, why): not probed


def run_full_size(results: Sequence[Result], *, timeout: float = 2.0, parallel: int = 128,
                  after_wave: Callable[[Sequence[Result]], None] | None = None) -> list[Result]:
    """`results` with the full-size verdict of each path that worked (and has a link MTU);
    `after_wave` sees each wave's results before the next wave goes."""
    # A path the policies deny "works" by staying silent: it has nothing to carry full-size.
    wanted = [i for i, r in enumerate(results)
              if r.ok and r.probe.mtu and not r.probe.expect.denied]
    found = _link_mtus([results[i].probe for i in wanted])  # by position in `wanted`
    mtus = {wanted[position]: mtu for position, mtu in found.items()}
    out = list(results)
    for start in range(0, len(wanted), parallel):
        wave = wanted[start : start + parallel]
        flights = [_Full(results[i].probe, seq, mtus.get(i, results[i].probe.mtu))
                   for seq, i in enumerate(wave, 1)]
        for index, (ok, detail) in zip(wave, _wave(flights, timeout), strict=True):
            out[index] = replace(out[index], full=ok, full_detail=detail)
        if after_wave is not None:
            after_wave([out[i] for i in wave])
    return out


def _link_mtus(probes: Sequence[Probe]) -> dict[int, int]:
    """{position: the MTU of the link the probe leaves its namespace by}, as the kernel says."""
    from podnet.errors import KernelError
    from podnet.kernel.netlink import Netlink

    found: dict[int, int] = {}
    by_netns: dict[str, list[int]] = {}
    for i, probe in enumerate(probes):
        by_netns.setdefault(probe.netns, []).append(i)
    for name, positions in by_netns.items():
        try:
            with Netlink.open(netns.path_of(name), label=name) as nl:
                mtu_of: dict[int, int] = {}
                for i in positions:
                    oif = nl.route_get(probes[i].address)["oif"]
                    if oif is not None and oif not in mtu_of:
                        mtu_of[oif] = int(nl.link(oif)["mtu"])
                    if oif in mtu_of:
                        found[i] = mtu_of[oif]
        except KernelError:
            continue  # the probe itself will say what is wrong with that namespace
    return found


def _socket(probe: Probe, kind: int, proto: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in probe.address else socket.AF_INET
    with netns.entered(netns.path_of(probe.netns)):
        return socket.socket(family, kind | socket.SOCK_NONBLOCK, proto)


def _wave(flights: Sequence[_Full], timeout: float) -> list[tuple[bool | None, str]]:
    sel = selectors.DefaultSelector()
    try:
        for f in flights:
            _connect(sel, f)
        deadline = time.monotonic() + timeout
        while any(f.verdict is None for f in flights) and time.monotonic() < deadline:
            for key, _events in sel.select(_POLL):
                _advance(sel, key.data)
            for f in flights:
                if f.segment is not None and f.verdict is None:
                    f.verdict = f.segment.poll()
        for f in flights:
            if f.verdict is None:
                f.verdict = (f.segment.give_up(timeout) if f.segment is not None else
                             (False, f"a {f.mtu}-byte echo (DF) got no answer within "
                              f"{timeout:g} s, though the small probe did" if f.echoing else
                              f"no connection within {timeout:g} s"))
    finally:
        for f in flights:
            if f.sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    sel.unregister(f.sock)
                f.sock.close()
        sel.close()
    return [f.verdict or (False, "not probed") for f in flights]


def _connect(sel: selectors.BaseSelector, f: _Full) -> None:
    try:
        f.sock = _socket(f.probe, socket.SOCK_STREAM)
        dont_fragment(f.sock)
    except OSError as exc:
        f.verdict = (False, f"cannot open a socket in {f.probe.netns}: {exc.strerror}")
        return
    code = f.sock.connect_ex((f.probe.address, f.probe.port))
    if code not in (0, errno.EINPROGRESS):
        f.verdict = (False, os.strerror(code))
        return
    sel.register(f.sock, selectors.EVENT_WRITE, f)


def _advance(sel: selectors.BaseSelector, f: _Full) -> None:
    assert f.sock is not None
    if f.echoing:
        answer = echo.read_answer(f.sock, f.probe.address, os.getpid() & 0xFFFF, f.seq)
        if answer is not None:
            f.verdict = ((True, f"a {f.mtu}-byte echo (DF) was answered at full size")
                         if answer.ok else (False, f"a {f.mtu}-byte echo (DF): " + answer.detail))
        return
    sel.unregister(f.sock)
    code = f.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code == errno.ECONNREFUSED:  # a closed port carries no data: an echo of the size
        _echo(sel, f)
    elif code:
        f.verdict = (False, os.strerror(code))
    else:
        f.segment = FullSegment(f.sock, f.mtu)
        f.verdict = f.segment.verdict


def _echo(sel: selectors.BaseSelector, f: _Full) -> None:
    assert f.sock is not None
    f.sock.close()
    f.echoing = True
    icmp = echo.icmp_of(f.probe.address)  # ICMP, or ICMPv6 for an IPv6 target
    try:
        f.sock = _socket(f.probe, socket.SOCK_RAW, icmp.proto)
        dont_fragment(f.sock, ignore_path_mtu=True)
        f.sock.sendto(echo.request(os.getpid() & 0xFFFF, f.seq, f.mtu, icmp),
                      (f.probe.address, 0))
    except OSError as exc:
        f.verdict = (False, f"a {f.mtu}-byte echo (DF) could not be sent: {exc.strerror}")
        return
    sel.register(f.sock, selectors.EVENT_READ, f)
