"""`Patient/[id]/$dialog-plus-session` and the rules of the person's one shared DIALOG+ plan over HTTP:
the session in one unit of work, bad input refused with nothing stored, one open plan per person
(409), If-Match on shared plans (428, 412 with the current version), the HTML page."""
from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from fhir_bridge.errors import PreconditionFailed
from fhir_bridge.pipelines.resources import ResourceService
from fhir_bridge.store.schema import dialog_scores
from tests.api.conftest import PARTNER, example
from tests.api.helpers import expect, issue_codes, match_ids
from tests.careplan.sessions import (action, agreement, domain, key_worker, organisation, referral, review, session,
                                     team_member)

PURPOSE = "https://fhir-bridge.example.org/StructureDefinition/dialog-collection-purpose"
VCSE = ("X9V2K", "Example Community Wellbeing")


@pytest.fixture
def people(create, make_patient):
    rosa = create(make_patient(1))["id"]
    sam = create({"resourceType": "Practitioner", "name": [{"given": ["Sam"], "family": "Adeyemi"}]})["id"]
    alex = create({"resourceType": "Practitioner", "name": [{"given": ["Alex"], "family": "Moran"}]})["id"]
    return SimpleNamespace(rosa=rosa, me={"reference": f"Patient/{rosa}"}, sam={"reference": f"Practitioner/{sam}"},
                           alex={"reference": f"Practitioner/{alex}"})


@pytest.fixture
def vcse(token_for):
    return token_for("system/*.*", partner=VCSE[0], name=VCSE[1])


@pytest.fixture
def ratings(care_planning_response):
    def make(patient_id: str, authored: str = "2024-02-20T11:00:00+00:00") -> dict:
        response = dict(care_planning_response, authored=authored)
        response["subject"] = response["source"] = {"reference": f"Patient/{patient_id}"}
        return response

    return make


def post(client, patient_id: str, parameters: dict, headers: dict, if_match: int | None = None):
    if if_match is not None:
        headers = {**headers, "If-Match": f'W/"{if_match}"'}
    return client.post(f"/fhir/Patient/{patient_id}/$dialog-plus-session", json=parameters, headers=headers)


def first_session(people, ratings) -> dict:
    return session(domain("accommodation", action("Phone the landlord about the damp", people.me, due="2024-03-01"),
                          understanding="The bedroom is damp", best_case="A dry flat near my sister",
                          smallest_step="The bedroom is dry"),
                   key_worker(people.sam), agreement("person", "professional"), response=ratings(people.rosa))


def stored_counts(bridge) -> tuple[int, int]:
    return bridge.repository.count(), bridge.repository.history()[0]


# -- the session ------------------------------------------------------------------------------------------
def test_a_first_session_stores_everything_in_one_go(client, auth, bridge, validator, people, ratings):
    response = post(client, people.rosa, first_session(people, ratings), {**auth, "X-User": "sam.adeyemi"})
    plan = expect(response, 200)
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Content-Location"].endswith(f"/CarePlan/{plan['id']}/_history/1")
    assert validator.validate(plan).valid and plan["meta"]["profile"] == [
        "https://fhir-bridge.example.org/StructureDefinition/dialog-plus-careplan"]
    assert plan["subject"] == {"reference": f"Patient/{people.rosa}", "display": "Rosa Pemberton"}
    assert plan["author"] == {**people.sam, "display": "Sam Adeyemi"}
    assert "Key worker: Sam Adeyemi" in plan["text"]["div"]

    [response_ref] = plan["supportingInfo"]
    stored_response = expect(client.get(f"/fhir/{response_ref['reference']}", headers=auth), 200)
    purpose = next(e for e in stored_response["extension"] if e["url"] == PURPOSE)
    assert purpose["valueCoding"]["code"] == "care-planning"
    with bridge.database.engine.connect() as connection:
        row = connection.execute(select(dialog_scores).where(
            dialog_scores.c.response_id == stored_response["id"])).first()
    assert row.purpose == "care-planning" and row.subject_id == people.rosa

    team = expect(client.get(f"/fhir/{plan['careTeam'][0]['reference']}", headers=auth), 200)
    goal = expect(client.get(f"/fhir/{plan['goal'][0]['reference']}", headers=auth), 200)
    assert validator.validate(team).valid and validator.validate(goal).valid
    assert goal["description"]["text"] == "A dry flat near my sister"
    assert [n["extension"][0]["valueCoding"]["code"] for n in goal["note"]] == [
        "understanding", "looking-forward", "agreed-actions"]

    provenances = expect(client.get("/fhir/Provenance", params={"target": f"CarePlan/{plan['id']}"}, headers=auth),
                         200)["entry"]
    [provenance] = [e["resource"] for e in provenances]
    targets = {t["reference"].split("/_history")[0] for t in provenance["target"]}
    assert targets == {f"CarePlan/{plan['id']}", team["resourceType"] + "/" + team["id"], f"Goal/{goal['id']}",
                       f"QuestionnaireResponse/{stored_response['id']}"}
    assert provenance["agent"][0]["who"]["identifier"]["value"] == PARTNER
    assert provenance["agent"][1]["who"]["display"] == "sam.adeyemi"


def test_the_same_session_sent_again_changes_nothing(client, auth, people, ratings):
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    before = expect(client.get("/fhir/_history", headers=auth), 200)["total"]
    again = post(client, people.rosa, first_session(people, ratings), auth)
    assert expect(again, 200)["meta"]["versionId"] == "1" and again.headers["ETag"] == 'W/"1"'
    assert expect(client.get("/fhir/_history", headers=auth), 200)["total"] == before
    assert expect(client.get(f"/fhir/CarePlan/{plan['id']}", headers=auth), 200) == plan


def test_what_a_session_leaves_as_stored_is_not_validated_again(client, auth, bridge, people, ratings):
    """A care team stored before the profile changed (here: an extension it no longer knows) does
    not stop a session that leaves it alone: it is not written, so it is not judged again."""
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    team_id = plan["careTeam"][0]["reference"].split("/")[1]
    team = bridge.repository.read("CareTeam", team_id).resource
    retired = {"url": "https://fhir-bridge.example.org/StructureDefinition/retired-extension", "valueString": "x"}
    assert not bridge.validator.validate({**team, "extension": [retired]}).valid
    with bridge.repository.unit_of_work() as uow:  # as stored under an older profile
        uow.update({**team, "extension": [retired]})
    later = session(domain("friendships", action("Join the walking group", people.me)),
                    response=ratings(people.rosa, "2024-03-12T10:00:00+00:00"))
    assert expect(post(client, people.rosa, later, auth, if_match=1), 200)["meta"]["versionId"] == "2"
    assert bridge.repository.read("CareTeam", team_id).version_id == 2  # left as it was

def test_a_second_partner_adds_to_the_same_plan(client, auth, vcse, people, ratings):
    first = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    expect(client.post("/fhir/ServiceRequest", json=referral(people.rosa, VCSE), headers=auth), 201)  # the trust refers
    housing = session(domain("accommodation", action("Help write a repairs complaint", organisation(*VCSE),
                                                    due="2024-03-26"), options="Repairs complaint"),
                      team_member({"reference": "RelatedPerson/maya", "display": "Maya Pemberton"}, "carer"),
                      date="2024-03-12T14:00:00Z")
    second = expect(post(client, people.rosa, housing, vcse), 200)
    assert second["id"] == first["id"] and second["meta"]["versionId"] == "2"
    assert [a["detail"]["description"] for a in second["activity"]] == [
        "Phone the landlord about the damp", "Help write a repairs complaint"]
    team = expect(client.get(f"/fhir/{second['careTeam'][0]['reference']}", headers=auth), 200)
    roles = sorted(p["role"][0]["coding"][0]["code"] for p in team["participant"])
    assert roles == ["carer", "key-worker", "partner-organisation", "partner-organisation"]


# -- bad input: 4xx naming the element, nothing stored ---------------------------------------------------
BAD_SESSIONS = {
    "unknown domain": (lambda p, r: session(domain("housing"), key_worker(p.sam), response=r(p.rosa)),
                       422, "code-invalid", "Parameters.parameter[1].part[0].value.ofType(code)"),
    "too many domains": (lambda p, r: session(*(domain(c) for c in ("mental-health", "accommodation", "friendships",
                                                                     "job-situation")), key_worker(p.sam)),
                         422, "business-rule", "Parameters.parameter[3]"),
    "action with no owner": (lambda p, r: session(domain("accommodation", action("Phone")), key_worker(p.sam),
                                                  response=r(p.rosa)),
                             422, "required", "Parameters.parameter[1].part[1].part.where(name = 'owner')"),
    "key worker not a practitioner": (lambda p, r: session(key_worker(p.me), response=r(p.rosa)),
                                      422, "invalid", "Parameters.parameter[1].part[0].value.ofType(Reference)"),
    "due before the session": (lambda p, r: session(domain("accommodation", action("Phone", p.me, due="2024-01-01")),
                                                    key_worker(p.sam), response=r(p.rosa)),
                               422, "business-rule", "Parameters.parameter[1].part[1].part[2].value.ofType(date)"),
    "a session dated in the future": (lambda p, r: session(key_worker(p.sam), date="2999-01-01T10:00:00Z"),
                                      422, "business-rule", "Parameters.parameter[0].value.ofType(dateTime)"),
    "ratings authored in the future": (lambda p, r: session(key_worker(p.sam), response=r(p.rosa, "2999-01-01")),
                                       422, "business-rule", "Parameters.parameter[0].resource.authored"),
    "agreed in the future": (lambda p, r: session(key_worker(p.sam), agreement("person", date="2999-01-01"),
                                                  response=r(p.rosa)),
                             422, "business-rule", "Parameters.parameter[2].part[1].value.ofType(dateTime)"),
    "no key worker for a first plan": (lambda p, r: session(domain("accommodation"), response=r(p.rosa)),
                                       422, "required", "Parameters.parameter.where(name = 'keyWorker')"),
    "unknown key worker without a name": (lambda p, r: session(key_worker({"reference": "Practitioner/nobody"}),
                                                              response=r(p.rosa)),
                                          422, "not-found", "Parameters.parameter[1].part.where(name = 'member')"),
    "a rating that is not a rating": (lambda p, r: session(key_worker(p.sam), response={
        **r(p.rosa), "item": [{"linkId": "mental-health", "answer": [{"valueCoding": {
            "system": "https://fhir-bridge.example.org/CodeSystem/dialog-rating", "code": "9"}}]}]}),
        422, "code-invalid", "Parameters.parameter[0].resource.item[0].answer[0].value.ofType(Coding)"),
    "ratings recorded as a PROM": (lambda p, r: session(key_worker(p.sam), response=example(
        "dialog-questionnaire-response/valid-prom-assessment-complete.json") | {"subject": p.me, "source": p.me}),
        422, "business-rule",
        f"Parameters.parameter[0].resource.extension('{PURPOSE}')"),
}


@pytest.mark.parametrize("case", BAD_SESSIONS, ids=list(BAD_SESSIONS))
def test_bad_sessions_name_the_element_and_store_nothing(client, auth, bridge, people, ratings, case):
    build, status, code, expression = BAD_SESSIONS[case]
    before = stored_counts(bridge)
    outcome = expect(post(client, people.rosa, build(people, ratings), auth), status)
    assert (code, [expression]) in [(i["code"], i.get("expression")) for i in outcome["issue"]], outcome
    assert stored_counts(bridge) == before


def test_a_review_of_an_action_that_does_not_exist_stores_nothing(client, auth, bridge, people, ratings):
    expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    before = stored_counts(bridge)
    bad = session(domain("friendships", action("Call Ola", people.me)), review("action-000000000000", "done"),
                  response=ratings(people.rosa, "2024-04-01T10:00:00+00:00"))
    outcome = expect(post(client, people.rosa, bad, auth, if_match=1), 422)
    assert outcome["issue"][0]["code"] == "not-found"
    assert outcome["issue"][0]["expression"] == ["Parameters.parameter[2].part.where(name = 'action')"]
    assert stored_counts(bridge) == before  # not the new ratings, goal or action either


def test_an_unknown_or_deleted_person_is_404_or_410(client, auth, people, ratings):
    assert issue_codes(expect(post(client, "nobody", first_session(people, ratings), auth), 404)) == ["not-found"]
    expect(client.delete(f"/fhir/Patient/{people.rosa}", headers=auth), 200)
    expect(post(client, people.rosa, first_session(people, ratings), auth), 410)


def test_a_session_for_a_person_merged_away_goes_to_the_survivors_plan(client, auth, bridge, people, ratings,
                                                                       make_patient):
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    with bridge.repository.unit_of_work() as uow:  # as pipelines/patient_merge.py leaves a merged record
        uow.create({**make_patient(2), "id": "old-record", "active": False,
                    "link": [{"other": {"reference": f"Patient/{people.rosa}"}, "type": "replaced-by"}]})
    later = session(domain("friendships", action("Call Ola", people.me)), date="2024-03-01T10:00:00Z")
    merged = expect(post(client, "old-record", later, auth), 200)
    assert merged["id"] == plan["id"] and len(merged["activity"]) == 2
    # A client that knows only the old record names it in the body too: the survivor is meant there.
    old = {"reference": "Patient/old-record"}
    again = session(domain("practical-help", action("Open a bank account", old)), date="2024-03-08T10:00:00Z",
                    response=ratings("old-record", "2024-03-08T10:00:00Z"))
    merged = expect(post(client, "old-record", again, auth), 200)
    assert merged["activity"][-1]["detail"]["performer"][0]["reference"] == f"Patient/{people.rosa}"
    response = merged["supportingInfo"][-1]["reference"]
    assert expect(client.get(f"/fhir/{response}", headers=auth), 200)["subject"] == {"reference": f"Patient/{people.rosa}"}


def test_a_body_that_is_not_parameters_is_a_400(client, auth, people, make_care_plan):
    expect(client.post(f"/fhir/Patient/{people.rosa}/$dialog-plus-session", json=make_care_plan(), headers=auth), 400)


def test_a_session_needs_every_write_it_makes(client, token_for, people, ratings):
    plan_only = token_for("system/CarePlan.write", "system/Patient.read")
    expect(post(client, people.rosa, first_session(people, ratings), plan_only), 403)


# -- one open plan per person -------------------------------------------------------------------------------
def test_a_second_plan_is_refused_with_a_pointer_to_the_first(client, auth, people, ratings, make_care_plan,
                                                              make_patient):
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    outcome = expect(client.post("/fhir/CarePlan", json=make_care_plan(f"Patient/{people.rosa}"), headers=auth), 409)
    assert issue_codes(outcome) == ["duplicate"] and f"CarePlan/{plan['id']}" in outcome["issue"][0]["diagnostics"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": make_care_plan(f"Patient/{people.rosa}"), "request": {"method": "POST", "url": "CarePlan"}}]}
    expect(client.post("/fhir", json=bundle, headers=auth), 409)
    crisis = make_care_plan(f"Patient/{people.rosa}", category="12")
    crisis["partOf"] = [{"reference": f"CarePlan/{plan['id']}"}]
    expect(client.post("/fhir/CarePlan", json=crisis, headers=auth), 201)  # a crisis plan is part of it, not a second
    # One open crisis plan per plan, and part of the person's own plan
    second = expect(client.post("/fhir/CarePlan", json=crisis, headers=auth), 409)
    assert issue_codes(second) == ["duplicate"] and second["issue"][0]["expression"] == ["CarePlan.partOf[0]"]
    orphan = make_care_plan(f"Patient/{people.rosa}", category="12")  # part of no plan: the profile says no
    del orphan["partOf"]
    assert "partOf" in expect(client.post("/fhir/CarePlan", json=orphan, headers=auth), 422)["issue"][0]["diagnostics"]
    twice = {**orphan, "partOf": [{"reference": f"CarePlan/{plan['id']}"}, {"reference": "CarePlan/other"}]}
    refused = expect(client.post("/fhir/CarePlan", json=twice, headers=auth), 422)  # part of two: which?
    assert refused["issue"][0]["expression"] == ["CarePlan.partOf"]
    theo = expect(client.post("/fhir/Patient", json=make_patient(2, given="Theo"), headers=auth), 201)["id"]
    for part_of in ("CarePlan/nowhere", f"CarePlan/{plan['id']}"):
        stray = {**make_care_plan(f"Patient/{theo}", category="12"), "partOf": [{"reference": part_of}]}
        refused = expect(client.post("/fhir/CarePlan", json=stray, headers=auth), 422)
        assert refused["issue"][0]["expression"] == ["CarePlan.partOf[0]"]
    theirs = {**make_care_plan(f"Patient/{theo}", status="completed"), "careTeam": plan["careTeam"]}
    refused = expect(client.post("/fhir/CarePlan", json=theirs, headers=auth), 422)  # Rosa's team on Theo's plan
    assert refused["issue"][0]["expression"] == ["CarePlan.careTeam[0]"]
    assert match_ids(expect(client.get("/fhir/CarePlan", params={"subject": f"Patient/{people.rosa}", "category": "10"},
                                       headers=auth), 200)) == [plan["id"]]


def test_a_closed_plan_makes_way_for_a_new_one(client, auth, people, ratings):
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    closed = {**plan, "status": "completed"}
    expect(client.put(f"/fhir/CarePlan/{plan['id']}", json=closed, headers={**auth, "If-Match": 'W/"1"'}), 200)
    later = session(domain("friendships", action("Call Ola", people.me)), key_worker(people.alex),
                    date="2025-01-10T10:00:00Z")
    assert expect(post(client, people.rosa, later, auth), 200)["id"] != plan["id"]


def test_a_person_with_two_open_plans_is_asked_to_close_one(client, auth, bridge, people, ratings, make_care_plan):
    with bridge.repository.unit_of_work() as uow:  # data from before the rule: written under it
        for n in (1, 2):
            uow.create({**make_care_plan(f"Patient/{people.rosa}"), "id": f"legacy-{n}"})
    outcome = expect(post(client, people.rosa, first_session(people, ratings), auth), 409)
    assert "CarePlan/legacy-1" in outcome["issue"][0]["diagnostics"]


# -- the narrative follows the plan's team and goals -------------------------------------------------------
def test_a_plain_write_of_the_team_or_a_goal_makes_the_plans_narrative_again(client, auth, bridge, people, ratings):
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    team_ref, goal_ref = plan["careTeam"][0]["reference"], plan["goal"][0]["reference"]
    assert "Key worker: Sam Adeyemi" in plan["text"]["div"] and "A dry flat near my sister" in plan["text"]["div"]

    team = expect(client.get(f"/fhir/{team_ref}", headers=auth), 200)
    for participant in team["participant"]:
        if participant["member"].get("reference") == people.sam["reference"]:
            participant["period"]["end"] = "2024-04-01"
    team["participant"].append({**team["participant"][0], "member": {**people.alex, "display": "Alex Moran"},
                                "period": {"start": "2024-04-01"}})
    expect(client.put(f"/fhir/{team_ref}", json=team, headers=auth), 200)
    again = expect(client.get(f"/fhir/CarePlan/{plan['id']}", headers=auth), 200)
    assert again["meta"]["versionId"] == "2"
    assert "Key worker: Alex Moran (since 1 April 2024)" in again["text"]["div"] and "Sam" not in again["text"]["div"]
    provenance = expect(client.get("/fhir/Provenance", params={"target": team_ref}, headers=auth), 200)
    targets = [{t["reference"] for t in e["resource"]["target"]} for e in provenance["entry"]]
    assert {f"{team_ref}/_history/2", f"CarePlan/{plan['id']}/_history/2"} in targets  # the PUT's names both

    goal = expect(client.get(f"/fhir/{goal_ref}", headers=auth), 200)
    goal["description"]["text"] = "A dry flat of my own"
    expect(client.put(f"/fhir/{goal_ref}", json=goal, headers=auth), 200)
    again = expect(client.get(f"/fhir/CarePlan/{plan['id']}", headers=auth), 200)
    assert again["meta"]["versionId"] == "3" and "A dry flat of my own" in again["text"]["div"]

    expect(client.put(f"/fhir/{goal_ref}", json=goal, headers=auth), 200)  # the same again: nothing to make
    expect(client.delete(f"/fhir/{goal_ref}", headers=auth), 200)
    again = expect(client.get(f"/fhir/CarePlan/{plan['id']}", headers=auth), 200)
    assert again["meta"]["versionId"] == "4" and "A dry flat" not in again["text"]["div"]


def test_a_closed_plan_keeps_the_narrative_it_was_closed_with(client, auth, people, ratings):
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    closed = expect(client.put(f"/fhir/CarePlan/{plan['id']}", json={**plan, "status": "completed"},
                               headers={**auth, "If-Match": 'W/"1"'}), 200)
    goal_ref = plan["goal"][0]["reference"]
    goal = expect(client.get(f"/fhir/{goal_ref}", headers=auth), 200)
    expect(client.put(f"/fhir/{goal_ref}", json={**goal, "lifecycleStatus": "completed"}, headers=auth), 200)
    after = expect(client.get(f"/fhir/CarePlan/{plan['id']}", headers=auth), 200)
    assert after["meta"]["versionId"] == "2" and after["text"] == closed["text"]


# -- no lost updates -------------------------------------------------------------------------------------------
def test_a_plain_update_of_a_shared_plan_needs_if_match(client, auth, people, ratings):
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    edited = {**plan, "title": "Rosa's plan", "text": {"status": "generated",
                                                       "div": '<div xmlns="http://www.w3.org/1999/xhtml">old</div>'}}
    outcome = expect(client.put(f"/fhir/CarePlan/{plan['id']}", json=edited, headers=auth), 428)
    assert issue_codes(outcome) == ["business-rule"]
    patch = [{"op": "replace", "path": "/title", "value": "x"}]
    expect(client.patch(f"/fhir/CarePlan/{plan['id']}", json=patch,
                        headers={**auth, "Content-Type": "application/json-patch+json"}), 428)
    expect(client.put(f"/fhir/CarePlan/{plan['id']}", json=edited, headers={**auth, "If-Match": 'W/"7"'}), 412)
    updated = expect(client.put(f"/fhir/CarePlan/{plan['id']}", json=edited, headers={**auth, "If-Match": 'W/"1"'}), 200)
    assert updated["meta"]["versionId"] == "2"
    assert "<h2>Rosa's plan</h2>" in updated["text"]["div"] and ">old<" not in updated["text"]["div"]


def test_two_partners_reviewing_one_action_the_second_gets_412_and_the_version(client, auth, vcse, people, ratings):
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    action_id = plan["activity"][0]["id"]
    expect(client.post("/fhir/ServiceRequest", json=referral(people.rosa, VCSE), headers=auth), 201)
    done = session(review(action_id, "done"), date="2024-03-01T10:00:00Z")
    expect(post(client, people.rosa, done, auth, if_match=1), 200)
    dropped = session(review(action_id, "dropped", "Moved out"), date="2024-03-02T10:00:00Z")
    response = post(client, people.rosa, dropped, vcse, if_match=1)
    outcome = expect(response, 412)
    assert response.headers["ETag"] == 'W/"2"' and issue_codes(outcome) == ["conflict"]
    assert action_id in outcome["issue"][0]["diagnostics"]
    again = session(review(action_id, "in-progress", "Landlord came, damp is back"), date="2024-03-02T10:00:00Z")
    assert expect(post(client, people.rosa, again, vcse, if_match=2), 200)["activity"][0]["detail"]["status"] == \
        "in-progress"
    assert expect(client.get(f"/fhir/CarePlan/{plan['id']}", headers=auth), 200)["meta"]["versionId"] == "3"


def test_a_review_needs_the_version_it_was_made_from(client, auth, people, ratings):
    plan = expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    outcome = expect(post(client, people.rosa, session(review(plan["activity"][0]["id"], "done")), auth), 428)
    assert outcome["issue"][0]["expression"] == ["Parameters.parameter.where(name = 'review')"]


def test_a_write_that_loses_the_race_is_merged_again(client, auth, people, ratings, monkeypatch):
    expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    real, calls = ResourceService.put_checked, []

    def stale_once(self, writes, caller, *, uow):
        calls.append(1)
        if len(calls) == 1:
            raise PreconditionFailed("CarePlan/x is at version 2")  # as the repository says when someone got in first
        return real(self, writes, caller, uow=uow)

    monkeypatch.setattr(ResourceService, "put_checked", stale_once)
    more = session(domain("friendships", action("Call Ola", people.me)), date="2024-03-01T10:00:00Z")
    assert expect(post(client, people.rosa, more, auth), 200)["meta"]["versionId"] == "2"
    assert len(calls) == 2


def test_sessions_run_one_at_a_time_in_a_server_process(client, auth, bridge, people, ratings, monkeypatch):
    """Concurrent sessions queue for the one session thread (they would only trade the GIL and wait
    for the one writer); reads meanwhile still have the thread pool."""
    expect(post(client, people.rosa, first_session(people, ratings), auth), 200)
    real, running, most = bridge.careplans.record, [0], [0]

    def slow_record(*args, **kwargs):
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            time.sleep(0.05)  # long enough for the others to arrive
            return real(*args, **kwargs)
        finally:
            running[0] -= 1

    monkeypatch.setattr(bridge.careplans, "record", slow_record)
    sessions = [session(domain("friendships", action(f"Call friend {n}", people.me)), date=f"2024-03-0{n + 1}T10:00:00Z")
                for n in range(5)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda s: post(client, people.rosa, s, auth).status_code, sessions))
        assert client.get(f"/fhir/Patient/{people.rosa}", headers=auth).status_code == 200
    assert answers == [200] * 5 and most[0] == 1


# -- the page -----------------------------------------------------------------------------------------------
def test_the_plan_reads_as_a_page_a_person_can_be_handed(client, auth, people, ratings):
    hostile = session(domain("accommodation", action('<script>alert("x")</script> call', people.me),
                             understanding="<b>damp</b> & cold"), key_worker(people.sam), response=ratings(people.rosa))
    plan = expect(post(client, people.rosa, hostile, auth), 200)
    assert "&lt;script&gt;" in plan["text"]["div"]
    for response in (client.get(f"/fhir/CarePlan/{plan['id']}", params={"_format": "html"}, headers=auth),
                     client.get(f"/fhir/CarePlan/{plan['id']}", headers={**auth, "Accept": "text/html,*/*;q=0.8"}),
                     client.get(f"/fhir/CarePlan/{plan['id']}/$render", headers=auth)):
        assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert "<script" not in response.text and "&lt;script&gt;" in response.text
        assert "Key worker: Sam Adeyemi" in response.text and "&lt;b&gt;damp&lt;/b&gt; &amp; cold" in response.text
    binary = expect(client.get(f"/fhir/CarePlan/{plan['id']}/$render", params={"_format": "json"}, headers=auth), 200)
    assert binary["resourceType"] == "Binary" and "Sam Adeyemi" in base64.b64decode(binary["data"]).decode()
    assert expect(client.get(f"/fhir/CarePlan/{plan['id']}", headers={**auth, "Accept": "application/fhir+json"}),
                  200)["resourceType"] == "CarePlan"
    expect(client.get(f"/fhir/Patient/{people.rosa}", params={"_format": "html"}, headers=auth), 406)
    expect(client.get("/fhir/CarePlan/nothing", params={"_format": "html"}, headers=auth), 404)
    expect(client.get(f"/fhir/CarePlan/{plan['id']}", params={"_format": "html"}), 401)


def test_the_operations_are_listed_and_their_definitions_resolve(client, auth):
    statement = expect(client.get("/fhir/metadata"), 200)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"name": "dialog-plus-session",
            "definition": "https://fhir-bridge.example.org/OperationDefinition/dialog-plus-session"} in \
        resources["Patient"]["operation"]
    assert "render" in [op["name"] for op in resources["CarePlan"]["operation"]]
    assert "https://fhir-bridge.example.org/StructureDefinition/dialog-plus-careteam" in \
        resources["CareTeam"]["supportedProfile"]
    definition = expect(client.get("/fhir/OperationDefinition/dialog-plus-session", headers=auth), 200)
    assert definition["code"] == "dialog-plus-session" and definition["instance"] is True
    found = expect(client.get("/fhir/OperationDefinition", params={"url": definition["url"]}, headers=auth), 200)
    assert found["total"] == 1
    expect(client.get("/fhir/OperationDefinition/nothing", headers=auth), 404)
