"""$dialog-outcomes over HTTP: valid MeasureReports, authentication, clear errors, the Measures."""
from __future__ import annotations

import pytest

from fhir_bridge.bridge import Bridge
from tests.api.helpers import expect, issue_codes
from tests.reports import dataset

OPERATION = "/fhir/Measure/$dialog-outcomes"
YEAR = {"periodStart": "2024-01-01", "periodEnd": "2024-12-31"}


@pytest.fixture
def loaded(bridge: Bridge) -> Bridge:
    dataset.load(bridge.repository)
    return bridge


def test_population_report_is_a_bundle_of_valid_measure_reports(client, auth, loaded, validator) -> None:
    bundle = expect(client.get(OPERATION, params=YEAR, headers=auth), 200)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    reports = [e["resource"] for e in bundle["entry"]]
    for report in reports:
        assert report["resourceType"] == "MeasureReport" and report["type"] == "summary"
        assert report["period"] == {"start": "2024-01-01", "end": "2024-12-31"}
        assert report["reporter"]["identifier"]["value"] == "RV3"
        result = validator.validate(report)
        assert result.valid, [(i.expression, i.message) for i in result.issues]
    sqol = next(g for g in reports[1]["group"] if g["code"]["coding"][0]["code"] == "sqol-mean")
    assert sqol["measureScore"]["value"] == 3.98
    assert [s["code"][0]["coding"][0]["code"] for s in sqol["stratifier"]] == [
        "ethnicity", "gender", "age-band", "team", "organisation"]


def test_the_system_level_and_post_forms_answer_the_same(client, auth, loaded) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2024-01-01"}, {"name": "periodEnd", "valueDate": "2024-12-31"},
        {"name": "level", "valueCode": "service"}, {"name": "team", "valueString": "CareTeam/cmht-north"},
        {"name": "subgroup", "valueCode": "gender"}]}
    posted = expect(client.post("/fhir/$dialog-outcomes", json=body, headers=auth), 200)
    query = {**YEAR, "level": "service", "team": "CareTeam/cmht-north", "subgroup": "gender"}
    got = expect(client.get("/fhir/$dialog-outcomes", params=query, headers=auth), 200)
    assert [e["resource"]["group"] for e in posted["entry"]] == [e["resource"]["group"] for e in got["entry"]]
    people = posted["entry"][0]["resource"]["group"][4]
    assert people["code"]["coding"][0]["code"] == "people" and people["population"][0]["count"] == 15


def test_individual_report_is_about_the_subject(client, auth, loaded) -> None:
    bundle = expect(client.get(OPERATION, params={"subject": "Patient/p-a0"}, headers=auth), 200)
    report = bundle["entry"][0]["resource"]
    assert report["type"] == "individual" and report["subject"] == {"reference": "Patient/p-a0"}


def test_refused_without_a_token_or_the_scope(client, token_for, loaded) -> None:
    outcome = expect(client.get(OPERATION, params=YEAR), 401)
    assert issue_codes(outcome) == ["login"]
    only_patients = token_for("system/Patient.read")
    assert issue_codes(expect(client.get(OPERATION, headers=only_patients), 403)) == ["forbidden"]
    pooled_only = token_for("system/MeasureReport.read", "access/all-people")
    expect(client.get(OPERATION, headers=pooled_only), 200)
    assert issue_codes(expect(client.get(OPERATION, params={"subject": "Patient/p-a0"}, headers=pooled_only),
                              403)) == ["forbidden"]


@pytest.mark.parametrize(("params", "message"), [
    ({"periodStart": "2024-02-30"}, "must be a date"),
    ({"level": "service"}, "needs an organisation or a team"),
    ({"subgroup": "religion"}, "unknown subgroup"),
    ({"colour": "blue"}, "has no parameter 'colour'"),
    ({"level": "everyone"}, "level must be one of"),
])
def test_bad_parameters_are_a_400_operation_outcome(client, auth, bridge, params, message) -> None:
    outcome = expect(client.get(OPERATION, params=params, headers=auth), 400)
    assert message in outcome["issue"][0]["diagnostics"]


def test_the_measures_and_the_operation_are_published(client, auth) -> None:
    measure = expect(client.get("/fhir/Measure/dialog-means", headers=auth), 200)
    assert measure["scoring"]["coding"][0]["code"] == "continuous-variable"
    found = expect(client.get("/fhir/Measure", params={"url": measure["url"]}, headers=auth), 200)
    assert found["total"] == 1
    definition = expect(client.get("/fhir/OperationDefinition/dialog-outcomes", headers=auth), 200)
    assert definition["code"] == "dialog-outcomes"
    capability = expect(client.get("/fhir/metadata"), 200)
    measure_entry = next(r for r in capability["rest"][0]["resource"] if r["type"] == "Measure")
    assert {"name": "dialog-outcomes", "definition": definition["url"]} in measure_entry["operation"]
    assert {"name": "dialog-outcomes", "definition": definition["url"]} in capability["rest"][0]["operation"]
