"""The lab's commands: up, down, get, exec, node-exec, explain.

Thin: each parses its options and calls the library. Heavy imports (pyroute2 through apply, rich)
happen inside the commands that need them, so `podnet exec` starts in tens of milliseconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

import click

from podnet import state as lab_state
from podnet.errors import StateError
from podnet.model.types import ClusterSpec
from podnet.render.columns import columns
from podnet.render.jsonpath import jsonpath

__all__ = ["down", "exec_command", "explain", "get", "node_exec", "up"]

cluster_option = click.option(
    "--cluster", "-C", envvar="PODNET_CLUSTER", default=None,
    help="Lab to act on (default: the one that is up, else 'kind').",
)


def _load_spec(path: str | None) -> tuple[ClusterSpec, str]:
    from podnet.model.loader import default_topology, load_file

    if path:
        return load_file(path), os.path.abspath(path)
    return default_topology(), ""


def _pick_cluster(name: str | None) -> str:
    if name:
        return name
    labs = lab_state.list_labs()
    if len(labs) > 1:
        raise StateError(
            f"{len(labs)} labs are up ({', '.join(labs)})",
            hint="choose one with --cluster NAME (or PODNET_CLUSTER)",
        )
    return labs[0] if labs else "kind"


def _require(cluster: str | None) -> lab_state.LabState:
    name = _pick_cluster(cluster)
    record = lab_state.load(name)
    if record is None:
        raise StateError(f"no lab named {name} is up", hint="bring it up with `podnet up`")
    return record


@click.command()
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False), help="Topology file "
              "(kind Cluster + Pod/Deployment/Service YAML). Default: the embedded lab.")
@click.option("--dry-run", is_flag=True, help="Print the steps, change nothing.")
@click.option("--prune", is_flag=True, help="Also remove the running lab's nodes, Pods, "
              "Deployments and Services that FILE does not name (as kubectl apply --prune).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def up(path: str | None, dry_run: bool, prune: bool, quiet: bool) -> None:
    """Build the lab (or converge a running one on FILE): namespaces, veths, routes, containers.

    On a running lab, what FILE does not name stays unless --prune is given; replicas of a
    Deployment FILE names follow its template and replica count.
    """
    started = time.perf_counter()
    spec, source = _load_spec(path)
    from podnet.runtime.spawner import Spawner

    # The spawner starts first: its process warms up on the other core while netlink work runs.
    with Spawner() as spawner:
        from podnet.apply.lab import up as lab_up

        outcome = _with_progress(
            quiet or dry_run,
            "building lab " + spec.name,
            lambda progress: lab_up(
                spec, topology=source, spawner=spawner, progress=progress, dry_run=dry_run,
                prune=prune,
            ),
        )
    elapsed = time.perf_counter() - started
    if outcome.kept:
        click.echo(f"kept what {path or 'the file'} does not name: {', '.join(outcome.kept)} "
                   "(podnet up --prune removes them)", err=True)
    if dry_run:
        for step in outcome.steps:
            click.echo(f"{step.action.value:<13} {step.target}  # {step.comment}")
        click.echo(_dry_run_summary(outcome.steps))
        return
    if not outcome.steps:
        click.echo(f"lab {spec.name} is up to date: nothing to do ({elapsed:.2f}s)")
        return
    pods = sum(1 for s in outcome.steps if s.action.value == "pod.create")
    click.echo(
        f"lab {spec.name} up: {len(spec.nodes)} nodes, {len(spec.pods)} pods "
        f"({pods} created, {len(outcome.steps)} steps) in {elapsed:.2f}s"
    )


def _dry_run_summary(steps: list[Any]) -> str:
    """What the plan would create and remove, removals always named."""
    from podnet.plan.steps import Action

    def named(action: Action) -> list[str]:
        return [s.target for s in steps if s.action == action]

    created = named(Action.POD_CREATE)
    removed = named(Action.POD_DELETE)
    rebuilt = sorted(set(created) & set(removed))
    gone_pods = [p for p in removed if p not in rebuilt]
    gone_nodes = named(Action.NODE_DELETE)
    parts = [f"{len(steps)} steps: {len(created) - len(rebuilt)} pods to create"]
    if rebuilt:
        parts.append(f"{len(rebuilt)} to rebuild")
    parts.append(f"{len(gone_pods)} pods to remove" + (f" ({', '.join(gone_pods)})"
                                                       if gone_pods else ""))
    if gone_nodes:
        parts.append(f"{len(gone_nodes)} nodes to remove ({', '.join(gone_nodes)})")
    return "dry run: " + ", ".join(parts) + "; nothing was changed"


@click.command()
@cluster_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def down(cluster: str | None, quiet: bool) -> None:
    """Remove everything the lab made: containers, pods, nodes, the node network, its state."""
    from podnet.apply.lab import down as lab_down

    name = _pick_cluster(cluster)
    started = time.perf_counter()
    outcome = _with_progress(
        quiet, f"removing lab {name}", lambda progress: lab_down(name, progress=progress)
    )
    if outcome.layout is None:
        click.echo(f"lab {name}: nothing to remove")
        return
    for problem in outcome.problems:
        click.echo(f"podnet: left alone: {problem}", err=True)
    click.echo(
        f"lab {name} down: {len(outcome.layout.pods)} pods, {len(outcome.layout.nodes)} nodes "
        f"removed in {time.perf_counter() - started:.2f}s"
    )


def _with_progress(quiet: bool, label: str, run: Any) -> Any:
    if quiet or not sys.stderr.isatty():
        return run(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), transient=True, console=None,
    ) as bar:
        task = bar.add_task(label, total=None)
        return run(lambda step, done, total: bar.update(task, completed=done, total=total))


# --- get ---------------------------------------------------------------------------------------


def _pod_objects(record: lab_state.LabState) -> list[dict[str, Any]]:
    from podnet.runtime.procs import ProcessRef, is_alive

    out = []
    for pod in record.layout.pods:
        refs = record.containers_of(pod.key)
        alive = {r.name: is_alive(ProcessRef(r.pid, r.starttime)) for r in refs}
        ready = sum(alive.values())
        node = record.layout.node(pod.node)
        out.append({
            "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace,
                         "labels": dict(pod.labels)},
            "spec": {"nodeName": pod.node,
                     "containers": [{"name": c.name, "command": c.command,
                                     "ports": [{"containerPort": p} for p in c.ports]}
                                    for c in pod.containers]},
            "status": {
                "phase": "Running" if ready == len(pod.containers) else "Failed",
                "podIP": str(pod.ip.ip),
                "hostIP": str(node.ip.ip),
                "ready": f"{ready}/{len(pod.containers)}",
                "containerStatuses": [{"name": r.name, "pid": r.pid, "running": alive[r.name]}
                                      for r in refs],
            },
            "podnet": {"netns": pod.netns, "veth": pod.veth, "hostsFile": pod.hosts_file},
        })
    return out


def _node_objects(record: lab_state.LabState) -> list[dict[str, Any]]:
    from podnet.kernel import netns

    return [
        {
            "kind": "Node",
            "metadata": {"name": n.name},
            "spec": {"podCIDR": str(n.pod_cidr), "role": n.role},
            "status": {"ready": netns.exists(n.netns), "internalIP": str(n.ip.ip)},
            "podnet": {"netns": n.netns, "uplink": n.uplink,
                       "pods": len(record.layout.pods_on(n.name))},
        }
        for n in record.layout.nodes
    ]


def _emit(objects: list[dict[str, Any]], output: str | None, table: Any) -> None:
    if output == "json":
        click.echo(json.dumps({"kind": "List", "items": objects}, indent=2))
    elif output == "name":
        for o in objects:
            click.echo(f"{o['kind'].lower()}/{o['metadata']['name']}")
    elif output and output.startswith("jsonpath="):
        doc: Any = {"kind": "List", "items": objects}
        if len(objects) == 1:
            doc = objects[0]
        click.echo(jsonpath(output.removeprefix("jsonpath="), doc))
    else:
        click.echo(table(objects, output == "wide"))


def _pods_table(pods: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NAMESPACE", "NAME", "READY", "STATUS", "IP", "NODE"]
    if wide:
        headers += ["NETNS", "VETH", "PIDS"]
    rows = []
    for p in pods:
        row = [p["metadata"]["namespace"], p["metadata"]["name"], p["status"]["ready"],
               p["status"]["phase"], p["status"]["podIP"], p["spec"]["nodeName"]]
        if wide:
            pids = ",".join(str(c["pid"]) for c in p["status"]["containerStatuses"]) or "-"
            row += [p["podnet"]["netns"], p["podnet"]["veth"], pids]
        rows.append(row)
    return columns(headers, rows)


def _nodes_table(nodes: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NAME", "STATUS", "ROLES", "INTERNAL-IP", "POD-CIDR", "PODS"]
    if wide:
        headers += ["NETNS", "UPLINK"]
    rows = []
    for n in nodes:
        row = [n["metadata"]["name"], "Ready" if n["status"]["ready"] else "NotReady",
               n["spec"]["role"], n["status"]["internalIP"], n["spec"]["podCIDR"],
               n["podnet"]["pods"]]
        if wide:
            row += [n["podnet"]["netns"], n["podnet"]["uplink"]]
        rows.append(row)
    return columns(headers, rows)


def _link_objects(record: lab_state.LabState) -> list[dict[str, Any]]:
    """Every veth pair of the lab, both ends, read from the kernel (not from the record)."""
    from podnet.kernel import netns
    from podnet.kernel.netlink import Netlink

    lay = record.layout
    pods_by_veth = {(p.node, p.veth): p for p in lay.pods}
    out = []
    for node in lay.nodes:
        if not netns.exists(node.netns):
            continue
        with Netlink.open(netns.path_of(node.netns), label=node.netns) as nl:
            addrs: dict[int, list[str]] = {}
            for a in nl.addresses():
                if a["family"] == 2:
                    addrs.setdefault(a["index"], []).append(a["address"])
            for link in nl.links():
                if link["kind"] != "veth":
                    continue
                pod = pods_by_veth.get((node.name, link["ifname"]))
                peer_ns = pod.netns if pod else lay.fabric_netns
                out.append({
                    "kind": "Link",
                    "metadata": {"name": link["ifname"]},
                    "node": node.name,
                    "ifindex": link["index"],
                    "mac": link["mac"],
                    "mtu": link["mtu"],
                    "state": link["state"],
                    "addresses": addrs.get(link["index"], []),
                    "peer": {"ifname": "eth0", "ifindex": link["link"], "netns": peer_ns,
                             "pod": pod.key if pod else None},
                })
    return out


def _links_table(links: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NODE", "NAME", "STATE", "ADDRESSES", "PEER", "POD"]
    if wide:
        headers += ["MAC", "MTU", "PEER-NETNS"]
    rows = []
    for lk in links:
        row = [lk["node"], f"{lk['metadata']['name']}@if{lk['peer']['ifindex']}", lk["state"],
               ",".join(lk["addresses"]) or "-", lk["peer"]["ifname"],
               lk["peer"]["pod"] or "(node uplink)"]
        if wide:
            row += [lk["mac"], lk["mtu"], lk["peer"]["netns"]]
        rows.append(row)
    return columns(headers, rows)


@click.command()
@click.argument("kind", type=click.Choice(["pods", "pod", "po", "nodes", "node", "no", "links",
                                           "link", "services", "service", "svc"]))
@click.argument("name", required=False)
@click.option("-n", "--namespace", help="Only pods in this Kubernetes namespace.")
@click.option("-o", "--output", help="wide | json | name | jsonpath=TEMPLATE")
@cluster_option
def get(kind: str, name: str | None, namespace: str | None, output: str | None,
        cluster: str | None) -> None:
    """List pods, nodes, services or veth links of the lab, like kubectl get."""
    record = _require(cluster)
    table: Callable[[list[dict[str, Any]], bool], str]
    if kind.startswith("po"):
        objects = _pod_objects(record)
        if namespace:
            objects = [o for o in objects if o["metadata"]["namespace"] == namespace]
        table = _pods_table
    elif kind.startswith("no"):
        objects, table = _node_objects(record), _nodes_table
    elif kind.startswith(("svc", "service")):
        objects = _service_objects(record)
        if namespace:
            objects = [o for o in objects if o["metadata"]["namespace"] == namespace]
        table = _services_table
    else:
        objects, table = _link_objects(record), _links_table
    if name:
        objects = [o for o in objects if o["metadata"]["name"] == name.split("/")[-1]]
        if not objects:
            raise StateError(f"{kind} {name} not found", hint=f"list them with `podnet get {kind}`")
    _emit(objects, output, table)


def _service_objects(record: lab_state.LabState) -> list[dict[str, Any]]:
    return [
        {
            "kind": "Service",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {
                "type": s.type,
                "clusterIP": str(s.cluster_ip),
                "selector": dict(s.selector),
                "ports": [{"name": p.name, "protocol": p.protocol, "port": p.port,
                           "targetPort": p.target_port, "nodePort": p.node_port}
                          for p in s.ports],
            },
            "endpoints": list(s.endpoints),
        }
        for s in record.layout.services
    ]


def _services_table(services: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "ENDPOINTS"]
    if wide:
        headers.append("SELECTOR")
    rows = []
    for s in services:
        spec = s["spec"]
        ports = ",".join(
            f"{p['port']}{':' + str(p['nodePort']) if p['nodePort'] else ''}/{p['protocol']}"
            for p in spec["ports"]
        )
        row = [s["metadata"]["namespace"], s["metadata"]["name"], spec["type"], spec["clusterIP"],
               ports, len(s["endpoints"])]
        if wide:
            row.append(",".join(f"{k}={v}" for k, v in spec["selector"].items()) or "-")
        rows.append(row)
    return columns(headers, rows)


# --- exec --------------------------------------------------------------------------------------


def _find_pod(record: lab_state.LabState, name: str, namespace: str | None) -> Any:
    name = name.rsplit("/", maxsplit=1)[-1]
    matches = [p for p in record.layout.pods
               if p.name == name and (namespace is None or p.namespace == namespace)]
    if namespace is None and len(matches) > 1:
        raise StateError(f"pod {name} exists in several namespaces",
                         hint="choose one with -n NAMESPACE")
    if not matches:
        where = f" in namespace {namespace}" if namespace else ""
        hint = "list pods with `podnet get pods`"
        if namespace is None and any(p.name == name for p in record.layout.pods):
            hint = "add -n NAMESPACE"
        raise StateError(f"pod {name} not found{where}", hint=hint)
    return matches[0]


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("-n", "--namespace", default=None, help="Kubernetes namespace of the pod.")
@click.option("-c", "--container", default=None, help="Container (all share the pod's network).")
@cluster_option
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(namespace: str | None, container: str | None, cluster: str | None, pod: str,
                 command: tuple[str, ...]) -> NoReturn:
    """Run COMMAND in POD's network and UTS namespaces, with the pod's /etc/hosts.

    stdin, stdout, stderr and the exit code pass straight through, so pods can be piped:
    `podnet exec a -- cat f | podnet exec b -- wc -c`.
    """
    from podnet.kernel import netns
    from podnet.runtime.enter import exec_in_pod

    record = _require(cluster)
    found = _find_pod(record, pod, namespace)
    names = [c.name for c in found.containers]
    if container and container not in names:
        raise StateError(f"pod {found.key} has no container {container}",
                         hint=f"its containers: {', '.join(names)}")
    exec_in_pod(netns.path_of(found.netns), found.uts, found.hosts_file, list(command))


@click.command("node-exec", context_settings={"ignore_unknown_options": True})
@cluster_option
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def node_exec(cluster: str | None, node: str, command: tuple[str, ...]) -> NoReturn:
    """Run COMMAND on NODE, as `docker exec kind-worker ...` does on kind.

    `ip netns list` there shows that node's pods only, so `ip link` names each veth's peer
    namespace (link-netns cni-...) as on a real node.
    """
    from podnet.kernel.netns import path_of
    from podnet.runtime.node import exec_on_node

    record = _require(cluster)
    found = next((n for n in record.layout.nodes if n.name == node), None)
    if found is None:
        names = ", ".join(n.name for n in record.layout.nodes)
        raise StateError(f"node {node} not found", hint=f"nodes: {names}")
    pods = [p.netns for p in record.layout.pods_on(node)]
    exec_on_node(path_of(found.netns), found.uts, found.hosts_file, pods, list(command))


# --- explain -----------------------------------------------------------------------------------


@click.command()
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False), help="Topology file.")
def explain(path: str | None) -> None:
    """Print the commands that build the same lab by hand, in order. Changes nothing.

    They are the very operations `up` executes, rendered as `ip`, `bridge`, `sysctl` and `nft`
    commands: `podnet explain | bash -e`, as root in an empty network namespace, builds the lab.
    """
    from podnet.plan.layout import layout
    from podnet.plan.steps import Observed, plan

    spec, _ = _load_spec(path)
    steps = plan(layout(spec), None, Observed())
    click.echo(f"# podnet explain: lab {spec.name}, {len(spec.nodes)} nodes, {len(spec.pods)} pods")
    for step in steps:
        click.echo(f"\n# {step.comment}")
        for command in step.commands:
            click.echo(command)
