"""A person's journey, as partners record it: a trust assessment, a VCSE session three weeks later
adding housing actions, a review that closes some actions, a change of key worker. The person
ends with one plan whose history tells the story, version by version."""
from __future__ import annotations

from tests.api.helpers import expect, match_ids
from tests.careplan.sessions import (action, agreement, crisis, domain, key_worker, organisation, referral, review,
                                     session, team_member)

TRUST, VCSE = ("RV3", "East London NHS Foundation Trust"), ("X9V2K", "Example Community Wellbeing")
PLAN_TYPE = "https://fhir-bridge.example.org/CodeSystem/mhsds-care-plan-type|10"


def test_one_plan_whose_history_tells_the_story(client, token_for, create, make_patient, care_planning_response):
    trust = {**token_for("system/*.*", partner=TRUST[0], name=TRUST[1]), "X-User": "sam.adeyemi"}
    vcse = {**token_for("system/*.*", partner=VCSE[0], name=VCSE[1]), "X-User": "jo.lindqvist"}
    rosa = create(make_patient(7))["id"]
    me = {"reference": f"Patient/{rosa}"}
    sam = {"reference": "Practitioner/" + create({"resourceType": "Practitioner", "name": [
        {"given": ["Sam"], "family": "Adeyemi"}]})["id"]}
    alex = {"reference": "Practitioner/" + create({"resourceType": "Practitioner", "name": [
        {"given": ["Alex"], "family": "Moran"}]})["id"]}
    maya = {"reference": "RelatedPerson/" + create({"resourceType": "RelatedPerson", "patient": me, "name": [
        {"given": ["Maya"], "family": "Pemberton"}]})["id"]}

    def ratings(authored: str) -> dict:
        return {**care_planning_response, "authored": authored, "subject": me, "source": me}

    def record(parameters: dict, headers: dict, version: int | None = None) -> dict:
        extra = {"If-Match": f'W/"{version}"'} if version else {}
        return expect(client.post(f"/fhir/Patient/{rosa}/$dialog-plus-session", json=parameters,
                                  headers={**headers, **extra}), 200)

    # 1. The trust's assessment: the plan is made, with Sam as key worker and Rosa's sister as carer.
    assessment = record(session(
        domain("mental-health", action("Book a medication review with the psychiatrist", sam, due="2024-03-05"),
               understanding="Sleeping badly since the winter", best_case="Sleeping through most nights"),
        domain("accommodation", action("Phone the landlord about the damp", me, due="2024-03-01"),
               understanding="The bedroom is damp", best_case="A dry flat near my sister",
               smallest_step="The bedroom is dry"),
        key_worker(sam, "2024-02-20"), team_member(maya, "carer"), agreement("person", "carer", "professional"),
        response=ratings("2024-02-20T11:00:00+00:00")), trust)
    plan_id = assessment["id"]
    medication, landlord = (a["id"] for a in assessment["activity"])

    # 2. The trust refers Rosa to the VCSE partner (before that it cannot see her plan); three weeks
    #    later the VCSE adds housing actions to the same plan, and so joins her care team.
    expect(client.get(f"/fhir/CarePlan/{plan_id}", headers=vcse), 403)
    expect(client.post("/fhir/ServiceRequest", json=referral(rosa, VCSE), headers=trust), 201)
    housing = record(session(
        domain("accommodation", action("Help Rosa write a repairs complaint", organisation(*VCSE), due="2024-03-26"),
               action("Apply to the council's housing register", me, due="2024-04-30"),
               options="A repairs complaint; the council's housing options team"),
        response=ratings("2024-03-12T14:00:00+00:00")), vcse)
    complaint = housing["activity"][2]["id"]

    # 3. The review at the next trust meeting, from the version the key worker read.
    reviewed = record(session(
        review(medication, "done", "New tablets at night"), review(landlord, "dropped", "The landlord never answers"),
        review(complaint, "in-progress"), date="2024-04-02T10:00:00Z"), trust, version=2)

    # 4. Sam moves team; Alex becomes the key worker.
    changed = record(session(key_worker(alex, "2024-04-15"), date="2024-04-15T09:00:00Z"), trust)

    # One plan ...
    plans = expect(client.get("/fhir/CarePlan", params={"subject": f"Patient/{rosa}", "category": PLAN_TYPE},
                              headers=trust), 200)
    assert match_ids(plans) == [plan_id]
    assert [p["meta"]["versionId"] for p in (assessment, housing, reviewed, changed)] == ["1", "2", "3", "4"]
    # ... whose history tells the story, newest first.
    history = expect(client.get(f"/fhir/CarePlan/{plan_id}/_history", headers=trust), 200)
    versions = [e["resource"] for e in reversed(history["entry"])]
    assert history["total"] == 4
    assert [len(v["activity"]) for v in versions] == [2, 4, 4, 4]
    assert [[a["detail"]["status"] for a in v["activity"]] for v in versions] == [
        ["not-started", "not-started"],
        ["not-started", "not-started", "not-started", "not-started"],
        ["completed", "cancelled", "in-progress", "not-started"],
        ["completed", "cancelled", "in-progress", "not-started"]]
    assert [v["author"]["display"] for v in versions] == ["Sam Adeyemi", "Sam Adeyemi", "Sam Adeyemi", "Alex Moran"]
    assert len(versions[1]["supportingInfo"]) == 2  # the trust's and the VCSE's DIALOG ratings
    # Who did what: the Provenance of each version names the partner and the user.
    found = expect(client.get("/fhir/Provenance", params={"target": f"CarePlan/{plan_id}"}, headers=trust), 200)
    by_version = {}
    for provenance in (e["resource"] for e in found["entry"]):
        for target in provenance["target"]:
            if target["reference"].startswith(f"CarePlan/{plan_id}/_history/"):
                by_version[int(target["reference"].rsplit("/", 1)[1])] = (
                    provenance["activity"]["coding"][0]["code"], provenance["agent"][0]["who"]["identifier"]["value"],
                    provenance["agent"][1]["who"]["display"])
    authors = [by_version[n] for n in sorted(by_version)]
    assert authors == [("CREATE", "RV3", "sam.adeyemi"), ("UPDATE", "X9V2K", "jo.lindqvist"),
                       ("UPDATE", "RV3", "sam.adeyemi"), ("UPDATE", "RV3", "sam.adeyemi")]

    # The key worker change is kept in the team and in its history.
    team_id = changed["careTeam"][0]["reference"]
    team_history = expect(client.get(f"/fhir/{team_id}/_history", headers=trust), 200)
    key_workers = [[(p["member"]["display"], p["period"]) for p in e["resource"]["participant"]
                    if p["role"][0]["coding"][0]["code"] == "key-worker"] for e in reversed(team_history["entry"])]
    assert key_workers[0] == [("Sam Adeyemi", {"start": "2024-02-20"})]
    assert key_workers[-1] == [("Sam Adeyemi", {"start": "2024-02-20", "end": "2024-04-15"}),
                               ("Alex Moran", {"start": "2024-04-15"})]

    # The goal keeps each session's notes; the plan reads in plain English.
    goal = expect(client.get(f"/fhir/{changed['goal'][1]['reference']}", headers=trust), 200)
    assert [n["extension"][0]["valueCoding"]["code"] for n in goal["note"]] == [
        "understanding", "looking-forward", "agreed-actions", "options", "agreed-actions"]
    div = changed["text"]["div"]
    assert "Key worker: Alex Moran (since 15 April 2024)." in div
    assert "Agreed by Rosa Pemberton, a carer and a professional on 20 February 2024." in div
    assert "Phone the landlord about the damp by 1 March 2024 (dropped)" in div
    page = client.get(f"/fhir/CarePlan/{plan_id}", params={"_format": "html"}, headers=trust)
    assert "Key workers before: Sam Adeyemi (until 15 April 2024)" in page.text
    assert "Maya Pemberton (carer)" in page.text and "The landlord never answers" in page.text


def test_a_crisis_plan_and_a_merge_of_two_records_leave_one_plan(client, bridge, validator, token_for):
    """The trust's feed registered Ada twice (ADT^A28); each record got its own plan, one with a crisis
    plan; then ADT^A40 merges them. Ada ends with one plan: the survivor's, which took over the other's
    open actions and crisis plan; the other is revoked and says where it went."""
    from fhir_bridge.mapping import MappingEngine, load_mappings
    from fhir_bridge.pipelines.ingest import Ingest
    from fhir_bridge.pipelines.resources import Caller
    from fhir_bridge.pipelines.source_hl7 import Hl7Source
    from tests.conftest import REPO
    from tests.pipelines.test_patient_merge import DUPLICATE_PID, LOCAL, SURVIVOR_PID, a40, adt

    engine = MappingEngine(load_mappings(REPO / "mappings", validator.terminology), validator.terminology)
    source = Hl7Source(engine, "RAT", bridge)
    feed = Ingest(bridge, source.name, source.map, Caller("RAT", "Example Trust"))

    def send(text: str) -> str:
        return feed.one(source.record(f"mllp:{text.split('|', 10)[9]}", text))

    assert send(adt("A1", SURVIVOR_PID)) == send(adt("A2", DUPLICATE_PID)) == "created"
    trust = {**token_for("system/*.*", partner="RAT", name="Example Trust"), "X-User": "sam.adeyemi"}
    ada, duplicate = (match_ids(expect(client.get("/fhir/Patient", params={"identifier": i}, headers=trust), 200))[0]
                      for i in ("https://fhir.nhs.uk/Id/nhs-number|9434765919", f"{LOCAL}|8000042"))
    sam = {"reference": "Practitioner/" + expect(client.post("/fhir/Practitioner", json={
        "resourceType": "Practitioner", "name": [{"given": ["Sam"], "family": "Adeyemi"}]}, headers=trust), 201)["id"]}

    def record(patient_id: str, parameters: dict, version: int | None = None) -> dict:
        extra = {"If-Match": f'W/"{version}"'} if version else {}
        return expect(client.post(f"/fhir/Patient/{patient_id}/$dialog-plus-session", json=parameters,
                                  headers={**trust, **extra}), 200)

    me, dup = {"reference": f"Patient/{ada}"}, {"reference": f"Patient/{duplicate}"}
    kept = record(ada, session(domain("mental-health", action("Book a medication review", sam)), key_worker(sam),
                               date="2025-01-10T10:00:00Z"))
    other = record(duplicate, session(
        domain("accommodation", action("Phone the landlord", dup), action("Visit the housing office", dup)),
        domain("mental-health", action("Try the sleep diary", dup)), key_worker(sam),
        crisis(warning=["Not sleeping for two nights"], helps=["A walk with my sister"], contact=["My sister Maya"],
               communicate=["Speak slowly, one question at a time"]),
        date="2025-01-20T10:00:00Z"))
    closed = other["activity"][1]["id"]
    record(duplicate, session(review(closed, "done"), date="2025-02-01T10:00:00Z"), version=1)
    crisis_plans = expect(client.get("/fhir/CarePlan", params={"part-of": f"CarePlan/{other['id']}"}, headers=trust), 200)
    [crisis_plan] = [e["resource"] for e in crisis_plans["entry"]]
    assert crisis_plan["category"][0]["coding"][0]["code"] == "12" and len(crisis_plan["activity"]) == 4
    assert "Speak slowly" in crisis_plan["text"]["div"]

    assert send(a40("M1")) == "updated"

    plans = expect(client.get("/fhir/CarePlan", params={"subject": f"Patient/{ada}", "category": PLAN_TYPE,
                                                        "status": "active"}, headers=trust), 200)
    [plan] = [e["resource"] for e in plans["entry"]]
    assert plan["id"] == kept["id"] and plan["replaces"] == [{"reference": f"CarePlan/{other['id']}"}]
    descriptions = [a["detail"]["description"] for a in plan["activity"]]
    assert descriptions == ["Book a medication review", "Phone the landlord", "Try the sleep diary"]
    carried = plan["activity"][1]
    assert carried["detail"]["performer"] == [{"reference": f"Patient/{ada}", "display": "Ada Okafor"}] or \
        carried["detail"]["performer"][0]["reference"] == f"Patient/{ada}"
    assert f"Carried over from CarePlan/{other['id']}" in carried["progress"][-1]["text"]
    goal_domains = {expect(client.get(f"/fhir/{g['reference']}", headers=trust), 200)["category"][0]["coding"][0]["code"]
                    for g in plan["goal"]}
    assert goal_domains == {"mental-health", "accommodation"} and len(plan["goal"]) == 2
    revoked = expect(client.get(f"/fhir/CarePlan/{other['id']}", headers=trust), 200)
    assert revoked["status"] == "revoked" and f"CarePlan/{kept['id']}" in revoked["note"][-1]["text"]
    assert revoked["subject"]["reference"] == f"Patient/{ada}"
    history = expect(client.get(f"/fhir/CarePlan/{other['id']}/_history", headers=trust), 200)
    assert [e["resource"]["status"] for e in reversed(history["entry"])] == ["active", "active", "active", "revoked"]
    # The crisis plan is now part of the one plan, and the page a person is handed shows it.
    moved = expect(client.get(f"/fhir/CarePlan/{crisis_plan['id']}", headers=trust), 200)
    assert moved["partOf"] == [{"reference": f"CarePlan/{kept['id']}"}] and moved["subject"]["reference"] == me["reference"]
    page = client.get(f"/fhir/CarePlan/{kept['id']}", params={"_format": "html"}, headers=trust).text
    assert "Not sleeping for two nights" in page and "My sister Maya" in page
    # A session sent for the merged-away record goes to the one plan.
    after = record(duplicate, session(crisis(helps=["Music"]), date="2025-03-10T10:00:00Z"))
    assert after["id"] == kept["id"]
    summary = expect(client.get(f"/fhir/Patient/{duplicate}/$dialog-summary", headers=trust), 200)
    [care_plan] = [p["valueReference"] for p in summary["parameter"] if p["name"] == "carePlan"]
    assert care_plan["reference"] == f"CarePlan/{kept['id']}"
    assert len([p for p in summary["parameter"] if p["name"] == "openAction"]) == 3
