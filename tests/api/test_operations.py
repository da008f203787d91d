"""Operations: $validate, QuestionnaireResponse/$extract, $lookup, $validate-code, $expand,
$translate, and the project's terminology resources served read-only."""
from __future__ import annotations

import copy

import pytest

from fhir_bridge.fhir.xml_codec import resource_to_xml
from fhir_bridge.measures import SCORE_PROFILE, score_dialog
from tests.api.conftest import example
from tests.conftest import EXAMPLES
from tests.api.helpers import expect, issue_codes

CANONICAL = "https://fhir-bridge.example.org"
DOMAIN = f"{CANONICAL}/CodeSystem/dialog-domain"
RATING = f"{CANONICAL}/CodeSystem/dialog-rating"
RATING_VS = f"{CANONICAL}/ValueSet/dialog-rating"
MHSDS_ITEM = f"{CANONICAL}/CodeSystem/dialog-item-number-mhsds"
QMUL_ITEM = f"{CANONICAL}/CodeSystem/dialog-item-number-qmul"
ITEM_MAP = f"{CANONICAL}/ConceptMap/dialog-mhsds-to-qmul-item-number"
PATIENT_PROFILE = f"{CANONICAL}/StructureDefinition/bridge-patient"
SNOMED = "http://snomed.info/sct"


def parameters(**values: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": n, **v} for n, v in values.items()]}


def named(params: dict, name: str) -> list[dict]:
    return [p for p in params["parameter"] if p["name"] == name]


def value(params: dict, name: str):
    [p] = named(params, name)
    return next(v for k, v in p.items() if k.startswith("value"))


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


# -- $lookup ----------------------------------------------------------------------------------------------
def test_lookup_gives_both_item_numbers_of_a_domain(client, auth):
    found = expect(client.get("/fhir/CodeSystem/$lookup", params={"system": DOMAIN, "code": "friendships"},
                              headers=auth), 200)
    assert value(found, "name") == "DialogDomain" and value(found, "display") == "Friendships"
    properties = {p["part"][0]["valueCode"]: p["part"][1] for p in named(found, "property")}
    assert properties["mhsds-item"] == {"name": "value", "valueInteger": 6}
    assert properties["qmul-item"] == {"name": "value", "valueInteger": 7}
    posted = expect(client.post("/fhir/CodeSystem/$lookup", headers=auth, json=parameters(
        coding={"valueCoding": {"system": DOMAIN, "code": "friendships"}},
        property={"valueCode": "qmul-item"})), 200)
    assert [p["part"][0]["valueCode"] for p in named(posted, "property")] == ["qmul-item"]


def test_lookup_failures(client, auth):
    outcome = expect(client.get("/fhir/CodeSystem/$lookup", params={"system": DOMAIN, "code": "hobbies"},
                                headers=auth), 404)
    assert "hobbies" in outcome["issue"][0]["diagnostics"]
    expect(client.get("/fhir/CodeSystem/$lookup", params={"system": f"{CANONICAL}/CodeSystem/x", "code": "1"},
                      headers=auth), 404)
    missing = expect(client.get("/fhir/CodeSystem/$lookup", params={"code": "friendships"}, headers=auth), 400)
    assert "'system'" in missing["issue"][0]["diagnostics"]
    expect(client.get("/fhir/CodeSystem/$lookup", params={"system": DOMAIN, "code": "friendships"}), 401)


# -- $validate-code and $expand -------------------------------------------------------------------------
def test_validate_code_true_and_false(client, auth):
    def check(**query) -> dict:
        return expect(client.get("/fhir/ValueSet/$validate-code", params={"url": RATING_VS, **query}, headers=auth), 200)

    good = check(system=RATING, code="3")
    assert value(good, "result") is True and value(good, "display") == "Fairly dissatisfied"
    not_a_rating = check(system=RATING, code="8")  # "not applicable" is deliberately outside the value set
    assert value(not_a_rating, "result") is False and value(not_a_rating, "message")
    wrong_display = check(system=RATING, code="3", display="Very happy")
    assert value(wrong_display, "result") is False and value(wrong_display, "display") == "Fairly dissatisfied"
    posted = expect(client.post("/fhir/ValueSet/$validate-code", headers=auth, json=parameters(
        url={"valueUri": RATING_VS}, coding={"valueCoding": {"system": RATING, "code": "7"}})), 200)
    assert value(posted, "result") is True
    by_instance = expect(client.get("/fhir/ValueSet/dialog-rating/$validate-code",
                                    params={"system": RATING, "code": "9"}, headers=auth), 200)
    assert value(by_instance, "result") is False


def test_validate_code_failures(client, auth):
    missing = expect(client.get("/fhir/ValueSet/$validate-code", params={"url": RATING_VS}, headers=auth), 400)
    assert "'code'" in missing["issue"][0]["diagnostics"]
    expect(client.get("/fhir/ValueSet/$validate-code", params={"url": f"{CANONICAL}/ValueSet/x", "code": "1"},
                      headers=auth), 404)


def test_expand_lists_the_seven_ratings(client, auth):
    expanded = expect(client.get("/fhir/ValueSet/$expand", params={"url": RATING_VS}, headers=auth), 200)
    assert expanded["resourceType"] == "ValueSet" and expanded["url"] == RATING_VS
    expansion = expanded["expansion"]
    assert expansion["total"] == 7 and expansion["timestamp"]
    assert [c["code"] for c in expansion["contains"]] == [str(n) for n in range(1, 8)]
    assert all(c["system"] == RATING and c["display"] for c in expansion["contains"])


def test_expand_filter_and_paging(client, auth):
    filtered = expect(client.post("/fhir/ValueSet/dialog-rating/$expand", headers=auth,
                                  json=parameters(filter={"valueString": "dissatisfied"})), 200)["expansion"]
    assert [c["code"] for c in filtered["contains"]] == ["1", "2", "3"] and filtered["total"] == 3
    page = expect(client.get("/fhir/ValueSet/$expand", params={"url": RATING_VS, "count": 2, "offset": 5},
                             headers=auth), 200)["expansion"]
    assert page["total"] == 7 and page["offset"] == 5 and [c["code"] for c in page["contains"]] == ["6", "7"]
    expect(client.get("/fhir/ValueSet/$expand", params={"url": RATING_VS, "count": "many"}, headers=auth), 400)
    expect(client.get("/fhir/ValueSet/$expand", headers=auth), 400)
    expect(client.get("/fhir/ValueSet/$expand", params={"url": f"{CANONICAL}/ValueSet/x"}, headers=auth), 404)


# -- $translate -------------------------------------------------------------------------------------------
def match_codes(result: dict) -> list[tuple[str, str, str]]:
    out = []
    for match in named(result, "match"):
        parts = {p["name"]: p for p in match["part"]}
        out.append((parts["equivalence"]["valueCode"], parts["concept"]["valueCoding"]["system"],
                    parts["concept"]["valueCoding"]["code"]))
    return out


def test_translate_mhsds_item_6_is_qmul_item_7_and_back(client, auth):
    forward = expect(client.get("/fhir/ConceptMap/$translate", headers=auth,
                                params={"url": ITEM_MAP, "system": MHSDS_ITEM, "code": "6"}), 200)
    assert value(forward, "result") is True
    assert match_codes(forward) == [("equivalent", QMUL_ITEM, "7")]
    back = expect(client.post("/fhir/ConceptMap/$translate", headers=auth, json=parameters(
        url={"valueUri": ITEM_MAP}, system={"valueUri": QMUL_ITEM}, code={"valueCode": "7"},
        reverse={"valueBoolean": True})), 200)
    assert match_codes(back) == [("equivalent", MHSDS_ITEM, "6")]


def test_translate_finds_the_map_when_none_is_named(client, auth):
    result = expect(client.get("/fhir/ConceptMap/$translate", headers=auth,
                               params={"system": DOMAIN, "code": "friendships", "targetsystem": SNOMED}), 200)
    [(equivalence, system, code)] = match_codes(result)
    assert system == SNOMED and code.isdigit()
    none = expect(client.get("/fhir/ConceptMap/$translate", headers=auth,
                             params={"url": ITEM_MAP, "system": MHSDS_ITEM, "code": "12"}), 200)
    assert value(none, "result") is False and not named(none, "match")
    expect(client.get("/fhir/ConceptMap/$translate", params={"url": ITEM_MAP, "code": "6"}, headers=auth), 400)
    expect(client.get("/fhir/ConceptMap/$translate", params={"url": f"{CANONICAL}/ConceptMap/x",
                                                              "system": MHSDS_ITEM, "code": "6"}, headers=auth), 404)


# -- the terminology resources ---------------------------------------------------------------------------
def test_terminology_resources_are_served_read_only(client, auth):
    codesystem = expect(client.get("/fhir/CodeSystem/dialog-domain", headers=auth), 200)
    assert codesystem["url"] == DOMAIN and codesystem["count"] == 11
    found = expect(client.get("/fhir/ValueSet", params={"url": RATING_VS}, headers=auth), 200)
    assert found["type"] == "searchset" and found["total"] == 1 and found["entry"][0]["resource"]["id"] == "dialog-rating"
    assert expect(client.get("/fhir/ConceptMap", headers=auth), 200)["total"] >= 2
    expect(client.get("/fhir/ConceptMap/nothing", headers=auth), 404)
    expect(client.get("/fhir/ValueSet", params={"name": "x"}, headers={**auth, "Prefer": "handling=strict"}), 400)
    expect(client.post("/fhir/CodeSystem", json=codesystem, headers=auth), 404)  # data, not a stored type


def test_metadata_lists_the_operations(client):
    statement = expect(client.get("/fhir/metadata"), 200)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    names = {rtype: {op["name"] for op in entry.get("operation", [])} for rtype, entry in resources.items()}
    assert {"validate", "extract"} <= names["QuestionnaireResponse"]
    assert "validate" in names["Patient"]
    assert names["CodeSystem"] == {"lookup"} and names["ValueSet"] == {"validate-code", "expand"}
    assert names["ConceptMap"] == {"translate"}
    assert {i["code"] for i in resources["CodeSystem"]["interaction"]} == {"read", "search-type"}


def test_dialog_profile_applies_without_being_claimed(client, auth, prom):
    prom.pop("meta")  # the DIALOG Questionnaire implies the profile
    broken = copy.deepcopy(prom)
    broken.pop("subject")
    outcome = expect(client.post("/fhir/QuestionnaireResponse/$validate", json=broken, headers=auth), 200)
    assert ("required", ["QuestionnaireResponse.subject"]) in [(i["code"], i.get("expression")) for i in errors(outcome)]


def test_parameters_may_come_as_xml(client, auth):
    model = client.app.state.fhir.bridge.validator.model
    body = resource_to_xml(parameters(url={"valueUri": ITEM_MAP}, system={"valueUri": MHSDS_ITEM},
                                      code={"valueCode": "7"}), model)
    result = expect(client.post("/fhir/ConceptMap/$translate", content=body,
                                headers={**auth, "Content-Type": "application/fhir+xml"}), 200)
    assert match_codes(result) == [("equivalent", QMUL_ITEM, "6")]
