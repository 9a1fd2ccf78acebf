"""`podnet inspect`: map a live host's namespaces, veth pairs, addresses and routes to pods.

`podnet.inspect.build.inspect_host()` returns a `podnet.inspect.model.Host`; `podnet.render`
turns it into tables, JSON or Mermaid.
"""

__all__: list[str] = []
