"""podnet: Kubernetes pod networking built from real Linux namespaces, veth pairs and routes."""

__all__ = ["__version__"]

__version__ = "0.1.0"
