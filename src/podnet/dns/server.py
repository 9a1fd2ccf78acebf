"""The lab's DNS server: what a coredns pod's container runs.

    python -m podnet.dns.server --records /run/podnet/kind/dns/records.json

One process, one thread for DNS: a selector loop over UDP and TCP sockets on port 53 of every
address (0.0.0.0 and [::]), the inotify descriptor of the records file, and a wake-up pipe for
signals. A second thread serves /metrics (Prometheus text) and /health on port 9153.

The records come from a file podnet writes atomically (see `podnet.dns.records`); a rewrite is
seen through inotify and loaded at once, without restarting the process (SIGHUP loads it too).
A file that does not load is reported on stderr and the previous records stay in service.

Wire format, parsing and rendering are dnspython's. Rendered answers are kept by query bytes
(all but the ID): the same question with the same flags and EDNS options gets the same answer,
so a hit skips dnspython entirely; the cache empties at every reload.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from podnet.dns.files import read_records
from podnet.dns.metrics import CONTENT_TYPE, Metrics
from podnet.dns.records import RecordsFileError
from podnet.dns.watch import FileWatch
from podnet.dns.zone import Zones

T = TypeVar("T")

__all__ = ["DEFAULT_ADDRESSES", "DnsServer", "main", "server_command"]

DEFAULT_ADDRESSES = ("0.0.0.0", "::")  # noqa: S104 - a pod's server answers on its every address
_UDP_PAYLOAD = 1232  # the most we send over UDP, whatever the client offers (DNS flag day 2020)
_PLAIN_UDP = 512  # RFC 1035: a client without EDNS takes no more
_TCP_IDLE = 10.0  # seconds a TCP client may stay silent (RFC 7766 suggests seconds)
_MAX_TCP = 1024
_MAX_UNREAD = 256 * 1024  # answers a TCP client has not read: past this it is cut off
# A fixed send buffer per TCP client: left to autotuning, the kernel holds up to tcp_wmem's 4 MB
# of a client's unread answers before _MAX_UNREAD ever sees them, and whether it is ever cut off
# depends on timing.
_TCP_SNDBUF = 64 * 1024
_CACHE_MAX = 20_000
_BATCH = 64  # datagrams read per wake-up, so TCP clients get their turn
Handler = Callable[[Any, int], None]


def server_command(
    records_path: str, python: str = sys.executable
) -> tuple[list[str], dict[str, str]]:
    """argv and environment for a container that runs this server (a coredns pod's).

    The environment points Python at this copy of podnet: containers get no PYTHONPATH of ours.
    """
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [python, "-m", "podnet.dns.server", "--records", records_path]
    return argv, {"PYTHONPATH": src}


@dataclass
class _TcpConn:
    sock: socket.socket
    last: float
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)


class DnsServer:
    """Answers from the record set in `records_path`, reloaded whenever the file changes."""

    def __init__(
        self,
        records_path: str,
        *,
        addresses: Sequence[str] = DEFAULT_ADDRESSES,
        port: int = 53,
        metrics_port: int | None = 9153,
        cache_size: int = _CACHE_MAX,
        log: TextIO | None = None,
    ) -> None:
        self.records_path = records_path
        self.addresses = tuple(addresses)
        self.port = port
        self.metrics_port = metrics_port
        self.cache_size = cache_size
        self.log = log or sys.stderr
        self.metrics = Metrics()
        self.zones = self._load()  # fails before anything is bound: nothing to answer from
        self.cache: dict[str, dict[bytes, tuple[bytes, str, str]]] = {"udp": {}, "tcp": {}}
        self.selector = selectors.DefaultSelector()
        self.tcp: dict[int, _TcpConn] = {}
        self.sockets: list[socket.socket] = []
        self.watch: FileWatch | None = None
        self.reload_wanted = False
        self.stop_wanted = False
        self._last_sweep = time.monotonic()
        self._http: Any = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    # Records ---------------------------------------------------------------------------------

    def _load(self) -> Zones:
        zones = Zones(read_records(self.records_path))
        self.metrics.records = zones.size
        self.metrics.generation = _serial(zones)
        return zones

    def reload(self) -> bool:
        """Load the file again; keep the current records if it does not load."""
        try:
            zones = self._load()
        except (OSError, RecordsFileError) as exc:
            self.metrics.reloads["error"] += 1
            self.note(f"reload failed, still serving the previous records: {_why(exc)}")
            return False
        self.zones = zones
        for cache in self.cache.values():
            cache.clear()
        self.metrics.reloads["ok"] += 1
        self.note(f"reloaded {self.records_path}: {zones.size} records")
        return True

    # Queries ---------------------------------------------------------------------------------

    def handle(self, wire: bytes, proto: str) -> bytes | None:
        """The response to one query message, or None to drop it (not a query at all)."""
        if len(wire) < 12 or wire[2] & 0x80:  # short, or a response: never answer those
            self.metrics.dropped += 1
            return None
        cache = self.cache[proto]
        key = wire[2:]
        hit = cache.get(key)
        if hit is not None:
            body, qtype, rcode = hit
            self.metrics.cache_hits += 1
            self.metrics.count(proto, qtype, rcode)
            return wire[:2] + body
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            self.metrics.count(proto, "-", "FORMERR")
            return _formerr(wire)
        if query.edns > 0:  # RFC 6891: only version 0 exists
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.BADVERS)
        else:
            response = self.zones.answer(query)
        if proto == "tcp":
            size = 65535
        else:
            size = min(query.payload, _UDP_PAYLOAD) if query.edns >= 0 else _PLAIN_UDP
        out = response.to_wire(max_size=size, prefer_truncation=True)
        qtype = dns.rdatatype.to_text(query.question[0].rdtype) if query.question else "-"
        rcode = dns.rcode.to_text(response.rcode())
        self.metrics.count(proto, qtype, rcode)
        if self.cache_size:
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[key] = (out[2:], qtype, rcode)
        return out

    # Sockets ---------------------------------------------------------------------------------

    def bind(self) -> list[str]:
        """Open every socket; return what listens. Raises OSError if nothing could."""
        bound: list[str] = []
        failures: list[str] = []
        for address in self.addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            for kind, proto in ((socket.SOCK_DGRAM, "udp"), (socket.SOCK_STREAM, "tcp")):
                try:
                    sock = when_free(partial(_listen, family, kind, address, self.port))
                except OSError as exc:
                    if family == socket.AF_INET6 and exc.errno == errno.EAFNOSUPPORT:
                        break  # no IPv6 in this namespace: IPv4 serves alone
                    failures.append(f"{address} port {self.port}/{proto}: {exc.strerror}")
                    continue
                self.sockets.append(sock)
                handler: Handler = self._on_udp if proto == "udp" else self._on_accept
                self.selector.register(sock, selectors.EVENT_READ, handler)
                shown = f"[{address}]" if family == socket.AF_INET6 else address
                bound.append(f"{shown}:{self.port}/{proto}")
        if failures:
            self.close()
            raise OSError(errno.EADDRNOTAVAIL, "cannot listen on " + "; ".join(failures))
        self.watch = FileWatch(self.records_path)
        self.selector.register(self.watch, selectors.EVENT_READ, self._on_watch)
        if self.metrics_port is not None:
            self._http = _start_metrics(self.metrics, self.metrics_port)
            bound.append(f"metrics :{self.metrics_port}/tcp")
        return bound

    def serve_forever(self) -> None:
        """Serve until SIGTERM or SIGINT (then close everything and return)."""
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wake = (reader, writer)
        self.selector.register(reader, selectors.EVENT_READ, self._on_wake)
        signal.set_wakeup_fd(writer.fileno())
        signal.signal(signal.SIGHUP, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            while not self.stop_wanted:
                self.serve_once(1.0)
        finally:
            signal.set_wakeup_fd(-1)
            self.close()

    def serve_once(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            key.data(key.fileobj, mask)
        if self.reload_wanted:
            self.reload_wanted = False
            self.reload()
        now = time.monotonic()
        if now - self._last_sweep >= 1.0:
            self._last_sweep = now
            self._sweep(now)

    def close(self) -> None:
        for conn in list(self.tcp.values()):
            self._close_tcp(conn)
        for sock in self.sockets:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)
            sock.close()
        self.sockets.clear()
        if self.watch is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.watch)
            self.watch.close()
            self.watch = None
        if self._wake is not None:
            for sock in self._wake:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(sock)
                sock.close()
            self._wake = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.selector.close()

    # Events ----------------------------------------------------------------------------------

    def _on_udp(self, sock: socket.socket, _mask: int) -> None:
        for _ in range(_BATCH):
            try:
                data, peer = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                return  # an ICMP error for an earlier answer: nothing to do
            out = self.handle(data, "udp")
            if out is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(out, peer)

    def _on_accept(self, listener: socket.socket, _mask: int) -> None:
        for _ in range(_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self.note("out of file descriptors: closing idle TCP clients")
                    self._sweep(time.monotonic(), idle=0.0)
                return
            if len(self.tcp) >= _MAX_TCP:
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _TCP_SNDBUF)
            conn = _TcpConn(sock, time.monotonic())
            self.tcp[sock.fileno()] = conn
            self.selector.register(sock, selectors.EVENT_READ, self._on_tcp)

    def _on_tcp(self, sock: socket.socket, mask: int) -> None:
        conn = self.tcp.get(sock.fileno())
        if conn is None:
            return
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if not mask & selectors.EVENT_READ or conn.sock.fileno() < 0:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_tcp(conn)
            return
        conn.last = time.monotonic()
        conn.inbuf += data
        while len(conn.inbuf) >= 2:
            size = int.from_bytes(conn.inbuf[:2], "big")
            if len(conn.inbuf) < 2 + size:
                break
            message = bytes(conn.inbuf[2 : 2 + size])
            del conn.inbuf[: 2 + size]
            out = self.handle(message, "tcp")
            if out is not None:
                conn.outbuf += len(out).to_bytes(2, "big") + out
        if len(conn.outbuf) > _MAX_UNREAD:  # it asks and never reads: not our memory to give
            self._close_tcp(conn)
            return
        if conn.outbuf:
            self._flush(conn)

    def _flush(self, conn: _TcpConn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close_tcp(conn)
            return
        del conn.outbuf[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        self.selector.modify(conn.sock, events, self._on_tcp)

    def _close_tcp(self, conn: _TcpConn) -> None:
        self.tcp.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.sock)
        conn.sock.close()

    def _sweep(self, now: float, idle: float = _TCP_IDLE) -> None:
        for conn in list(self.tcp.values()):
            if now - conn.last >= idle:
                self._close_tcp(conn)

    def _on_watch(self, watch: FileWatch, _mask: int) -> None:
        if watch.changed():
            self.reload_wanted = True

    def _on_wake(self, sock: socket.socket, _mask: int) -> None:
        with contextlib.suppress(OSError):
            while sock.recv(256):
                pass

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self.reload_wanted = True
        else:
            self.stop_wanted = True

    def note(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            self.log.write(f"{stamp} podnet-dns: {text}\n")
            self.log.flush()


def _serial(zones: Zones) -> int:
    soa = zones.zones[0].soa if zones.zones else None
    return int(soa[0].serial) if soa is not None else 0


def _formerr(wire: bytes) -> bytes:
    """FORMERR for a message dnspython cannot parse, with the client's ID and RD flag."""
    response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    response.flags = dns.flags.QR | (int.from_bytes(wire[2:4], "big") & dns.flags.RD)
    response.set_rcode(dns.rcode.FORMERR)
    return response.to_wire()


IN_USE_WAIT = 5.0  # seconds a port may stay taken before the server gives up


def when_free(make: Callable[[], T], wait: float = IN_USE_WAIT) -> T:
    """`make()` (a socket bound to a port), tried again while the port is in use, for at most
    `wait` seconds. The server a crashed `up` started in this pod may still hold it: that run's
    zygote stops it (SIGTERM, up to 2 s, then SIGKILL) while the next `up` starts this one, as a
    restarted container finds its predecessor's port for a moment."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return make()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def _listen(family: socket.AddressFamily, kind: int, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # 0.0.0.0 has its own
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _start_metrics(metrics: Metrics, port: int) -> Any:
    """/metrics and /health on `port`, all addresses of both families, in a daemon thread."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class MetricsHandler(BaseHTTPRequestHandler):
        server_version = "podnet-dns"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype, status = metrics.render().encode(), CONTENT_TYPE, 200
            elif path == "/health":
                body, ctype, status = b"OK\n", "text/plain", 200
            else:
                body, ctype, status = b"try /metrics or /health\n", "text/plain", 404
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes are not news

    class Quiet(HTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            if isinstance(sys.exc_info()[1], ConnectionError):
                return  # a client that left before its answer (a port probe): not news
            super().handle_error(request, client_address)

    class DualStack(Quiet):
        address_family = socket.AF_INET6

        def server_bind(self) -> None:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    try:
        server: HTTPServer = when_free(lambda: DualStack(("::", port), MetricsHandler))
    except OSError as exc:
        if exc.errno != errno.EAFNOSUPPORT:
            raise
        server = when_free(lambda: Quiet(("0.0.0.0", port), MetricsHandler))  # noqa: S104
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


def _set_comm(name: str) -> None:
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as fh:
        fh.write(name[:15])


def main(argv: Sequence[str] | None = None, *, ready: Callable[[], None] | None = None) -> int:
    """The server's command line; `ready` is called once it listens (a lab container's start
    waits for it)."""
    parser = argparse.ArgumentParser(
        prog="python -m podnet.dns.server",
        description="Answer the cluster's DNS records (written by podnet) on port 53, UDP and TCP.",
    )
    parser.add_argument("--records", required=True, help="the records file podnet writes")
    parser.add_argument(
        "--listen",
        action="append",
        metavar="ADDRESS",
        help="an address to listen on (repeat for more; default: 0.0.0.0 and ::)",
    )
    parser.add_argument("--port", type=int, default=53, help="DNS port (default 53)")
    parser.add_argument(
        "--metrics-port", type=int, default=9153, help="Prometheus metrics port; 0: none"
    )
    parser.add_argument(
        "--cache",
        type=int,
        default=_CACHE_MAX,
        metavar="N",
        help=f"rendered answers kept (default {_CACHE_MAX}; 0: render every answer)",
    )
    args = parser.parse_args(argv)
    try:
        server = DnsServer(
            args.records,
            addresses=args.listen or DEFAULT_ADDRESSES,
            port=args.port,
            metrics_port=args.metrics_port or None,
            cache_size=max(0, args.cache),
        )
    except (OSError, RecordsFileError) as exc:
        print(
            f"podnet-dns: cannot load the records: {_why(exc)}\n"
            "  hint: podnet writes this file before it starts the DNS pods: run `podnet up`",
            file=sys.stderr,
        )
        return 2
    try:
        listening = server.bind()
    except OSError as exc:
        print(f"podnet-dns: {_why(exc)}", file=sys.stderr)
        return 1
    _set_comm("podnet-dns")
    server.note(f"serving {server.metrics.records} records on {', '.join(listening)}")
    if ready is not None:
        ready()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
