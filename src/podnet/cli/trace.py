"""`podnet trace`: the path of one packet, hop by hop, from the kernel's own answers."""

from __future__ import annotations

import json
import sys

import click

from podnet.cli.progress import spinner

__all__ = ["trace_command"]


@click.command("trace")
@click.argument("source")
@click.argument("destination")
@click.option("-n", "--namespace", default=None,
              help="Kubernetes namespace of pods named without one.")
@click.option("-p", "--port", type=click.IntRange(1, 65535), default=None,
              help="TCP port to probe (default: a Service's port, else an ICMP echo).")
@click.option("-4", "--ipv4", "family", flag_value=4, default=None,
              help="Trace to the IPv4 address of a dual-stack pod, node or Service.")
@click.option("-6", "--ipv6", "family", flag_value=6,
              help="Trace to its IPv6 address (default: the first family, as kubectl's podIP).")
@click.option("--family", "family_number", type=click.Choice(["4", "6"]), default=None,
              help="The same as -4 or -6.")
@click.option("--no-probe", is_flag=True, help="Only read the kernel's tables; send nothing.")
@click.option("--capture", is_flag=True,
              help="Capture on each hop's interface while the probe runs: where it was seen, "
                   "and its addresses there (tcpdump in each namespace).")
@click.option("--timeout", type=click.FloatRange(0.1, 30), default=2.0, show_default=True,
              help="Seconds the probe waits for an answer.")
@click.option("-q", "--quiet", is_flag=True, help="Hops without the commands that show them.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--cluster", "-C", envvar="PODNET_CLUSTER", default=None,
              help="Lab whose names to use (default: the one that is up).")
def trace_command(source: str, destination: str, namespace: str | None, port: int | None,
                  family: int | None, family_number: str | None, no_probe: bool, capture: bool,
                  timeout: float, quiet: bool, output: str, cluster: str | None) -> None:
    """Follow one packet from SOURCE to DESTINATION, hop by hop, then send a real one.

    SOURCE is a pod (NAMESPACE/NAME or NAME), a lab node, or any network namespace inspect
    finds. DESTINATION is an IPv4 or IPv6 address, a pod, a node, or a Service of the lab (of
    a dual-stack one, its first family's address unless -4 or -6 picks one). Each hop is
    the kernel's own answer (route lookups, veth peers, bridge and VXLAN forwarding entries,
    neighbours, nftables NAT and filter rules, MTUs, qdiscs) with the command that shows it.
    The probe sends a full-size packet (DF set) after the handshake, so an MTU black hole is
    found too. Exit status: 0 when the path works, 1 when a hop is broken, 2 when podnet
    cannot tell.

    \b
      podnet trace dev/demo-58465f467c-24bcq jumpbox --port 80
      podnet trace jumpbox demo.dev
      podnet trace -6 jumpbox demo.dev
      podnet trace kind-worker 10.244.2.3 --no-probe
      podnet trace jumpbox dev/demo-58465f467c-24bcq --port 80 --capture
    """
    if capture and no_probe:
        raise click.UsageError("--capture watches the probe: it cannot go with --no-probe")
    if family_number is not None:
        if family is not None and family != int(family_number):
            raise click.UsageError(f"-{family} and --family {family_number} disagree")
        family = int(family_number)
    from podnet.cli.context import pick_cluster
    from podnet.trace.run import run_trace
    from podnet.trace.text import report_json, report_text

    report = run_trace(source, destination, namespace=namespace, port=port,
                       send_probe=not no_probe, timeout=timeout, cluster=pick_cluster(cluster),
                       status=spinner, capture=capture, family=family)
    if output == "json":
        click.echo(json.dumps(report_json(report), indent=2))
    else:
        click.echo(report_text(report, commands=not quiet))
    sys.exit({"works": 0, "broken": 1}.get(report.verdict, 2))
