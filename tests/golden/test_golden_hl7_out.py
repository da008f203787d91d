"""Golden tests of outbound mappings: tests/golden/<mapping name>/<case>/{response.json, patient.json,
parameters.json, expected.hl7} for every mappings/hl7-out/*.yaml.

The stored response and Patient (as the export reads them from the store) are built into a
message that must equal expected.hl7 (one segment per line there, for readable diffs; CR in the
message), and that message, imported back through the INBOUND mapping (mappings/hl7/oru-dialog.yaml),
must give the same answers. FHIR_BRIDGE_UPDATE_GOLDEN=1 rewrites expected.hl7 (review the diff).
The case files are not named input.* so that test_golden.py, which maps inputs inbound, skips them.
"""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from fhir_bridge.formats.hl7v2 import parse_message
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.measures import load_dialog_definition, score_dialog
from fhir_bridge.outputs import RECORD, dialog_oru_record, load_outbound_mapping
from fhir_bridge.pipelines.export_hl7 import control_id
from fhir_bridge.pipelines.source_hl7 import hl7_record
from fhir_bridge.fhir.dates import to_microseconds
from tests.conftest import REPO

GOLDEN = Path(__file__).resolve().parent
OUTBOUND_FILES = sorted((REPO / "mappings").glob("hl7-out/*.yaml"))  # mhsds-out/: tests/submission
CASES = sorted(p for p in GOLDEN.glob("*/*") if p.is_dir() and (p / "response.json").exists())
UPDATE = os.environ.get("FHIR_BRIDGE_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def definition():
    return load_dialog_definition(REPO / "profiles", REPO / "terminology")


@pytest.fixture(scope="module")
def inbound(validator) -> MappingEngine:
    return MappingEngine(load_mappings(REPO / "mappings", validator.terminology), validator.terminology)


def read_case(case: Path) -> tuple[dict, dict, dict]:
    return tuple(json.loads((case / f"{name}.json").read_text(encoding="utf-8"))
                 for name in ("response", "patient", "parameters"))


def build_case(case: Path, definition) -> str:
    response, patient, parameters = read_case(case)
    mapping = load_outbound_mapping(next(f for f in OUTBOUND_FILES if _name(f) == case.parent.name), RECORD)
    organization = parameters["receiving-organization"]
    record = dialog_oru_record(
        response, patient, definition, receiving_organization=organization, recorder=parameters["recorder"],
        control_id=control_id(response["id"], int(response["meta"]["versionId"])),
        message_time=datetime.fromisoformat(parameters["message-time"]), corrected=parameters["corrected"])
    return mapping.build(record, {"receiving-application": parameters["receiving-application"],
                                  "receiving-facility": organization})


def _name(path: Path) -> str:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["name"]


def answers(response: dict, definition) -> dict[str, object]:
    """What the EPR must receive: ratings 1-7 and help answers by domain (8 and blanks are not sent)."""
    score = score_dialog(response, definition)
    return {"ratings": {d: r for d, r in score.ratings.items() if r is not None},
            "help": {d: h for d, h in score.more_help.items() if h is not None}}


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_outbound_golden_case(case, definition):
    message = build_case(case, definition)
    expected = case / "expected.hl7"
    readable = message.replace("\r", "\n") + "\n"
    if UPDATE:
        expected.write_text(readable, encoding="utf-8")
    assert expected.exists(), f"no {expected}: run with FHIR_BRIDGE_UPDATE_GOLDEN=1 and review it"
    assert readable == expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_outbound_message_imported_back_gives_the_same_answers(case, definition, inbound, validator):
    response, patient, parameters = read_case(case)
    message = build_case(case, definition)
    result = inbound.map("hl7-oru-dialog", hl7_record(parse_message(message)), f"{case.name}:1",
                         {"organization": parameters["recorder"] or "X"})
    assert result.ok, [p.to_issue() for p in result.problems]
    [back] = [r for r in result.resources if r["resourceType"] == "QuestionnaireResponse"]
    assert validator.validate(back).valid
    assert answers(back, definition) == answers(response, definition)
    # to the second: the inbound decoder drops fractions of a second (source_hl7._timestamp)
    assert to_microseconds(back["authored"]) == to_microseconds(response["authored"]) // 1_000_000 * 1_000_000
    for url in ("dialog-collection-purpose", "dialog-timepoint"):
        def code(r):
            return [e["valueCoding"]["code"] for e in r["extension"] if e["url"].endswith(url)]
        assert code(back) == code(response)
    [person] = [r for r in result.resources if r["resourceType"] == "Patient"]
    assert person["birthDate"] == patient["birthDate"] and person.get("gender") == patient.get("gender")
    assert person["name"][0]["family"] == patient["name"][0]["family"]


def test_every_outbound_mapping_has_a_golden_case():
    assert OUTBOUND_FILES
    for path in OUTBOUND_FILES:
        assert [c for c in CASES if c.parent.name == _name(path)], f"{path} has no golden case under tests/golden/{_name(path)}/"


def test_a_partial_birth_date_survives_the_round_trip(definition, inbound):
    case = GOLDEN / "hl7-out-oru-dialog" / "care-planning-partial-out-of-order"
    response, patient, parameters = read_case(case)
    record = dialog_oru_record(response, {**patient, "birthDate": "1999-11"}, definition, receiving_organization="RAT",
                               recorder=None, control_id="C1", message_time=datetime.fromisoformat(parameters["message-time"]),
                               corrected=False)
    assert record["birth-date"] == "199911"
    mapping = load_outbound_mapping(OUTBOUND_FILES[0], RECORD)
    message = mapping.build(record, {"receiving-application": "", "receiving-facility": "RAT"})
    result = inbound.map("hl7-oru-dialog", hl7_record(parse_message(message)), "partial:1", {"organization": "X"})
    [person] = [r for r in result.resources if r["resourceType"] == "Patient"]
    assert person.get("birthDate") == "1999-11"
