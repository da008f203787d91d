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
configured order, most trusted first) wins and the disagreement is reported either way. Trust is
judged per element: an element keeps which source said it (`element_sources`), so a value a less
trusted partner filled in gives way to a more trusted one's, however trusted the Patient's first source.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from fhir_bridge.identifiers import is_valid_nhs_number, normalise_nhs_number
from fhir_bridge.pipelines.patient_links import replaced_by, surviving_patient
from fhir_bridge.store.indexer import date_range, normalize
from fhir_bridge.store.ingest_records import Demographics
from fhir_bridge.uuid_text import uuid5_text

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SOURCE_BASE = "https://fhir-bridge.example.org/source/"
ELEMENT_SOURCE = "https://fhir-bridge.example.org/StructureDefinition/element-source"
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


def element_sources(patient: dict) -> dict[str, str]:
    """The demographic elements said by another source than the Patient's meta.source, with that
    source (meta extension element-source)."""
    found = {}
    for ext in (patient.get("meta") or {}).get("extension", ()):
        if type(ext) is dict and ext.get("url") == ELEMENT_SOURCE:
            parts = {e.get("url"): e for e in ext.get("extension", ()) if type(e) is dict}
            element = (parts.get("element") or {}).get("valueCode")
            said = (parts.get("source") or {}).get("valueUri")
            if type(element) is str and type(said) is str and said.startswith(SOURCE_BASE):
                found[element] = said[len(SOURCE_BASE):]
    return found


def _with_element_sources(meta: dict, record: str, said_by: dict[str, str]) -> dict:
    """`meta` (server meta dropped) with meta.source `record` and one element-source extension per
    element another source said, in element order (the same merge gives the same meta)."""
    kept = [e for e in meta.get("extension", ()) if not (type(e) is dict and e.get("url") == ELEMENT_SOURCE)]
    extensions = kept + [{"url": ELEMENT_SOURCE, "extension": [{"url": "element", "valueCode": element},
                                                               {"url": "source", "valueUri": SOURCE_BASE + said}]}
                         for element, said in sorted(said_by.items())]
    out = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated", "extension")}
    out["source"] = SOURCE_BASE + record
    if extensions:
        out["extension"] = extensions
    return out


class PendingPatients:
    """What an import run knows of the people it links. The Patients linked but not yet committed
    (the batch in hand): matching must see them, or two records of one new person in one batch
    would make two Patients; cleared when the batch is stored, the store answers from then on.
    And the holders of identifiers the run has looked up, kept up to date as it links, so that a
    person's later records (a client's assessments, a patient's ORUs) cost no query."""

    KNOWN_LIMIT = 200_000  # identifiers remembered; forgotten wholesale beyond that (memory stays flat)

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], frozenset[str]] = {}
        self.clear()

    def clear(self) -> None:
        self._by_id: dict[str, dict] = {}
        self._by_identifier: dict[tuple[str, str], set[str]] = {}
        # by birth date first: every match, exact or weaker, shares it (a batch holds hundreds of people)
        self._by_birth_date: dict[str, dict[Demographics, set[str]]] = {}

    def add(self, patient: dict) -> None:
        patient_id = patient["id"]
        self._by_id[patient_id] = patient
        for key in _identifiers(patient):
            self._by_identifier.setdefault(key, set()).add(patient_id)
            if key in self._known:
                self._known[key] |= {patient_id}
        who = demographics_of(patient)
        if who is not None:
            self._by_birth_date.setdefault(who.birth_date, {}).setdefault(who, set()).add(patient_id)

    def get(self, patient_id: str) -> dict | None:
        return self._by_id.get(patient_id)

    def with_identifier(self, system: str, value: str) -> set[str]:
        return self._by_identifier.get((system, value), set())

    def known_holders(self, system: str, value: str) -> frozenset[str] | None:
        return self._known.get((system, value))

    def remember(self, system: str, value: str, holders: set[str]) -> None:
        if len(self._known) >= self.KNOWN_LIMIT:
            self._known.clear()
        self._known[system, value] = frozenset(holders)

    def matching(self, who: Demographics) -> tuple[set[str], set[str]]:
        """(exact, weaker), as Repository.patients_matching compares them."""
        exact, weaker = set(), set()
        for other, ids in self._by_birth_date.get(who.birth_date, {}).items():
            if other == who:
                exact |= ids
            elif other.family == who.family or (other.given == who.given and other.postcode == who.postcode):
                weaker |= ids
        return exact, weaker


NO_PENDING = PendingPatients()


class IdentityResolver:
    def __init__(self, repository, trust_order: Sequence[str]):
        self.repository = repository
        self.trust = {source: rank for rank, source in enumerate(trust_order)}

    def resolve(self, patient: dict, pending: PendingPatients = NO_PENDING) -> Link:
        nhs = nhs_number_of(patient)
        if nhs:
            holders = self._current(self.holders(NHS_SYSTEM, nhs, pending), pending)
            if len(holders) == 1:
                return Link("nhs-number", holders[0])
            if len(holders) > 1:
                return Link("review", None, tuple(holders), f"NHS number {nhs} is held by {len(holders)} Patients")
        known = self._by_local_identifier(patient, nhs, pending)
        if known is not None:
            return known
        who = demographics_of(patient)
        if who is None:
            if nhs:
                return Link("new", new_patient_id(nhs))
            return Link("review", None, (), "no NHS number and too few details (family and given name, birth date, "
                                             "postcode) to match the person safely")
        span = date_range(who.birth_date)
        stored_exact, stored_weaker = self.repository.patients_matching(who, span) if span else ([], [])
        pending_exact, pending_weaker = pending.matching(who)
        exact = self._current(set(stored_exact) | pending_exact, pending)
        weaker = sorted((set(stored_weaker) | pending_weaker) - set(exact))
        if nhs:
            others = [p for p in exact if self._other_nhs(p, nhs, pending)]
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

    def holders(self, system: str, value: str, pending: PendingPatients = NO_PENDING) -> set[str]:
        """Patients holding the identifier, committed or pending."""
        known = pending.known_holders(system, value)
        if known is not None:
            return set(known) | pending.with_identifier(system, value)
        holders = set(self.repository.patients_with_identifier(system, value)) | pending.with_identifier(system, value)
        if pending is not NO_PENDING:
            pending.remember(system, value, holders)
        return holders

    def look_up(self, patients: list[dict], pending: PendingPatients) -> None:
        """Have `pending` know the holders of these Patients' identifiers, read in one query, so
        that linking them (soon, in order) asks the store nothing more about identifiers: an
        import reads ahead a few hundred records (Ingest._identities_read_ahead)."""
        wanted = list(dict.fromkeys(key for patient in patients for key in _identifiers(patient)
                                    if pending.known_holders(*key) is None))
        if not wanted:
            return
        for (system, value), holders in self.repository.patients_with_identifiers(wanted).items():
            pending.remember(system, value, holders | pending.with_identifier(system, value))

    def _current(self, patient_ids: set[str], pending: PendingPatients) -> list[str]:
        """The Patients, sorted, a merged one replaced by its survivor (patient_links.py): after a
        merge both records hold the person's old identifiers, and they are one person. Only two or
        more are looked at, which would otherwise be a review, so the common case reads nothing; a
        merged Patient found alone is linked as before (callers that must, follow it)."""
        if len(patient_ids) < 2:
            return sorted(patient_ids)
        survivors = set()
        for patient_id in patient_ids:
            target = replaced_by(self.patient(patient_id, pending))
            survivors.add(patient_id if target is None else surviving_patient(self.repository, target))
        return sorted(survivors)

    def patient(self, patient_id: str, pending: PendingPatients = NO_PENDING) -> dict:
        """The Patient as this import last saw it: its pending version, else the stored one."""
        return pending.get(patient_id) or self.repository.read("Patient", patient_id).resource

    def _by_local_identifier(self, patient: dict, nhs: str | None, pending: PendingPatients) -> Link | None:
        holders: set[str] = set()
        for system, value in _identifiers(patient):
            if system != NHS_SYSTEM:
                holders |= self.holders(system, value, pending)
        if not holders:
            return None
        holders = set(self._current(holders, pending))
        if len(holders) > 1:
            return Link("review", None, tuple(sorted(holders)), "the record's identifiers belong to several Patients")
        [holder] = holders
        if nhs and self._other_nhs(holder, nhs, pending):
            return Link("review", None, (holder,), "this source's id for the person belongs to a Patient with another NHS number")
        return Link("local-identifier", holder)

    def _other_nhs(self, patient_id: str, nhs: str, pending: PendingPatients) -> bool:
        held = nhs_number_of(self.patient(patient_id, pending))
        return held is not None and held != nhs

    def merge(self, existing: dict, incoming: dict, source: str) -> Merge:
        """`existing` updated with what `incoming` (from `source`) adds: identifiers united; each
        demographic element taken from the more trusted of the source that said it and `source`;
        differences reported. Which source said an element is kept with the Patient where it is not
        its meta.source (the more trusted of the sources that made it): `element_sources`."""
        merged = {k: v for k, v in existing.items() if k != "meta"}
        known = {(i.get("system"), i.get("value")) for i in existing.get("identifier", ())}
        extra = [i for i in incoming.get("identifier", ()) if (i.get("system"), i.get("value")) not in known]
        if extra:
            merged["identifier"] = list(existing.get("identifier", [])) + extra
        record = source_of(existing) or source
        said_by = {element: record for element in DEMOGRAPHIC_FIELDS if existing.get(element) is not None}
        said_by.update(element_sources(existing))
        result = Merge(merged)
        for element in DEMOGRAPHIC_FIELDS:
            mine, theirs = existing.get(element), incoming.get(element)
            held_by = said_by.get(element, record)
            incoming_wins = self._rank(source) <= self._rank(held_by)
            if theirs is None or mine == theirs:
                if theirs is not None and self._rank(source) < self._rank(held_by):
                    said_by[element] = source  # a more trusted source says it too (an equal one
                continue                       # taking it over would flip with each import)
            # Reported when two sources say different things: not a source updating what it said,
            # nor the same thing written differently (a name's `use`, letter case, spaces).
            differ = mine is not None and source != held_by and _said(mine) != _said(theirs)
            if mine is None or incoming_wins:
                merged[element] = theirs
                said_by[element] = source
                if differ:
                    result.disagreements.append(Disagreement(element, theirs, mine, source, held_by))
            elif differ:
                result.disagreements.append(Disagreement(element, mine, theirs, held_by, source))
        record = source if self._rank(source) < self._rank(record) else record
        merged["meta"] = _with_element_sources(existing.get("meta") or {}, record, {
            element: said for element, said in said_by.items() if said != record and merged.get(element) is not None})
        return result

    def _rank(self, source: str) -> int:
        return self.trust.get(source, len(self.trust))


def _identifiers(patient: dict) -> list[tuple[str, str]]:
    return [(i["system"], i["value"]) for i in patient.get("identifier", ())
            if type(i) is dict and type(i.get("system")) is str and type(i.get("value")) is str]


def new_patient_id(nhs: str | None, *, source: str | None = None, local_id: str | None = None) -> str | None:
    """Deterministic: the same person from the same source always gets the same id."""
    if nhs:
        return uuid5_text(PATIENT_NAMESPACE, f"nhs|{nhs}")
    if source and local_id:
        return uuid5_text(PATIENT_NAMESPACE, f"{source}|{local_id}")
    return None


def _said(value: Any) -> Any:
    """What a demographic value says, for comparing two sources: without `use` and `period` (how a
    system labels a name or address, not what it is), strings without case and outer spaces."""
    if type(value) is dict:
        return {k: _said(v) for k, v in value.items() if k not in ("use", "period")}
    if type(value) is list:
        return [_said(v) for v in value]
    if type(value) is str:
        return " ".join(value.split()).casefold()
    return value
