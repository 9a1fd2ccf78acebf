"""What the lab does not model, refused with a hint that names the field, never ignored.

A manifest that asks for `hostNetwork: true` or a `hostPort` and gets a lab without them would
be a silent wrong answer. So every field of a Pod, Deployment or Service is either read by the
loader, accepted on purpose (`IGNORED`: no meaning without images or an API server), refused
here with what to do instead, or unknown (then a did-you-mean).

To teach the lab a field: delete its entry here and read it in the loader; the refusal goes with
the entry (hostPort, hostNetwork and the bandwidth annotations went so: `containers`,
`impairment`).
"""

from __future__ import annotations

__all__ = [
    "CONTAINER",
    "CONTAINER_PORT",
    "DEPLOYMENT_SPEC",
    "DOCUMENT",
    "IGNORED",
    "POD_SPEC",
    "SERVICE_PORT",
    "SERVICE_SPEC",
]

_NO_SCHEDULER = "pods are placed on the workers in turn, or pinned with spec.nodeName"
_NO_KUBELET = "a container here is a process started once: there is no kubelet to do this"
_NO_CGROUPS = "the lab sets no cgroup limits or security profiles: remove it"
_NO_VOLUMES = "containers share this machine's files: there are no volumes"
_NO_LB = "the lab has no load balancer or external addresses: use ClusterIP or NodePort"

# Accepted and ignored, on purpose: a container here runs this machine's programs, no image.
IGNORED: dict[str, tuple[str, ...]] = {
    "container": ("image", "imagePullPolicy"),
    "service port": ("appProtocol",),  # a label for tools: kube-proxy does not read it either
}

# Keys of a whole Pod, Deployment or Service document.
DOCUMENT = {
    "status": "status is what a cluster reports, not what a file asks for: remove it",
}

POD_SPEC = {
    "hostPID": "containers are processes of this machine already: remove hostPID",
    "hostIPC": "the lab makes no IPC namespaces: remove hostIPC",
    "hostAliases": "podnet writes each pod's /etc/hosts itself",
    "setHostnameAsFQDN": "a pod's hostname is its name (or spec.hostname), never its FQDN",
    "initContainers": "containers start together here: give the work to a container's command",
    "ephemeralContainers": "use `podnet exec` to run a command in a pod",
    "volumes": _NO_VOLUMES,
    "restartPolicy": _NO_KUBELET,
    "terminationGracePeriodSeconds": _NO_KUBELET,
    "activeDeadlineSeconds": _NO_KUBELET,
    "readinessGates": _NO_KUBELET,
    "serviceAccountName": "the lab has no API server to give a token for",
    "serviceAccount": "the lab has no API server to give a token for",
    "automountServiceAccountToken": "the lab has no API server to give a token for",
    "imagePullSecrets": "there are no images to pull here",
    "securityContext": _NO_CGROUPS,
    "runtimeClassName": _NO_CGROUPS,
    "os": _NO_CGROUPS,
    "hostUsers": _NO_CGROUPS,
    "shareProcessNamespace": "containers of a pod share its network and hostname only",
    "affinity": _NO_SCHEDULER,
    "nodeSelector": _NO_SCHEDULER,
    "tolerations": _NO_SCHEDULER,
    "topologySpreadConstraints": _NO_SCHEDULER,
    "schedulerName": _NO_SCHEDULER,
    "schedulingGates": _NO_SCHEDULER,
    "priority": _NO_SCHEDULER,
    "priorityClassName": _NO_SCHEDULER,
    "preemptionPolicy": _NO_SCHEDULER,
    "overhead": _NO_CGROUPS,
    "resourceClaims": _NO_CGROUPS,
    "enableServiceLinks": "the lab sets no Service environment variables: use env",
}

CONTAINER = {
    "workingDir": "a container starts in /: cd in its command ([sh, -c, 'cd DIR && ...'])",
    "envFrom": "there is no API server to read ConfigMaps or Secrets from: give env",
    "volumeMounts": _NO_VOLUMES,
    "volumeDevices": _NO_VOLUMES,
    "livenessProbe": _NO_KUBELET,
    "readinessProbe": _NO_KUBELET,
    "startupProbe": _NO_KUBELET,
    "lifecycle": _NO_KUBELET,
    "restartPolicy": _NO_KUBELET,
    "resizePolicy": _NO_CGROUPS,
    "resources": _NO_CGROUPS,
    "securityContext": _NO_CGROUPS,
    "stdin": "containers read nothing: use `podnet exec` for a command with input",
    "stdinOnce": "containers read nothing: use `podnet exec` for a command with input",
    "tty": "containers read nothing: use `podnet exec` for a command with input",
    "terminationMessagePath": _NO_KUBELET,
    "terminationMessagePolicy": _NO_KUBELET,
}

CONTAINER_PORT = {
    "hostIP": "a hostPort answers on every address of its node here: remove hostIP",
}

DEPLOYMENT_SPEC = {
    "strategy": "an edited template replaces the replicas in one `up`: there is no rollout",
    "minReadySeconds": "an edited template replaces the replicas in one `up`: there is no rollout",
    "progressDeadlineSeconds": "an edited template replaces the replicas in one `up`",
    "revisionHistoryLimit": "the lab keeps no ReplicaSets: remove it",
    "paused": "the lab has no Deployment controller to pause: remove it",
}

SERVICE_SPEC = {
    "externalTrafficPolicy": "NodePorts here answer on every node and masquerade: remove it",
    "internalTrafficPolicy": "connections spread over every endpoint here: remove it",
    "sessionAffinity": "connections spread over every endpoint here: remove it",
    "sessionAffinityConfig": "connections spread over every endpoint here: remove it",
    "externalIPs": _NO_LB,
    "externalName": _NO_LB,
    "loadBalancerIP": _NO_LB,
    "loadBalancerSourceRanges": _NO_LB,
    "loadBalancerClass": _NO_LB,
    "allocateLoadBalancerNodePorts": _NO_LB,
    "healthCheckNodePort": _NO_LB,
    "publishNotReadyAddresses": "every pod a Service selects is an endpoint here: remove it",
    "trafficDistribution": "connections spread over every endpoint here: remove it",
}

SERVICE_PORT: dict[str, str] = {}
