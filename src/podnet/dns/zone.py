"""The record set as dnspython RRsets, and the answer to one query, as an authoritative server.

Inside an authoritative zone: the records (AA set), NODATA (NOERROR with the zone's SOA) for a
name that exists without the type asked or that is an empty non-terminal (`dev.svc.cluster.local`
when a Service of `dev` exists: RFC 8020), NXDOMAIN with the SOA otherwise. Outside every zone:
REFUSED at once, with an Extended DNS Error saying why (the lab has no upstream to forward to).
Recursion available is set as coredns sets it: pods use this server as their resolver.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from podnet.dns.records import RecordSet, RecordsFileError, undashed

__all__ = ["Zones"]

_A, _AAAA = dns.rdatatype.A, dns.rdatatype.AAAA
_ADDRESS_TYPES = (_A, _AAAA)
_EDE_NOT_AUTHORITATIVE = dns.edns.EDECode.NOT_AUTHORITATIVE  # RFC 8914: 20
_PAYLOAD = 1232  # the EDNS payload size we offer: DNS flag day 2020's, no fragments


@dataclass(frozen=True)
class _Zone:
    origin: dns.name.Name
    soa: dns.rrset.RRset


class Zones:
    """Answers queries from one record set; a reload builds a new one."""

    def __init__(self, records: RecordSet) -> None:
        self.records = records
        self.domain = dns.name.from_text(records.domain)
        self.ttl = records.ttl
        self.insecure_pods = records.pods == "insecure"
        grouped: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], list[str]] = defaultdict(list)
        for r in records.records:
            try:
                key = (dns.name.from_text(r.name), dns.rdatatype.from_text(r.type))
            except dns.exception.DNSException as exc:
                raise RecordsFileError(f"{r.name} {r.type}: {exc}") from None
            grouped[key].append(r.data)
        self.nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
        for (name, rdtype), datas in grouped.items():
            try:
                rrset = dns.rrset.from_text_list(name, records.ttl, "IN", rdtype, datas)
            except dns.exception.DNSException as exc:
                raise RecordsFileError(f"{name} {dns.rdatatype.to_text(rdtype)}: {exc}") from None
            self.nodes.setdefault(name, {})[rdtype] = rrset
        origins = sorted(
            (dns.name.from_text(z) for z in records.zones), key=len, reverse=True
        )
        self.zones = [self._zone(o) for o in origins]
        # Every ancestor of a record, up to its zone: names that exist without records.
        self.ents: set[dns.name.Name] = set()
        for owner in self.nodes:
            zone = self.zone_of(owner)
            if zone is None:
                raise RecordsFileError(f"{owner} is outside every zone of the file")
            name = owner
            while name != zone.origin:
                name = name.parent()
                self.ents.add(name)

    def _zone(self, origin: dns.name.Name) -> _Zone:
        soa = self.nodes.get(origin, {}).get(dns.rdatatype.SOA)
        if soa is None:
            raise RecordsFileError(f"zone {origin} has no SOA record")
        return _Zone(origin, soa)

    @property
    def size(self) -> int:
        return sum(len(rrset) for types in self.nodes.values() for rrset in types.values())

    def zone_of(self, name: dns.name.Name) -> _Zone | None:
        return next((z for z in self.zones if name.is_subdomain(z.origin)), None)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        """The response to a parsed query (one question, class IN, opcode QUERY)."""
        response = dns.message.make_response(query, recursion_available=True, our_payload=_PAYLOAD)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, rdtype = question.name, question.rdtype
        zone = self.zone_of(qname) if question.rdclass == dns.rdataclass.IN else None
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            if query.edns >= 0:
                text = f"no upstream: this server answers only for {self.records.domain}"
                ede = dns.edns.EDEOption(_EDE_NOT_AUTHORITATIVE, text)
                response.use_edns(0, 0, _PAYLOAD, query.payload, options=[ede])
            return response
        response.flags |= dns.flags.AA
        types = self.nodes.get(qname) or self._synthesize(qname, zone)
        if types is None:
            if qname not in self.ents:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._negative(zone))
            return response
        found = list(types.values()) if rdtype == dns.rdatatype.ANY else [types.get(rdtype)]
        answers = [rrset for rrset in found if rrset is not None]
        if not answers:
            response.authority.append(self._negative(zone))
            return response
        for rrset in answers:
            response.answer.append(_named(rrset, qname))
        if rdtype in (dns.rdatatype.SRV, dns.rdatatype.NS):
            self._add_glue(response, answers)
        return response

    def _synthesize(
        self, qname: dns.name.Name, zone: _Zone
    ) -> dict[int, dns.rrset.RRset] | None:
        """<a-b-c-d>.<ns>.pod.<zone> for any address, when pods are `insecure` (kind's mode)."""
        if not self.insecure_pods or zone.origin != self.domain:
            return None
        labels = qname.relativize(self.domain).labels
        if len(labels) != 3 or labels[2].lower() != b"pod":
            return None
        ip = undashed(labels[0].decode("ascii", "replace"))
        if ip is None:
            return None
        rdtype = _A if ip.version == 4 else _AAAA
        return {rdtype: dns.rrset.from_text(qname, self.ttl, "IN", rdtype, str(ip))}

    def _negative(self, zone: _Zone) -> dns.rrset.RRset:
        # RFC 2308: a negative answer lives as long as the smaller of the SOA's TTL and minimum.
        soa = zone.soa
        minimum = min(soa.ttl, soa[0].minimum)
        return dns.rrset.from_rdata_list(soa.name, minimum, list(soa))

    def _add_glue(self, response: dns.message.Message, answers: list[dns.rrset.RRset]) -> None:
        """The addresses of SRV targets and NS hosts, in the additional section."""
        seen: set[dns.name.Name] = set()
        for rrset in answers:
            for rdata in rrset:
                target = getattr(rdata, "target", None)
                if not isinstance(target, dns.name.Name) or target in seen:
                    continue
                seen.add(target)
                for rdtype in _ADDRESS_TYPES:
                    glue = self.nodes.get(target, {}).get(rdtype)
                    if glue is not None:
                        response.additional.append(glue)


def _named(rrset: dns.rrset.RRset, qname: dns.name.Name) -> dns.rrset.RRset:
    """The RRset under the name as the client spelled it (clients that randomize case check)."""
    if rrset.name.labels == qname.labels:
        return rrset
    return dns.rrset.from_rdata_list(qname, rrset.ttl, list(rrset))
