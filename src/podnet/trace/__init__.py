"""`podnet trace`: the path of one packet through a lab or a live host, hop by hop, from the
kernel's own answers (routes, neighbours, FDB, the nftables rules evaluated as the kernel would),
then confirmed by a real probe. `walk` routes and delivers, `walker` holds the walk's state and
hooks, `links` the ways out of a namespace, `nft*` the nftables evaluator, `run` ties it to the
CLI, `text` and `words` speak to people."""
