"""Cluster DNS: the records of the Kubernetes DNS specification, a server for them, resolv.conf.

    records  pure: Services and pods -> the record set (what coredns's kubernetes plugin answers)
    resolv   pure: a pod's resolv.conf from dnsPolicy and dnsConfig, as kubelet writes it
    zone     the record set as dnspython RRsets, and the answer to one query
    server   the process a coredns pod's container runs: UDP and TCP on 53, metrics on 9153
    metrics  counters of the server, in Prometheus' text format
    watch    inotify on the records file: a rewrite reloads the server without a restart

`records` and `resolv` import nothing beyond the standard library and `podnet.model`; only
`zone` and `server` import dnspython, and nothing here imports pyroute2.
"""

__all__: list[str] = []
