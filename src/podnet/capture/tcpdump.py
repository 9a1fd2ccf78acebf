"""One capture: Debian's tcpdump, started inside the namespace of the interface it listens on.

podnet enters the namespace itself (no container runtime, no `kubectl debug`, no image) and
starts tcpdump there; tcpdump opens its packet socket in that namespace and compiles the
filter with libpcap. It writes either its own one-line summaries, or a pcap to a file podnet
opened (so the file belongs to the caller, whatever user tcpdump drops to). A capture is
ready once tcpdump says it is listening; it stops on SIGINT, after which tcpdump flushes and
closes the pcap: a Ctrl-C, a count or a duration all leave a complete file.

libpcap hands packets over in blocks the kernel fills, or retires after a second; a SIGINT loses
the block being filled (what a Ctrl-C of tcpdump -w loses). Handing each packet over at once
(immediate mode) costs far more: at 50,000 packets a second on these VMs it dropped a fifth in
the kernel, where blocks dropped none. So a pcap capture keeps blocks and is stopped by waiting
for the block to be retired first: everything up to the moment of the stop is in the file.
Lines for people are handed over at once (immediate mode), as tcpdump does on a terminal.

Why tcpdump rather than a socket read in Python: bench/capture.py measures both on one veth.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from podnet.errors import KernelError

__all__ = ["Capture", "CaptureSpec", "Stats", "start_all"]

_BLOCK_SECONDS = 1.1  # libpcap's block timeout as tcpdump sets it (1 s), and some margin
_READY = re.compile(rb"listening on (\S+), link-type (\S+)")
_STATS = {
    "captured": re.compile(r"(\d+) packets? captured"),
    "received": re.compile(r"(\d+) packets? received by filter"),
    "dropped": re.compile(r"(\d+) packets? dropped by kernel"),
}


@dataclass(frozen=True)
class CaptureSpec:
    ifname: str  # "any" listens on every interface of the namespace
    expression: tuple[str, ...] = ()  # a pcap-filter(7) expression, as tcpdump takes it
    count: int | None = None  # stop after this many packets
    snaplen: int | None = None  # bytes kept of each packet (tcpdump's default: all)
    verbose: int = 0  # -v, -vv, -vvv for the summaries
    link_headers: bool = False  # -e: MAC addresses in the summaries
    immediate: bool | None = None  # each packet at once (default: for lines, not for a pcap)

    def is_immediate(self, pcap: bool) -> bool:
        return not pcap if self.immediate is None else self.immediate

    def argv(self, tcpdump: str, *, pcap: bool) -> list[str]:
        argv = [tcpdump, "-i", self.ifname, "-n"]
        if self.is_immediate(pcap):
            argv.append("--immediate-mode")
        argv += ["-U", "-w", "-"] if pcap else ["-l"]
        if self.count is not None:
            argv += ["-c", str(self.count)]
        if self.snaplen is not None:
            argv += ["-s", str(self.snaplen)]
        if self.verbose:
            argv.append("-" + "v" * min(self.verbose, 3))
        if self.link_headers:
            argv.append("-e")
        return [*argv, "--", *self.expression] if self.expression else argv


@dataclass(frozen=True)
class Stats:
    captured: int | None = None
    received: int | None = None  # by the filter (the kernel's count)
    dropped: int | None = None  # by the kernel: the ring was full

    @classmethod
    def parse(cls, text: str) -> Stats:
        found = {k: int(m.group(1)) for k, p in _STATS.items() if (m := p.search(text))}
        return cls(**found)


class Capture:
    """tcpdump listening on one interface of the namespace at `path` (None: this one).

    `output`: a binary file the pcap goes to; None prints tcpdump's summaries to `text` (this
    process's stdout when None)."""

    def __init__(self, path: str | None, spec: CaptureSpec, *, output: IO[bytes] | None = None,
                 text: IO[bytes] | int | None = None) -> None:
        self.path = path
        self.spec = spec
        self.output = output
        self.text = text
        self.proc: subprocess.Popen[bytes] | None = None
        self.link_type = ""
        self._stderr = b""
        self._stats: Stats | None = None

    def start(self, timeout: float = 5.0) -> Capture:
        """Start tcpdump and return once it listens (KernelError with its message if not)."""
        self.launch()
        self.ready(timeout)
        return self

    def launch(self) -> None:
        """Start tcpdump; `ready` waits until it listens."""
        from podnet.kernel.nsexec import find_tool, start_in

        argv = self.spec.argv(find_tool("tcpdump", "tcpdump"), pcap=self.output is not None)
        # Its own session: a Ctrl-C reaches podnet alone, which then stops tcpdump once.
        self.proc = start_in(argv, self.path, stdin=subprocess.DEVNULL,
                             stdout=self.output if self.output is not None else self.text,
                             stderr=subprocess.PIPE, start_new_session=True)

    def ready(self, timeout: float = 5.0) -> None:
        """Wait until tcpdump says it listens; KernelError with its own words if it does not."""
        assert self.proc is not None and self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._stderr or not _READY.search(self._stderr):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                break
            ready, _, _ = select.select([self.proc.stderr], [], [], left)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                self._stderr += chunk
        found = _READY.search(self._stderr)
        if found is None:
            self.stop()
            raise KernelError(f"tcpdump could not listen on {self.spec.ifname}: "
                              + self._message(), hint=self._hint())
        self.link_type = found.group(2).decode()

    def _message(self) -> str:
        lines = [ln.removeprefix("tcpdump: ") for ln in
                 self._stderr.decode(errors="replace").splitlines()
                 if ln and not ln.startswith(("listening on", "tcpdump: listening"))]
        return "; ".join(lines[:3]) or "it exited without a word"

    def _hint(self) -> str:
        if b"syntax error" in self._stderr or b"expression" in self._stderr:
            return "the filter is pcap-filter(7)'s syntax, as tcpdump takes it: e.g. tcp port 80"
        return "`podnet inspect --netns NAME` lists the namespace's interfaces"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for tcpdump to end by itself (a count reached); False on timeout."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def interrupt(self) -> None:
        """Ask tcpdump to stop as a Ctrl-C would: it flushes and closes its output."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGINT)

    def stop(self, grace: float = 5.0) -> Stats:
        """Stop (if still running), reap tcpdump and return its counts. A pcap capture first
        waits for libpcap to hand over the block being filled, so the file holds every packet
        up to now."""
        if self.proc is None:
            return Stats()
        if self._stats is not None:
            return self._stats
        pcap = self.output is not None
        if pcap and not self.spec.is_immediate(pcap) and self.running:
            self.wait(_BLOCK_SECONDS)
        self.interrupt()
        try:
            _, err = self.proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self._stderr += err or b""
        self._stats = Stats.parse(self._stderr.decode(errors="replace"))
        return self._stats

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_all(captures: Sequence[Capture], timeout: float = 5.0) -> None:
    """Start several captures at once (each tcpdump starts while the others do) and return
    when all listen; if one cannot, all are stopped and its error raised."""
    try:
        for capture in captures:
            capture.launch()
        for capture in captures:
            capture.ready(timeout)
    except BaseException:
        for capture in captures:
            capture.stop()
        raise
