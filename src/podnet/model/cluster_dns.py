"""The names and address of the cluster DNS, as kind's kubeadm installs it in every cluster.

`plan.addons` adds it to each lab; the loader keeps a file from bringing objects of these names
or taking the Service's address.
"""

from __future__ import annotations

__all__ = ["DNS_DEPLOYMENT", "DNS_NAMESPACE", "DNS_SERVICE", "DNS_SERVICE_INDEX"]

DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
DNS_DEPLOYMENT = "coredns"
DNS_SERVICE_INDEX = 10  # kubeadm's GetDNSIP: the 10th address of the service subnet
