"""Content negotiation: JSON and XML both ways, _format over Accept, 406 and 415, hardened XML."""
from __future__ import annotations

import orjson
import pytest
from lxml import etree

from tests.api.helpers import FHIR_NS, expect, issue_codes, match_ids, outcome_of
from tests.conftest import EXAMPLES

XML = "application/fhir+xml"
XML_PATIENT = (EXAMPLES / "xml" / "valid-patient-nhs-number-verified.xml").read_bytes()


def xml_root(response) -> etree._Element:
    assert response.headers["content-type"] == f"{XML}; charset=utf-8"
    return etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))


def value(root: etree._Element, path: str) -> str:
    return root.find(path.replace("f:", FHIR_NS)).get("value")


def test_an_xml_body_is_stored_and_read_back_as_json(client, auth):
    response = client.put("/fhir/Patient/example-patient-01", content=XML_PATIENT,
                          headers={**auth, "Content-Type": f"{XML}; charset=utf-8"})
    stored = expect(response, 201)
    assert stored["identifier"][0]["value"] == "9994527819" and stored["birthDate"] == "1986-09-23"


def test_an_xml_create_answers_in_xml_when_accepted(client, auth):
    response = client.post("/fhir/Patient", content=XML_PATIENT,
                           headers={**auth, "Content-Type": XML, "Accept": XML})
    expect(response, 201)
    root = xml_root(response)
    assert root.tag == f"{FHIR_NS}Patient"
    assert value(root, "f:meta/f:versionId") == "1"
    assert value(root, "f:birthDate") == "1986-09-23"


@pytest.mark.parametrize("params, headers", [
    ({"_format": "xml"}, {}),
    ({"_format": XML}, {}),
    ({}, {"Accept": XML}),
    ({}, {"Accept": "text/html;q=1, application/fhir+xml;q=0.5"}),
    ({"_format": "xml"}, {"Accept": "application/fhir+json"}),   # _format wins over Accept
])
def test_read_answers_in_xml(client, auth, create, make_patient, params, headers):
    pid = create(make_patient())["id"]
    root = xml_root(client.get(f"/fhir/Patient/{pid}", params=params, headers={**auth, **headers}))
    assert value(root, "f:id") == pid


@pytest.mark.parametrize("accept", ["application/fhir+json", "application/json", "*/*", None])
def test_read_answers_in_json(client, auth, create, make_patient, accept):
    pid = create(make_patient())["id"]
    response = client.get(f"/fhir/Patient/{pid}", headers={**auth, **({"Accept": accept} if accept else {})})
    assert expect(response, 200)["id"] == pid
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"


def test_search_bundle_in_xml(client, auth, create, make_patient):
    pid = create(make_patient())["id"]
    root = xml_root(client.get("/fhir/Patient", params={"_id": pid, "_format": "xml"}, headers=auth))
    assert root.tag == f"{FHIR_NS}Bundle" and value(root, "f:type") == "searchset"
    assert value(root, "f:entry/f:resource/f:Patient/f:id") == pid


def test_errors_follow_the_requested_format(client, auth):
    response = client.get("/fhir/Patient/nobody", headers={**auth, "Accept": XML})
    expect(response, 404)
    assert xml_root(response).tag == f"{FHIR_NS}OperationOutcome"
    assert issue_codes(outcome_of(response)) == ["not-found"]


@pytest.mark.parametrize("params, headers", [({}, {"Accept": "text/csv"}), ({"_format": "csv"}, {})])
def test_an_unproducible_format_is_406_in_json(client, auth, create, make_patient, params, headers):
    pid = create(make_patient())["id"]
    response = client.get(f"/fhir/Patient/{pid}", params=params, headers={**auth, **headers})
    assert issue_codes(expect(response, 406)) == ["not-supported"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/fhir+json; charset=latin-1"])
def test_an_unsupported_body_is_415(client, auth, make_patient, content_type):
    response = client.post("/fhir/Patient", content=orjson.dumps(make_patient()),
                           headers={**auth, "Content-Type": content_type})
    assert issue_codes(expect(response, 415)) == ["not-supported"]


def test_a_body_that_contradicts_its_content_type_is_400(client, auth):
    response = client.post("/fhir/Patient", content=XML_PATIENT,
                           headers={**auth, "Content-Type": "application/fhir+json"})
    expect(response, 400)


def test_xml_entities_are_never_resolved(client, auth):
    hostile = (b'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
               b'<Patient xmlns="http://hl7.org/fhir"><gender value="&x;"/></Patient>')
    response = client.post("/fhir/Patient", content=hostile, headers={**auth, "Content-Type": XML})
    expect(response, 400)
    assert b"root:" not in response.content


def test_non_ascii_text_survives_json_and_xml(client, auth, create, make_patient):
    patient = create(make_patient(family="Ó'Súilleabháin", given="Zoë"))
    as_xml = client.get(f"/fhir/Patient/{patient['id']}", params={"_format": "xml"}, headers=auth)
    assert value(xml_root(as_xml), "f:name/f:family") == "Ó'Súilleabháin"
    found = expect(client.get("/fhir/Patient", params={"family": "Ó'Súilleabháin"}, headers=auth), 200)
    assert match_ids(found) == [patient["id"]]
