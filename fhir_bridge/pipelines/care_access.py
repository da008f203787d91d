"""Access by care relationship: the one place that decides which partner may see and change whose
records. Every read path (read, vread, history, search with its includes, transaction and batch
entries, the operations) and every client write path (create, update, patch, delete, in a bundle
or not, the DIALOG+ session) asks this module.

The rule. A partner organisation (its token's ODS code) sees and changes what is about a person only
while it has a care relationship with them (rows derived by fhir_bridge.store.care_access_rows):
it holds their record (Patient.managingOrganization), is on their active CareTeam, or has an
active referral (ServiceRequest.performer), episode of care (EpisodeOfCare.managingOrganization)
or consent (Consent.provision.actor, permit) naming it. Anyone else gets 403, and searches, history
and includes leave those people's resources out, counts too. "About a person": the Patient itself,
a resource whose subject/patient is them, a Provenance of such resources. Directory resources
(Practitioner, Organization, Questionnaire ...) are about nobody and open to every partner.

Registering a new person needs no relationship: the partner that creates a Patient without a
managingOrganization becomes its custodian (as does an importing organisation). An update that
leaves managingOrganization out keeps it; only the custodian may hand the record to another.
Whoever may change a person's records may change their CareTeam, referrals and consents, so the
trust that holds the record adds partners to the team.

Tokens with the scope `access/all-people` (the bridge's own jobs, operators, the development token)
are not limited by relationships; their SMART scopes still apply.

Imports meet the same rule (`check_writes`, one look-up a batch): a partner's `$ingest` upload may
register new people but changes nobody else's records, so a record about a person it has no
relationship with is quarantined (reason `access`) rather than stored. What an operator runs on
the machine - `fhir-bridge import`, the trust's MLLP feed - runs as `operator_caller`: the
organisation it names, not limited, as the operator holds the store itself. `quarantine retry` of a
partner's upload runs as `partner_caller`, as limited as the upload was: an operator's routine retry
must not store what the partner could not. Nor does `identity link`, which decides whose records
wait in a review, not who may write them: they are stored as whoever imported them.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from fhir_bridge.errors import Forbidden
from fhir_bridge.pipelines.resources import ODS, SYSTEM_CALLER, Caller, with_custodian
from fhir_bridge.store.care_access import AccessScope
from fhir_bridge.store.care_access_rows import UNRESOLVED, people_of
from fhir_bridge.store.types import Stored
from fhir_bridge.store.repository import read_if_live

__all__ = ["ALL_PEOPLE_SCOPE", "CareAccess", "limited", "operator_caller", "partner_caller", "with_custodian"]

ALL_PEOPLE_SCOPE = "access/all-people"


def operator_caller(organization: str) -> Caller:
    """Whom an import an operator runs writes as: `organization` (its Provenance names it), not
    limited by care relationships."""
    return Caller(organization, organization, None, frozenset({ALL_PEOPLE_SCOPE}))


def partner_caller(organization: str) -> Caller:
    """Whom a retry of a partner's quarantined upload writes as: that partner, limited by its care
    relationships as they are at the retry."""
    return Caller(organization, organization, None, frozenset())


def limited(caller: Caller) -> bool:
    """Whether the caller sees and changes only the people it has a care relationship with."""
    return ALL_PEOPLE_SCOPE not in caller.scopes and caller != SYSTEM_CALLER


class CareAccess:
    def __init__(self, repository, *, base_url: str | None = None,
                 clock: Callable[[], int] = lambda: time.time_ns() // 1000):
        self.repository = repository
        self.base_url = base_url
        self.clock = clock

    def scope(self, caller: Caller) -> AccessScope | None:
        """What limits the caller's view (for searches and history); None: every person."""
        return AccessScope(caller.partner, self.clock()) if limited(caller) else None

    # -- reading ---------------------------------------------------------------------------------------
    def check_read(self, caller: Caller, stored: Stored, reader=None) -> Stored:
        """The stored version, or Forbidden when it is about someone the caller may not see."""
        if stored.resource is not None and self.scope(caller) is not None:
            key = (stored.resource_type, stored.resource_id)
            self.require_people(caller, self._people(reader or self.repository, stored.resource, key), reader)
        return stored

    def check_key(self, caller: Caller, resource_type: str, resource_id: str, reader=None) -> None:
        """For what has no body to read (an instance's history, a deleted resource): by its rows."""
        if self.scope(caller) is not None:
            key = (resource_type, resource_id)
            self.require_people(caller, (reader or self.repository).people_of([key]).get(key, set()), reader)

    def require_person(self, caller: Caller, patient_id: str, reader=None) -> None:
        self.require_people(caller, {patient_id}, reader)

    def require_people(self, caller: Caller, people: set[str], reader=None) -> None:
        scope = self.scope(caller)
        if scope is None or not people:
            return
        missing = sorted(people - (reader or self.repository).related_people(scope, people))
        if not missing:
            return
        if missing[0] == UNRESOLVED:
            raise Forbidden(f"{caller.partner} may not see this: it is about a person this server cannot resolve "
                            "(a reference by identifier or to another server), whom no partner has a care "
                            "relationship with")
        raise Forbidden(f"{caller.partner} has no care relationship with Patient/{missing[0]}: it is not on their "
                        "care team and holds no referral, episode of care or consent for them. The organisation "
                        f"that holds their record can add {caller.partner} to their care team.")

    # -- writing (fhir_bridge.pipelines.resources calls these inside the write's unit of work) ---------
    def check_write(self, uow, caller: Caller, resource: dict, issues: list) -> dict:
        """The resource to store, or Forbidden. A new Patient needs no relationship (its creator
        becomes its custodian); anything else needs one with every person it is, and was, about."""
        key = (resource.get("resourceType"), resource.get("id"))
        current = read_if_live(uow, *key)
        if key[0] == "Patient":
            resource = self._patient(caller, resource, current)
            if current is None:
                return resource
        if self.scope(caller) is None:
            return resource
        people = self._people(uow, resource, key if current is not None else None)
        self.require_people(caller, people, uow)
        return resource

    def check_writes(self, uow, caller: Caller, resources: list[dict]) -> list[dict]:
        """check_write for a batch an import stores, with one relationship look-up: a Patient new
        here needs none (the importer becomes its custodian), nor does what is about such people."""
        if self.scope(caller) is None:
            return resources
        keys = [(r.get("resourceType"), r.get("id")) for r in resources]
        current = uow.read_live(keys)
        checked, people, new_people = [], set(), set()
        for resource, key in zip(resources, keys):
            stored = current.get(key)
            if key[0] == "Patient":
                resource = self._patient(caller, resource, stored)
                if stored is None:
                    new_people.add(key[1])
            if not (key[0] == "Patient" and stored is None):
                people |= self._people(uow, resource, key if stored is not None else None)
            checked.append(resource)
        self.require_people(caller, people - new_people, uow)
        return checked

    def check_delete(self, uow, caller: Caller, resource_type: str, resource_id: str) -> None:
        self.check_key(caller, resource_type, resource_id, uow)

    def _patient(self, caller: Caller, patient: dict, current: Stored | None) -> dict:
        if current is None:
            return with_custodian(patient, caller)
        held_by = current.resource.get("managingOrganization")
        if not patient.get("managingOrganization") and held_by:
            return {**patient, "managingOrganization": held_by}  # left out: kept, not handed to nobody
        if self.scope(caller) is not None and _ods(patient.get("managingOrganization")) != _ods(held_by) \
                and _ods(held_by) not in (None, caller.partner):
            raise Forbidden(f"Only {_ods(held_by)}, which holds the record of Patient/{patient['id']}, may hand it "
                            "to another organisation (Patient.managingOrganization)",
                            expression="Patient.managingOrganization")
        return patient

    def _people(self, reader, resource: dict, key: tuple[str, str] | None) -> set[str]:
        """Whom this version is about, and whom the stored resource is about (a write may not move
        something away from a person the writer cannot see)."""
        def target_people(keys):
            return {p for found in reader.people_of(keys).values() for p in found}

        people = people_of(resource, self.base_url, target_people)
        if key is not None:
            people |= reader.people_of([key]).get(key, set())
        return people


def _ods(reference: object) -> str | None:
    identifier = reference.get("identifier") if type(reference) is dict else None
    return identifier.get("value") if type(identifier) is dict and identifier.get("system") == ODS else None
