"""One Patient per person, whoever recorded them.

Matching, in order:
1. A valid NHS number held by exactly one Patient links to it.
1a. Otherwise a source's own identifier for the person (a RiO client id, a VCSE client ref, an
   HL7 MR number) already held by exactly one Patient links to it: the source has said it is the
   same person, whatever changed in the demographics (a new postcode) — unless that Patient
   holds a different NHS number.
2. Otherwise an exact match on normalised family name, given name, birth date and postcode links
   (never to a Patient holding a *different* NHS number: that is someone else, or a wrong number).
3. Anything weaker (same family name and birth date; same given name, birth date and postcode),
   several exact matches, or too few details to match at all: no link, a review item a person
   resolves (`fhir-bridge identity review / link`); the records wait there, nothing is lost.
4. No candidate at all: a new Patient.

When records agree on the person but not on a demographic field, the more trusted source (a
configured order, most trusted first) wins and the disagreement is reported either way.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable, Sequence

from fhir_bridge.identifiers import is_valid_nhs_number, normalise_nhs_number
from fhir_bridge.store.indexer import date_range, normalize
from fhir_bridge.store.ingest_records import Demographics
from fhir_bridge.store.types import Stored

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SOURCE_BASE = "https://fhir-bridge.example.org/source/"
PATIENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir-bridge.example.org/Patient")
# Demographic elements a more trusted source may overwrite; identifiers are always united.
DEMOGRAPHIC_FIELDS = ("name", "birthDate", "gender", "address", "telecom", "generalPractitioner",
                      "extension", "deceasedBoolean", "deceasedDateTime")


@dataclass(frozen=True)
class Link:
    action: str                       # nhs-number | local-identifier | demographics | new | review
    patient_id: str | None            # None for a review; for "new", the id to create it under
    candidates: tuple[str, ...] = ()  # for a review: who it might be
    reason: str = ""


@dataclass(frozen=True)
class Disagreement:
    element: str
    kept: object
    other: object
    kept_from: str
    other_from: str


@dataclass
class Merge:
    patient: dict
    disagreements: list[Disagreement] = field(default_factory=list)


def nhs_number_of(patient: dict) -> str | None:
    for ident in patient.get("identifier", ()):
        if type(ident) is dict and ident.get("system") == NHS_SYSTEM and type(ident.get("value")) is str:
            number = normalise_nhs_number(ident["value"])
            if is_valid_nhs_number(number):
                return number
    return None


def demographics_of(patient: dict) -> Demographics | None:
    """The four matching details, normalised; None when any is missing."""
    names = [n for n in patient.get("name", ()) if type(n) is dict]
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    family = official.get("family")
    given = (official.get("given") or [None])[0]
    birth = patient.get("birthDate")
    postcode = next((a.get("postalCode") for a in patient.get("address", ()) if type(a) is dict and a.get("postalCode")),
                    None)
    if not all(type(v) is str and v.strip() for v in (family, given, birth, postcode)):
        return None
    return Demographics(normalize(family), normalize(given), birth, postcode.replace(" ", "").upper())


def source_of(patient: dict) -> str | None:
    text = (patient.get("meta") or {}).get("source") or ""
    return text[len(SOURCE_BASE):] if text.startswith(SOURCE_BASE) else None


class IdentityResolver:
    def __init__(self, repository, find: Callable[[str, list[tuple[str, str]]], list[Stored]],
                 trust_order: Sequence[str]):
        self.repository = repository
        self.find = find
        self.trust = {source: rank for rank, source in enumerate(trust_order)}

    def resolve(self, patient: dict) -> Link:
        nhs = nhs_number_of(patient)
        if nhs:
            holders = [s.resource_id for s in self.find("Patient", [("identifier", f"{NHS_SYSTEM}|{nhs}")])]
            if len(holders) == 1:
                return Link("nhs-number", holders[0])
            if len(holders) > 1:
                return Link("review", None, tuple(holders), f"NHS number {nhs} is held by {len(holders)} Patients")
        known = self._by_local_identifier(patient, nhs)
        if known is not None:
            return known
        who = demographics_of(patient)
        if who is None:
            if nhs:
                return Link("new", new_patient_id(nhs))
            return Link("review", None, (), "no NHS number and too few details (family and given name, birth date, "
                                             "postcode) to match the person safely")
        span = date_range(who.birth_date)
        exact, weaker = self.repository.patients_matching(who, span) if span else ([], [])
        if nhs:
            others = [p for p in exact if self._other_nhs(p, nhs)]
            if others:
                return Link("review", None, tuple(exact),
                            "the same name, birth date and postcode belong to a Patient with another NHS number")
        if len(exact) == 1:
            return Link("demographics", exact[0])
        if len(exact) > 1:
            return Link("review", None, tuple(exact), f"{len(exact)} Patients share these name, birth date and postcode")
        if weaker and not nhs:
            return Link("review", None, tuple(weaker), "similar Patients found (a name, birth date or postcode differs)")
        return Link("new", new_patient_id(nhs) if nhs else patient.get("id"))

    def _by_local_identifier(self, patient: dict, nhs: str | None) -> Link | None:
        holders: set[str] = set()
        for ident in patient.get("identifier", ()):
            system, value = (ident.get("system"), ident.get("value")) if type(ident) is dict else (None, None)
            if type(system) is str and type(value) is str and system != NHS_SYSTEM:
                holders |= {s.resource_id for s in self.find("Patient", [("identifier", f"{system}|{value}")])}
        if not holders:
            return None
        if len(holders) > 1:
            return Link("review", None, tuple(sorted(holders)), "the record's identifiers belong to several Patients")
        [holder] = holders
        if nhs and self._other_nhs(holder, nhs):
            return Link("review", None, (holder,), "this source's id for the person belongs to a Patient with another NHS number")
        return Link("local-identifier", holder)

    def _other_nhs(self, patient_id: str, nhs: str) -> bool:
        held = nhs_number_of(self.repository.read("Patient", patient_id).resource)
        return held is not None and held != nhs

    def merge(self, existing: dict, incoming: dict, source: str) -> Merge:
        """`existing` updated with what `incoming` (from `source`) adds: identifiers united; each
        demographic element taken from the more trusted of the two sources; differences reported."""
        merged = {k: v for k, v in existing.items() if k != "meta"}
        known = {(i.get("system"), i.get("value")) for i in existing.get("identifier", ())}
        extra = [i for i in incoming.get("identifier", ()) if (i.get("system"), i.get("value")) not in known]
        if extra:
            merged["identifier"] = list(existing.get("identifier", [])) + extra
        held_by = source_of(existing) or source
        incoming_wins = self._rank(source) <= self._rank(held_by)
        result = Merge(merged)
        for element in DEMOGRAPHIC_FIELDS:
            mine, theirs = existing.get(element), incoming.get(element)
            if theirs is None or mine == theirs:
                continue
            if mine is None or incoming_wins:
                merged[element] = theirs
                if mine is not None:
                    result.disagreements.append(Disagreement(element, theirs, mine, source, held_by))
            else:
                result.disagreements.append(Disagreement(element, mine, theirs, held_by, source))
        merged["meta"] = {**{k: v for k, v in (existing.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")},
                          "source": SOURCE_BASE + (source if incoming_wins else held_by)}
        return result

    def _rank(self, source: str) -> int:
        return self.trust.get(source, len(self.trust))


def new_patient_id(nhs: str | None, *, source: str | None = None, local_id: str | None = None) -> str | None:
    """Deterministic: the same person from the same source always gets the same id."""
    if nhs:
        return str(uuid.uuid5(PATIENT_NAMESPACE, f"nhs|{nhs}"))
    if source and local_id:
        return str(uuid.uuid5(PATIENT_NAMESPACE, f"{source}|{local_id}"))
    return None
