"""Writes are validated at the edge: every invalid example is refused with 422 and the issues its
*.expected.json names; DIALOG responses are held to the DIALOG profile whether they claim it or
not; warnings come back with `Prefer: return=OperationOutcome`."""
from __future__ import annotations

import orjson
import pytest

from tests.api.conftest import DIALOG_PROFILE, example
from tests.api.helpers import expect
from tests.conftest import EXAMPLES

INVALID = sorted(p for folder in ("bridge-patient", "dialog-questionnaire-response", "dialog-score-observation",
                                  "dialog-plus-careplan", "dialog-plus-careteam", "dialog-plus-goal")
                 for p in (EXAMPLES / folder).glob("invalid-*.json") if not p.name.endswith(".expected.json"))


def reported(outcome: dict) -> set[tuple[str, str, str | None]]:
    return {(i["severity"], i["code"], (i.get("expression") or [None])[0]) for i in outcome["issue"]}


@pytest.mark.parametrize("path", INVALID, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_invalid_example_is_refused_with_its_issues(client, auth, path):
    resource = orjson.loads(path.read_bytes())
    expected = orjson.loads(path.with_name(path.stem + ".expected.json").read_bytes())["issues"]
    response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=auth)
    outcome = expect(response, 422)
    for issue in expected:
        assert (issue["severity"], issue["code"], issue.get("expression")) in reported(outcome), outcome
    expect(client.get(f"/fhir/{resource['resourceType']}/{resource['id']}", headers=auth), 404)


def test_a_dialog_response_not_claiming_the_profile_is_still_held_to_it(client, auth):
    response = example("dialog-questionnaire-response/invalid-rating-code-seven.json")
    assert response["meta"]["profile"] == [DIALOG_PROFILE]
    del response["meta"]
    outcome = expect(client.post("/fhir/QuestionnaireResponse", json=response, headers=auth), 422)
    rating = "QuestionnaireResponse.item[0].answer[0].value.ofType(Coding)"
    assert ("error", "code-invalid", rating) in reported(outcome)


def test_warnings_come_back_with_prefer_return_operation_outcome(client, auth, make_patient):
    patient = make_patient()
    patient["meta"] = {"profile": ["https://example.org/StructureDefinition/unknown-patient-profile"]}
    response = client.post("/fhir/Patient", json=patient, headers={**auth, "Prefer": "return=OperationOutcome"})
    outcome = expect(response, 201)
    assert outcome["resourceType"] == "OperationOutcome"
    assert [(i["severity"], i["code"]) for i in outcome["issue"]] == [("warning", "not-found")]
    assert "unknown-patient-profile" in outcome["issue"][0]["diagnostics"]
    assert response.headers["Location"]


def test_a_clean_write_with_prefer_outcome_says_so(client, auth, make_patient):
    response = client.post("/fhir/Patient", json=make_patient(), headers={**auth, "Prefer": "return=OperationOutcome"})
    assert [i["severity"] for i in expect(response, 201)["issue"]] == ["information"]


def test_an_invalid_update_keeps_the_stored_version(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    broken = {**make_patient(), "id": pid, "gender": "robot"}
    expect(client.put(f"/fhir/Patient/{pid}", json=broken, headers=auth), 422)
    assert expect(client.get(f"/fhir/Patient/{pid}", headers=auth), 200)["meta"]["versionId"] == "1"
