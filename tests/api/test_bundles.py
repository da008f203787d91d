"""Transaction and batch Bundles: atomicity, reference rewriting, conditional references and
creates, per-entry statuses, authorisation per entry, XML."""
from __future__ import annotations

import base64
import copy
import uuid
from urllib.parse import quote

import orjson
import pytest

from fhir_bridge.fhir.xml_codec import resource_to_xml
from tests.api.conftest import NHS_NUMBER, example, nhs_number
from tests.api.helpers import expect, issue_codes

RECORDING_ORG = "https://fhir-bridge.example.org/StructureDefinition/recording-organization"
PATIENT_URN = "urn:uuid:14fe73ea-e068-5a74-9b2f-f95f81ea091c"  # the example bundle's Patient


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def entry(method: str, url: str, resource: dict | None = None, **extra) -> dict:
    item: dict = {"request": {"method": method, "url": url, **extra.pop("request", {})}, **extra}
    if resource is not None:
        item["resource"] = resource
    return item


def bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def statuses(answer: dict) -> list[str]:
    return [e["response"]["status"] for e in answer["entry"]]


def location_id(item: dict) -> str:
    return item["response"]["location"].split("/")[1]


def by_identifier(client, auth, serial: int) -> dict:
    query = quote(f"{NHS_NUMBER}|{nhs_number(serial)}")
    return expect(client.get(f"/fhir/Patient?identifier={query}", headers=auth), 200)


def invalid(response: dict) -> dict:
    broken = copy.deepcopy(response)
    broken["item"][0]["answer"][0]["valueCoding"]["code"] = "0"  # not a DIALOG rating
    return broken


# -- transaction --------------------------------------------------------------------------------------------
def test_the_example_transaction_stores_everything_with_rewritten_references(client, auth):
    answer = expect(client.post("/fhir", json=example("bundle-dialog.json"), headers=auth), 200)
    assert answer["type"] == "transaction-response"
    assert statuses(answer) == ["201 Created"] * 3
    patient_id = location_id(answer["entry"][0])
    for item in answer["entry"][1:]:
        assert item["response"]["location"].endswith("/_history/1") and item["response"]["etag"] == 'W/"1"'
        assert item["response"]["lastModified"]
        stored = expect(client.get(f"/fhir/QuestionnaireResponse/{location_id(item)}", headers=auth), 200)
        assert stored["subject"]["reference"] == f"Patient/{patient_id}"
        assert stored["source"]["reference"] == f"Patient/{patient_id}"
        assert item["resource"] == stored  # Prefer return=representation is the default
    assert expect(client.get(f"/fhir/Patient/{patient_id}", headers=auth), 200)["id"] == patient_id


def test_references_inside_extensions_are_rewritten(client, auth, make_patient, make_response):
    patient_url, org_url = urn(), urn()
    response = make_response(subject=patient_url)
    for ext in response["extension"]:
        if ext["url"] == RECORDING_ORG:
            ext["valueReference"] = {"reference": org_url}
    answer = expect(client.post("/fhir", headers=auth, json=bundle(
        "transaction",
        entry("POST", "QuestionnaireResponse", response),
        entry("POST", "Organization", {"resourceType": "Organization", "name": "Example Trust"}, fullUrl=org_url),
        entry("POST", "Patient", make_patient(3), fullUrl=patient_url),
    )), 200)
    stored = answer["entry"][0]["resource"]
    [recorded_by] = [e for e in stored["extension"] if e["url"] == RECORDING_ORG]
    assert recorded_by["valueReference"]["reference"] == f"Organization/{location_id(answer['entry'][1])}"
    assert stored["subject"]["reference"] == f"Patient/{location_id(answer['entry'][2])}"


def test_one_failing_entry_rolls_back_the_whole_transaction(client, auth, make_patient, make_response):
    patient_url = urn()
    outcome = expect(client.post("/fhir", headers=auth, json=bundle(
        "transaction",
        entry("POST", "Patient", make_patient(4), fullUrl=patient_url),
        entry("POST", "QuestionnaireResponse", make_response(subject=patient_url)),
        entry("POST", "QuestionnaireResponse", invalid(make_response(subject=patient_url))),
    )), 422)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[2]"]
    assert "rolled back" in outcome["issue"][0]["diagnostics"]
    assert "Bundle.entry[2].resource.item[0].answer[0].value.ofType(Coding)" in [
        e for i in outcome["issue"] for e in i.get("expression", [])]
    assert by_identifier(client, auth, 4)["total"] == 0
    assert expect(client.get("/fhir/QuestionnaireResponse", headers=auth), 200)["total"] == 0


def test_a_conditional_reference_is_resolved_by_search(client, auth, create, make_patient, make_response):
    patient = create(make_patient(5))
    condition = f"Patient?identifier={NHS_NUMBER}|{nhs_number(5)}"
    answer = expect(client.post("/fhir", headers=auth, json=bundle(
        "transaction", entry("POST", "QuestionnaireResponse", make_response(subject=condition)))), 200)
    assert answer["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{patient['id']}"


def test_a_conditional_reference_matching_nothing_is_412_naming_it(client, auth, make_response):
    condition = f"Patient?identifier={NHS_NUMBER}|{nhs_number(6)}"
    outcome = expect(client.post("/fhir", headers=auth, json=bundle(
        "transaction", entry("POST", "QuestionnaireResponse", make_response(subject=condition)))), 412)
    assert condition in outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[0].resource.subject.reference"]


def test_if_none_exist_twice_makes_one_patient(client, auth):
    first = expect(client.post("/fhir", json=example("bundle-dialog.json"), headers=auth), 200)
    second = expect(client.post("/fhir", json=example("bundle-dialog.json"), headers=auth), 200)
    assert statuses(second) == ["200 OK", "201 Created", "201 Created"]
    patient_id = location_id(first["entry"][0])
    assert location_id(second["entry"][0]) == patient_id
    assert second["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    query = quote(f"{NHS_NUMBER}|9993186406")
    assert expect(client.get(f"/fhir/Patient?identifier={query}", headers=auth), 200)["total"] == 1


def test_the_same_condition_twice_in_one_transaction_is_one_patient(client, auth, make_patient, make_response):
    condition = {"ifNoneExist": f"identifier={NHS_NUMBER}|{nhs_number(7)}"}
    first_url, second_url = urn(), urn()
    answer = expect(client.post("/fhir", headers=auth, json=bundle(
        "transaction",
        entry("POST", "Patient", make_patient(7), fullUrl=first_url, request=condition),
        entry("POST", "Patient", make_patient(7), fullUrl=second_url, request=condition),
        entry("POST", "QuestionnaireResponse", make_response(subject=second_url)),
    )), 200)
    assert statuses(answer) == ["201 Created", "200 OK", "201 Created"]
    assert location_id(answer["entry"][0]) == location_id(answer["entry"][1])
    assert answer["entry"][2]["resource"]["subject"]["reference"] == f"Patient/{location_id(answer['entry'][0])}"
    assert by_identifier(client, auth, 7)["total"] == 1


def test_delete_put_patch_and_get_in_one_transaction(client, auth, create, make_patient):
    kept, doomed = create(make_patient(8, family="Kept")), create(make_patient(9))
    patch = [{"op": "replace", "path": "/name/0/family", "value": "Patched"}]
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(orjson.dumps(patch)).decode()}
    answer = expect(client.post("/fhir", headers=auth, json=bundle(
        "transaction",
        entry("GET", f"Patient/{kept['id']}"),  # done last: sees the patch
        entry("PATCH", f"Patient/{kept['id']}", binary, request={"ifMatch": 'W/"1"'}),
        entry("DELETE", f"Patient/{doomed['id']}"),
        entry("PUT", "Patient/client-chosen", make_patient(10, resource_id="client-chosen")),
    )), 200)
    assert statuses(answer) == ["200 OK", "200 OK", "204 No Content", "201 Created"]
    assert answer["entry"][0]["resource"]["name"][0]["family"] == "Patched"
    assert answer["entry"][1]["response"]["etag"] == 'W/"2"'
    expect(client.get(f"/fhir/Patient/{doomed['id']}", headers=auth), 410)
    assert expect(client.get("/fhir/Patient/client-chosen", headers=auth), 200)["id"] == "client-chosen"


def test_a_stale_if_match_is_412_and_nothing_is_written(client, auth, create, make_patient):
    kept = create(make_patient(11))
    outcome = expect(client.post("/fhir", headers=auth, json=bundle(
        "transaction",
        entry("POST", "Patient", make_patient(12)),
        entry("PUT", f"Patient/{kept['id']}", {**make_patient(11, family="Other"), "id": kept["id"]},
              request={"ifMatch": 'W/"7"'}),
    )), 412)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1]"]
    assert by_identifier(client, auth, 12)["total"] == 0


def test_conditional_update_in_a_transaction(client, auth, create, make_patient):
    existing = create(make_patient(13, family="Before"))
    condition = f"Patient?identifier={NHS_NUMBER}|{nhs_number(13)}"
    answer = expect(client.post("/fhir", headers=auth, json=bundle(
        "transaction", entry("PUT", condition, make_patient(13, family="After")))), 200)
    assert statuses(answer) == ["200 OK"] and location_id(answer["entry"][0]) == existing["id"]
    assert expect(client.get(f"/fhir/Patient/{existing['id']}", headers=auth), 200)["name"][0]["family"] == "After"


def test_prefer_return_minimal_leaves_the_resources_out(client, auth):
    answer = expect(client.post("/fhir", json=example("bundle-dialog.json"),
                                headers={**auth, "Prefer": "return=minimal"}), 200)
    assert all("resource" not in item and item["response"]["location"] for item in answer["entry"])


def test_an_xml_transaction_bundle(client, auth):
    model = client.app.state.fhir.bridge.validator.model
    body = resource_to_xml(example("bundle-dialog.json"), model)
    response = client.post("/fhir", content=body, headers={**auth, "Content-Type": "application/fhir+xml",
                                                            "Accept": "application/fhir+xml"})
    assert response.status_code == 200, response.text[:800]
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert response.content.count(b'<status value="201 Created"/>') == 3


# -- refusals ---------------------------------------------------------------------------------------------
def test_a_transaction_with_a_forbidden_entry_is_refused_whole(client, token_for, auth, make_patient, make_response):
    writer = token_for("system/QuestionnaireResponse.write", "system/*.read")
    outcome = expect(client.post("/fhir", headers=writer, json=bundle(
        "transaction",
        entry("POST", "QuestionnaireResponse", make_response()),
        entry("POST", "Patient", make_patient(14)),
    )), 403)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1]"]
    assert expect(client.get("/fhir/QuestionnaireResponse", headers=auth), 200)["total"] == 0
    expect(client.post("/fhir", json=bundle("transaction", entry("POST", "Patient", make_patient(14)))), 401)


def test_a_read_only_token_cannot_write_in_a_batch(client, token_for, make_patient):
    reader = token_for("system/*.read")
    answer = expect(client.post("/fhir", headers=reader, json=bundle(
        "batch", entry("POST", "Patient", make_patient(15)), entry("GET", "Patient"))), 200)
    assert statuses(answer) == ["403 Forbidden", "200 OK"]
    assert issue_codes(answer["entry"][0]["response"]["outcome"]) == ["forbidden"]
    assert answer["entry"][1]["resource"]["total"] == 0


@pytest.mark.parametrize("broken, status", [
    ({"resourceType": "Bundle", "type": "collection"}, 400),
    ({"resourceType": "Patient"}, 400),
    (bundle("transaction", {"resource": {"resourceType": "Patient"}}), 400),  # an entry without a request
    (bundle("transaction", entry("DELETE", "Patient?identifier=x")), 400),  # conditional delete
    (bundle("transaction", entry("PATCH", "Patient/x", {"resourceType": "Parameters"})), 400),  # FHIRPath Patch
    (bundle("transaction", entry("POST", "Spaceship", {"resourceType": "Spaceship"})), 404),
])
def test_malformed_bundles(client, auth, broken, status):
    expect(client.post("/fhir", json=broken, headers=auth), status)


def test_a_dangling_placeholder_is_400_naming_it(client, auth, make_response):
    outcome = expect(client.post("/fhir", headers=auth, json=bundle(
        "transaction", entry("POST", "QuestionnaireResponse", make_response(subject=urn())))), 400)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[0].resource.subject.reference"]


# -- batch ----------------------------------------------------------------------------------------------
def test_batch_entries_succeed_and_fail_on_their_own(client, auth, make_response):
    answer = expect(client.post("/fhir", headers=auth, json=bundle(
        "batch",
        entry("POST", "QuestionnaireResponse", make_response()),
        entry("POST", "QuestionnaireResponse", invalid(make_response())),
        entry("GET", "QuestionnaireResponse/nobody"),
    )), 200)
    assert answer["type"] == "batch-response"
    assert statuses(answer) == ["201 Created", "422 Unprocessable Entity", "404 Not Found"]
    failed = answer["entry"][1]["response"]["outcome"]
    assert failed["issue"][0]["expression"] == ["Bundle.entry[1]"] and "code-invalid" in issue_codes(failed)
    stored_id = location_id(answer["entry"][0])
    assert expect(client.get(f"/fhir/QuestionnaireResponse/{stored_id}", headers=auth), 200)["id"] == stored_id
    assert expect(client.get("/fhir/QuestionnaireResponse", headers=auth), 200)["total"] == 1
