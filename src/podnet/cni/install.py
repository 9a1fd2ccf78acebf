"""`podnet cni install`: put podnet-cni and podnet-ipam where a runtime finds them, and a conflist.

A runtime runs plugins with its own small environment (no virtualenv on PATH), so the executables
carry this machine's paths, written at install time: the interpreter that runs podnet, the
directory holding the package when that interpreter cannot import it by itself (a source
checkout), and the agent's socket. They are a C client compiled here when a C compiler exists
(1 ms of start-up), else a Python script started with `-I -S` (8 ms); both forward to the agent
and run the plugin in Python when it is not there.

The executables start the agent on first use (`--agent never` compiles that out), so what
`install` writes is the whole set-up: no service to enable, no step to remember. Installing again
stops the running agent (SIGTERM: it drains), so the next call starts one running the new code.

The conflist chains, after podnet-cni, Debian's reference `portmap` (kubelet's hostPort, the
`portMappings` capability) and `bandwidth` (the `kubernetes.io/ingress-bandwidth` and
`egress-bandwidth` annotations, the `bandwidth` capability); podnet-cni itself declares the `ips`
capability (static addresses). Where the bin dir lacks them (or `loopback`, which containerd's
CRI runs for every pod), they are linked from the reference plugins' directory (/usr/lib/cni on
Debian). It says "cniVersion": "1.0.0" and lists
["1.0.0", "1.1.0"] in "cniVersions": containerd 1.6 refuses a 1.1.0 result, while runtimes that
know 1.1 pick it (and with it GC and STATUS). `args.podman_labels` carries the subnet: podman
(CNI backend) reads subnets only from `bridge`, `macvlan` and `ipvlan` plugins with host-local,
but shows any conflist's labels. Every file is written beside its target and renamed over it, so
a runtime reading the directory never sees half a file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from podnet.cni.agentctl import stop_agent
from podnet.cni.client import DEFAULT_SOCKET
from podnet.cni.dispatch import IPAM_PLUGIN, MAIN_PLUGIN
from podnet.errors import CNI_INVALID_CONFIG, CniError, StateError

__all__ = ["InstallOptions", "Installed", "install", "render_conflist", "uninstall"]

CONFLIST_NAME = "10-podnet.conflist"
REFERENCE_DIR = "/usr/lib/cni"
_SHIM_SOURCE = Path(__file__).with_name("shim.c")
_CHAINED: dict[str, dict[str, Any]] = {
    "portmap": {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
    "bandwidth": {"type": "bandwidth", "capabilities": {"bandwidth": True}},
}


@dataclass(frozen=True)
class InstallOptions:
    bin_dir: str = "/opt/cni/bin"
    conf_dir: str = "/etc/cni/net.d"
    mode: Literal["ptp", "bridge"] = "ptp"
    subnet: str = "10.244.1.0/24"
    network: str = "podnet"
    bridge: str = "podnet0"
    mtu: int = 1500
    ip_masq: bool = True
    ipam: str = IPAM_PLUGIN  # or "host-local" (any IPAM plugin in the bin dir)
    socket: str = DEFAULT_SOCKET
    client: Literal["auto", "c", "python"] = "auto"
    agent: Literal["auto", "never"] = "auto"  # auto: the client starts the agent on first use
    portmap: bool = True  # chain the reference portmap plugin (hostPort)
    bandwidth: bool = True  # chain the reference bandwidth plugin (traffic shaping)
    reference_dir: str = REFERENCE_DIR
    python: str = field(default_factory=lambda: sys.executable)
    conflist_name: str = CONFLIST_NAME


@dataclass(frozen=True)
class Installed:
    executables: tuple[str, ...]
    conflist: str
    client: Literal["c", "python"]
    package_path: str  # "" when the interpreter imports podnet by itself
    linked: tuple[str, ...] = ()  # reference plugins linked into the bin dir
    stopped_agent: int | None = None  # the PID of the agent stopped to load the new code


def render_conflist(opts: InstallOptions) -> dict[str, Any]:
    try:
        subnet = ipaddress.IPv4Network(opts.subnet)
    except ValueError as exc:
        raise CniError(CNI_INVALID_CONFIG, f"--subnet {opts.subnet}: {exc}",
                       details="give an IPv4 CIDR such as 10.244.1.0/24") from None
    ipam: dict[str, Any] = {"type": opts.ipam, "ranges": [[{"subnet": str(subnet)}]],
                            "routes": [{"dst": "0.0.0.0/0"}]}
    plugin: dict[str, Any] = {"type": MAIN_PLUGIN, "mode": opts.mode, "mtu": opts.mtu,
                              "ipMasq": opts.ip_masq, "capabilities": {"ips": True},
                              "ipam": ipam}
    if opts.mode == "bridge":
        plugin.update({"bridge": opts.bridge, "isGateway": True, "hairpinMode": True})
    chained = [dict(_CHAINED[name]) for name in _chained_names(opts)]
    return {"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"], "name": opts.network,
            "args": {"podman_labels": {"podnet.subnets": str(subnet),
                                       "podnet.mode": opts.mode}},
            "plugins": [plugin, *chained]}


def _chained_names(opts: InstallOptions) -> list[str]:
    return [name for name, on in (("portmap", opts.portmap), ("bandwidth", opts.bandwidth)) if on]


def _link_reference_plugins(opts: InstallOptions) -> tuple[str, ...]:
    """Make the chained reference plugins findable in the bin dir (the runtime looks only
    there); refuses, before anything is written, when they are nowhere to be found."""
    todo = []
    for name in [*_chained_names(opts), "loopback"]:  # containerd's CRI runs loopback per pod
        here = os.path.join(opts.bin_dir, name)
        if os.path.exists(here):
            continue
        source = os.path.join(opts.reference_dir, name)
        if name == "loopback" and not os.access(source, os.X_OK):
            continue  # only containerd wants it, and says so
        if not os.access(source, os.X_OK):
            raise StateError(
                f"the {name} CNI plugin is in neither {opts.bin_dir} nor {opts.reference_dir}",
                hint="install the reference plugins (apt-get install containernetworking-plugins)"
                f", or pass --no-{name} to leave {name} out of the chain")
        todo.append((source, here))
    return tuple(_link(source, here) for source, here in todo)


def _link(source: str, here: str) -> str:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(here)  # a dangling link of an earlier install
    os.symlink(source, here)
    return here


def _write_atomically(path: str, data: bytes, mode: int) -> None:
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _package_path(python: str) -> str:
    """Where podnet lives, if the clients' interpreter cannot import it by itself.

    Probed as the Python client runs (`-I -S`: no site-packages, so no editable-install finder
    and no venv packages): a source checkout or a venv install then gets its path written in.
    """
    here = str(Path(__file__).resolve().parents[2])
    probe = subprocess.run([python, "-I", "-S", "-c", "import podnet"], capture_output=True,
                           check=False)
    return "" if probe.returncode == 0 else here


def _c_literal(value: str, what: str) -> str:
    if any(c in value for c in '"\\\n') or not value.isprintable():
        raise StateError(f"{what} {value!r} cannot be written into the C client",
                         hint="use a path without quotes, backslashes or control characters")
    return f'"{value}"'


def _build_c_client(opts: InstallOptions, package_path: str, out: str) -> bool:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not _SHIM_SOURCE.exists():
        return False
    cmd = [cc, "-O2", "-o", out, str(_SHIM_SOURCE),
           f"-DPODNET_AUTOSTART={int(opts.agent == 'auto')}",
           f"-DPODNET_SOCKET={_c_literal(opts.socket, 'socket')}",
           f"-DPODNET_PYTHON={_c_literal(opts.python, 'interpreter')}",
           f"-DPODNET_PATH={_c_literal(package_path, 'package path')}"]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def _python_client(opts: InstallOptions, package_path: str, plugin: str) -> bytes:
    return (
        f"#!{opts.python} -IS\n"
        f'"""{plugin}: podnet\'s CNI plugin (written by `podnet cni install`)."""\n'
        "import sys\n"
        f"if {package_path!r}:\n"
        f"    sys.path.insert(0, {package_path!r})\n"
        "from podnet.cni.client import main\n"
        f"sys.exit(main({plugin!r}, {opts.socket!r}, autostart={opts.agent == 'auto'}))\n"
    ).encode()


def install(opts: InstallOptions) -> Installed:
    conflist = render_conflist(opts)  # validates before anything is written
    os.makedirs(opts.bin_dir, mode=0o755, exist_ok=True)
    os.makedirs(opts.conf_dir, mode=0o755, exist_ok=True)
    linked = _link_reference_plugins(opts)
    package_path = _package_path(opts.python)
    kind: Literal["c", "python"] = "python"
    binary = b""
    written = []
    if opts.client in ("auto", "c"):
        built = os.path.join(opts.bin_dir, f".{MAIN_PLUGIN}.{os.getpid()}.build")
        try:
            if _build_c_client(opts, package_path, built):
                with open(built, "rb") as fh:
                    binary = fh.read()
                kind = "c"
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(built)
        if kind != "c" and opts.client == "c":
            raise StateError("could not compile the C client (no cc, or shim.c is missing)",
                             hint="install gcc, or pass --client python")
    for plugin in (MAIN_PLUGIN, IPAM_PLUGIN):
        path = os.path.join(opts.bin_dir, plugin)
        data = binary if kind == "c" else _python_client(opts, package_path, plugin)
        _write_atomically(path, data, 0o755)
        written.append(path)
    conf_path = os.path.join(opts.conf_dir, opts.conflist_name)
    _write_atomically(conf_path, json.dumps(conflist, indent=2).encode() + b"\n", 0o644)
    stopped = stop_agent(opts.socket)
    return Installed(tuple(written), conf_path, kind, package_path, linked, stopped)


def uninstall(bin_dir: str, conf_dir: str, conflist_name: str = CONFLIST_NAME,
              reference_dir: str = REFERENCE_DIR, socket_path: str = DEFAULT_SOCKET) -> list[str]:
    """Remove what install wrote (and the reference-plugin links it made, recognised by their
    target), and stop the agent; returns the paths removed."""
    removed = []
    for path in (os.path.join(bin_dir, MAIN_PLUGIN), os.path.join(bin_dir, IPAM_PLUGIN),
                 os.path.join(conf_dir, conflist_name)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    for name in [*_CHAINED, "loopback"]:
        path = os.path.join(bin_dir, name)
        if os.path.islink(path) and os.readlink(path) == os.path.join(reference_dir, name):
            os.unlink(path)
            removed.append(path)
    stop_agent(socket_path)
    return removed
