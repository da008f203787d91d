"""Whom a resource is about, and which partner organisations it puts in a care relationship with
them: plain FHIR reading, derived on every write (and by migration 6 for older data) into
`resource_people` and `care_relationships`. The rules that use the rows are in
fhir_bridge.pipelines.care_access.

People: a Patient is about itself; a Provenance about whoever its targets are about; anything else
about the Patients its top-level `subject` / `patient` refer to. A reference to a Patient this
server cannot resolve (an identifier alone, another server's URL) counts as UNRESOLVED, a person no
partner has a relationship with: such a resource is closed to partners rather than open to all.

Relationships, each for a partner organisation named by ODS code (an identifier, or a reference to
a stored Organization carrying one):
- custodian  Patient.managingOrganization: the organisation that holds the person's record;
- care-team  a participant of the person's active CareTeam (member, or onBehalfOf) until its period ends;
- referral   an active ServiceRequest for the person naming the organisation as performer;
- episode    an EpisodeOfCare of the person managed by the organisation, while it runs;
- consent    an active Consent of the person whose provision permits the organisation (provision.actor).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from fhir_bridge.store.indexer import date_range, parse_reference

__all__ = ["UNRESOLVED", "ODS", "people_of", "relationships_of"]

UNRESOLVED = "?"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
PERSON_ELEMENTS = ("subject", "patient")
TargetPeople = Callable[[list[tuple[str, str]]], set[str]]   # (type, id) keys -> the Patients they are about
OrganizationOds = Callable[[str], str | None]                # Organization id -> its ODS code

_EPISODE_OPEN = ("planned", "waitlist", "active", "onhold")


def people_of(resource: dict, base_url: str | None, target_people: TargetPeople) -> set[str]:
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return {resource["id"]}
    if rtype == "Provenance":
        people, others = set(), []
        for target in _list(resource.get("target")):
            kind, rid = _local(target, base_url)
            if kind == "Patient":
                people.add(rid or UNRESOLVED)
            elif kind and rid:
                others.append((kind, rid))
        return people | (target_people(others) if others else set())
    people = set()
    for name in PERSON_ELEMENTS:
        for reference in _list(resource.get(name)):
            kind, rid = _local(reference, base_url)
            if kind == "Patient":
                people.add(rid or UNRESOLVED)
    return people


def relationships_of(resource: dict, base_url: str | None, organization_ods: OrganizationOds) -> list[dict]:
    """care_relationships rows (patient_id, partner, kind, ends) the resource records."""
    rtype, status = resource.get("resourceType"), resource.get("status")

    def ods(reference: object) -> str | None:
        if type(reference) is not dict:
            return None
        identifier = reference.get("identifier")
        if type(identifier) is dict and identifier.get("system") == ODS and type(identifier.get("value")) is str:
            return identifier["value"]
        kind, rid = _local(reference, base_url)
        return organization_ods(rid) if kind == "Organization" and rid else None

    if rtype == "Patient":
        return _rows({resource["id"]}, [ods(resource.get("managingOrganization"))], "custodian", None)
    people = {p for p in people_of(resource, base_url, lambda keys: set()) if p != UNRESOLVED}
    if not people:
        return []
    if rtype == "CareTeam" and status == "active":
        rows = []
        for participant in _list(resource.get("participant")):
            if type(participant) is dict:
                partners = [ods(participant.get("member")), ods(participant.get("onBehalfOf"))]
                rows += _rows(people, partners, "care-team", _end(participant.get("period")))
        return rows
    if rtype == "ServiceRequest" and status == "active":
        return _rows(people, [ods(p) for p in _list(resource.get("performer"))], "referral",
                     _end(resource.get("occurrencePeriod")))
    if rtype == "EpisodeOfCare" and status in _EPISODE_OPEN:
        return _rows(people, [ods(resource.get("managingOrganization"))], "episode", _end(resource.get("period")))
    if rtype == "Consent" and status == "active":
        provision = resource.get("provision") if type(resource.get("provision")) is dict else {}
        if provision.get("type") != "permit":
            return []
        actors = [ods(a.get("reference")) for a in _list(provision.get("actor")) if type(a) is dict]
        return _rows(people, actors, "consent", _end(provision.get("period")))
    return []


def _rows(people: Iterable[str], partners: Iterable[str | None], kind: str, ends: int | None) -> list[dict]:
    return [{"patient_id": p, "partner": partner, "kind": kind, "ends": ends}
            for p in people for partner in dict.fromkeys(partners) if partner]


def _local(reference: object, base_url: str | None) -> tuple[str | None, str | None]:
    """(type, id) of a reference to this server; (type, None) when it names a type but cannot be
    resolved here (identifier only, another server); (None, None) when it is not a reference."""
    if type(reference) is not dict:
        return None, None
    text = reference.get("reference")
    if type(text) is str:
        kind, rid, _url = parse_reference(text, base_url)
        if kind is None and text.startswith("#"):
            return None, None  # a contained resource: not a person of its own
        return kind, rid
    kind = reference.get("type")
    if type(kind) is str and reference.get("identifier") is not None:
        return kind.rsplit("/", 1)[-1], None
    return None, None


def _end(period: object) -> int | None:
    end = period.get("end") if type(period) is dict else None
    found = date_range(end) if type(end) is str else None
    return found[1] if found else None


def _list(value: object) -> list:
    return value if type(value) is list else [value] if value is not None else []
