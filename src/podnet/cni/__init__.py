"""podnet as a CNI plugin (spec 1.1.0): `podnet-cni` and its IPAM plugin `podnet-ipam`.

The installed executables are a thin client (a small C program, or a stdlib-only Python script
where no C compiler exists) that forwards the runtime's environment and stdin to a resident agent
over a unix socket, and runs the plugin in-process when no agent answers, so the plugin always
works. Everything the runtime sees is produced by `podnet.cni.dispatch.handle`, in either place.

Modules: spec (versions, env, errors), result (result types), netconf (podnet-cni config),
delegate (IPAM plugins in CNI_PATH), podlink (an attachment as the lab's PodLink and ops),
plugin (podnet-cni commands, the ops run by the lab's applier), verify (CHECK: is each op in
effect), ipam_plugin (podnet-ipam commands), records (what each attachment made), dispatch (one
request in, one answer out), wire (the agent protocol), agent, client, install.
"""

__all__: list[str] = []
