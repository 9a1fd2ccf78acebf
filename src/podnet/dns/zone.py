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
_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
_EDE_NOT_AUTHORITATIVE = dns.edns.EDECode.NOT_AUTHORITATIVE  # RFC 8914: 20
_PAYLOAD = 1232  # the EDNS payload size we offer: DNS flag day 2020's, no fragments


@dataclass(frozen=True)
class _Zone:
    origin: str  # lowercase, absolute: cluster.local.
    soa: dns.rrset.RRset


class Zones:
    """Answers queries from one record set; a reload builds a new one.

    Names are keys as lowercase text (the file's own spelling): hashing and comparing dnspython
    Names costs most of a load otherwise (DNS compares names without case).
    """

    def __init__(self, records: RecordSet) -> None:
        self.records = records
        self.domain = records.domain.lower().rstrip(".") + "."
        self.ttl = records.ttl
        self.insecure_pods = records.pods == "insecure"
        grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
        for r in records.records:
            grouped[(r.name.lower(), r.type)].append(r.data)
        self.nodes: dict[str, dict[int, dns.rrset.RRset]] = {}
        for (name, rtype), datas in grouped.items():
            try:
                rdtype = dns.rdatatype.from_text(rtype)
                rrset = dns.rrset.from_text_list(name, records.ttl, "IN", rdtype, datas)
            except dns.exception.DNSException as exc:
                raise RecordsFileError(f"{name} {rtype}: {exc}") from None
            self.nodes.setdefault(name, {})[rdtype] = rrset
        deepest_first = sorted(records.zones, key=_depth, reverse=True)
        self.zones = [self._zone(z.lower()) for z in deepest_first]
        # Every ancestor of a record, up to its zone: names that exist without records.
        self.ents: set[str] = set()
        for owner in self.nodes:
            zone = self.zone_of(owner)
            if zone is None:
                raise RecordsFileError(f"{owner} is outside every zone of the file")
            name = owner
            while name != zone.origin:
                name = name.split(".", 1)[1]
                self.ents.add(name)

    def _zone(self, origin: str) -> _Zone:
        soa = self.nodes.get(origin, {}).get(dns.rdatatype.SOA)
        if soa is None:
            raise RecordsFileError(f"zone {origin} has no SOA record")
        return _Zone(origin, soa)

    @property
    def size(self) -> int:
        return sum(len(rrset) for types in self.nodes.values() for rrset in types.values())

    def zone_of(self, name: str) -> _Zone | None:
        """The deepest zone holding `name` (lowercase, absolute), if any."""
        return next(
            (z for z in self.zones if name == z.origin or name.endswith("." + z.origin)), None
        )

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
        key = qname.to_text().lower()
        zone = self.zone_of(key) if question.rdclass == dns.rdataclass.IN else None
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            if query.edns >= 0:
                text = f"no upstream: this server answers only for {self.records.domain}"
                ede = dns.edns.EDEOption(_EDE_NOT_AUTHORITATIVE, text)
                response.use_edns(0, 0, _PAYLOAD, query.payload, options=[ede])
            return response
        if rdtype in _TRANSFERS:
            response.set_rcode(dns.rcode.REFUSED)  # no zone transfers: podnet has the records
        else:
            self._authoritative(response, qname, key, rdtype, zone)
        return response

    def _authoritative(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        key: str,
        rdtype: dns.rdatatype.RdataType,
        zone: _Zone,
    ) -> None:
        """Fill `response` for a name inside `zone`: records, NODATA or NXDOMAIN."""
        response.flags |= dns.flags.AA
        types = self.nodes.get(key) or self._synthesize(qname, key, zone)
        if types is None:
            if key not in self.ents:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._negative(zone))
            return
        found = list(types.values()) if rdtype == dns.rdatatype.ANY else [types.get(rdtype)]
        answers = [rrset for rrset in found if rrset is not None]
        if not answers:
            response.authority.append(self._negative(zone))
            return
        for rrset in answers:
            response.answer.append(_named(rrset, qname))
        if rdtype in (dns.rdatatype.SRV, dns.rdatatype.NS):
            self._add_glue(response, answers)

    def _synthesize(
        self, qname: dns.name.Name, key: str, zone: _Zone
    ) -> dict[int, dns.rrset.RRset] | None:
        """<a-b-c-d>.<ns>.pod.<zone> for any address, when pods are `insecure` (kind's mode)."""
        if not self.insecure_pods or zone.origin != self.domain:
            return None
        labels = key[: -len(self.domain)].split(".")  # "a-b-c-d", "ns", "pod", ""
        if len(labels) != 4 or labels[2] != "pod":
            return None
        ip = undashed(labels[0])
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
        seen: set[str] = set()
        for rrset in answers:
            for rdata in rrset:
                target = getattr(rdata, "target", None)
                if not isinstance(target, dns.name.Name):
                    continue
                text = target.to_text().lower()
                if text in seen:
                    continue
                seen.add(text)
                for rdtype in _ADDRESS_TYPES:
                    glue = self.nodes.get(text, {}).get(rdtype)
                    if glue is not None:
                        response.additional.append(glue)


def _depth(zone: str) -> int:
    return zone.rstrip(".").count(".")


def _named(rrset: dns.rrset.RRset, qname: dns.name.Name) -> dns.rrset.RRset:
    """The RRset under the name as the client spelled it (clients that randomize case check)."""
    if rrset.name.labels == qname.labels:
        return rrset
    return dns.rrset.from_rdata_list(qname, rrset.ttl, list(rrset))
