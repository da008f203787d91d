"""The walker remembers elements it found clean by their content: what it skips must be what
walking them again would pass, whatever was validated before."""
from __future__ import annotations

from pathlib import Path

import pytest

from fhir_bridge.validation import Validator
from fhir_bridge.validation.walker import MEMO_TRIAL


@pytest.fixture()
def fresh(settings) -> Validator:
    """A validator of its own: the session's remembers what other tests validated."""
    return Validator.load(settings)


def _patient(**extra) -> dict:
    return {"resourceType": "Patient", "gender": "female", **extra}


def _marital(coding: dict) -> dict:
    return _patient(maritalStatus={"coding": [coding]})


def test_a_boolean_remembered_clean_does_not_pass_the_number_1(fresh):
    coding = {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "userSelected": True}
    assert fresh.validate(_marital(coding)).valid
    result = fresh.validate(_marital({**coding, "userSelected": 1}))  # equal to True in Python, not in JSON
    assert not result.valid
    assert any("userSelected" in issue.message for issue in result.errors)


def test_an_integer_remembered_clean_does_not_pass_the_decimal_1_0(fresh):
    attachment = {"contentType": "text/plain", "size": 10}
    assert fresh.validate(_patient(photo=[attachment])).valid
    result = fresh.validate(_patient(photo=[{**attachment, "size": 10.0}]))
    assert not result.valid


def test_a_reference_into_contained_is_checked_in_each_resource(fresh):
    """ref-1 reads the resource around the reference: clean in one plan is no verdict for another."""
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/p"},
            "goal": [{"reference": "#g1"}]}
    resolved = {**plan, "contained": [{"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active",
                                       "description": {"text": "sleep"}, "subject": {"reference": "Patient/p"}}]}
    assert fresh.validate(resolved).valid
    for _ in range(2):
        result = fresh.validate(plan)
        assert any("ref-1" in issue.message for issue in result.errors)


def test_an_element_found_wrong_is_reported_every_time(fresh):
    bad = _marital({"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": 5})
    for _ in range(3):
        assert not fresh.validate(bad).valid


def test_elements_that_never_repeat_are_not_remembered_for_long(fresh):
    """Identifiers are new each time: their memo is dropped, the Codings' is kept; verdicts stay right."""
    coding = {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}
    for n in range(MEMO_TRIAL + 10):
        patient = _marital(coding)
        patient["identifier"] = [{"system": "https://example.org/id", "value": f"A{n}"}]
        assert fresh.validate(patient).valid
    identifier = fresh.base.node("Identifier")
    assert identifier.memo is None
    assert fresh.base.node("Coding").memo
    patient["identifier"] = [{"system": "https://example.org/id", "value": 7}]
    assert not fresh.validate(patient).valid


def test_a_string_an_invariant_passed_once_does_not_pass_another(fresh):
    """dlg-qr-1 on QuestionnaireResponse.questionnaire: its verdicts are remembered per string."""
    import orjson

    examples = Path(__file__).resolve().parents[2] / "examples"
    response = orjson.loads(
        (examples / "dialog-questionnaire-response" / "valid-prom-assessment-complete.json").read_bytes())
    other = {**response, "questionnaire": "https://fhir-bridge.example.org/Questionnaire/dialog-plus|1.0.0"}
    for _ in range(2):
        assert fresh.validate(response).valid
        assert any("dlg-qr-1" in issue.message for issue in fresh.validate(other).errors)
