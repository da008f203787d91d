"""Validator behaviour beyond the golden examples: bad input of every shape, profiles named or
unknown, extensions, bundles, primitive extensions, the Questionnaire checks."""
from __future__ import annotations

import copy

import orjson
import pytest

from tests.conftest import EXAMPLES

BASE = "https://fhir-bridge.example.org"
QR_PROFILE = f"{BASE}/StructureDefinition/dialog-questionnaire-response"
PATIENT_PROFILE = f"{BASE}/StructureDefinition/bridge-patient"


@pytest.fixture()
def qr() -> dict:
    return orjson.loads((EXAMPLES / "dialog-questionnaire-response" / "valid-prom-assessment-complete.json").read_bytes())


@pytest.fixture()
def patient() -> dict:
    return orjson.loads((EXAMPLES / "bridge-patient" / "valid-patient-nhs-number-verified.json").read_bytes())


def keys(result) -> set[tuple[str, str, str | None]]:
    return {(i.severity, i.code, i.expression) for i in result.issues}


def rating(qr: dict, link_id: str) -> dict:
    item = next(i for i in qr["item"] if i["linkId"] == link_id)
    return item["answer"][0]["valueCoding"]


GARBAGE = [
    None, [], "QuestionnaireResponse", 42, {}, {"resourceType": 5}, {"resourceType": "Nope"},
    {"resourceType": "QuestionnaireResponse", "item": "x"},
    {"resourceType": "QuestionnaireResponse", "item": [1, None, "a", [], {}]},
    {"resourceType": "QuestionnaireResponse", "item": [{"linkId": 5, "answer": {"valueCoding": 1}}]},
    {"resourceType": "QuestionnaireResponse", "item": [{"linkId": "x", "answer": [{"valueCoding": {"code": {}}}]}]},
    {"resourceType": "QuestionnaireResponse", "questionnaire": f"{BASE}/Questionnaire/dialog",
     "item": [{"linkId": "mental-health", "answer": [None, {"valueCoding": []}, {"valueDecimal": "x"}]}]},
    {"resourceType": "QuestionnaireResponse", "meta": {"profile": QR_PROFILE}, "extension": [1, {"url": 3}]},
    {"resourceType": "QuestionnaireResponse", "meta": {"profile": [QR_PROFILE]}, "extension": [{}], "_authored": 7},
    {"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": 9434765919}]},
    {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Nope"}}, {"resource": 3}]},
    {"resourceType": "Observation", "valueQuantity": {"value": "NaN"}, "component": [{"code": None}]},
    {"resourceType": "Patient", "text": {"status": "generated", "div": 5}, "contained": [{"id": "x"}]},
]


@pytest.mark.parametrize("resource", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_reported_never_raised(validator, resource):
    result = validator.validate(resource)
    assert not result.valid
    assert result.issues and all(i.message for i in result.issues)
    assert result.outcome()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("data, expected", [
    (b"", "structure"), (b"not json", "structure"), (b"[1, 2]", "structure"), (b'{"resourceType": "Patient"',
     "structure"), (b"<Patient xmlns='urn:other'/>", "structure"), (b"\xff\xfe\x00garbage", "structure"),
    (b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><Patient xmlns='http://hl7.org/fhir'>&e;</Patient>", None),
])
def test_unusable_bytes_give_one_fatal_issue(validator, data, expected):
    result = validator.validate_bytes(data)
    assert not result.valid and result.resource is None
    assert result.issues[0].severity == "fatal"
    if expected:
        assert result.issues[0].code == expected


def test_clean_resource_gives_informational_outcome(validator, qr):
    result = validator.validate(qr)
    assert result.valid
    outcome = result.outcome()
    assert [i["severity"] for i in outcome["issue"]] == ["information"] or all(
        i["severity"] != "error" for i in outcome["issue"])


def test_rating_8_is_accepted_as_not_answered(validator, qr):
    rating(qr, "job-situation")["code"] = "8"
    result = validator.validate(qr)
    assert result.valid
    info = [i for i in result.issues if i.severity == "information" and i.code == "informational"]
    assert any("not applicable" in i.message and "item[" in i.expression for i in info)


def test_a_completed_dialog_with_no_item_is_an_error_one_in_progress_is_not(validator, qr):
    """A blank or cut-off record (an RiO row with every rating blank, an ORU cut before its OBX
    segments) is not a DIALOG: stored as completed, it was an empty PROM counted in reports."""
    del qr["item"]
    assert ("error", "invariant", "QuestionnaireResponse") in keys(validator.validate(qr))
    assert any("dlg-qr-4" in e.message for e in validator.validate(qr).errors)
    qr["status"] = "in-progress"
    assert validator.validate(qr).valid


@pytest.mark.parametrize("code", ["0", "9", "seven", "07"])
def test_ratings_outside_1_to_7_are_errors(validator, qr, code):
    rating(qr, "mental-health")["code"] = code
    result = validator.validate(qr)
    assert ("error", "code-invalid", "QuestionnaireResponse.item[0].answer[0].value.ofType(Coding)") in keys(result)
    assert len([i for i in result.errors if i.expression.startswith("QuestionnaireResponse.item[0]")]) == 1


def test_answer_in_wrong_type_is_structure_error(validator, qr):
    qr["item"][0]["answer"] = [{"valueInteger": 5}]
    result = validator.validate(qr)
    assert ("error", "structure", "QuestionnaireResponse.item[0].answer[0].value.ofType(integer)") in keys(result)


def test_two_answers_to_a_non_repeating_item(validator, qr):
    qr["item"][0]["answer"].append(copy.deepcopy(qr["item"][0]["answer"][0]))
    assert ("error", "structure", "QuestionnaireResponse.item[0].answer[1]") in keys(validator.validate(qr))


def test_item_order_does_not_matter(validator, qr):
    qr["item"].reverse()
    assert validator.validate(qr).valid


def test_calculated_mean_that_disagrees_is_a_warning(validator, qr):
    qr["item"].append({"linkId": "sqol-mean", "answer": [{"valueDecimal": 6.9}]})
    result = validator.validate(qr)
    assert result.valid
    warnings = [i for i in result.issues if i.severity == "warning" and "sqol-mean" in i.message]
    assert warnings, result.issues


def test_calculated_mean_that_agrees_is_silent(validator, qr):
    from fhir_bridge.measures import load_dialog_definition, score_dialog
    from tests.conftest import REPO

    score = score_dialog(qr, load_dialog_definition(REPO / "profiles", REPO / "terminology"))
    qr["item"].append({"linkId": "sqol-mean", "answer": [{"valueDecimal": round(score.sqol_mean, 2)}]})
    result = validator.validate(qr)
    assert not [i for i in result.issues if "sqol-mean" in i.message], result.issues


def test_named_profile_replaces_claimed(validator, patient):
    del patient["meta"]
    assert validator.validate(patient).profiles == []
    named = validator.validate(patient, PATIENT_PROFILE)
    assert named.profiles == [PATIENT_PROFILE] and named.valid


def test_named_unknown_profile_is_an_error(validator, patient):
    result = validator.validate(patient, f"{BASE}/StructureDefinition/nope")
    assert ("error", "not-found", "Patient") in keys(result)


def test_claimed_unknown_profile_is_a_warning_and_base_still_runs(validator, patient):
    patient["meta"] = {"profile": ["http://example.org/StructureDefinition/other"]}
    patient["colour"] = "red"
    result = validator.validate(patient)
    assert ("warning", "not-found", "Patient") in keys(result)
    assert ("error", "structure", "Patient.colour") in keys(result)


def test_profile_for_another_type_is_an_error(validator, patient):
    result = validator.validate(patient, QR_PROFILE)
    assert ("error", "invalid", "Patient") in keys(result)


def test_unknown_extension_in_project_namespace_is_an_error(validator, patient):
    patient.setdefault("extension", []).append({"url": f"{BASE}/StructureDefinition/made-up", "valueString": "x"})
    result = validator.validate(patient)
    assert any(i.code == "structure" and "made-up" in i.message for i in result.errors)


def test_foreign_extension_is_accepted(validator, patient):
    patient.setdefault("extension", []).append({"url": "http://example.org/fhir/ext/anything", "valueString": "x"})
    assert validator.validate(patient).valid


def test_extension_with_value_and_children_breaks_ext_1(validator, patient):
    patient.setdefault("extension", []).append({"url": "http://example.org/e", "valueString": "x",
                                                "extension": [{"url": "a", "valueString": "y"}]})
    result = validator.validate(patient)
    assert any(i.code == "invariant" and "ext-1" in i.message for i in result.errors)


def test_known_extension_is_checked_against_its_definition(validator, qr):
    index, purpose = next((i, e) for i, e in enumerate(qr["extension"]) if e["url"].endswith("dialog-collection-purpose"))
    purpose["valueString"] = purpose.pop("valueCoding")["code"]
    result = validator.validate(qr)
    assert ("error", "structure", f"QuestionnaireResponse.extension[{index}].value.ofType(string)") in keys(result)


def test_primitive_extension_is_validated(validator, patient):
    patient["_birthDate"] = {"extension": [{"url": "http://example.org/e", "valueBoolean": "yes"}]}
    result = validator.validate(patient)
    assert ("error", "structure", "Patient.birthDate.extension[0].value.ofType(boolean)") in keys(result)


def test_single_value_given_as_array_and_array_as_single(validator, patient):
    patient["birthDate"] = ["1980-01-01"]
    patient["name"] = {"family": "X"}
    result = validator.validate(patient)
    assert ("error", "structure", "Patient.birthDate") in keys(result)
    assert ("error", "structure", "Patient.name") in keys(result)


def test_calendar_date_that_does_not_exist(validator, patient):
    patient["birthDate"] = "1981-02-30"
    assert ("error", "value", "Patient.birthDate") in keys(validator.validate(patient))


def test_bad_snomed_check_digit_anywhere(validator, patient):
    patient["maritalStatus"] = {"coding": [{"system": "http://snomed.info/sct", "code": "1037651000000101"}]}
    result = validator.validate(patient)
    assert ("error", "code-invalid", "Patient.maritalStatus.coding[0]") in keys(result)


def test_required_base_binding(validator, patient):
    patient["gender"] = "woman"
    assert ("error", "code-invalid", "Patient.gender") in keys(validator.validate(patient))


def test_reference_to_wrong_type(validator, qr):
    qr["subject"] = {"reference": "Practitioner/123"}
    result = validator.validate(qr)
    assert ("error", "structure", "QuestionnaireResponse.subject") in keys(result)


def test_bundle_entries_are_validated_with_their_profiles_and_questionnaire(validator):
    bundle = orjson.loads((EXAMPLES / "bundle-dialog.json").read_bytes())
    assert validator.validate(bundle).valid
    index, entry = next((i, e) for i, e in enumerate(bundle["entry"])
                        if e["resource"]["resourceType"] == "QuestionnaireResponse")
    entry["resource"]["item"][0]["answer"][0]["valueCoding"]["code"] = "seven"
    del entry["resource"]["authored"]
    result = validator.validate(bundle)
    prefix = f"Bundle.entry[{index}].resource"
    assert ("error", "code-invalid", f"{prefix}.item[0].answer[0].value.ofType(Coding)") in keys(result)
    assert ("error", "required", f"{prefix}.authored") in keys(result)


def test_every_base_invariant_of_the_projects_types_compiles(validator):
    """Invariants are compiled once at load; none of the ones our resources meet may be skipped."""
    types = ["QuestionnaireResponse", "Questionnaire", "Observation", "Patient", "CarePlan", "Bundle",
             "Extension", "Reference", "Coding", "CodeableConcept", "Identifier", "Quantity", "Period",
             "Narrative", "Meta", "HumanName", "Address", "ContactPoint"]
    for t in types:
        validator.base.node(t)
    assert not validator.uncompiled, validator.uncompiled


XML_TWINS = sorted((EXAMPLES / "xml").glob("*.xml"))


@pytest.mark.parametrize("xml_path", XML_TWINS, ids=lambda p: p.stem)
def test_xml_and_json_forms_validate_alike(validator, xml_path):
    json_path = next(EXAMPLES.rglob(xml_path.stem + ".json"))
    from_xml = validator.validate_bytes(xml_path.read_bytes())
    from_json = validator.validate_bytes(json_path.read_bytes())
    assert from_xml.resource == from_json.resource
    assert from_xml.issues == from_json.issues


@pytest.mark.parametrize("xml_path", XML_TWINS, ids=lambda p: p.stem)
def test_the_same_defect_in_xml_gives_the_same_issue(validator, xml_path):
    from fhir_bridge.fhir.xml_codec import resource_to_xml

    json_path = next(EXAMPLES.rglob(xml_path.stem + ".json"))
    broken = orjson.loads(json_path.read_bytes())
    broken["meta"]["lastUpdated"] = "2024-02-30T10:00:00Z"
    xml = resource_to_xml(broken, validator.model)
    assert validator.validate_bytes(xml).issues == validator.validate(broken).issues
    assert ("error", "value", f"{broken['resourceType']}.meta.lastUpdated") in keys(validator.validate(broken))


CONFORMANCE = sorted(p for folder in ("profiles", "terminology") for p in (EXAMPLES.parent / folder).rglob("*.json")
                     if "r4-core" not in p.parts)


@pytest.mark.parametrize("path", CONFORMANCE, ids=lambda p: p.stem)
def test_every_conformance_resource_is_valid_fhir_r4(validator, path):
    result = validator.validate_bytes(path.read_bytes())
    assert result.valid, [(i.code, i.expression, i.message) for i in result.errors]


def test_dialog_response_is_held_to_the_dialog_profile_without_claiming_it(validator, qr):
    del qr["meta"]
    qr["extension"] = [e for e in qr["extension"] if not e["url"].endswith("recording-organization")]
    result = validator.validate(qr)
    assert QR_PROFILE in result.profiles
    assert any(i.code == "required" and "recording-organization" in (i.expression or "") for i in result.errors)


def test_response_to_another_questionnaire_is_not_held_to_the_dialog_profile(validator, qr):
    del qr["meta"]
    qr["questionnaire"] = "http://example.org/Questionnaire/phq9"
    result = validator.validate(qr)
    assert result.profiles == []
    assert ("warning", "not-found", "QuestionnaireResponse.questionnaire") in keys(result)


def test_remembered_clean_content_never_hides_an_error(validator, qr):
    assert validator.validate(qr).valid  # the rating Codings are now remembered as clean
    coding = rating(qr, "mental-health")
    coding["code"] = "0"
    assert ("error", "code-invalid", "QuestionnaireResponse.item[0].answer[0].value.ofType(Coding)") in keys(validator.validate(qr))
    coding["code"] = "5"
    coding["system"] = "not a uri with spaces"
    assert not validator.validate(qr).valid
    coding["system"] = "https://fhir-bridge.example.org/CodeSystem/dialog-rating"
    assert validator.validate(qr).valid


def test_remembered_codes_and_references_never_hide_an_error(validator, patient, qr):
    """Codes that passed a binding and reference types already read are remembered: a wrong
    one met after the same right one is still reported, every time."""
    for _ in range(2):
        patient["gender"] = "female"
        assert ("error", "code-invalid", "Patient.gender") not in keys(validator.validate(patient))
        patient["gender"] = "woman"
        assert ("error", "code-invalid", "Patient.gender") in keys(validator.validate(patient))
        qr["subject"] = {"reference": "Patient/123"}
        assert ("error", "structure", "QuestionnaireResponse.subject") not in keys(validator.validate(qr))
        qr["subject"] = {"reference": "Practitioner/123"}
        assert ("error", "structure", "QuestionnaireResponse.subject") in keys(validator.validate(qr))


def test_extensible_binding_miss_is_a_warning_not_an_error(validator, patient):
    patient["extension"] = [e for e in patient.get("extension", []) if not e["url"].endswith("EthnicCategory")]
    patient["extension"].append({
        "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory",
        "valueCodeableConcept": {"coding": [{"system": "http://example.org/local-ethnicity", "code": "WB"}]}})
    result = validator.validate(patient)
    assert result.valid
    assert any(i.severity == "warning" and i.code == "code-invalid" for i in result.issues), result.issues
