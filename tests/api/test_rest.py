"""The FHIR RESTful interactions: capability, read, vread, create, update, conditional create and
update, JSON Patch, delete, history, Prefer, Provenance and the DIALOG score row."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import select

from fhir_bridge.store.schema import dialog_scores
from tests.api.conftest import DIALOG_PROFILE, NHS_NUMBER, PARTNER, nhs_number
from tests.api.helpers import expect, issue_codes

BASE = "http://testserver/fhir"
PATCH = {"Content-Type": "application/json-patch+json"}


def identifier_query(serial: int) -> str:
    return "identifier=" + quote(f"{NHS_NUMBER}|{nhs_number(serial)}")


# -- metadata -----------------------------------------------------------------------------------------
def test_metadata_is_public_and_describes_what_is_served(client):
    statement = expect(client.get("/fhir/metadata"), 200)  # no token
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert {"application/fhir+json", "application/fhir+xml"} <= set(statement["format"])
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    wanted_params = {
        "Patient": {"identifier", "name", "birthdate"},
        "QuestionnaireResponse": {"subject", "patient", "questionnaire", "authored", "status", "author",
                                  "purpose", "timepoint"},
        "Observation": {"subject", "code", "date", "derived-from"},
        "CarePlan": {"subject", "status", "category"},
    }
    for rtype, params in wanted_params.items():
        entry = resources[rtype]
        assert params <= {p["name"] for p in entry["searchParam"]}, rtype
        assert entry["versioning"] == "versioned-update"
        assert entry["updateCreate"] and entry["conditionalCreate"] and entry["conditionalUpdate"]
        assert {"read", "vread", "create", "update", "patch", "delete", "search-type",
                "history-instance"} <= {i["code"] for i in entry["interaction"]}
    assert "Provenance" in resources
    assert DIALOG_PROFILE in resources["QuestionnaireResponse"]["supportedProfile"]
    assert any("bridge-patient" in p for p in resources["Patient"]["supportedProfile"])
    operations = {op["name"].lstrip("$") for entry in [statement["rest"][0], *resources.values()]
                  for op in entry.get("operation", [])}
    assert {"validate", "extract"} <= operations


def test_metadata_in_xml(client):
    response = client.get("/fhir/metadata", params={"_format": "xml"})
    expect(response, 200)
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert b"<CapabilityStatement" in response.content and b'<fhirVersion value="4.0.1"/>' in response.content


# -- create and read ----------------------------------------------------------------------------------
def test_create_assigns_the_id_and_answers_201_with_version_headers(client, auth, make_patient):
    patient = make_patient(resource_id="chosen-by-client")
    response = client.post("/fhir/Patient", json=patient, headers=auth)
    created = expect(response, 201)
    assert created["id"] != "chosen-by-client"
    assert created["meta"]["versionId"] == "1"
    assert response.headers["Location"] == f"{BASE}/Patient/{created['id']}/_history/1"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Last-Modified"] == "Wed, 01 Jan 2025 00:00:00 GMT"  # the injected clock
    assert created["meta"]["lastUpdated"] == "2025-01-01T00:00:00.000Z"


def test_read_answers_the_current_version(client, auth, create, make_patient):
    created = create(make_patient())
    response = client.get(f"/fhir/Patient/{created['id']}", headers=auth)
    assert expect(response, 200) == created
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Last-Modified"]
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"


def test_read_unknown_is_404(client, auth):
    outcome = expect(client.get("/fhir/Patient/nobody", headers=auth), 404)
    assert issue_codes(outcome) == ["not-found"]


def test_unknown_and_unserved_types_are_404(client, auth):
    assert issue_codes(expect(client.get("/fhir/Spaceship/1", headers=auth), 404)) == ["not-found"]
    assert expect(client.get("/fhir/Medication/1", headers=auth), 404)


def test_create_with_a_body_of_another_type_is_400(client, auth, make_patient):
    expect(client.post("/fhir/QuestionnaireResponse", json=make_patient(), headers=auth), 400)


def test_create_without_a_body_is_400(client, auth):
    expect(client.post("/fhir/Patient", content=b"", headers=auth), 400)


def test_create_with_broken_json_is_400(client, auth):
    response = client.post("/fhir/Patient", content=b'{"resourceType": "Patient",',
                           headers={**auth, "Content-Type": "application/fhir+json"})
    expect(response, 400)


# -- vread --------------------------------------------------------------------------------------------
def test_vread_serves_each_version_and_410_for_the_deletion(client, auth, create, make_patient):
    created = create(make_patient(family="Old"))
    pid = created["id"]
    expect(client.put(f"/fhir/Patient/{pid}", json={**make_patient(family="New"), "id": pid}, headers=auth), 200)
    expect(client.delete(f"/fhir/Patient/{pid}", headers=auth), 200)
    first = client.get(f"/fhir/Patient/{pid}/_history/1", headers=auth)
    assert expect(first, 200)["name"][0]["family"] == "Old"
    assert first.headers["ETag"] == 'W/"1"'
    assert expect(client.get(f"/fhir/Patient/{pid}/_history/2", headers=auth), 200)["name"][0]["family"] == "New"
    assert issue_codes(expect(client.get(f"/fhir/Patient/{pid}/_history/3", headers=auth), 410)) == ["deleted"]
    expect(client.get(f"/fhir/Patient/{pid}/_history/4", headers=auth), 404)
    expect(client.get(f"/fhir/Patient/{pid}/_history/latest", headers=auth), 400)


# -- update -------------------------------------------------------------------------------------------
def test_update_makes_the_next_version(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    response = client.put(f"/fhir/Patient/{pid}", json={**make_patient(given="Rose"), "id": pid}, headers=auth)
    updated = expect(response, 200)
    assert updated["meta"]["versionId"] == "2" and updated["name"][0]["given"] == ["Rose"]
    assert response.headers["ETag"] == 'W/"2"'
    assert expect(client.get(f"/fhir/Patient/{pid}", headers=auth), 200) == updated


def test_update_with_unchanged_content_keeps_the_version(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    response = client.put(f"/fhir/Patient/{pid}", json={**make_patient(), "id": pid}, headers=auth)
    assert expect(response, 200)["meta"]["versionId"] == "1"


def test_update_as_create_with_a_client_id_is_201(client, auth, make_patient):
    response = client.put("/fhir/Patient/client-id-1", json=make_patient(resource_id="client-id-1"), headers=auth)
    assert expect(response, 201)["id"] == "client-id-1"
    assert response.headers["Location"] == f"{BASE}/Patient/client-id-1/_history/1"
    assert expect(client.get("/fhir/Patient/client-id-1", headers=auth), 200)["meta"]["versionId"] == "1"


@pytest.mark.parametrize("body_id", ["another-id", None])
def test_update_whose_body_id_differs_from_the_url_is_400(client, auth, make_patient, body_id):
    expect(client.put("/fhir/Patient/url-id", json=make_patient(resource_id=body_id), headers=auth), 400)
    expect(client.get("/fhir/Patient/url-id", headers=auth), 404)


def test_if_match_locks_optimistically(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    first = {**make_patient(given="First"), "id": pid}
    expect(client.put(f"/fhir/Patient/{pid}", json=first, headers={**auth, "If-Match": 'W/"1"'}), 200)
    stale = {**make_patient(given="Stale"), "id": pid}
    refused = client.put(f"/fhir/Patient/{pid}", json=stale, headers={**auth, "If-Match": 'W/"1"'})
    outcome = expect(refused, 412)
    assert issue_codes(outcome) == ["conflict"]
    assert refused.headers["ETag"] == 'W/"2"'  # the version to read again
    assert expect(client.get(f"/fhir/Patient/{pid}", headers=auth), 200)["name"][0]["given"] == ["First"]
    expect(client.put(f"/fhir/Patient/{pid}", json=stale, headers={**auth, "If-Match": 'W/"2"'}), 200)
    expect(client.put(f"/fhir/Patient/{pid}", json=stale, headers={**auth, "If-Match": "two"}), 400)


# -- conditional create -------------------------------------------------------------------------------
def test_if_none_exist_creates_on_no_match_and_returns_the_one_match(client, auth, make_patient, bridge):
    condition = {**auth, "If-None-Exist": identifier_query(7)}
    created = expect(client.post("/fhir/Patient", json=make_patient(7), headers=condition), 201)
    again = client.post("/fhir/Patient", json=make_patient(7, given="Other"), headers=condition)
    assert expect(again, 200)["id"] == created["id"]
    assert again.headers["ETag"] == 'W/"1"'
    assert bridge.repository.count("Patient") == 1


def test_if_none_exist_with_several_matches_is_412(client, auth, create, make_patient, bridge):
    create(make_patient(1, family="Twin"))
    create(make_patient(2, family="Twin"))
    response = client.post("/fhir/Patient", json=make_patient(3, family="Twin"),
                           headers={**auth, "If-None-Exist": "family=Twin"})
    expect(response, 412)
    assert bridge.repository.count("Patient") == 2


# -- conditional update -------------------------------------------------------------------------------
def test_conditional_update_creates_updates_or_refuses(client, auth, create, make_patient):
    url = f"/fhir/Patient?{identifier_query(11)}"
    created = expect(client.put(url, json=make_patient(11), headers=auth), 201)
    updated = expect(client.put(url, json=make_patient(11, given="Renamed"), headers=auth), 200)
    assert updated["id"] == created["id"] and updated["meta"]["versionId"] == "2"
    create(make_patient(12, family="Twin"))
    create(make_patient(13, family="Twin"))
    expect(client.put("/fhir/Patient?family=Twin", json=make_patient(14, family="Twin"), headers=auth), 412)


def test_conditional_update_needs_criteria(client, auth, make_patient):
    expect(client.put("/fhir/Patient", json=make_patient(), headers=auth), 400)


# -- patch --------------------------------------------------------------------------------------------
def test_json_patch_is_applied_as_a_new_version(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    ops = [{"op": "test", "path": "/gender", "value": "female"}, {"op": "replace", "path": "/gender", "value": "other"}]
    response = client.patch(f"/fhir/Patient/{pid}", json=ops, headers={**auth, **PATCH})
    patched = expect(response, 200)
    assert patched["gender"] == "other" and patched["meta"]["versionId"] == "2"
    assert response.headers["ETag"] == 'W/"2"'


def test_json_patch_whose_test_fails_is_422_and_changes_nothing(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    ops = [{"op": "test", "path": "/gender", "value": "male"}, {"op": "replace", "path": "/gender", "value": "other"}]
    outcome = expect(client.patch(f"/fhir/Patient/{pid}", json=ops, headers={**auth, **PATCH}), 422)
    assert issue_codes(outcome) == ["processing"]
    assert expect(client.get(f"/fhir/Patient/{pid}", headers=auth), 200)["meta"]["versionId"] == "1"


def test_json_patch_producing_an_invalid_resource_is_422(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "robot"}]
    expect(client.patch(f"/fhir/Patient/{pid}", json=ops, headers={**auth, **PATCH}), 422)


def test_json_patch_needs_its_content_type(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    outcome = expect(client.patch(f"/fhir/Patient/{pid}", json=ops, headers=auth), 415)
    assert issue_codes(outcome) == ["not-supported"]


def test_json_patch_honours_if_match(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    stale = client.patch(f"/fhir/Patient/{pid}", json=ops, headers={**auth, **PATCH, "If-Match": 'W/"9"'})
    expect(stale, 412)
    assert stale.headers["ETag"] == 'W/"1"'
    expect(client.patch(f"/fhir/Patient/{pid}", json=ops, headers={**auth, **PATCH, "If-Match": 'W/"1"'}), 200)


def test_json_patch_of_an_unknown_resource_is_404(client, auth):
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    expect(client.patch("/fhir/Patient/nobody", json=ops, headers={**auth, **PATCH}), 404)


# -- delete -------------------------------------------------------------------------------------------
def test_delete_then_read_is_410_and_history_is_kept(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    response = client.delete(f"/fhir/Patient/{pid}", headers=auth)
    expect(response, 200)
    assert response.headers["ETag"] == 'W/"2"'
    assert issue_codes(expect(client.get(f"/fhir/Patient/{pid}", headers=auth), 410)) == ["deleted"]
    history = expect(client.get(f"/fhir/Patient/{pid}/_history", headers=auth), 200)
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    assert history["entry"][1]["resource"]["id"] == pid


def test_a_deleted_resource_can_be_recreated_by_update(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    expect(client.delete(f"/fhir/Patient/{pid}", headers=auth), 200)
    response = client.put(f"/fhir/Patient/{pid}", json={**make_patient(), "id": pid}, headers=auth)
    assert expect(response, 201)["meta"]["versionId"] == "3"


# -- history ------------------------------------------------------------------------------------------
def test_instance_history_entries_carry_request_and_response(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    expect(client.put(f"/fhir/Patient/{pid}", json={**make_patient(given="B"), "id": pid}, headers=auth), 200)
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    expect(client.patch(f"/fhir/Patient/{pid}", json=ops, headers={**auth, **PATCH}), 200)
    history = expect(client.get(f"/fhir/Patient/{pid}/_history", headers=auth), 200)
    assert history["type"] == "history" and history["total"] == 3
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]
    assert [e["request"]["method"] for e in history["entry"]] == ["PATCH", "PUT", "POST"]
    assert history["entry"][1]["request"]["url"] == f"Patient/{pid}"
    assert history["entry"][2]["request"]["url"] == "Patient"
    assert [e["response"]["status"] for e in history["entry"]] == ["200 OK", "200 OK", "201 Created"]
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert all(e["fullUrl"] == f"{BASE}/Patient/{pid}" for e in history["entry"])
    assert history["entry"][0]["response"]["lastModified"] == history["entry"][0]["resource"]["meta"]["lastUpdated"]


def test_history_of_a_resource_that_never_existed_is_404(client, auth):
    expect(client.get("/fhir/Patient/nobody/_history", headers=auth), 404)


def test_type_history_pages_with_count(client, auth, create, make_patient, make_response):
    ids = [create(make_patient(n))["id"] for n in range(3)]
    create(make_response())
    first = expect(client.get("/fhir/Patient/_history", params={"_count": 2}, headers=auth), 200)
    assert first["total"] == 3 and len(first["entry"]) == 2
    assert {e["resource"]["resourceType"] for e in first["entry"]} == {"Patient"}
    next_url = next(li["url"] for li in first["link"] if li["relation"] == "next")
    second = expect(client.get(next_url, headers=auth), 200)
    assert [e["resource"]["id"] for e in first["entry"] + second["entry"]] == ids[::-1]


def test_history_links_reach_the_last_page_and_back(client, auth, create, make_patient):
    for n in range(5):
        create(make_patient(n))
    page = expect(client.get("/fhir/Patient/_history", params={"_count": 2}, headers=auth), 200)
    links = {li["relation"]: li["url"] for li in page["link"]}
    last = expect(client.get(links["last"], headers=auth), 200)
    assert len(last["entry"]) == 1 and "next" not in {li["relation"] for li in last["link"]}
    previous = next(li["url"] for li in last["link"] if li["relation"] == "previous")
    assert len(expect(client.get(previous, headers=auth), 200)["entry"]) == 2
    zero = expect(client.get("/fhir/Patient/_history", params={"_count": 0}, headers=auth), 200)
    next_url = next(li["url"] for li in zero["link"] if li["relation"] == "next")
    assert "_offset=1" in next_url  # _count=0 pages by one: never a link back to itself


def test_system_history_holds_every_type_including_provenance(client, auth, create, make_patient, make_response):
    create(make_patient())
    create(make_response())
    history = expect(client.get("/fhir/_history", headers=auth), 200)
    types = [e["resource"]["resourceType"] for e in history["entry"]]
    assert history["total"] == 4
    assert sorted(types) == ["Patient", "Provenance", "Provenance", "QuestionnaireResponse"]


def test_history_since_keeps_later_versions_only(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    second = expect(client.put(f"/fhir/Patient/{pid}", json={**make_patient(given="B"), "id": pid}, headers=auth), 200)
    since = second["meta"]["lastUpdated"]
    history = expect(client.get(f"/fhir/Patient/{pid}/_history", params={"_since": since}, headers=auth), 200)
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2"]
    system = expect(client.get("/fhir/_history", params={"_since": since}, headers=auth), 200)
    assert {e["resource"]["resourceType"] for e in system["entry"]} == {"Patient", "Provenance"}
    expect(client.get("/fhir/_history", params={"_since": "yesterday"}, headers=auth), 400)


# -- Prefer: return= ----------------------------------------------------------------------------------
def test_prefer_return_minimal_answers_headers_only(client, auth, make_patient):
    response = client.post("/fhir/Patient", json=make_patient(), headers={**auth, "Prefer": "return=minimal"})
    assert expect(response, 201) is None
    assert response.headers["Location"].endswith("/_history/1") and response.headers["ETag"] == 'W/"1"'


def test_prefer_return_operation_outcome(client, auth, make_patient):
    response = client.post("/fhir/Patient", json=make_patient(), headers={**auth, "Prefer": "return=OperationOutcome"})
    outcome = expect(response, 201)
    assert outcome["resourceType"] == "OperationOutcome"
    assert response.headers["Location"]


# -- Provenance ---------------------------------------------------------------------------------------
def test_every_write_records_a_provenance_naming_partner_and_user(client, auth, make_patient):
    created = expect(client.post("/fhir/Patient", json=make_patient(), headers={**auth, "X-User": "dr.jones"}), 201)
    pid = created["id"]
    expect(client.delete(f"/fhir/Patient/{pid}", headers=auth), 200)
    history = expect(client.get("/fhir/Provenance/_history", headers=auth), 200)
    provenances = [e["resource"] for e in history["entry"]]
    assert [p["target"][0]["reference"] for p in provenances] == [
        f"Patient/{pid}/_history/2", f"Patient/{pid}/_history/1"]
    deletion, creation = provenances
    assert [c["code"] for c in deletion["activity"]["coding"]] == ["DELETE"]
    assert [c["code"] for c in creation["activity"]["coding"]] == ["CREATE"]
    author = creation["agent"][0]["who"]["identifier"]
    assert author == {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": PARTNER}
    assert creation["agent"][1]["who"]["display"] == "dr.jones"
    assert creation["recorded"] == created["meta"]["lastUpdated"]


# -- DIALOG score row ---------------------------------------------------------------------------------
def score_row(bridge, response_id: str):
    with bridge.database.engine.connect() as connection:
        return connection.execute(select(dialog_scores).where(dialog_scores.c.response_id == response_id)).first()


def test_a_dialog_response_writes_its_score_row_and_delete_removes_it(client, auth, bridge, create, make_response):
    rid = create(make_response("Patient/p-1"))["id"]
    row = score_row(bridge, rid)
    assert (row.subject_type, row.subject_id, row.purpose, row.timepoint) == ("Patient", "p-1", "prom", "assessment")
    assert row.rating_mental_health == 3 and row.help_mental_health is True
    assert row.recording_organization == "Organization/example-mh-trust"
    assert row.sqol_answered == 8 and row.sqol_mean is not None
    assert row.authored_text == "2024-02-06T10:15:00+00:00"
    update = {**make_response("Patient/p-1", timepoint="review"), "id": rid}
    expect(client.put(f"/fhir/QuestionnaireResponse/{rid}", json=update, headers=auth), 200)
    assert score_row(bridge, rid).timepoint == "review"
    expect(client.delete(f"/fhir/QuestionnaireResponse/{rid}", headers=auth), 200)
    assert score_row(bridge, rid) is None
