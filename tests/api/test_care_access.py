"""Access by care relationship: a partner sees and changes a person's records only while it holds
their record, is on their care team, or has a referral, episode of care or consent naming it.
Anyone else gets 403 on reads, writes and operations, and searches, history and includes leave
those people out, counts too."""
from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import quote

import pytest

from fhir_bridge.api.app import create_app
from tests.api.conftest import NHS_NUMBER, PARTNER, PARTNER_NAME, nhs_number
from tests.api.helpers import OutcomeCheckingClient, expect, issue_codes, match_ids
from tests.careplan.sessions import action, consent, domain, key_worker, organisation, referral, session, team_member

VCSE = ("X9V2K", "Example Community Wellbeing")
COUNCIL = ("LA123", "Example Borough Council")


@pytest.fixture
def partners(token_for):
    return SimpleNamespace(trust=token_for("system/*.*", partner=PARTNER, name=PARTNER_NAME),
                           vcse=token_for("system/*.*", partner=VCSE[0], name=VCSE[1]),
                           council=token_for("system/*.*", partner=COUNCIL[0], name=COUNCIL[1]))


@pytest.fixture
def rosa(client, partners, make_patient, care_planning_response):
    """Rosa, registered by the trust (which so holds her record), with a DIALOG+ plan."""
    patient = expect(client.post("/fhir/Patient", json=make_patient(1), headers=partners.trust), 201)
    sam = expect(client.post("/fhir/Practitioner", json={"resourceType": "Practitioner", "name": [
        {"given": ["Sam"], "family": "Adeyemi"}]}, headers=partners.trust), 201)
    me = {"reference": f"Patient/{patient['id']}"}
    ratings = {**care_planning_response, "subject": me, "source": me, "authored": "2024-02-20T11:00:00+00:00"}
    plan = record(client, patient["id"], session(domain("accommodation", action("Phone the landlord", me)),
                                                 key_worker({"reference": f"Practitioner/{sam['id']}"}),
                                                 response=ratings), partners.trust)
    return SimpleNamespace(id=patient["id"], patient=patient, plan=plan, me=me, team=plan["careTeam"][0]["reference"],
                           response=plan["supportingInfo"][0]["reference"])


def record(client, patient_id: str, parameters: dict, headers: dict, status: int = 200):
    return expect(client.post(f"/fhir/Patient/{patient_id}/$dialog-plus-session", json=parameters, headers=headers),
                  status)


def reads(client, rosa, headers) -> dict[str, int]:
    """The status of every way of reading Rosa's records."""
    plan = f"/fhir/CarePlan/{rosa.plan['id']}"
    paths = {"read plan": plan, "vread plan": f"{plan}/_history/1", "plan history": f"{plan}/_history",
             "read person": f"/fhir/Patient/{rosa.id}", "read team": f"/fhir/{rosa.team}",
             "read ratings": f"/fhir/{rosa.response}", "plan page": f"{plan}?_format=html",
             "render": f"{plan}/$render", "extract": f"/fhir/{rosa.response}/$extract"}
    return {name: client.get(path, headers=headers).status_code for name, path in paths.items()}


# -- who sees -------------------------------------------------------------------------------------------------
def test_a_partner_without_a_relationship_gets_403_on_every_read_and_operation(client, partners, rosa):
    assert set(reads(client, rosa, partners.vcse).values()) == {403}
    outcome = expect(client.get(f"/fhir/Patient/{rosa.id}", headers=partners.vcse), 403)
    assert issue_codes(outcome) == ["forbidden"] and "care team" in outcome["issue"][0]["diagnostics"]
    more = session(domain("friendships", action("Call Ola", rosa.me)), date="2024-03-01T10:00:00Z")
    record(client, rosa.id, more, partners.vcse, 403)
    validate = client.post(f"/fhir/CarePlan/{rosa.plan['id']}/$validate", headers=partners.vcse)
    expect(validate, 403)


def test_the_trust_that_holds_the_record_sees_everything_of_it(client, partners, rosa):
    assert rosa.patient["managingOrganization"]["identifier"]["value"] == PARTNER  # registering made it custodian
    assert set(reads(client, rosa, partners.trust).values()) == {200}


def test_the_trust_adding_a_partner_to_the_care_team_grants_it(client, partners, rosa):
    expect(client.get(f"/fhir/CarePlan/{rosa.plan['id']}", headers=partners.vcse), 403)
    join = session(team_member(organisation(*VCSE), "vcse-worker"), date="2024-03-01T10:00:00Z")
    record(client, rosa.id, join, partners.trust)
    assert set(reads(client, rosa, partners.vcse).values()) == {200}
    more = session(domain("accommodation", action("Help with a repairs complaint", organisation(*VCSE))),
                   date="2024-03-12T14:00:00Z")
    assert len(record(client, rosa.id, more, partners.vcse)["activity"]) == 2
    assert set(reads(client, rosa, partners.council).values()) == {403}  # nobody else


def test_a_partner_cannot_add_itself_to_a_team_it_is_not_on(client, partners, rosa):
    team = expect(client.get(f"/fhir/{rosa.team}", headers=partners.trust), 200)
    role = {"coding": [{"system": "https://fhir-bridge.example.org/CodeSystem/careteam-role", "code": "vcse-worker"}]}
    team["participant"].append({"role": [role], "member": organisation(*VCSE), "period": {"start": "2024-03-01"}})
    expect(client.put(f"/fhir/{rosa.team}", json=team, headers=partners.vcse), 403)
    expect(client.post("/fhir/ServiceRequest", json=referral(rosa.id, VCSE), headers=partners.vcse), 403)
    expect(client.post("/fhir/Consent", json=consent(rosa.id, VCSE), headers=partners.vcse), 403)
    expect(client.put(f"/fhir/{rosa.team}", json=team, headers=partners.trust), 200)  # the trust may
    expect(client.get(f"/fhir/{rosa.team}", headers=partners.vcse), 200)


@pytest.mark.parametrize("grant", ["referral", "consent", "episode"])
def test_a_referral_consent_or_episode_of_care_grants_access_while_it_lasts(client, partners, rosa, grant):
    record_of = {"referral": referral(rosa.id, VCSE), "consent": consent(rosa.id, VCSE),
                 "episode": {"resourceType": "EpisodeOfCare", "status": "active", "patient": rosa.me,
                             "managingOrganization": organisation(*VCSE), "period": {"start": "2024-03-01"}}}[grant]
    stored = expect(client.post(f"/fhir/{record_of['resourceType']}", json=record_of, headers=partners.trust), 201)
    assert set(reads(client, rosa, partners.vcse).values()) == {200}
    ended = {"referral": {"status": "completed"}, "consent": {"status": "inactive"},
             "episode": {"status": "finished", "period": {"start": "2024-03-01", "end": "2024-06-01"}}}[grant]
    expect(client.put(f"/fhir/{stored['resourceType']}/{stored['id']}", json={**stored, **ended},
                      headers=partners.trust), 200)
    assert set(reads(client, rosa, partners.vcse).values()) == {403}


def test_a_consent_that_has_expired_grants_nothing(client, partners, rosa):
    expect(client.post("/fhir/Consent", json=consent(rosa.id, VCSE, end="2024-12-31"), headers=partners.trust), 201)
    expect(client.get(f"/fhir/Patient/{rosa.id}", headers=partners.vcse), 403)


# -- searches leave other people out, counts too --------------------------------------------------------------
def test_searches_history_and_includes_leave_other_people_out(client, partners, rosa, make_patient):
    theo = expect(client.post("/fhir/Patient", json=make_patient(2, given="Theo"), headers=partners.vcse), 201)
    for headers, mine, other in ((partners.vcse, theo["id"], rosa.id), (partners.trust, rosa.id, theo["id"])):
        found = expect(client.get("/fhir/Patient", headers=headers), 200)
        assert match_ids(found) == [mine] and found["total"] == 1
        by_nhs = "identifier=" + quote(f"{NHS_NUMBER}|{nhs_number(1 if other == rosa.id else 2)}")
        assert expect(client.get(f"/fhir/Patient?{by_nhs}", headers=headers), 200)["total"] == 0
        assert expect(client.get("/fhir/Patient", params={"_summary": "count"}, headers=headers), 200)["total"] == 1
    assert expect(client.get("/fhir/CarePlan", headers=partners.vcse), 200)["total"] == 0
    mine = expect(client.get("/fhir/Provenance", headers=partners.trust), 200)["total"]
    others = expect(client.get("/fhir/Provenance", headers=partners.council), 200)
    assert others["total"] == 1 and mine == 3  # the council sees the Practitioner's, not Rosa's
    plans = expect(client.get("/fhir/CarePlan", params={"_include": "CarePlan:subject",
                                                        "_revinclude": "Provenance:target"}, headers=partners.trust), 200)
    assert {e["resource"]["resourceType"] for e in plans["entry"]} == {"CarePlan", "Patient", "Provenance"}
    for kind in ("/fhir/_history", "/fhir/Patient/_history", "/fhir/CarePlan/_history"):
        entries = expect(client.get(kind, params={"_count": 1000}, headers=partners.vcse), 200).get("entry", [])
        assert all(rosa.id not in str(e.get("resource", {})) for e in entries), kind
    history = expect(client.get("/fhir/Patient/_history", headers=partners.vcse), 200)
    assert history["total"] == 1 and history["entry"][0]["resource"]["id"] == theo["id"]
    # A Practitioner is about nobody: every partner sees the directory.
    assert expect(client.get("/fhir/Practitioner", headers=partners.council), 200)["total"] == 1


def test_an_include_of_someone_else_is_left_out(client, partners, rosa, make_patient):
    # The council holds a resource pointing at Rosa's team (its own record of a meeting): it may not
    # see the team through _include.
    expect(client.post("/fhir/ServiceRequest", json=referral(rosa.id, COUNCIL), headers=partners.trust), 201)
    found = expect(client.get("/fhir/CarePlan", params={"_include": "CarePlan:care-team"}, headers=partners.council),
                   200)
    assert found["total"] == 1 and len(found["entry"]) == 2
    expect(client.put(f"/fhir/ServiceRequest/{match_ids(expect(client.get('/fhir/ServiceRequest', headers=partners.trust), 200))[0]}",
                      json={**expect(client.get("/fhir/ServiceRequest", headers=partners.trust), 200)["entry"][0]["resource"],
                            "status": "revoked"}, headers=partners.trust), 200)
    assert expect(client.get("/fhir/CarePlan", params={"_include": "CarePlan:care-team"}, headers=partners.council),
                  200)["total"] == 0


# -- writes -------------------------------------------------------------------------------------------------------
def test_writes_about_someone_else_are_refused(client, partners, rosa, make_response):
    expect(client.post("/fhir/QuestionnaireResponse", json=make_response(f"Patient/{rosa.id}"), headers=partners.vcse), 403)
    expect(client.delete(f"/fhir/{rosa.response}", headers=partners.vcse), 403)
    patient = {**rosa.patient, "gender": "male"}
    expect(client.put(f"/fhir/Patient/{rosa.id}", json=patient, headers=partners.vcse), 403)
    patch = [{"op": "replace", "path": "/gender", "value": "male"}]
    expect(client.patch(f"/fhir/Patient/{rosa.id}", json=patch,
                        headers={**partners.vcse, "Content-Type": "application/json-patch+json"}), 403)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": make_response(f"Patient/{rosa.id}"), "request": {"method": "POST", "url": "QuestionnaireResponse"}}]}
    expect(client.post("/fhir", json=bundle, headers=partners.vcse), 403)
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{rosa.id}"}},
        {"request": {"method": "GET", "url": f"Patient?_id={rosa.id}"}}]}
    answer = expect(client.post("/fhir", json=batch, headers=partners.vcse), 200)
    assert answer["entry"][0]["response"]["status"].startswith("403")
    assert answer["entry"][1]["resource"]["total"] == 0


def test_a_conditional_create_does_not_hand_over_someone_elses_record(client, partners, rosa, make_patient):
    condition = {"If-None-Exist": "identifier=" + quote(f"{NHS_NUMBER}|{nhs_number(1)}")}
    expect(client.post("/fhir/Patient", json=make_patient(1), headers={**partners.vcse, **condition}), 403)


def test_only_the_custodian_hands_the_record_on_and_leaving_it_out_keeps_it(client, partners, rosa):
    expect(client.post("/fhir/ServiceRequest", json=referral(rosa.id, VCSE), headers=partners.trust), 201)
    taken = {**rosa.patient, "managingOrganization": organisation(*VCSE)}
    outcome = expect(client.put(f"/fhir/Patient/{rosa.id}", json=taken, headers=partners.vcse), 403)
    assert outcome["issue"][0]["expression"] == ["Patient.managingOrganization"]
    without = {k: v for k, v in rosa.patient.items() if k != "managingOrganization"} | {"gender": "female"}
    kept = expect(client.put(f"/fhir/Patient/{rosa.id}", json=without, headers=partners.vcse), 200)
    assert kept["managingOrganization"] == rosa.patient["managingOrganization"]
    expect(client.put(f"/fhir/Patient/{rosa.id}", json=taken, headers=partners.trust), 200)  # the trust may


def test_a_reference_by_identifier_alone_is_closed_to_partners(client, partners, auth, make_response):
    response = make_response()
    response["subject"] = response["source"] = {"type": "Patient", "identifier": {"system": NHS_NUMBER,
                                                                                  "value": nhs_number(9)}}
    stored = expect(client.post("/fhir/QuestionnaireResponse", json=response, headers=auth), 201)
    expect(client.get(f"/fhir/QuestionnaireResponse/{stored['id']}", headers=partners.trust), 403)
    expect(client.get(f"/fhir/QuestionnaireResponse/{stored['id']}", headers=auth), 200)


# -- tokens that see everyone ----------------------------------------------------------------------------------------
def test_operators_and_the_open_development_server_see_everyone(client, auth, bridge, partners, rosa):
    assert set(reads(client, rosa, auth).values()) == {200}
    with OutcomeCheckingClient(create_app(bridge, tokens=None)) as open_client:
        expect(open_client.get(f"/fhir/CarePlan/{rosa.plan['id']}"), 200)
