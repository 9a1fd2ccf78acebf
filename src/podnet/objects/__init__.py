"""The lab as kubectl's objects: what `get` lists, what `describe` shows, one registry of kinds.

Each kind (pods, nodes, services, links; NetworkPolicies later) is one module holding one
`Kind`: how to list the lab's objects of that kind in kubectl's shape, the table columns, and a
`describe` view. The views are pure functions of the lab's record (`podnet.state`) and of what
the kernel says (`reads.KernelReads`), so `podnet describe` and the graph dashboard show the
same thing, and tests can feed recorded kernel answers.
"""
