"""Golden tests: tests/golden/<mapping name>/<case>/{input.csv or input.hl7, parameters.json, expected.json}.

Each case's input is mapped row by row (HL7: message by message, decoded by the HL7 source) with the project's own mappings/; the resources (all rows, in
order) must equal expected.json after normalize(), map without errors and validate against the
project's profiles. FHIR_BRIDGE_UPDATE_GOLDEN=1 rewrites expected.json from the current output
(review the diff before committing it).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from fhir_bridge.formats.csv_reader import read_csv
from fhir_bridge.formats.hl7v2 import parse_message, split_batch
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines.source_hl7 import hl7_record
from fhir_bridge.terminology import Terminology
from tests.conftest import REPO

GOLDEN = Path(__file__).resolve().parent
CASES = sorted(p for p in GOLDEN.glob("*/*") if p.is_dir() and any(p.glob("input.*")))
UPDATE = os.environ.get("FHIR_BRIDGE_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def engine() -> MappingEngine:
    terminology = Terminology.load(REPO / "terminology")
    return MappingEngine(load_mappings(REPO / "mappings", terminology), terminology)


def normalize(resources: list[dict]) -> str:
    """One canonical text: keys sorted, two-space indent. Ids are uuid5s of business identifiers
    and nothing carries a timestamp, so no field needs masking."""
    return json.dumps(resources, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def map_case(engine: MappingEngine, case: Path) -> list[dict]:
    parameters_file = case / "parameters.json"
    parameters: dict[str, Any] = json.loads(parameters_file.read_text()) if parameters_file.exists() else {}
    resources = []
    for where, record in _records(case):
        result = engine.map(case.parent.name, record, where, parameters)
        assert result.ok, [p.to_issue() for p in result.problems]
        resources.extend(result.resources)
    return resources


def _records(case: Path) -> Iterator[tuple[str, dict]]:
    label = f"{case.parent.name}/{case.name}"
    if (case / "input.hl7").exists():
        for number, text in split_batch((case / "input.hl7").read_bytes()):
            yield f"{label}/input.hl7:{number}", hl7_record(parse_message(text))
        return
    for row in read_csv(case / "input.csv"):
        where = f"{label}/input.csv:{row.line}"
        assert row.problem is None, f"{where}: {row.problem}"
        yield where, row.values


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_case(engine, validator, case):
    resources = map_case(engine, case)
    for resource in resources:
        result = validator.validate(resource)
        assert result.valid, (resource["resourceType"], [(i.code, i.expression, i.message) for i in result.errors])
    expected = case / "expected.json"
    if UPDATE:
        expected.write_text(normalize(resources), encoding="utf-8")
    assert expected.exists(), f"no {expected}: run with FHIR_BRIDGE_UPDATE_GOLDEN=1 and review it"
    assert normalize(resources) == normalize(json.loads(expected.read_text(encoding="utf-8")))


def test_every_mapping_has_a_golden_case(engine):
    for name, mapping in engine.mappings.items():
        cases = [c for c in CASES if c.parent.name == name]
        assert cases, f"{mapping.file} has no golden case under tests/golden/{name}/"


def _answers(resources: list[dict]) -> dict[str, str]:
    response = next(r for r in resources if r["resourceType"] == "QuestionnaireResponse")
    return {item["linkId"]: item["answer"][0]["valueCoding"]["code"] for item in response["item"]}


def test_dialog_app_item_order_is_by_domain_not_position(engine):
    # The app numbers partner/family 6 and friendships 7; the Questionnaire the other way round.
    # This person rated Partner / Family 2 and Friendships 6: the domains must keep their own ratings.
    answers = _answers(map_case(engine, GOLDEN / "dialog-app" / "item-order-swapped"))
    assert answers["partner-family"] == "2"
    assert answers["friendships"] == "6"
    assert answers["partner-family.more-help"] == "Y"


def test_dialog_app_blank_is_unanswered_and_8_is_not_applicable(engine):
    answers = _answers(map_case(engine, GOLDEN / "dialog-app" / "blank-and-not-applicable"))
    assert "physical-health" not in answers and "leisure-activities" not in answers  # blank: no item
    assert answers["accommodation"] == answers["partner-family"] == answers["medication"] == "8"
    assert "mental-health.more-help" in answers and "physical-health.more-help" not in answers


def _app_row(case: str) -> dict[str, str]:
    return next(iter(read_csv(GOLDEN / "dialog-app" / case / "input.csv"))).values


@pytest.mark.parametrize("changes, field, code, expression", [
    ({"Friendships Rank": "9"}, "Friendships Rank", "code-invalid", "QuestionnaireResponse.item[10].answer[0].valueCoding"),
    ({"Meetings Additional Help": "0"}, "Meetings Additional Help", "code-invalid",
     "QuestionnaireResponse.item[21].answer[0].valueCoding"),
    ({"Date Start": "31/02/2024"}, "Date Start", "value", "QuestionnaireResponse.id"),
    ({"Client Name": ""}, "Client Name", "required", "Patient.id"),
])
def test_dialog_app_bad_values_are_reported_for_quarantine(engine, changes, field, code, expression):
    result = engine.map("dialog-app", {**_app_row("complete-session"), **changes}, "export.csv:2",
                        {"organization": "RAT"})
    assert not result.ok
    assert (field, code, expression) in {(p.source, p.code, p.expression) for p in result.problems}


def test_dialog_app_misspelt_header_and_unmapped_columns_are_reported(engine):
    # The mapping file carries the ratings; Discussed and Action Items are the adapter's (they become
    # the person's DIALOG+ session: pipelines/dialog_app_sessions.py), so the engine leaves them unread.
    result = engine.map("dialog-app", _app_row("complete-session"), "export.csv:2", {"organization": "RAT"})
    assert result.ok
    assert "Leisure Activitie Discussed" in result.unmapped and "Mental Health Action Items" in result.unmapped
