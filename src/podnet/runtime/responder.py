"""podnet's built-in HTTP responder: the stand-in for a web container that declares ports.

One process serves every port on 0.0.0.0 (and [::] when the pod has IPv6) with a selector loop:
no thread per connection, HTTP/1.1 GET and HEAD with keep-alive. It may serve many pods at once
(`Responder.add`, each pod a `Site` with its own sockets and log): a socket belongs to the network
namespace it was created in, so one process per node holds every pod's (see `podhost`). Every
path answers a small page naming the pod, node, pod IP, container, port and client (plain text if
the client asks for text/plain), so `curl http://<pod ip>` shows which pod answered; /healthz
answers "ok".

A bad request, a reset connection or running out of file descriptors ends that connection at
most, never the server.

Run alone:
    python -m podnet.runtime.responder --port 80 --pod dev/x --node n --ip 1.2.3.4 --container c
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, TextIO

__all__ = ["Identity", "Responder", "Site", "announce", "main", "render_page", "run"]

_MAX_HEAD = 16 * 1024  # request line plus headers; more gets 431
_IDLE = 60.0  # seconds a keep-alive connection may stay silent
_MAX_CONNS = 4096
_LOG_LINES = 10_000  # access log lines before it goes quiet: load tests must not fill /run


@dataclass(frozen=True)
class Identity:
    """Who answers: shown on every page."""

    pod: str  # namespace/name
    node: str
    ip: str
    container: str


def render_page(who: Identity, port: int, client: str, *, plain: bool) -> tuple[bytes, str]:
    """The body and content type for one answer."""
    facts = [
        ("pod", who.pod),
        ("node", who.node),
        ("pod IP", who.ip),
        ("container", who.container),
        ("port", str(port)),
        ("client", client),
    ]
    if plain:
        lines = [f"podnet: pod {who.pod} answered", *(f"{k + ':':<11}{v}" for k, v in facts)]
        return ("\n".join(lines) + "\n").encode(), "text/plain; charset=utf-8"
    e = _escape
    items = "\n".join(f"<li>{e(k)}: <b>{e(v)}</b></li>" for k, v in facts)
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f"<title>podnet: {e(who.pod)}</title>\n"
        "<style>body { width: 40em; margin: 0 auto; font-family: sans-serif; }</style>\n"
        "</head>\n<body>\n"
        f"<h1>Pod {e(who.pod)} answered</h1>\n"
        "<p>This page comes from podnet's built-in responder, running as a container "
        "inside the pod's network namespace.</p>\n"
        f"<ul>\n{items}\n</ul>\n"
        "</body>\n</html>\n"
    )
    return page.encode(), "text/html; charset=utf-8"


@dataclass
class Site:
    """One pod's part of a responder: who answers, its listening sockets and its log."""

    who: Identity
    log: TextIO | None = None
    listeners: list[socket.socket] = field(default_factory=list)
    logged: int = 0  # access log lines written


@dataclass
class _Conn:
    sock: socket.socket
    client: str
    port: int
    site: Site
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    close_after: bool = False
    last: float = 0.0


Watcher = Callable[[], None]  # called when a watched descriptor is readable


class Responder:
    """Listening sockets, one `Site` per pod, and the loop that answers them."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._sites: list[Site] = []
        self._conns: dict[int, _Conn] = {}
        self._paused_until = 0.0
        self._next_sweep = 0.0

    def add(self, who: Identity, ports: Sequence[int], log: TextIO | None = None,
            ) -> tuple[Site, list[str]]:
        """Listen on every port, in the network namespace of the calling thread; return the
        pod's site and the addresses. OSError names the port that failed (nothing is kept)."""
        site = Site(who, log)
        addresses = []
        try:
            for port in dict.fromkeys(ports):
                if not 0 < port < 65536:
                    raise ValueError(f"port {port} is not between 1 and 65535")
                # Every address on purpose: the pod's own namespace is the boundary.
                sock = self._listen(site, socket.AF_INET, "0.0.0.0", port)  # noqa: S104
                if sock is None:  # pragma: no cover - IPv4 always exists
                    continue
                addresses.append(f"0.0.0.0:{port}")
                if self._listen(site, socket.AF_INET6, "::", port) is not None:
                    addresses.append(f"[::]:{port}")
        except (OSError, ValueError):
            self.drop(site)
            raise
        self._sites.append(site)
        return site, addresses

    def drop(self, site: Site) -> None:
        """Close a pod's listening sockets and connections (its namespace may then go)."""
        for conn in [c for c in self._conns.values() if c.site is site]:
            self._close(conn)
        for sock in site.listeners:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
            sock.close()
        site.listeners.clear()
        if site in self._sites:
            self._sites.remove(site)

    @property
    def sites(self) -> list[Site]:
        return list(self._sites)

    def watch(self, fd: int, callback: Watcher) -> None:
        """Call `callback` from the loop whenever `fd` is readable."""
        self._sel.register(fd, selectors.EVENT_READ, callback)

    def unwatch(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(fd)

    def _listen(self, site: Site, family: socket.AddressFamily, host: str,
                port: int) -> socket.socket | None:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            if family == socket.AF_INET6:
                return None  # no IPv6 in this kernel
            raise
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if family == socket.AF_INET6 and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                return None  # IPv6 is off in this namespace
            what = f"cannot listen on {host} port {port}: {exc.strerror}"
            raise OSError(exc.errno, what) from None
        site.listeners.append(sock)
        self._sel.register(sock, selectors.EVENT_READ, site)
        return sock

    def serve_forever(self) -> NoReturn:
        while True:
            self.serve_once(5.0)

    def serve_once(self, timeout: float) -> None:
        """Handle what is ready within `timeout` seconds, then close idle connections."""
        for key, events in self._sel.select(timeout):
            if isinstance(key.data, Site):
                self._accept(key.data, key.fileobj)  # type: ignore[arg-type]
                continue
            if callable(key.data):
                key.data()
                continue
            conn: _Conn = key.data
            try:
                if events & selectors.EVENT_READ:
                    self._read(conn)
                if conn.sock.fileno() >= 0 and events & selectors.EVENT_WRITE:
                    self._flush(conn)
            except Exception as exc:  # one bad connection must never stop the server
                self._note(conn.site, f"{conn.client}: dropped: {exc!r}")
                self._close(conn)
        self._sweep()

    def close(self) -> None:
        for site in list(self._sites):
            self.drop(site)
        self._sel.close()

    def _listeners(self) -> list[tuple[Site, socket.socket]]:
        return [(site, sock) for site in self._sites for sock in site.listeners]

    def _accept(self, site: Site, listener: socket.socket) -> None:
        port = listener.getsockname()[1]
        for _ in range(64):  # a burst, then let the others have a turn
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accepting()
                return  # ECONNABORTED and friends: that client gave up
            if len(self._conns) >= _MAX_CONNS:
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            host = addr[0]
            client = f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
            conn = _Conn(sock, client, port, site, last=time.monotonic())
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _pause_accepting(self) -> None:
        """Out of file descriptors: stop accepting for a second instead of spinning on accept."""
        self._paused_until = time.monotonic() + 1.0
        for _, sock in self._listeners():
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.last = time.monotonic()
        if conn.close_after:
            return  # answering a request that ends the connection: ignore what follows
        conn.inbuf += data
        while not conn.close_after:
            head = _take_head(conn.inbuf)
            if head is None:
                if len(conn.inbuf) > _MAX_HEAD:
                    self._respond(conn, 431, "request header too large\n", close=True)
                break
            self._handle(conn, head)
        self._flush(conn)

    def _handle(self, conn: _Conn, head: bytes) -> None:
        try:
            lines = [line.rstrip("\r") for line in head.decode("latin-1").split("\n")]
            method, target, version = lines[0].split(" ")
            if not version.startswith("HTTP/1.") or not target:
                raise ValueError(version)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon or not name or name != name.strip():
                    raise ValueError(line)
                headers[name.lower()] = value.strip()
        except ValueError:
            self._respond(conn, 400, "bad request\n", close=True)
            self._access(conn, "-", 400)
            return
        request = f"{method} {target[:200]} {version}"
        # A body we do not read would be parsed as the next request: answer, then close.
        close = (
            version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive"
        ) or headers.get("connection", "").lower() == "close"
        close = close or headers.get("content-length", "0") != "0"
        close = close or "transfer-encoding" in headers
        if method not in ("GET", "HEAD"):
            self._respond(conn, 405, "only GET and HEAD\n", close=True, allow=True)
            self._access(conn, request, 405)
            return
        path = target.split("?", 1)[0]
        if path == "/healthz":
            body, ctype = b"ok\n", "text/plain; charset=utf-8"
        else:
            accept = headers.get("accept", "")
            plain = "text/plain" in accept and "text/html" not in accept
            body, ctype = render_page(conn.site.who, conn.port, conn.client, plain=plain)
        self._respond(conn, 200, body, close=close, ctype=ctype, head_only=method == "HEAD")
        self._access(conn, request, 200)

    def _respond(
        self,
        conn: _Conn,
        status: int,
        body: bytes | str,
        *,
        close: bool,
        ctype: str = "text/plain; charset=utf-8",
        head_only: bool = False,
        allow: bool = False,
    ) -> None:
        raw = body.encode() if isinstance(body, str) else body
        reason = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed"}.get(
            status, "Request Header Fields Too Large"
        )
        head = [
            f"HTTP/1.1 {status} {reason}",
            "Server: podnet-responder",
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(raw)}",
            f"X-Podnet-Pod: {conn.site.who.pod}",
            f"Connection: {'close' if close else 'keep-alive'}",
        ]
        if allow:
            head.append("Allow: GET, HEAD")
        conn.outbuf += ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace")
        if not head_only:
            conn.outbuf += raw
        conn.close_after = conn.close_after or close

    def _flush(self, conn: _Conn) -> None:
        if conn.sock.fileno() < 0:
            return
        while conn.outbuf:
            try:
                # MSG_NOSIGNAL: a client gone mid-answer must not SIGPIPE the whole server.
                sent = conn.sock.send(conn.outbuf, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            del conn.outbuf[:sent]
        if not conn.outbuf and conn.close_after:
            self._close(conn)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        if self._sel.get_key(conn.sock).events != want:
            self._sel.modify(conn.sock, want, conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd < 0:
            return
        self._conns.pop(fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn.sock)
        conn.sock.close()

    def _sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        for conn in [c for c in self._conns.values() if now - c.last > _IDLE]:
            self._close(conn)
        if self._paused_until and now >= self._paused_until:
            self._paused_until = 0.0
            for site, sock in self._listeners():
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.register(sock, selectors.EVENT_READ, site)

    def _access(self, conn: _Conn, request: str, status: int) -> None:
        if conn.site.logged == _LOG_LINES:
            self._note(conn.site, f"log stops after {_LOG_LINES} lines; still serving")
            return
        # Printable ASCII only: a request line must not forge lines in the log.
        safe = "".join(c if " " <= c <= "~" else "?" for c in request)
        self._note(conn.site, f'{conn.client} "{safe}" {status}')

    def _note(self, site: Site, line: str) -> None:
        if site.log is None or site.logged > _LOG_LINES:
            return
        site.logged += 1
        with contextlib.suppress(OSError, ValueError):
            site.log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
            site.log.flush()


_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;"))


def _escape(text: str) -> str:
    # html.escape would load html.entities (2,000 names) into every container's memory.
    for raw, safe in _ESCAPES:
        text = text.replace(raw, safe)
    return text


def _take_head(buf: bytearray) -> bytes | None:
    """Cut one request head (line and headers) off `buf`; None until a blank line arrives."""
    ends = [(i, n) for i, n in ((buf.find(b"\r\n\r\n"), 4), (buf.find(b"\n\n"), 2)) if i >= 0]
    if not ends:
        return None
    end, size = min(ends)
    head = bytes(buf[:end])
    del buf[: end + size]
    return head


def announce(site: Site, addresses: Sequence[str]) -> None:
    """The log's first line for a pod: where it listens."""
    if site.log is not None:
        with contextlib.suppress(OSError, ValueError):
            site.log.write(f"podnet responder for pod {site.who.pod} listening on "
                           f"{', '.join(addresses)}\n")
            site.log.flush()


def run(who: Identity, ports: Sequence[int], log: TextIO | None) -> Responder:
    """Bind and announce one pod; the caller then calls serve_forever()."""
    server = Responder()
    site, addresses = server.add(who, ports, log)
    announce(site, addresses)
    return server


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # not in every container's memory: only run alone

    parser = argparse.ArgumentParser(
        prog="python -m podnet.runtime.responder",
        description="podnet's built-in HTTP responder: answers with a page naming the pod.",
    )
    parser.add_argument("--port", type=int, action="append", required=True, help="repeatable")
    parser.add_argument("--pod", default="default/unknown", help="namespace/name")
    parser.add_argument("--node", default="")
    parser.add_argument("--ip", default="")
    parser.add_argument("--container", default="")
    args = parser.parse_args(argv)
    who = Identity(args.pod, args.node, args.ip, args.container)
    try:
        server = run(who, args.port, sys.stdout)
    except (OSError, ValueError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        sys.stderr.write(f"responder: {text}\n")
        return 1
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
