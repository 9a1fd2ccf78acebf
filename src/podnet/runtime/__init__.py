"""Containers as real processes inside a pod's namespaces.

    pod        the pod sandbox besides its netns: UTS namespace (hostname) and /etc/hosts
    hosts      kubelet's hosts file format (pure)
    enter      join a pod from the current process; `podnet exec`
    procs      processes by (pid, start time): identify, is_alive, stop
    spawner    start many containers fast through a zygote process (zygote, container)
    podhost    one process per node answering HTTP for its pods' built-in responder containers
    responder  the built-in HTTP server (many pods' sockets in one selector loop)

Submodules are imported on demand and none imports pyroute2: `podnet exec` starts in milliseconds.
"""

__all__: list[str] = []
