"""`podnet cni`: install podnet as the CNI plugin of a real container runtime, and run its agent.

    podnet cni install [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--mode ptp|bridge]
                       [--subnet 10.244.1.0/24] ...
    podnet cni agent   [--socket /run/podnet/cni.sock]
    podnet cni uninstall
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

__all__ = ["cni_group"]


@click.group("cni")
def cni_group() -> None:
    """podnet as a CNI plugin (spec 1.1): install it, run its agent, remove it."""


@cni_group.command("install")
@click.option("--bin-dir", default="/opt/cni/bin", show_default=True,
              help="Where the runtime looks for plugin executables.")
@click.option("--conf-dir", default="/etc/cni/net.d", show_default=True,
              help="Where the runtime reads network configurations.")
@click.option("--mode", type=click.Choice(["ptp", "bridge"]), default="ptp", show_default=True,
              help="ptp: /32 gateway on each host veth and a host route per pod (kindnet); "
              "bridge: host veths join a bridge holding the gateway (cni0).")
@click.option("--subnet", default="10.244.1.0/24", show_default=True,
              help="This node's pod CIDR.")
@click.option("--name", "network", default="podnet", show_default=True, help="Network name.")
@click.option("--bridge", default="podnet0", show_default=True, help="Bridge name (bridge mode).")
@click.option("--mtu", type=int, default=1500, show_default=True)
@click.option("--ip-masq/--no-ip-masq", default=True, show_default=True,
              help="Masquerade pod traffic leaving the pod subnet (nftables, table ip podnet).")
@click.option("--ipam", default="podnet-ipam", show_default=True,
              help="IPAM plugin: podnet-ipam, or another in the bin dir such as host-local.")
@click.option("--socket", "socket_path", default="/run/podnet/cni.sock", show_default=True,
              help="The agent's socket, compiled into the executables.")
@click.option("--client", type=click.Choice(["auto", "c", "python"]), default="auto",
              show_default=True, help="Executable form: C (needs cc, 1 ms start) or Python (8 ms).")
def install_command(*, bin_dir: str, conf_dir: str, mode: str, subnet: str, network: str,
                    bridge: str, mtu: int, ip_masq: bool, ipam: str, socket_path: str,
                    client: str) -> None:
    """Write podnet-cni, podnet-ipam and a .conflist; runtimes call them from then on."""
    from podnet.cni.install import InstallOptions, install  # lazy by design

    opts = InstallOptions(bin_dir=bin_dir, conf_dir=conf_dir, mode=mode,  # type: ignore[arg-type]
                          subnet=subnet, network=network, bridge=bridge, mtu=mtu,
                          ip_masq=ip_masq, ipam=ipam, socket=socket_path,
                          client=client)  # type: ignore[arg-type]
    done = install(opts)
    for path in done.executables:
        click.echo(f"wrote {path} ({'C client' if done.client == 'c' else 'Python client'})")
    click.echo(f"wrote {done.conflist}")
    click.echo(f"start the agent for 1 ms plugin start-up: podnet cni agent --socket {socket_path}"
               "\n(without it the plugin still works, loading Python and pyroute2 on each call)")


@cni_group.command("uninstall")
@click.option("--bin-dir", default="/opt/cni/bin", show_default=True)
@click.option("--conf-dir", default="/etc/cni/net.d", show_default=True)
def uninstall_command(bin_dir: str, conf_dir: str) -> None:
    """Remove what `podnet cni install` wrote (pods keep their network until deleted)."""
    from podnet.cni.install import uninstall

    for path in uninstall(bin_dir, conf_dir):
        click.echo(f"removed {path}")


@cni_group.command("agent")
@click.option("--socket", "socket_path", default="/run/podnet/cni.sock", show_default=True)
@click.option("--quiet", is_flag=True, help="Do not log each request.")
def agent_command(socket_path: str, quiet: bool) -> None:
    """Serve plugin requests with pyroute2 loaded once (runs in the foreground)."""
    from podnet.cni.agent import Agent  # loads pyroute2

    def log(command: str, code: int, seconds: float) -> None:
        click.echo(f"{command} -> {code} in {seconds * 1000:.1f} ms", err=True)

    agent = Agent(socket_path, on_request=None if quiet else log)
    agent.preload()
    agent.bind()

    def stop(*_: Any) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"podnet cni agent serving {socket_path}", err=True)
    server = threading.Thread(target=agent.serve_forever, daemon=True)
    server.start()
    while server.is_alive():
        server.join(0.5)
    sys.stderr.flush()
