"""`podnet cni`: install podnet as the CNI plugin of a real container runtime, and run its agent.

    podnet cni install [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--mode ptp|bridge]
                       [--subnet 10.244.1.0/24] [--agent auto|never] [--no-portmap] ...
    podnet cni agent   [--socket /run/podnet/cni.sock]   # optional: the plugin starts one
    podnet cni uninstall
"""

from __future__ import annotations

import sys

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
              help="Masquerade pod traffic leaving the pod subnet (nftables, table inet "
              "podnet-cni).")
@click.option("--ipam", default="podnet-ipam", show_default=True,
              help="IPAM plugin: podnet-ipam, or another in the bin dir such as host-local.")
@click.option("--socket", "socket_path", default="/run/podnet/cni.sock", show_default=True,
              help="The agent's socket, compiled into the executables.")
@click.option("--client", type=click.Choice(["auto", "c", "python"]), default="auto",
              show_default=True, help="Executable form: C (needs cc, 1 ms start) or Python (8 ms).")
@click.option("--agent", type=click.Choice(["auto", "never"]), default="auto", show_default=True,
              help="auto: the plugin starts its agent on first use; never: every call runs "
              "in-process (200+ ms) unless you run `podnet cni agent` yourself.")
@click.option("--portmap/--no-portmap", default=True, show_default=True,
              help="Chain the reference portmap plugin (kubelet's hostPort).")
@click.option("--bandwidth/--no-bandwidth", default=True, show_default=True,
              help="Chain the reference bandwidth plugin (the ingress/egress-bandwidth "
              "annotations).")
@click.option("--reference-dir", default="/usr/lib/cni", show_default=True,
              help="Where the reference plugins live, linked into --bin-dir when missing there.")
def install_command(*, bin_dir: str, conf_dir: str, mode: str, subnet: str, network: str,
                    bridge: str, mtu: int, ip_masq: bool, ipam: str, socket_path: str,
                    client: str, agent: str, portmap: bool, bandwidth: bool,
                    reference_dir: str) -> None:
    """Write podnet-cni, podnet-ipam and a .conflist: the whole set-up (the plugin starts its
    own agent on first use; nothing else needs running)."""
    from podnet.cni.install import InstallOptions, install  # lazy by design

    opts = InstallOptions(bin_dir=bin_dir, conf_dir=conf_dir, mode=mode,  # type: ignore[arg-type]
                          subnet=subnet, network=network, bridge=bridge, mtu=mtu,
                          ip_masq=ip_masq, ipam=ipam, socket=socket_path,
                          client=client, agent=agent,  # type: ignore[arg-type]
                          portmap=portmap, bandwidth=bandwidth, reference_dir=reference_dir)
    done = install(opts)
    for path in done.executables:
        click.echo(f"wrote {path} ({'C client' if done.client == 'c' else 'Python client'})")
    for path in done.linked:
        click.echo(f"linked {path} -> {reference_dir}")
    click.echo(f"wrote {done.conflist}")
    if done.stopped_agent is not None:
        click.echo(f"stopped the running agent (pid {done.stopped_agent}): the next call starts "
                   "one with this code")
    if agent == "auto":
        click.echo(f"the first call starts the agent on {socket_path}; nothing else to run")


@cni_group.command("uninstall")
@click.option("--bin-dir", default="/opt/cni/bin", show_default=True)
@click.option("--conf-dir", default="/etc/cni/net.d", show_default=True)
@click.option("--socket", "socket_path", default="/run/podnet/cni.sock", show_default=True)
def uninstall_command(bin_dir: str, conf_dir: str, socket_path: str) -> None:
    """Remove what `podnet cni install` wrote and stop the agent (pods keep their network until
    deleted)."""
    from podnet.cni.install import uninstall

    for path in uninstall(bin_dir, conf_dir, socket_path=socket_path):
        click.echo(f"removed {path}")


@cni_group.command("agent")
@click.option("--socket", "socket_path", default="/run/podnet/cni.sock", show_default=True)
@click.option("--quiet", is_flag=True, help="Do not log each request.")
def agent_command(socket_path: str, quiet: bool) -> None:
    """Serve plugin requests in the foreground (for a service manager).

    Not needed for speed: the installed plugin starts an agent on first use. SIGTERM stops
    accepting at once and answers every request already accepted before exiting.
    """
    from podnet.cni.agent import serve  # loads pyroute2

    def log(command: str, code: int, seconds: float) -> None:
        click.echo(f"{command} -> {code} in {seconds * 1000:.1f} ms", err=True)

    def ready() -> None:
        click.echo(f"podnet cni agent serving {socket_path}", err=True)

    if serve(socket_path, None if quiet else log, ready) == 3:
        from podnet.errors import StateError

        raise StateError(f"another podnet agent is serving {socket_path}",
                         hint="stop it first (its PID is in the .lock file beside the socket), "
                         "or give this one another --socket")
    sys.stderr.flush()
