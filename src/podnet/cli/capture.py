"""`podnet capture`: the packets on one interface of a pod, a node or any namespace, as tcpdump
shows them, or written to a pcap file Wireshark opens.

Thin: the link is resolved as `trace` resolves a source; `podnet.capture.tcpdump` runs the
capture inside the namespace. Ctrl-C, `-c` and `--duration` all end it the same way: tcpdump is
asked to stop, flushes, and the file is complete.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import click

__all__ = ["capture_command"]


def _split(args: tuple[str, ...], node: str | None, netns: str | None) -> tuple[str, list[str]]:
    """(the selector, the filter expression): without --node or --netns, the first argument
    names the pod; everything else is the filter, as tcpdump takes it."""
    chosen = [s for s in (node, netns) if s is not None]
    if len(chosen) > 1:
        raise click.UsageError("give one of POD, --node or --netns")
    if chosen:
        return chosen[0], list(args)
    if not args:
        raise click.UsageError("name what to capture on: a pod, --node NODE or --netns NETNS")
    return args[0], list(args[1:])


@click.command("capture")
@click.argument("args", nargs=-1, metavar="[POD] [EXPRESSION]...")
@click.option("-n", "--namespace", default=None,
              help="Kubernetes namespace of a pod named without one.")
@click.option("--node", default=None, help="Capture on a node (with --interface).")
@click.option("--netns", default=None,
              help="Capture in any network namespace inspect finds: a name, pid:N, an inode.")
@click.option("-i", "--interface", default=None, metavar="IF",
              help="Interface (default: the one the default route uses, else any).")
@click.option("-w", "--write", "path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Write a pcap file (Wireshark, tcpdump -r) instead of lines.")
@click.option("-c", "--count", type=click.IntRange(1), default=None,
              help="Stop after this many packets.")
@click.option("--duration", type=click.FloatRange(0.1), default=None, metavar="SECONDS",
              help="Stop after this many seconds.")
@click.option("-s", "--snaplen", type=click.IntRange(1, 262144), default=None,
              help="Bytes kept of each packet (default: all).")
@click.option("-v", "--verbose", count=True, help="More detail per packet (-vv, -vvv).")
@click.option("-e", "link_headers", is_flag=True, help="Show MAC addresses.")
def capture_command(args: tuple[str, ...], namespace: str | None, node: str | None,
                    netns: str | None, interface: str | None, path: str | None,
                    count: int | None, duration: float | None, snaplen: int | None,
                    verbose: int, link_headers: bool) -> None:
    """Show the packets on one link, like tcpdump, from inside its namespace.

    POD is a pod (NAMESPACE/NAME or NAME), a node, or any namespace `podnet inspect` finds;
    the rest is a filter in tcpdump's syntax (pcap-filter(7)). podnet enters the namespace
    itself: no container runtime, no debug image. Ctrl-C stops it cleanly.

    \b
      podnet capture dev/demo-58465f467c-24bcq
      podnet capture jumpbox -w demo.pcap tcp port 80
      podnet capture --node kind-worker --interface veth126e4b12 -c 20
      podnet capture --netns cni-c5b8... -i eth0 --duration 10 -w x.pcap
    """
    from podnet.capture.tcpdump import Capture, CaptureSpec
    from podnet.inspect.build import inspect_host
    from podnet.trace.target import resolve_link
    from podnet.trace.world import namespace_path

    selector, expression = _split(args, node, netns)
    link = resolve_link(inspect_host(), selector, namespace, interface, fallback="any")
    spec = CaptureSpec(link.ifname, tuple(expression), count, snaplen, verbose, link_headers)
    out = open(path, "wb") if path else None  # noqa: SIM115  # tcpdump writes it; closed below
    asked: list[int] = []
    capture = Capture(namespace_path(link.namespace), spec, output=out, text=sys.stdout.fileno())

    def stop(signum: int, _frame: Any) -> None:
        if asked:  # a second Ctrl-C: at once, without waiting for the last block of packets
            capture.interrupt()
        asked.append(signum)

    # Before tcpdump starts: a Ctrl-C from then on stops the capture, never podnet alone.
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        capture.start()
        where = f" to {path}" if path else ""
        click.echo(f"podnet: capturing on {link.text} (netns {link.namespace.label}, "
                   f"{capture.link_type}){where}; Ctrl-C stops", err=True)
        _wait(capture, duration, asked)
        stats = capture.stop()
    finally:
        capture.stop()
        for signum, handler in old.items():
            signal.signal(signum, handler)
        if out is not None:
            out.close()
    click.echo(f"podnet: {_counts(stats)}" + (f", written to {path}" if path else ""), err=True)


def _wait(capture: Any, duration: float | None, asked: list[int]) -> None:
    """Until tcpdump ends (a count), the duration passes, or a signal asks to stop."""
    deadline = None if duration is None else time.monotonic() + duration
    while capture.running and not asked:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        capture.wait(min(left, 0.2) if left is not None else 0.2)


def _counts(stats: Any) -> str:
    text = f"{stats.captured if stats.captured is not None else '?'} packets captured"
    extra = []
    if stats.received is not None:
        extra.append(f"{stats.received} received by the filter")
    if stats.dropped is not None:
        extra.append(f"{stats.dropped} dropped by the kernel")
    return text + (f" ({', '.join(extra)})" if extra else "")
