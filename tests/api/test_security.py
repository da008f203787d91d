"""Who may do what: bearer tokens (401), SMART system scopes (403), the public /metadata, request
size limits (413), unknown endpoints, and internal errors that never leak a stack trace."""
from __future__ import annotations

import logging

import pytest

from fhir_bridge.api.app import create_app
from tests.api.helpers import OutcomeCheckingClient, expect, issue_codes

REQUESTS = [
    ("GET", "/fhir/Patient/p-1"), ("GET", "/fhir/Patient"), ("POST", "/fhir/Patient"),
    ("PUT", "/fhir/Patient/p-1"), ("DELETE", "/fhir/Patient/p-1"), ("GET", "/fhir/Patient/p-1/_history"),
    ("GET", "/fhir/_history"), ("POST", "/fhir/Patient/_search"),
]


@pytest.mark.parametrize("method, path", REQUESTS)
def test_no_token_is_401_with_a_bearer_challenge(client, make_patient, method, path):
    body = {"json": {**make_patient(), "id": "p-1"}} if method in ("POST", "PUT") and "_search" not in path else {}
    response = client.request(method, path, **body)
    assert issue_codes(expect(response, 401)) == ["login"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", ["Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer ", "not-a-token"])
def test_a_bad_token_is_401(client, authorization):
    response = client.get("/fhir/Patient", headers={"Authorization": authorization})
    assert issue_codes(expect(response, 401)) == ["login"]


def test_metadata_needs_no_token(client):
    expect(client.get("/fhir/metadata"), 200)
    expect(client.get("/fhir/metadata", headers={"Authorization": "Bearer not-a-token"}), 200)


# The scope tests hold access/all-people: which people a partner sees is test_care_access.py's subject.
def test_a_read_only_token_reads_but_cannot_write(client, token_for, create, make_patient):
    reader = token_for("system/*.read", "access/all-people")
    pid = create(make_patient())["id"]
    expect(client.get(f"/fhir/Patient/{pid}", headers=reader), 200)
    expect(client.get("/fhir/Patient", headers=reader), 200)
    assert issue_codes(expect(client.post("/fhir/Patient", json=make_patient(2), headers=reader), 403)) == ["forbidden"]
    expect(client.put(f"/fhir/Patient/{pid}", json={**make_patient(), "id": pid}, headers=reader), 403)
    expect(client.delete(f"/fhir/Patient/{pid}", headers=reader), 403)
    expect(client.get(f"/fhir/Patient/{pid}", headers=reader), 200)


def test_a_type_scoped_token_writes_only_that_type(client, token_for, make_patient, make_response):
    partner = token_for("system/QuestionnaireResponse.write", "system/*.read", "access/all-people")
    expect(client.post("/fhir/QuestionnaireResponse", json=make_response(), headers=partner), 201)
    expect(client.post("/fhir/Patient", json=make_patient(), headers=partner), 403)


def test_a_write_only_token_cannot_read(client, token_for, make_response):
    writer = token_for("system/QuestionnaireResponse.write", "access/all-people")
    rid = expect(client.post("/fhir/QuestionnaireResponse", json=make_response(), headers=writer), 201)["id"]
    expect(client.get(f"/fhir/QuestionnaireResponse/{rid}", headers=writer), 403)
    expect(client.get("/fhir/_history", headers=writer), 403)


def test_without_authentication_everything_is_allowed_and_said(bridge, make_patient, caplog):
    with caplog.at_level(logging.WARNING, logger="fhir_bridge.api"):
        app = create_app(bridge, tokens=None)
    assert "AUTHENTICATION IS OFF" in caplog.text
    with OutcomeCheckingClient(app) as open_client:
        expect(open_client.post("/fhir/Patient", json=make_patient()), 201)
        statement = expect(open_client.get("/fhir/metadata"), 200)
    assert "OFF" in statement["rest"][0]["security"]["description"]


# -- request size ---------------------------------------------------------------------------------------
@pytest.fixture
def small_client(bridge, tokens):
    with OutcomeCheckingClient(create_app(bridge, tokens=tokens, max_body_bytes=2000),
                               raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_body_over_the_limit_is_413(small_client, auth, make_patient, make_response):
    expect(small_client.post("/fhir/Patient", json=make_patient(), headers=auth), 201)  # ~0.9 kB: fits
    response = small_client.post("/fhir/QuestionnaireResponse", json=make_response(), headers=auth)  # ~6 kB
    assert issue_codes(expect(response, 413)) == ["too-costly"]


def test_a_streamed_body_without_length_is_cut_at_the_limit(small_client, auth):
    def chunks():
        yield b'{"resourceType": "Patient", "gender": "'
        for _ in range(300):
            yield b"x" * 100
        yield b'"}'

    response = small_client.post("/fhir/Patient", content=chunks(),
                                 headers={**auth, "Content-Type": "application/fhir+json"})
    assert "content-length" not in response.request.headers
    expect(response, 413)


# -- endpoints and internal errors -----------------------------------------------------------------------
def test_unknown_endpoints_and_methods_answer_with_outcomes(client, auth):
    expect(client.get("/fhir/Patient/p-1/something/else/entirely", headers=auth), 404)
    expect(client.get("/not-fhir", headers=auth), 404)
    expect(client.delete("/fhir/metadata", headers=auth), 405)


def test_an_internal_error_is_500_with_a_correlation_id_and_no_trace(client, auth, bridge, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("connection to db-secret-host:5432 refused")

    monkeypatch.setattr(bridge.repository, "read", broken)
    with caplog.at_level(logging.ERROR, logger="fhir_bridge.api"):
        response = client.get("/fhir/Patient/p-1", headers=auth)
    outcome = expect(response, 500)
    correlation = response.headers["X-Correlation-Id"]
    assert issue_codes(outcome) == ["exception"] and correlation in outcome["issue"][0]["diagnostics"]
    assert "db-secret-host" not in response.text and "RuntimeError" not in response.text
    [record] = [r for r in caplog.records if correlation in r.getMessage()]
    assert record.exc_info and "db-secret-host" in caplog.text
