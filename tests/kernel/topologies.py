"""The small lab most kernel tests build: a control plane and workers, a `client` pod, a `web`
Deployment serving HTTP in namespace `dev`, and a Service in front of it."""

from __future__ import annotations


def web_lab(
    cluster: str,
    networking: str = "{}",
    *,
    workers: int = 2,
    replicas: int = 3,
    client_node: str | None = None,
    service: str = "",
    env: str = "",
    ports: str = "[{name: http, port: 80}]",
    extra: str = "",
) -> str:
    """`networking` is the Cluster's networking mapping in flow style; `service` adds lines to
    the Service's spec (type, ipFamilyPolicy...); `env` gives the web container a VERSION."""
    nodes = ", ".join(["{role: control-plane}"] + ["{role: worker}"] * workers)
    pin = f"\n  nodeName: {client_node}" if client_node else ""
    env_line = f'\n        env: [{{name: VERSION, value: "{env}"}}]' if env else ""
    return f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {cluster}
nodes: [{nodes}]
networking: {networking}
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:{pin}
  containers: [{{name: c, command: [sleep, infinity]}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: dev}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web{env_line}
        ports: [{{containerPort: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: dev}}
spec:
  selector: {{app: web}}
  ports: {ports}
{service}{extra}"""
