"""The DNS server's counters, rendered in Prometheus' text exposition format (version 0.0.4).

Counted in the serving thread, read by the metrics thread: `dict(counter)` copies a dict in one
step under the GIL, so a scrape never sees a dict changing size under it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Metrics:
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (proto, qtype)
    responses: Counter[str] = field(default_factory=Counter)  # rcode
    cache_hits: int = 0
    dropped: int = 0  # datagrams too short to answer
    reloads: Counter[str] = field(default_factory=Counter)  # "ok" / "error"
    records: int = 0
    generation: int = 0  # SOA serial of the records served
    started: float = field(default_factory=time.time)

    def count(self, proto: str, qtype: str, rcode: str) -> None:
        self.requests[(proto, qtype)] += 1
        self.responses[rcode] += 1

    def render(self) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, doc: str, rows: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {doc}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {_number(value)}" for labels, value in rows)

        requests = sorted(dict(self.requests).items())
        family(
            "podnet_dns_requests_total",
            "counter",
            "DNS queries received, by transport and query type.",
            [(f'{{proto="{p}",type="{t}"}}', n) for (p, t), n in requests],
        )
        family(
            "podnet_dns_responses_total",
            "counter",
            "DNS responses sent, by response code.",
            [(f'{{rcode="{r}"}}', n) for r, n in sorted(dict(self.responses).items())],
        )
        family(
            "podnet_dns_cache_hits_total",
            "counter",
            "Responses sent from the cache of rendered answers.",
            [("", self.cache_hits)],
        )
        family(
            "podnet_dns_dropped_total",
            "counter",
            "Datagrams dropped: too short to carry a DNS header.",
            [("", self.dropped)],
        )
        family(
            "podnet_dns_reloads_total",
            "counter",
            "Reloads of the records file, by result.",
            [(f'{{result="{r}"}}', n) for r, n in sorted(dict(self.reloads).items())],
        )
        family("podnet_dns_records", "gauge", "Records served.", [("", self.records)])
        family(
            "podnet_dns_serial",
            "gauge",
            "SOA serial of the records served (changes with every new record set).",
            [("", self.generation)],
        )
        family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the epoch, in seconds.",
            [("", self.started)],
        )
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
