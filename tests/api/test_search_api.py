"""Search over the API: the parameters partners use per type, the common parameters (_id,
_lastUpdated, _count and paging, _sort, _include, _revinclude, _summary, _total), unknown
parameters, and POST _search."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.api.conftest import NHS_NUMBER, PARTNER, nhs_number
from tests.api.helpers import expect, included, link, match_ids, matches

DIALOG_URL = "https://fhir-bridge.example.org/Questionnaire/dialog"
PURPOSE_SYSTEM = "https://fhir-bridge.example.org/CodeSystem/dialog-purpose"
SCORE_SYSTEM = "https://fhir-bridge.example.org/CodeSystem/dialog-score"
PLAN_TYPE_SYSTEM = "https://fhir-bridge.example.org/CodeSystem/mhsds-care-plan-type"


@pytest.fixture
def search(client, auth):
    """search("Patient", name="x") or search("Patient", [("k", "v"), ...]) -> the searchset Bundle (200)."""
    def run(resource_type: str, params=None, **kwargs) -> dict:
        bundle = expect(client.get(f"/fhir/{resource_type}", params=params or kwargs, headers=auth), 200)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        return bundle

    return run


@pytest.fixture
def people(create, make_patient) -> dict[str, dict]:
    return {
        "rosa": create(make_patient(1, family="Pemberton", given="Rosa", birth_date="1986-09-23")),
        "chidi": create(make_patient(2, family="Okafor", given="Chidi", birth_date="1990-01-15")),
        "ann": create(make_patient(3, family="Pemberton-Smith", given="Ann", birth_date="1975-06-30")),
    }


@pytest.fixture
def responses(people, create, make_response, care_planning_response) -> dict[str, dict]:
    rosa, chidi = (f"Patient/{people[name]['id']}" for name in ("rosa", "chidi"))
    care_planning_response["subject"] = care_planning_response["source"] = {"reference": chidi}
    return {
        "rosa_assessment": create(make_response(rosa, authored="2024-01-10T09:00:00+00:00",
                                                author="Practitioner/a")),
        "rosa_review": create(make_response(rosa, authored="2024-03-10T10:15:00+00:00", timepoint="review",
                                            status="amended", author="Practitioner/b")),
        "chidi_assessment": create(make_response(chidi, authored="2024-06-01T14:30:00+01:00",
                                                 author="Practitioner/a")),
        "chidi_care_planning": create(care_planning_response),   # authored 2024-02-20
    }


def ids_of(records: dict, *names: str) -> set[str]:
    return {records[name]["id"] for name in names}


# -- Patient ------------------------------------------------------------------------------------------
def test_patient_by_identifier_system_and_value(search, people):
    assert match_ids(search("Patient", identifier=f"{NHS_NUMBER}|{nhs_number(2)}")) == [people["chidi"]["id"]]
    assert match_ids(search("Patient", identifier=nhs_number(2))) == [people["chidi"]["id"]]
    assert match_ids(search("Patient", identifier=f"https://other.example/ids|{nhs_number(2)}")) == []


def test_patient_by_name(search, people):
    assert set(match_ids(search("Patient", name="pember"))) == ids_of(people, "rosa", "ann")
    assert match_ids(search("Patient", name="Chidi")) == [people["chidi"]["id"]]
    assert match_ids(search("Patient", [("name:exact", "Pemberton")])) == [people["rosa"]["id"]]


@pytest.mark.parametrize("value, expected", [
    ("1986-09-23", {"rosa"}), ("1986", {"rosa"}), ("ge1986-01-01", {"rosa", "chidi"}),
    ("lt1980", {"ann"}), ("le1986-09-23", {"rosa", "ann"}), ("gt1986-09-23", {"chidi"}),
    ("ne1986-09-23", {"chidi", "ann"}),
])
def test_patient_by_birthdate_with_prefixes(search, people, value, expected):
    assert set(match_ids(search("Patient", birthdate=value))) == ids_of(people, *expected)


def test_a_malformed_date_is_400(client, auth, people):
    expect(client.get("/fhir/Patient", params={"birthdate": "last-tuesday"}, headers=auth), 400)


# -- QuestionnaireResponse ----------------------------------------------------------------------------
def test_responses_by_subject_and_patient(search, people, responses):
    rosa = people["rosa"]["id"]
    rosas = ids_of(responses, "rosa_assessment", "rosa_review")
    assert set(match_ids(search("QuestionnaireResponse", subject=f"Patient/{rosa}"))) == rosas
    assert set(match_ids(search("QuestionnaireResponse", patient=rosa))) == rosas
    assert set(match_ids(search("QuestionnaireResponse", patient=f"Patient/{rosa}"))) == rosas


def test_responses_by_questionnaire(search, responses):
    every = ids_of(responses, *responses)
    assert set(match_ids(search("QuestionnaireResponse", questionnaire=DIALOG_URL))) == every
    assert match_ids(search("QuestionnaireResponse", questionnaire="https://other.example/Questionnaire/x")) == []


@pytest.mark.parametrize("value, expected", [
    ("2024-03-10", {"rosa_review"}),
    ("ge2024-03-01", {"rosa_review", "chidi_assessment"}),
    ("lt2024-03-01", {"rosa_assessment", "chidi_care_planning"}),
    ("le2024-01-10", {"rosa_assessment"}),
    ("gt2024-03-10T10:15:00+00:00", {"chidi_assessment"}),
    ("ne2024-03-10", {"rosa_assessment", "chidi_assessment", "chidi_care_planning"}),
    ("2024-06-01T13:30:00Z", {"chidi_assessment"}),   # the same instant as 14:30+01:00
])
def test_responses_by_authored_with_prefixes(search, responses, value, expected):
    assert set(match_ids(search("QuestionnaireResponse", authored=value))) == ids_of(responses, *expected)


def test_responses_by_status_and_author(search, responses):
    assert match_ids(search("QuestionnaireResponse", status="amended")) == [responses["rosa_review"]["id"]]
    assert set(match_ids(search("QuestionnaireResponse", author="Practitioner/a"))) == ids_of(
        responses, "rosa_assessment", "chidi_assessment")


def test_responses_by_purpose_and_timepoint(search, responses):
    prom = ids_of(responses, "rosa_assessment", "rosa_review", "chidi_assessment")
    assert set(match_ids(search("QuestionnaireResponse", purpose="prom"))) == prom
    assert match_ids(search("QuestionnaireResponse", purpose=f"{PURPOSE_SYSTEM}|care-planning")) == [
        responses["chidi_care_planning"]["id"]]
    assert match_ids(search("QuestionnaireResponse", timepoint="review")) == [responses["rosa_review"]["id"]]


def test_criteria_combine_with_and(search, people, responses):
    found = search("QuestionnaireResponse", patient=people["rosa"]["id"], timepoint="assessment")
    assert match_ids(found) == [responses["rosa_assessment"]["id"]]


# -- Observation and CarePlan -------------------------------------------------------------------------
def test_observations_by_subject_code_date_and_derived_from(search, create, make_observation, people, responses):
    rosa, chidi = (f"Patient/{people[name]['id']}" for name in ("rosa", "chidi"))
    from_rosa = f"QuestionnaireResponse/{responses['rosa_assessment']['id']}"
    sqol = create(make_observation(rosa, derived_from=from_rosa, effective="2024-01-10T09:00:00+00:00"))
    ts = create(make_observation(chidi, derived_from=f"QuestionnaireResponse/{responses['chidi_assessment']['id']}",
                                 effective="2024-06-01T14:30:00+01:00", score="treatment-satisfaction-mean"))
    assert match_ids(search("Observation", subject=rosa)) == [sqol["id"]]
    assert match_ids(search("Observation", code="sqol-mean")) == [sqol["id"]]
    assert match_ids(search("Observation", code=f"{SCORE_SYSTEM}|treatment-satisfaction-mean")) == [ts["id"]]
    assert match_ids(search("Observation", date="ge2024-05")) == [ts["id"]]
    assert match_ids(search("Observation", [("derived-from", from_rosa)])) == [sqol["id"]]


def test_care_plans_by_subject_status_and_category(search, create, make_care_plan, people):
    rosa, chidi = (f"Patient/{people[name]['id']}" for name in ("rosa", "chidi"))
    plan = create(make_care_plan(rosa))
    crisis = create({**make_care_plan(rosa, category="12"), "partOf": [{"reference": f"CarePlan/{plan['id']}"}]})
    old = create(make_care_plan(chidi, status="completed"))
    assert set(match_ids(search("CarePlan", subject=rosa))) == {plan["id"], crisis["id"]}
    assert match_ids(search("CarePlan", status="completed")) == [old["id"]]
    assert match_ids(search("CarePlan", category=f"{PLAN_TYPE_SYSTEM}|12")) == [crisis["id"]]
    assert set(match_ids(search("CarePlan", category="10", status="active"))) == {plan["id"]}


# -- common parameters --------------------------------------------------------------------------------
def test_by_id(search, people):
    wanted = ids_of(people, "rosa", "ann")
    assert set(match_ids(search("Patient", _id=",".join(wanted)))) == wanted


def test_by_last_updated(search, people):
    chidi_updated = people["chidi"]["meta"]["lastUpdated"]   # the clock makes every write a second apart
    assert set(match_ids(search("Patient", _lastUpdated=f"ge{chidi_updated}"))) == ids_of(people, "chidi", "ann")
    assert match_ids(search("Patient", _lastUpdated=f"lt{chidi_updated}")) == [people["rosa"]["id"]]


def test_paging_links_reach_every_page(client, auth, search, create, make_response):
    created = {create(make_response("Patient/p-paged"))["id"] for _ in range(7)}
    page = search("QuestionnaireResponse", subject="Patient/p-paged", _count=3)
    seen, pages = [], 0
    while True:
        pages += 1
        assert page["total"] == 7
        seen += match_ids(page)
        next_url = link(page, "next")
        if next_url is None:
            break
        assert urlsplit(next_url).path == "/fhir/QuestionnaireResponse"
        page = expect(client.get(next_url, headers=auth), 200)
    assert pages == 3 and len(seen) == 7 and set(seen) == created
    last = expect(client.get(link(page, "last"), headers=auth), 200)
    assert match_ids(last) == match_ids(page) and len(match_ids(last)) == 1
    previous = expect(client.get(link(last, "previous"), headers=auth), 200)
    assert match_ids(previous) == seen[3:6]
    first = expect(client.get(link(last, "first"), headers=auth), 200)
    assert match_ids(first) == seen[:3]


def test_sort(search, people, responses):
    by_birth = [people[name]["id"] for name in ("ann", "rosa", "chidi")]
    assert match_ids(search("Patient", _sort="birthdate")) == by_birth
    assert match_ids(search("Patient", _sort="-birthdate")) == by_birth[::-1]
    newest_first = [responses[n]["id"] for n in ("chidi_assessment", "rosa_review", "chidi_care_planning",
                                                 "rosa_assessment")]
    assert match_ids(search("QuestionnaireResponse", _sort="-authored")) == newest_first


def test_include_brings_the_referenced_resources(search, create, make_observation, people, responses):
    found = search("QuestionnaireResponse", _id=responses["rosa_review"]["id"],
                   _include="QuestionnaireResponse:subject")
    assert match_ids(found) == [responses["rosa_review"]["id"]]
    assert [r["id"] for r in included(found)] == [people["rosa"]["id"]]
    observation = create(make_observation(derived_from=f"QuestionnaireResponse/{responses['rosa_review']['id']}"))
    found = search("Observation", _id=observation["id"], _include="Observation:derived-from")
    assert [r["id"] for r in included(found)] == [responses["rosa_review"]["id"]]


def test_revinclude_provenance_names_partner_and_user(client, auth, search, make_patient):
    patient = expect(client.post("/fhir/Patient", json=make_patient(), headers={**auth, "X-User": "nurse.k"}), 201)
    found = search("Patient", _id=patient["id"], _revinclude="Provenance:target")
    assert match_ids(found) == [patient["id"]]
    [provenance] = included(found)
    assert provenance["resourceType"] == "Provenance"
    assert provenance["target"] == [{"reference": f"Patient/{patient['id']}/_history/1"}]
    assert provenance["agent"][0]["who"]["identifier"]["value"] == PARTNER
    assert provenance["agent"][1]["who"]["display"] == "nurse.k"


def test_summary_count_and_total_none(search, people):
    counted = search("Patient", _summary="count")
    assert counted["total"] == 3 and not matches(counted)
    uncounted = search("Patient", _total="none")
    assert "total" not in uncounted and len(match_ids(uncounted)) == 3


def test_unknown_parameter_is_ignored_with_a_warning(client, auth, search, people):
    found = search("Patient", colour="blue")
    assert len(match_ids(found)) == 3
    outcomes = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes and outcomes[0]["issue"][0]["severity"] == "warning"
    assert "colour" in outcomes[0]["issue"][0]["diagnostics"]
    strict = client.get("/fhir/Patient", params={"colour": "blue"}, headers={**auth, "Prefer": "handling=strict"})
    expect(strict, 400)


def test_post_search_takes_form_parameters(client, auth, people):
    response = client.post("/fhir/Patient/_search", data={"name": "pember", "_sort": "birthdate"}, headers=auth)
    assert match_ids(expect(response, 200)) == [people["ann"]["id"], people["rosa"]["id"]]
    wrong = client.post("/fhir/Patient/_search", json={"name": "pember"}, headers=auth)
    expect(wrong, 415)


def test_deleted_resources_are_not_found(client, auth, search, people):
    expect(client.delete(f"/fhir/Patient/{people['rosa']['id']}", headers=auth), 200)
    assert match_ids(search("Patient", name="pember")) == [people["ann"]["id"]]

