"""A destination named in DNS, resolved as the source pod's resolver would: its resolv.conf's
search path and `ndots` (glibc's order), each name asked of its first nameserver over UDP from
inside the pod's network namespace, so the question takes the pod's own path (for a lab pod,
the kube-dns Service's DNAT to a coredns pod). Every question and answer is kept, for the trace
to show before the path. dnspython writes and reads the messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from podnet.dns.resolv import ResolvConf

__all__ = ["Asked", "NameLookup", "candidates", "lookup"]

_NDOTS = 1  # glibc's default when resolv.conf says none


@dataclass(frozen=True)
class Asked:
    qname: str
    rcode: str  # NOERROR, NXDOMAIN, REFUSED, ... or "no answer"
    answers: tuple[str, ...] = ()
    ms: float = 0.0


@dataclass(frozen=True)
class NameLookup:
    name: str
    server: str
    qtype: str
    asked: tuple[Asked, ...] = ()

    @property
    def address(self) -> str | None:
        return next((a.answers[0] for a in self.asked if a.answers), None)

    def lines(self) -> tuple[str, ...]:
        """`ask 10.96.0.10:53/udp: demo.dev.default.svc.cluster.local A -> NXDOMAIN (0.4 ms)`"""
        return tuple(
            f"asked {self.server} port 53/udp: {a.qname} {self.qtype} -> {a.rcode}"
            + (f" {', '.join(a.answers)}" if a.answers else "") + f" ({a.ms:.1f} ms)"
            for a in self.asked
        )


def _ndots(conf: ResolvConf) -> int:
    for option in conf.options:
        name, _, value = option.partition(":")
        if name == "ndots" and value.isdigit():
            return min(int(value), 15)
    return _NDOTS


def candidates(name: str, conf: ResolvConf) -> list[str]:
    """The names glibc asks for `name`, in order: as given first when it has `ndots` dots or
    more, else after each search domain; a name ending in '.' only as it is."""
    if name.endswith("."):
        return [name]
    searched = [f"{name}.{domain}." for domain in conf.searches]
    if name.count(".") >= _ndots(conf):
        return [f"{name}.", *searched]
    return [*searched, f"{name}."]


def lookup(netns_path: str, conf: ResolvConf, name: str, family: int,
           timeout: float = 2.0) -> NameLookup | None:
    """Ask the pod's first nameserver for `name` (A, or AAAA for `family` 6) until a name
    answers with an address; None when the resolv.conf names no nameserver."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    from podnet.kernel import netns

    if not conf.nameservers:
        return None
    server, qtype = conf.nameservers[0], "AAAA" if family == 6 else "A"
    asked: list[Asked] = []
    for qname in candidates(name, conf):
        query = dns.message.make_query(qname, qtype)
        started = time.monotonic()
        try:
            with netns.entered(netns_path):
                answer = dns.query.udp(query, server, timeout=timeout)
        except (dns.exception.DNSException, OSError) as exc:
            ms = (time.monotonic() - started) * 1000
            asked.append(Asked(qname, f"no answer ({exc.__class__.__name__})", (), ms))
            break  # the server does not answer: another name would not either
        ms = (time.monotonic() - started) * 1000
        found = tuple(str(rd) for rrset in answer.answer for rd in rrset
                      if rrset.rdtype in (1, 28))  # A, AAAA
        asked.append(Asked(qname, dns.rcode.to_text(answer.rcode()), found, ms))
        if found:
            break
    return NameLookup(name, server, qtype, tuple(asked))
