"""Packets on the wire: Debian's tcpdump run inside a namespace on one interface (`tcpdump`),
and the pcap it writes read back with dpkt (`decode`). `podnet capture` shows them; `podnet trace
--capture` arms one per hop to prove where the probe was seen."""
