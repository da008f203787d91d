"""The care-access rows (fhir_bridge.store.care_access): whom each resource is about and which partner
has a relationship with whom, written with every version, kept for a deleted resource's history,
rebuilt by migration 6 the same as written; and the SQL predicate a partner's search uses."""
from __future__ import annotations

from sqlalchemy import select

from fhir_bridge.store import schema
from fhir_bridge.store.care_access import AccessScope, rebuild, visible
from fhir_bridge.store.care_access_rows import UNRESOLVED, people_of, relationships_of
from fhir_bridge.store.repository import Repository

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


class NoIndex:
    def rows(self, resource: dict) -> dict[str, list[dict]]:
        return {}


def org(code: str) -> dict:
    return {"type": "Organization", "identifier": {"system": ODS, "value": code}}


def snapshot(database) -> tuple[list, list]:
    with database.connect() as connection:
        people = sorted(tuple(r) for r in connection.execute(select(schema.resource_people)))
        rels = sorted(tuple(r) for r in connection.execute(select(schema.care_relationships)))
    return people, rels


RESOURCES = [
    {"resourceType": "Organization", "id": "vcse", "identifier": [{"system": ODS, "value": "X9V2K"}]},
    {"resourceType": "Patient", "id": "rosa", "managingOrganization": org("RV3")},
    {"resourceType": "CareTeam", "id": "team", "status": "active", "subject": {"reference": "Patient/rosa"},
     "participant": [{"member": {"reference": "Organization/vcse"}, "period": {"start": "2024-01-01"}},
                     {"member": {"reference": "Practitioner/sam"}, "onBehalfOf": org("LA1"),
                      "period": {"start": "2024-01-01", "end": "2024-06-30"}}]},
    {"resourceType": "ServiceRequest", "id": "ref", "status": "active", "intent": "order",
     "subject": {"reference": "Patient/rosa"}, "performer": [org("8ZX01")]},
    {"resourceType": "QuestionnaireResponse", "id": "qr", "status": "completed", "subject": {"reference": "Patient/rosa"}},
    {"resourceType": "Observation", "id": "by-nhs", "status": "final", "code": {"text": "x"},
     "subject": {"type": "Patient", "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "1"}}},
    {"resourceType": "Provenance", "id": "prov", "target": [{"reference": "QuestionnaireResponse/qr/_history/1"}],
     "recorded": "2024-01-01T00:00:00Z", "agent": [{"who": org("RV3")}]},
]


def test_rows_are_written_with_each_version_and_rebuilt_the_same(database):
    repo = Repository(database, NoIndex())
    with repo.unit_of_work() as uow:
        for resource in RESOURCES:
            uow.create(resource)
    with repo.unit_of_work() as uow:
        uow.delete("QuestionnaireResponse", "qr")
    people, rels = snapshot(database)
    assert ("QuestionnaireResponse", "qr", "rosa") in people  # a deleted resource's history stays Rosa's
    assert ("Provenance", "prov", "rosa") in people and ("Observation", "by-nhs", UNRESOLVED) in people
    assert not any(r[0] == "Organization" for r in people)
    assert {(r[0], r[3], r[4]) for r in rels} == {("Patient", "RV3", "custodian"), ("CareTeam", "X9V2K", "care-team"),
                                                  ("CareTeam", "LA1", "care-team"), ("ServiceRequest", "8ZX01", "referral")}
    with database.connect(write=True) as connection, connection.begin():
        rebuild(connection)
    assert snapshot(database) == (people, rels)


def test_visibility_in_sql(database):
    repo = Repository(database, NoIndex())
    with repo.unit_of_work() as uow:
        for resource in RESOURCES:
            uow.create(resource)
    now = 1_735_689_600_000_000  # 2025-01-01: the LA1 worker's participation has ended

    def seen(partner: str) -> set[str]:
        query = select(schema.resources.c.resource_id).where(
            visible(schema.resources.c.resource_type, schema.resources.c.resource_id, AccessScope(partner, now)))
        with database.connect() as connection:
            return {row[0] for row in connection.execute(query)}

    everyone = {"vcse"}  # about nobody
    rosa = {"rosa", "team", "ref", "qr", "prov"}
    assert seen("RV3") == seen("X9V2K") == seen("8ZX01") == everyone | rosa
    assert seen("LA1") == seen("NOBODY") == everyone
    assert repo.related_people(AccessScope("LA1", 0), ["rosa"]) == {"rosa"}  # before the end: still related


def test_what_counts_as_a_relationship():
    def rels(resource):
        return {(r["partner"], r["kind"]) for r in relationships_of(resource, None, lambda org_id: None)}

    consent = {"resourceType": "Consent", "id": "c", "status": "active", "patient": {"reference": "Patient/rosa"},
               "provision": {"type": "permit", "actor": [{"reference": org("X9V2K")}]}}
    assert rels(consent) == {("X9V2K", "consent")}
    assert rels({**consent, "provision": {**consent["provision"], "type": "deny"}}) == set()
    assert rels({**consent, "status": "inactive"}) == set()
    team = {"resourceType": "CareTeam", "id": "t", "status": "inactive", "subject": {"reference": "Patient/rosa"},
            "participant": [{"member": org("X9V2K")}]}
    assert rels(team) == set() and rels({**team, "status": "active"}) == {("X9V2K", "care-team")}
    episode = {"resourceType": "EpisodeOfCare", "id": "e", "status": "finished", "patient": {"reference": "Patient/rosa"},
               "managingOrganization": org("X9V2K")}
    assert rels(episode) == set() and rels({**episode, "status": "active"}) == {("X9V2K", "episode")}
    assert people_of({"resourceType": "Goal", "id": "g", "subject": {"reference": "#contained"}}, None,
                     lambda keys: set()) == set()
