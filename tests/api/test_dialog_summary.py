"""`GET Patient/[id]/$dialog-summary`: what a worker checks before another DIALOG (when, by whom,
what for, the ratings over time, the plan and its open actions), as Parameters or a page; only for
a partner that cares for the person; listed in the CapabilityStatement with its definition."""
from __future__ import annotations

import pytest

from tests.api.helpers import expect
from tests.careplan.sessions import action, crisis, domain, key_worker, organisation, review, session

PURPOSE_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-collection-purpose"
RECORDING_ORG_EXT = "https://fhir-bridge.example.org/StructureDefinition/recording-organization"


def parts(parameters: dict, name: str) -> list[dict]:
    return [p for p in parameters["parameter"] if p["name"] == name]


def value(part_list: list[dict], name: str):
    found = next(p for p in part_list if p["name"] == name)
    return next(v for k, v in found.items() if k.startswith("value"))


@pytest.fixture
def rosa(client, token_for, make_patient, make_response, care_planning_response):
    trust = token_for("system/*.*", partner="RV3", name="East London NHS Foundation Trust")
    patient = expect(client.post("/fhir/Patient", json=make_patient(1), headers=trust), 201)["id"]
    sam = expect(client.post("/fhir/Practitioner", json={"resourceType": "Practitioner", "name": [
        {"given": ["Sam"], "family": "Adeyemi"}]}, headers=trust), 201)["id"]
    prom = make_response(f"Patient/{patient}", authored="2024-01-10T10:00:00+00:00",
                         author=f"Practitioner/{sam}")
    prom["extension"] = [e for e in prom["extension"] if e["url"] != RECORDING_ORG_EXT] + [
        {"url": RECORDING_ORG_EXT, "valueReference": organisation("RV3", "East London NHS FT")}]
    expect(client.post("/fhir/QuestionnaireResponse", json=prom, headers=trust), 201)
    me = {"reference": f"Patient/{patient}"}
    ratings = {**care_planning_response, "subject": me, "source": me, "authored": "2024-02-20T11:00:00+00:00"}
    plan = expect(client.post(f"/fhir/Patient/{patient}/$dialog-plus-session", json=session(
        domain("accommodation", action("Phone the landlord", me, due="2024-03-01"), action("Fix the window", me)),
        key_worker({"reference": f"Practitioner/{sam}"}), crisis(helps=["A walk"]), response=ratings),
        headers=trust), 200)
    expect(client.post(f"/fhir/Patient/{patient}/$dialog-plus-session", json=session(
        review(plan["activity"][1]["id"], "done"), date="2024-03-01T10:00:00Z"),
        headers={**trust, "If-Match": 'W/"1"'}), 200)
    return patient, plan, trust


def test_the_summary_says_when_by_whom_what_for_and_what_is_open(client, rosa):
    patient, plan, trust = rosa
    summary = expect(client.get(f"/fhir/Patient/{patient}/$dialog-summary", headers=trust), 200)
    assert summary["resourceType"] == "Parameters"
    assert value(summary["parameter"], "dialogCount") == 2
    last = parts(summary, "lastDialog")[0]["part"]
    assert value(last, "purpose")["code"] == "care-planning" and value(last, "authored").startswith("2024-02-20")
    assert value(last, "organization")  # as the session's ratings name it
    prom = parts(summary, "lastProm")[0]["part"]
    assert value(prom, "purpose")["code"] == "prom" and value(prom, "nextPromFrom") == "2024-02-07"
    assert value(prom, "author")["reference"].startswith("Practitioner/")
    assert value(prom, "organization")["identifier"]["value"] == "RV3"
    trajectories = {value(t["part"], "domain")["code"]: [value(p["part"], "rating") for p in t["part"] if p["name"] == "point"]
                    for t in parts(summary, "trajectory")}
    assert len(trajectories["mental-health"]) == 2  # the PROM's and the session's rating, oldest first
    assert value(summary["parameter"], "carePlan")["reference"] == f"CarePlan/{plan['id']}"
    assert value(summary["parameter"], "keyWorker")["display"] == "Sam Adeyemi"
    assert value(summary["parameter"], "crisisPlan")["reference"].startswith("CarePlan/")
    [open_action] = parts(summary, "openAction")
    assert value(open_action["part"], "description") == "Phone the landlord"
    assert value(open_action["part"], "due") == "2024-03-01"


def test_the_summary_reads_as_a_page(client, rosa):
    patient, _, trust = rosa
    page = client.get(f"/fhir/Patient/{patient}/$dialog-summary", params={"_format": "html"}, headers=trust)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Another PROM before 7 February 2024 would be a possible duplicate" in page.text
    assert "Phone the landlord" in page.text and "<script" not in page.text


def test_only_a_partner_that_cares_for_the_person_gets_it(client, rosa, token_for):
    patient, _, _ = rosa
    stranger = token_for("system/*.*", partner="X9V2K")
    expect(client.get(f"/fhir/Patient/{patient}/$dialog-summary", headers=stranger), 403)
    expect(client.get("/fhir/Patient/nobody/$dialog-summary", headers=stranger), 404)
    expect(client.get(f"/fhir/Patient/{patient}/$dialog-summary", headers=token_for("system/Patient.read")), 403)


def test_a_person_with_no_dialog_yet(client, auth, create, make_patient):
    patient = create(make_patient(3))["id"]
    summary = expect(client.get(f"/fhir/Patient/{patient}/$dialog-summary", headers=auth), 200)
    assert value(summary["parameter"], "dialogCount") == 0 and not parts(summary, "lastDialog")
    assert not parts(summary, "carePlan")


def test_it_is_listed_and_defined(client, auth):
    statement = expect(client.get("/fhir/metadata"), 200)
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"name": "dialog-summary", "definition": "https://fhir-bridge.example.org/OperationDefinition/dialog-summary"} \
        in patient["operation"]
    definition = expect(client.get("/fhir/OperationDefinition/dialog-summary", headers=auth), 200)
    assert definition["code"] == "dialog-summary" and definition["instance"] is True


BAD_CRISIS = {
    "an empty crisis part": ({"name": "crisis", "part": []}, "required"),
    "an unknown crisis part": ({"name": "crisis", "part": [{"name": "mood", "valueString": "low"}]}, "not-supported"),
    "a contact that is a device": ({"name": "crisis", "part": [{"name": "whoToContact",
                                                                "valueReference": {"reference": "Device/1"}}]}, "invalid"),
}


@pytest.mark.parametrize("case", BAD_CRISIS, ids=list(BAD_CRISIS))
def test_a_bad_crisis_part_is_422_naming_it(client, rosa, case):
    patient, _, trust = rosa
    parameter, code = BAD_CRISIS[case]
    outcome = expect(client.post(f"/fhir/Patient/{patient}/$dialog-plus-session",
                                 json=session(parameter, date="2024-04-01T10:00:00Z"), headers=trust), 422)
    assert outcome["issue"][0]["code"] == code
    assert outcome["issue"][0]["expression"][0].startswith("Parameters.parameter[1]")


def test_crisis_items_are_added_once_whoever_sends_them(client, rosa):
    patient, plan, trust = rosa
    again = session(crisis(helps=["A walk", "Music"], contact=[{"reference": "RelatedPerson/maya", "display": "Maya"}]),
                    date="2024-04-01T10:00:00Z")
    expect(client.post(f"/fhir/Patient/{patient}/$dialog-plus-session", json=again, headers=trust), 200)
    found = expect(client.get("/fhir/CarePlan", params={"part-of": f"CarePlan/{plan['id']}"}, headers=trust), 200)
    [crisis_plan] = [e["resource"] for e in found["entry"]]
    assert [a["detail"]["description"] for a in crisis_plan["activity"]] == ["A walk", "Music", "Maya"]
    assert crisis_plan["activity"][2]["detail"]["performer"] == [{"reference": "RelatedPerson/maya", "display": "Maya"}]
    assert crisis_plan["meta"]["versionId"] == "2"
