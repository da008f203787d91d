"""Assertions shared by the API tests.

`OutcomeCheckingClient` checks every answer a test receives: anything that is not 2xx must carry
an OperationOutcome (JSON or XML) with at least one issue that has a severity and a code, and
must never show a stack trace.
"""
from __future__ import annotations

import orjson
from fastapi.testclient import TestClient
from lxml import etree

FHIR_NS = "{http://hl7.org/fhir}"


class OutcomeCheckingClient(TestClient):
    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        if not 200 <= response.status_code < 300:
            outcome_of(response)
        return response


def outcome_of(response) -> dict:
    """The OperationOutcome of an answer, as {"issue": [{"severity", "code", ...}]}, checked."""
    assert "Traceback" not in response.text
    media = response.headers.get("content-type", "")
    if "xml" in media:
        root = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
        assert root.tag == f"{FHIR_NS}OperationOutcome", response.text
        outcome = {"resourceType": "OperationOutcome", "issue": [
            {child.tag.removeprefix(FHIR_NS): child.get("value") for child in issue if child.get("value")}
            for issue in root.iter(f"{FHIR_NS}issue")]}
    else:
        assert "json" in media, f"{response.status_code} answered with {media!r}: {response.text[:200]}"
        outcome = orjson.loads(response.content)
        assert outcome.get("resourceType") == "OperationOutcome", outcome
    assert outcome["issue"], outcome
    for issue in outcome["issue"]:
        assert issue.get("severity") in ("fatal", "error", "warning", "information"), issue
        assert issue.get("code"), issue
    return outcome


def expect(response, status: int) -> dict | None:
    """Assert the status; the JSON body (None when empty or not JSON)."""
    assert response.status_code == status, f"{response.status_code} (wanted {status}): {response.text[:800]}"
    is_json = "json" in response.headers.get("content-type", "")
    return orjson.loads(response.content) if response.content and is_json else None


def issue_codes(outcome: dict) -> list[str]:
    return [issue["code"] for issue in outcome["issue"]]


def matches(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


def match_ids(bundle: dict) -> list[str]:
    return [r["id"] for r in matches(bundle)]


def included(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "include"]


def link(bundle: dict, relation: str) -> str | None:
    return next((li["url"] for li in bundle.get("link", []) if li["relation"] == relation), None)
