"""Operations on stored resources: $validate and QuestionnaireResponse/$extract
(fhir_bridge.api.operations)."""
from __future__ import annotations

import copy

import pytest

from fhir_bridge.measures import SCORE_PROFILE, score_dialog
from tests.api.conftest import example
from tests.conftest import EXAMPLES
from tests.api.helpers import expect, issue_codes

CANONICAL = "https://fhir-bridge.example.org"
PATIENT_PROFILE = f"{CANONICAL}/StructureDefinition/bridge-patient"


def parameters(**values: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": n, **v} for n, v in values.items()]}


def errors(outcome: dict) -> list[dict]:
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


@pytest.fixture
def prom() -> dict:
    return example("dialog-questionnaire-response/valid-prom-assessment-complete.json")


# -- $validate --------------------------------------------------------------------------------------
def test_validate_a_valid_dialog_response(client, auth, prom):
    outcome = expect(client.post("/fhir/QuestionnaireResponse/$validate", json=prom, headers=auth), 200)
    assert outcome["resourceType"] == "OperationOutcome" and not errors(outcome)


@pytest.mark.parametrize("case", ["invalid-rating-code-0", "invalid-missing-subject", "invalid-unknown-linkid"])
def test_validate_an_invalid_dialog_response_is_200_with_the_issues(client, auth, case):
    resource = example(f"dialog-questionnaire-response/{case}.json")
    wanted = example(f"dialog-questionnaire-response/{case}.expected.json")["issues"]
    outcome = expect(client.post("/fhir/QuestionnaireResponse/$validate", json=resource, headers=auth), 200)
    found = {(i["severity"], i["code"], (i.get("expression") or [None])[0]) for i in outcome["issue"]}
    for issue in wanted:
        assert (issue["severity"], issue["code"], issue["expression"]) in found, outcome


def test_validate_against_a_named_profile(client, auth):
    patient = example("bridge-patient/invalid-missing-name.json")
    del patient["meta"]  # claims no profile: the base specification alone allows a nameless Patient
    assert not errors(expect(client.post("/fhir/Patient/$validate", json=patient, headers=auth), 200))
    by_query = expect(client.post("/fhir/Patient/$validate", params={"profile": PATIENT_PROFILE},
                                  json=patient, headers=auth), 200)
    by_parameter = expect(client.post("/fhir/Patient/$validate", headers=auth, json=parameters(
        resource={"resource": patient}, profile={"valueCanonical": PATIENT_PROFILE})), 200)
    for outcome in (by_query, by_parameter):
        assert [(i["code"], i["expression"]) for i in errors(outcome)] == [("required", ["Patient.name"])]


def test_validate_against_an_unknown_profile_says_so(client, auth, prom):
    outcome = expect(client.post("/fhir/QuestionnaireResponse/$validate", json=prom, headers=auth,
                                 params={"profile": f"{CANONICAL}/StructureDefinition/nothing"}), 200)
    assert "not-found" in issue_codes(outcome)


def test_validate_an_instance_validates_the_stored_resource(client, auth, create, make_response):
    stored = create(make_response())
    url = f"/fhir/QuestionnaireResponse/{stored['id']}/$validate"
    assert not errors(expect(client.post(url, headers=auth), 200))
    broken = copy.deepcopy(stored)
    broken["item"][0]["answer"][0]["valueCoding"]["code"] = "0"
    outcome = expect(client.post(url, json=broken, headers=auth), 200)  # a body is validated instead
    assert "code-invalid" in issue_codes(outcome)
    expect(client.post("/fhir/QuestionnaireResponse/nobody/$validate", headers=auth), 404)


def test_validate_mode_update_needs_the_instance_id(client, auth, create, make_response):
    stored = create(make_response())
    url = f"/fhir/QuestionnaireResponse/{stored['id']}/$validate"
    outcome = expect(client.post(url, params={"mode": "update"}, json={**stored, "id": "other"}, headers=auth), 200)
    assert ["QuestionnaireResponse.id"] in [i.get("expression") for i in errors(outcome)]
    expect(client.post(url, params={"mode": "sideways"}, headers=auth), 400)


def test_validate_refusals(client, auth, token_for, prom):
    expect(client.post("/fhir/QuestionnaireResponse/$validate", json=prom), 401)
    expect(client.post("/fhir/QuestionnaireResponse/$validate", json=prom,
                       headers=token_for("system/Patient.read")), 403)
    expect(client.post("/fhir/Spaceship/$validate", json=prom, headers=auth), 404)
    expect(client.post("/fhir/Patient/$validate", json=prom, headers=auth), 400)  # body of another type
    expect(client.post("/fhir/Patient/$validate", headers=auth), 400)  # nothing to validate


def test_validate_takes_and_answers_xml(client, auth):
    body = (EXAMPLES / "xml/valid-prom-assessment-complete.xml").read_bytes()
    response = client.post("/fhir/QuestionnaireResponse/$validate", content=body,
                           headers={**auth, "Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"})
    assert response.status_code == 200 and b"<OperationOutcome" in response.content
    assert b'<severity value="error"/>' not in response.content


def test_dialog_profile_applies_without_being_claimed(client, auth, prom):
    prom.pop("meta")  # the DIALOG Questionnaire implies the profile
    broken = copy.deepcopy(prom)
    broken.pop("subject")
    outcome = expect(client.post("/fhir/QuestionnaireResponse/$validate", json=broken, headers=auth), 200)
    assert ("required", ["QuestionnaireResponse.subject"]) in [(i["code"], i.get("expression")) for i in errors(outcome)]


# -- $extract -------------------------------------------------------------------------------------------
def rated_items(client, prom: dict) -> int:
    bridge = client.app.state.fhir.bridge
    return sum(1 for item in score_dialog(prom, bridge.dialog).items if item.rating is not None)


def test_extract_returns_one_observation_per_rated_item_and_the_two_means(client, auth, create, prom):
    stored = create({k: v for k, v in prom.items() if k != "id"})
    bundle = expect(client.get(f"/fhir/QuestionnaireResponse/{stored['id']}/$extract", headers=auth), 200)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    observations = [e["resource"] for e in bundle["entry"]]
    assert len(observations) == rated_items(client, prom) + 2
    validator = client.app.state.fhir.bridge.validator
    for observation in observations:
        assert observation["meta"]["profile"] == [SCORE_PROFILE]
        assert observation["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{stored['id']}"}]
        result = validator.validate(observation, SCORE_PROFILE)
        assert result.valid, result.outcome()
    means = {o["code"]["coding"][0]["code"] for o in observations if "valueQuantity" in o}
    assert means == {"sqol-mean", "treatment-satisfaction-mean"}
    again = expect(client.post(f"/fhir/QuestionnaireResponse/{stored['id']}/$extract", headers=auth), 200)
    assert again == bundle  # deterministic ids: extracting twice gives the same resources
    assert expect(client.get("/fhir/Observation", headers=auth), 200).get("total") == 0  # nothing stored


def test_extract_from_a_posted_response_or_parameters(client, auth, prom):
    direct = expect(client.post("/fhir/QuestionnaireResponse/$extract", json=prom, headers=auth), 200)
    wrapped = expect(client.post("/fhir/QuestionnaireResponse/$extract", headers=auth,
                                 json=parameters(**{"questionnaire-response": {"resource": prom}})), 200)
    assert direct == wrapped
    assert len(direct["entry"]) == rated_items(client, prom) + 2
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in direct["entry"])


def test_extract_refuses_an_invalid_response_with_422(client, auth):
    invalid = example("dialog-questionnaire-response/invalid-rating-code-0.json")
    outcome = expect(client.post("/fhir/QuestionnaireResponse/$extract", json=invalid, headers=auth), 422)
    assert "code-invalid" in issue_codes(outcome)
    expect(client.get("/fhir/QuestionnaireResponse/nobody/$extract", headers=auth), 404)
    expect(client.post("/fhir/QuestionnaireResponse/$extract", headers=auth, json=parameters()), 400)


def test_metadata_lists_validate_and_extract(client):
    resources = {r["type"]: r for r in expect(client.get("/fhir/metadata"), 200)["rest"][0]["resource"]}
    names = {rtype: {op["name"] for op in entry.get("operation", [])} for rtype, entry in resources.items()}
    assert {"validate", "extract"} <= names["QuestionnaireResponse"]
    assert "validate" in names["Patient"]
