"""Containers of a pod template: command and args, ports (with hostPort), env; hostNetwork."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from podnet.model import naming, unmodelled
from podnet.model.fields import Reader, describe, read_strings
from podnet.model.pod_dns import DNS_KEYS
from podnet.model.types import ContainerSpec, HostPort, NamedPort

__all__ = ["ONLY_TCP_UDP", "PROTOCOLS", "PodSpecParts", "read_pod_spec"]

PROTOCOLS = ("TCP", "UDP")
ONLY_TCP_UDP = "podnet carries TCP and UDP"
POD_SPEC_KEYS = ("containers", "nodeName", "hostNetwork", *DNS_KEYS)
CONTAINER_KEYS = ("name", "command", "args", "ports", "env")
PORT_KEYS = ("containerPort", "protocol", "name", "hostPort")
ENV_KEYS = ("name", "value", "valueFrom")  # valueFrom: refused below, with its own words


@dataclass(frozen=True)
class PodSpecParts:
    """What `read_pod_spec` read of a pod's spec (DNS fields aside: `pod_dns`)."""

    containers: tuple[ContainerSpec, ...]
    node: str | None
    port_names: dict[str, int]
    host_network: bool
    # (port, protocol) the pod takes on its node -> the field that asks for it, for messages
    host_port_fields: dict[tuple[int, str], str]


def read_pod_spec(r: Reader, spec: dict[Any, Any], path: str, given: bool) -> PodSpecParts:
    """containers, nodeName, hostNetwork and named and host ports of a Pod's (or a template's)
    spec; `given` is False when the spec itself is missing (and that was reported)."""
    r.known(spec, path, POD_SPEC_KEYS, refused=unmodelled.POD_SPEC)
    node = r.text(spec.get("nodeName"), f"{path}.nodeName")
    host_network = _boolean(r, spec.get("hostNetwork"), f"{path}.hostNetwork")
    raw = spec.get("containers")
    if given and (raw is None or raw == []):
        r.add(
            f"{path}.containers",
            f"is {'missing' if raw is None else 'empty'}: a pod needs at least one container",
            "add - name: app (with ports: or command:)",
        )
    pod = _PodScope(host_network=host_network)
    containers = []
    for i, item in enumerate(r.items(raw, f"{path}.containers")):
        container = _container(r, item, f"{path}.containers[{i}]", pod)
        if container is not None:
            containers.append(container)
    return PodSpecParts(tuple(containers), node, pod.port_names, host_network, pod.host_ports)


def _boolean(r: Reader, value: object, path: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    r.add(path, f"must be true or false, not {describe(value)}", "write true or false, unquoted")
    return False


@dataclass
class _PodScope:
    """What the containers of one pod share: names, and ports (one network namespace)."""

    host_network: bool = False
    names: dict[str, str] = field(default_factory=dict)  # container name -> its path
    listening: dict[tuple[int, str], str] = field(default_factory=dict)  # port -> its path
    port_names: dict[str, int] = field(default_factory=dict)
    host_ports: dict[tuple[int, str], str] = field(default_factory=dict)  # on the node -> path


def _container(r: Reader, item: object, path: str, pod: _PodScope) -> ContainerSpec | None:
    c = r.mapping(item, path)
    r.known(c, path, CONTAINER_KEYS, unmodelled.IGNORED["container"], unmodelled.CONTAINER)
    name = r.name(
        c.get("name"),
        f"{path}.name",
        naming.bad_dns1123_label,
        "container names are DNS-1123 labels: lowercase letters, digits and '-'",
    )
    if name is not None and name in pod.names:
        r.add(
            f"{path}.name",
            f"'{name}' is already the name of {pod.names[name]}",
            "give each container of a pod its own name",
        )
    elif name is not None:
        pod.names[name] = path
    # `image` is accepted and ignored (unmodelled.IGNORED): a container is a process here.
    words = [
        *read_strings(r, c.get("command"), f"{path}.command"),
        *read_strings(r, c.get("args"), f"{path}.args"),
    ]
    named: list[NamedPort] = []
    published: list[HostPort] = []
    ports = _container_ports(r, c.get("ports"), f"{path}.ports", pod, named, published)
    env = _env(r, c.get("env"), f"{path}.env")
    if name is None:
        return None
    return ContainerSpec(name, tuple(words) or None, tuple(ports), tuple(env), tuple(named),
                         tuple(published))


def _container_ports(
    r: Reader, value: object, path: str, pod: _PodScope, named: list[NamedPort],
    published: list[HostPort],
) -> list[int]:
    ports = []
    for j, entry in enumerate(r.items(value, path)):
        ppath = f"{path}[{j}]"
        pm = r.mapping(entry, ppath)
        r.known(pm, ppath, PORT_KEYS, refused=unmodelled.CONTAINER_PORT)
        if pm.get("containerPort") is None:
            r.add(f"{ppath}.containerPort", "is missing", "give the port the container listens on")
        number = r.integer(
            pm.get("containerPort"), f"{ppath}.containerPort", 1, 65535, "a port is 1..65535"
        )
        protocol = (
            r.choice(pm.get("protocol"), f"{ppath}.protocol", PROTOCOLS, ONLY_TCP_UDP) or "TCP"
        )
        port_name = r.text(pm.get("name"), f"{ppath}.name")
        if port_name is not None and (bad := naming.bad_port_name(port_name)):
            r.add(f"{ppath}.name", bad, "at most 15 lowercase letters, digits and '-'")
        if number is None:
            continue
        other = pod.listening.setdefault((number, protocol), ppath)
        if other != ppath:
            r.add(
                f"{ppath}.containerPort",
                f"{number}/{protocol} is already declared by {other}",
                "the containers of a pod share one network namespace: one port, one listener",
            )
            continue
        if port_name:
            pod.port_names[port_name] = number
            named.append(NamedPort(port_name, number, "UDP" if protocol == "UDP" else "TCP"))
        published += _host_port(r, pm, ppath, number, protocol, pod)
        ports.append(number)
    return ports


def _host_port(r: Reader, pm: dict[Any, Any], path: str, number: int, protocol: str,
               pod: _PodScope) -> list[HostPort]:
    """The host port a container port asks for: its `hostPort`, or with hostNetwork the port
    itself (the API server fills hostPort in so, and refuses another number)."""
    host = r.integer(pm.get("hostPort"), f"{path}.hostPort", 1, 65535, "a port is 1..65535")
    if pod.host_network:
        if host is not None and host != number:
            r.add(f"{path}.hostPort", f"{host} differs from containerPort {number}",
                  "a hostNetwork pod listens on the node itself: hostPort must equal "
                  "containerPort, or be left out")
            return []
        host = number
    if host is None:
        return []
    field_path = f"{path}.{'hostPort' if 'hostPort' in pm else 'containerPort'}"
    other = pod.host_ports.setdefault((host, protocol), field_path)
    if other != field_path:
        r.add(field_path, f"host port {host}/{protocol} is already taken by {other}",
              "a node has one listener per port: give each its own hostPort")
        return []
    return [HostPort(host, number, "UDP" if protocol == "UDP" else "TCP")]


def _env(r: Reader, value: object, path: str) -> list[tuple[str, str]]:
    env = []
    for j, entry in enumerate(r.items(value, path)):
        epath = f"{path}[{j}]"
        em = r.mapping(entry, epath)
        r.known(em, epath, ENV_KEYS)
        name = r.text(em.get("name"), f"{epath}.name", required="give the variable's name")
        if "valueFrom" in em:
            r.add(
                f"{epath}.valueFrom",
                "is not supported: there is no API server to read from",
                "give value: instead",
            )
        text = r.text(em.get("value"), f"{epath}.value") or ""
        if name:
            env.append((name, text))
    return env


