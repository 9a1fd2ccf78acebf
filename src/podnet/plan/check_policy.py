"""What the lab's NetworkPolicies say of each probe of `podnet check`. Pure.

A probe the policies deny passes only when no answer comes back (a policy drops silently), and
says which policy isolation denied it; one they allow must work as without policies. Where the
outcome depends on the backend a Service or NodePort happens to pick (some allowed, some not),
the probe is left out and counted, since one packet cannot prove either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from podnet.plan.check import NODE_NETWORK, Probe
from podnet.plan.layout import Layout
from podnet.policy.verdict import Verdict, verdict
from podnet.policy.words import verdict_sentence
from podnet.policy.world import World, world_from

__all__ = ["judged"]


def judged(lay: Layout, probes: Iterable[Probe]) -> tuple[list[Probe], int]:
    """The probes with what the policies expect of each, and how many were left out because
    their outcome depends on the backend chosen."""
    planned = list(probes)
    if not lay.policies:
        return planned, 0
    world = world_from(lay)
    out: list[Probe] = []
    left_out = 0
    for probe in planned:
        verdicts = _verdicts(world, lay, probe)
        denied = [v for v in verdicts if not v.allowed]
        if denied and len(denied) != len(verdicts):
            left_out += 1
            continue
        out.append(replace(probe, expect=replace(probe.expect, denied=verdict_sentence(denied[0])))
                   if denied else probe)
    return out, left_out


def _verdicts(world: World, lay: Layout, probe: Probe) -> Sequence[Verdict]:
    """The verdict of each way the probe's connection may go (one per possible backend), over
    the probe's family (a pod's address of that family, as the packets carry it)."""
    family = probe.family
    if probe.kind == "self":
        return ()
    if probe.kind in ("same-node", "other-node"):
        return [verdict(world, probe.source, probe.target, probe.port, family=family)]
    if probe.kind in ("node", "outside"):
        return [verdict(world, probe.source, probe.address, probe.port)]  # an address: its family
    if probe.kind == "dns":
        return _dns_verdicts(world, lay, probe)
    svc = next(s for s in lay.services if probe.target.startswith(f"{s.key}:"))
    port = next(p for p in svc.ports
                if probe.port in (p.port, p.node_port))
    backends = [k for k in svc.endpoints if lay.pod(k) is not None]
    if probe.kind == "service":
        return [verdict(world, probe.source, b, port.target_port, family=family)
                for b in backends]
    # A NodePort: the backend sees the node network's host when it runs on the node probed,
    # else the probed node's address (its masquerade), of the probe's family.
    assert probe.source == NODE_NETWORK
    node = next(n for n in lay.nodes if any(str(ip.ip) == probe.address for ip in n.ips))
    host = next(g.ip for g in lay.fabric_gateways if g.version == family)
    own = node.ip_of(family)
    assert own is not None
    out = []
    for key in backends:
        pod = lay.pod(key)
        assert pod is not None
        seen = host if pod.node == node.name else own.ip
        out.append(verdict(world, str(seen), key, port.target_port))
    return out


def _dns_verdicts(world: World, lay: Layout, probe: Probe) -> Sequence[Verdict]:
    """A lookup goes to the nameserver's Service (kube-dns) on 53/UDP, to one of its pods."""
    svc = next((s for s in lay.services
                if probe.address in {str(ip) for ip in s.cluster_ips}), None)
    port = next((p for p in svc.ports if p.port == probe.port and p.protocol == "UDP"),
                None) if svc else None
    if svc is None or port is None:
        return ()
    family = 6 if ":" in probe.address else 4
    return [verdict(world, probe.source, key, port.target_port, "UDP", family=family)
            for key in svc.endpoints if lay.pod(key) is not None]
