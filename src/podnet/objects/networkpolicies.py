"""NetworkPolicies, listed and described as kubectl shows them, with what `kubectl describe` does
not say: the pods each policy selects, and which of them it isolates, in this very lab."""

from __future__ import annotations

import time
from typing import Any

from podnet.model.policies import NetworkPolicySpec, PolicyRule
from podnet.objects.kinds import Column, Kind, Obj, register
from podnet.objects.reads import KernelReads
from podnet.policy.select import selected
from podnet.policy.world import world_from
from podnet.state import LabState

__all__ = ["NETWORK_POLICIES"]


def _age(since: float | None) -> str:
    """kubectl's AGE: 45s, 12m, 3h, 2d."""
    if since is None:
        return "<unknown>"
    seconds = max(0, int(time.time() - since))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _collect(record: LabState, reads: KernelReads) -> list[Obj]:
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels),
                         "applied": record.applied.get(_key(p))},
            "spec": {
                "podSelector": p.pod_selector.text() or "<none>",
                "policyTypes": list(p.policy_types),
                "ingress": [_rule(r) for r in p.ingress],
                "egress": [_rule(r) for r in p.egress],
            },
        }
        for p in record.layout.policies
    ]


def _key(policy: NetworkPolicySpec) -> str:
    return f"NetworkPolicy/{policy.key}"


def _rule(rule: PolicyRule) -> dict[str, Any]:
    return {"peers": [peer.text() for peer in rule.peers] or ["<any>"],
            "ports": [port.text() for port in rule.ports] or ["<any>"]}


def describe_policy(record: LabState, obj: Obj, reads: KernelReads) -> dict[str, Any]:
    key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
    policy = next((p for p in record.layout.policies if p.key == key), None)
    if policy is None:
        return {"Name": obj["metadata"]["name"], "Status": "gone from the lab's record"}
    pods = selected(world_from(record.layout), policy)
    out: dict[str, Any] = {
        "Name": policy.name,
        "Namespace": policy.namespace,
        "Created on": time.strftime("%Y-%m-%d %H:%M:%S",
                                    time.localtime(obj["metadata"]["applied"] or 0)),
        "Labels": [f"{k}={v}" for k, v in policy.labels] or "<none>",
        "Spec": {
            "PodSelector": policy.pod_selector.text() or "<none> (Allowing the specific "
            "traffic to all pods in this namespace)",
            "Selected pods": [f"{p.key} on {p.node}" for p in pods] or "<none>",
            "Policy Types": ", ".join(policy.policy_types),
        },
    }
    for direction, rules, word in (("Ingress", policy.ingress, "From"),
                                   ("Egress", policy.egress, "To")):
        if direction not in policy.policy_types:
            out["Spec"][f"Not affecting {direction} Traffic"] = ""
            continue
        if not rules:
            out["Spec"][f"Allowing {direction} traffic"] = (
                f"<none> (Selected pods are isolated for {direction.lower()} connectivity)")
            continue
        section: dict[str, Any] = {}
        for index, rule in enumerate(rules):
            described = _rule(rule)
            section[f"rule {index}: To Port"] = ", ".join(described["ports"])
            section[f"rule {index}: {word}"] = described["peers"]
        out["Spec"][f"Allowing {direction} traffic"] = section
    return out


NETWORK_POLICIES = register(Kind(
    name="networkpolicies", singular="networkpolicy", kind="NetworkPolicy",
    aliases=("netpol",), namespaced=True,
    columns=(
        Column("NAME", lambda o: o["metadata"]["name"]),
        Column("POD-SELECTOR", lambda o: o["spec"]["podSelector"]),
        Column("AGE", lambda o: _age(o["metadata"]["applied"])),
        Column("POLICY-TYPES", lambda o: ",".join(o["spec"]["policyTypes"]), wide=True),
    ),
    collect=_collect,
    describe=describe_policy,
    help="the lab's NetworkPolicies: which pods each isolates, what it allows",
))
