"""NetworkPolicy enforcement, pure: who a policy isolates and what it allows (`select`), the
verdict on one connection and why (`verdict`), truth tables like the upstream conformance tests
(`truth`), the nftables rules that enforce policies on a node (`nft`, with their comments in
`comments`), and verdicts in words (`words`). Built on `model.policies` and a `World` of pods,
nodes and namespaces (`world`).
"""

from __future__ import annotations

__all__: list[str] = []
