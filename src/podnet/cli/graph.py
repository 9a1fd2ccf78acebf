"""`podnet graph`: the lab (or any host) drawn as Mermaid, DOT, SVG or a page; `--serve` makes
the page the lab's live dashboard on 127.0.0.1: it redraws when pods come and go, shows what
`describe` says of a pod, and traces a packet between two pods with podnet's tracer."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import click

from podnet.cli.context import cluster_option, pick_cluster
from podnet.cli.progress import spinner
from podnet.errors import PodnetError
from podnet.render.graph_model import Graph

if TYPE_CHECKING:
    from podnet.inspect.model import Host

__all__ = ["GraphServer", "Picture", "collect_graph", "collect_picture", "graph_command"]

LOOPBACK = "127.0.0.1"  # the page shows the machine's namespaces: never serve it beyond it
MAX_CLIENTS = 16  # connections served at once; more are closed at once
CLIENT_TIMEOUT = 10.0  # seconds a connection may stay silent before it is closed


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CLIENTS of them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


Picture = tuple[Graph, dict[str, str]]  # the drawing, and what `describe` says of each pod


def collect_graph(cluster: str | None = None, *, everything: bool = False,
                  source: str | None = None) -> Graph:
    """Read the host (or an `inspect -o json` file) and the lab, and build the drawing."""
    return collect_picture(cluster, everything=everything, source=source, describe=False,
                           every_qdisc=True)[0]


def collect_picture(cluster: str | None = None, *, everything: bool = False,
                    source: str | None = None, describe: bool = True,
                    every_qdisc: bool = False) -> Picture:
    """The drawing, and (for the page) the text `podnet describe pod` gives for each pod, from
    the same reading of the kernel. Impaired links are read in the lab's nodes and node
    network, where the lab shapes links (one `tc` process each), and with `every_qdisc` in
    every namespace drawn (a pod's own eth0 that `podnet netem POD` shaped): the live page,
    redrawn every second, reads the nodes only."""
    from podnet.render.graph_model import build_graph
    from podnet.trace.target import LabView, read_lab

    if source is not None:
        return build_graph(_read_inspect_json(source), LabView(), everything=True), {}
    from podnet.inspect.build import inspect_host

    host = inspect_host()
    lab = read_lab(cluster)
    vxlan: dict[tuple[str, str], tuple[int | None, int | None]] = {}
    tunnels = [(ns, i) for ns in host.namespaces for i in ns.interfaces if i.kind == "vxlan"]
    if tunnels:
        from podnet.kernel.lookup import Lookup
        from podnet.trace.world import namespace_path

        with Lookup() as lookup:
            for ns, iface in tunnels:
                info = lookup.vxlan(namespace_path(ns), iface.ifindex)
                if info is not None:
                    vxlan[(ns.label, iface.ifname)] = (info.vni, info.port)
    graph = build_graph(host, lab, vxlan=vxlan, everything=everything,
                        isolation=_isolation(lab.cluster),
                        impaired=_impaired(host, lab, every_qdisc or everything))
    return graph, (_descriptions(lab.cluster, host) if describe and lab.cluster else {})


def _impaired(host: Host, lab: Any, every: bool) -> dict[tuple[str, str], str]:
    from podnet.trace.world import impaired_links

    if every or not lab.cluster:
        return impaired_links(host)
    fabric = lab.raw.get("fabric") or {}
    names = {str(n.get("netns")) for n in lab.nodes} | {str(fabric.get("netns"))}
    return impaired_links(host, [ns.label for ns in host.namespaces if ns.name in names])


def _isolation(cluster: str) -> dict[str, list[str]]:
    """Pods NetworkPolicies isolate, with the policies that do it, per direction."""
    from podnet import state as lab_state

    record = lab_state.load(cluster) if cluster else None
    if record is None or not record.layout.policies:
        return {}
    from podnet.policy.select import isolating
    from podnet.policy.world import world_from

    world = world_from(record.layout)
    out: dict[str, list[str]] = {}
    for pod in world.pods:
        for direction in ("Ingress", "Egress"):
            policies = isolating(world, pod, direction)
            if policies:
                out.setdefault(pod.key, []).append(
                    f"{direction.lower()}: {', '.join(p.key for p in policies)}")
    return out


def _descriptions(cluster: str, host: Host) -> dict[str, str]:
    from podnet import state as lab_state
    from podnet.objects.pods import PODS, pod_object
    from podnet.objects.reads import HostReads
    from podnet.render.describe_text import render_describe

    record = lab_state.load(cluster)
    if record is None or PODS.describe is None:
        return {}
    reads = HostReads(host)
    return {p.key: render_describe(PODS.describe(record, pod_object(record, p, reads), reads))
            for p in record.layout.pods}


Tracer = Callable[[str, str, "int | None"], dict[str, Any]]


def _read_inspect_json(path: str) -> Any:
    """The host an `inspect -o json` file describes; InputError when it is not one."""
    from podnet.errors import InputError
    from podnet.inputs import MAX_INSPECT_JSON, read_bounded
    from podnet.render.graph_model import host_from_inspect_json

    try:
        return host_from_inspect_json(json.loads(read_bounded(path, MAX_INSPECT_JSON)))
    except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc) or type(exc).__name__
        why = f"no key {why}" if isinstance(exc, KeyError) else why
        raise InputError(f"--from {path}: not a `podnet inspect -o json` document ({why})",
                         hint="write one with `podnet inspect -o json > FILE` on the host to "
                         "draw") from None


class GraphServer:
    """A small HTTP server on 127.0.0.1: the page, its SVG, JSON and version, and (POST, from
    the page only) traces between pods.

    A background thread rebuilds the picture every `interval` seconds; requests only read the
    last build, so a slow rebuild never stalls the page. Bounded: MAX_CLIENTS connections at
    once, each closed after CLIENT_TIMEOUT seconds of silence, one trace at a time, and
    `run(timeout)` ends it. Requests must name the server by its loopback address (a page
    elsewhere cannot reach it through DNS rebinding), and a trace must come as JSON with the
    page's own header (a page elsewhere cannot send one without a preflight it would fail).
    """

    def __init__(self, build: Callable[[], Picture], port: int, interval: float = 1.0,
                 tracer: Tracer | None = None) -> None:
        self.build = build
        self.interval = interval
        self.tracer = tracer
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.tracing = threading.Lock()
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.version = ""
        self.error = ""
        self.refresh()
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = CLIENT_TIMEOUT

            def _ours(self) -> bool:
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
                if host in (LOOPBACK, "localhost"):
                    return True
                self.send_error(403, "podnet graph answers requests for 127.0.0.1 only")
                return False

            def _send(self, code: int, kind: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if not self._ours():
                    return
                path = self.path.split("?", 1)[0]
                with server.lock:
                    page = server.pages.get("/" if path == "/index.html" else path)
                if page is None:
                    self.send_error(404, "podnet graph serves /, /graph.svg, /graph.json, "
                                         "/version, /parts.json and POST /trace")
                    return
                self._send(200, *page)

            def do_POST(self) -> None:
                if not self._ours():
                    return
                if self.path != "/trace" or server.tracer is None:
                    self.send_error(404, "only /trace takes a POST")
                    return
                if (self.headers.get("X-Podnet") != "1"
                        or not (self.headers.get("Content-Type") or "").startswith(
                            "application/json")):
                    self.send_error(403, "traces come from podnet's own page")
                    return
                code, answer = server.trace(self.rfile.read(
                    min(int(self.headers.get("Content-Length") or 0), 4096)))
                self._send(code, "application/json", json.dumps(answer).encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a page polling every second would fill the terminal

        self.httpd = _BoundedServer((LOOPBACK, port), Handler)
        self.port = int(self.httpd.server_address[1])

    def trace(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Run the tracer for a request {from, to, port}; (HTTP status, answer)."""
        try:
            ask = json.loads(body or b"{}")
            source, destination = str(ask["from"]), str(ask["to"])
            port = ask.get("port")
            if port is not None and not (isinstance(port, int) and 0 < port < 65536):
                raise ValueError("port must be 1-65535")
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"error": f"a trace needs from, to and maybe port: {exc}"}
        assert self.tracer is not None
        with self.tracing:
            try:
                return 200, self.tracer(source, destination, port)
            except PodnetError as exc:
                return 400, {"error": exc.for_people()}

    def refresh(self) -> bool:
        """Rebuild; True when the drawing changed."""
        from podnet.render.graph_html import (
            details_json,
            node_templates,
            pods_list,
            render_html,
        )
        from podnet.render.graph_svg import render_svg

        try:
            graph, details = self.build()
        except Exception as exc:  # a namespace vanishing mid-read: keep serving
            self.error = str(exc)
            return False
        version = graph.version()
        if version == self.version:
            return False
        svg = render_svg(graph)
        parts = {"svg": svg, "pods": pods_list(graph), "templates": node_templates(graph),
                 "details": details_json(details)}
        pages = {
            "/": ("text/html; charset=utf-8",
                  render_html(graph, live=True, details=details).encode()),
            "/graph.svg": ("image/svg+xml", svg.encode()),
            "/graph.json": ("application/json", json.dumps(graph.to_json(), indent=1).encode()),
            "/version": ("text/plain; charset=utf-8", (version + "\n").encode()),
            "/pods.html": ("text/html; charset=utf-8", parts["pods"].encode()),
            "/parts.json": ("application/json", json.dumps(parts).encode()),
        }
        with self.lock:
            self.pages, self.version = pages, version
        return True

    def _refresher(self) -> None:
        while not self.stop.wait(self.interval):
            self.refresh()

    def run(self, timeout: float | None) -> None:
        """Serve until `timeout` seconds pass, SIGTERM or Ctrl-C; always closes the socket."""
        workers = [threading.Thread(target=self.httpd.serve_forever, name="graph-http",
                                    daemon=True),
                   threading.Thread(target=self._refresher, name="graph-refresh", daemon=True)]
        for w in workers:
            w.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.stop.wait(0.5 if left is None else min(0.5, left))
        finally:
            self.stop.set()
            self.httpd.shutdown()
            self.httpd.server_close()
            for w in workers:
                w.join(timeout=5)


@click.command("graph")
@click.option("-o", "--output", type=click.Choice(["mermaid", "dot", "svg", "html", "json"]),
              default="mermaid", show_default=True, help="Drawing format.")
@click.option("--host", "everything", is_flag=True,
              help="Every namespace inspect finds on this host, not only the lab's.")
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False),
              help="Draw an `inspect -o json` file taken on any host, instead of this host.")
@click.option("--serve", is_flag=True,
              help=f"Serve the lab's live dashboard on {LOOPBACK}: redrawn as pods come and "
                   "go, a pod's description on a click, traces between two pods.")
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True,
              help="Port for --serve (0: any free port).")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="With --serve: stop after this many seconds (default: until Ctrl-C).")
@click.option("--interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True,
              help="With --serve: seconds between rereads of the host.")
@cluster_option
def graph_command(output: str, everything: bool, source: str | None, serve: bool, port: int,
                  timeout: float | None, interval: float, cluster: str | None) -> None:
    """Draw the lab: nodes, pods, containers, veth pairs (both ends), bridges, tunnels and
    addresses, with links a qdisc delays, drops or rate-limits marked impaired (the live page
    reads the nodes' qdiscs only). Without a lab, or with --host, every namespace this host has.

    \b
      podnet graph -o mermaid > lab.mmd     # renders on GitHub
      podnet graph -o svg > lab.svg         # drawn by podnet itself
      podnet graph -o html > lab.html       # one self-contained page
      podnet graph --serve                  # http://127.0.0.1:8470/, live
      podnet inspect -o json > node.json; podnet graph --from node.json -o svg
    """
    if source is None and not everything:
        from podnet import state as lab_state

        cluster = pick_cluster(cluster) if lab_state.list_labs() else cluster

    def build() -> Picture:
        return collect_picture(cluster, everything=everything, source=source,
                               describe=serve or output == "html", every_qdisc=not serve)

    if serve:
        try:
            server = GraphServer(build, port, interval,
                                 tracer=lambda a, b, p: _trace(cluster, a, b, p))
        except OSError as exc:
            from podnet.errors import InputError

            raise InputError(f"cannot serve on {LOOPBACK}:{port}: {exc.strerror}",
                             hint=f"another program listens there (`ss -ltnp sport = :{port}`): "
                             "choose another with --port, or --port 0 for any free one") from None
        signal.signal(signal.SIGTERM, lambda *_: server.stop.set())
        click.echo(f"serving http://{LOOPBACK}:{server.port}/ (Ctrl-C stops)", err=True)
        sys.stderr.flush()
        with contextlib.suppress(KeyboardInterrupt):
            server.run(timeout)
        return
    with spinner("reading this host's namespaces and the lab"):
        graph, details = build()
    if output == "mermaid":
        from podnet.render.graph_mermaid import render_mermaid

        click.echo(render_mermaid(graph))
    elif output == "dot":
        from podnet.render.graph_dot import render_dot

        click.echo(render_dot(graph))
    elif output == "svg":
        from podnet.render.graph_svg import render_svg

        click.echo(render_svg(graph))
    elif output == "html":
        from podnet.render.graph_html import render_html

        click.echo(render_html(graph, details=details))
    else:
        click.echo(json.dumps(graph.to_json(), indent=2))


def _trace(cluster: str | None, source: str, destination: str,
           port: int | None) -> dict[str, Any]:
    """podnet's tracer, as `podnet trace SOURCE DESTINATION --port PORT` runs it."""
    from podnet.trace.run import run_trace
    from podnet.trace.text import report_json

    report = run_trace(source, destination, port=port, cluster=cluster, timeout=2.0)
    return report_json(report)
