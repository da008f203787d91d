"""The DIALOG ORU record: items by code never by position, 8 and blanks left out, the identifiers the
EPR can match on, HL7 timestamps; and the outbound help codes kept equal to the inbound ones."""
from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest
import yaml

from fhir_bridge.errors import Unprocessable
from fhir_bridge.measures import load_dialog_definition
from fhir_bridge.outputs import RECORD, dialog_oru_record, hl7_timestamp, load_outbound_mapping, recorder_of
from tests.conftest import REPO

CASE = REPO / "tests/golden/hl7-out-oru-dialog/prom-nhs-and-local-id"
NOW = datetime(2025, 3, 5, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def definition():
    return load_dialog_definition(REPO / "profiles", REPO / "terminology")


def case() -> tuple[dict, dict]:
    return (json.loads((CASE / "response.json").read_text()), json.loads((CASE / "patient.json").read_text()))


def record(response: dict, patient: dict, definition, organization: str = "RAT") -> dict:
    return dialog_oru_record(response, patient, definition, receiving_organization=organization, recorder="NQX01",
                             control_id="C1", message_time=NOW, corrected=False)


def test_items_are_matched_by_code_not_position(definition):
    response, patient = case()
    shuffled = {**response, "item": random.Random(4).sample(response["item"], len(response["item"]))}
    assert shuffled["item"] != response["item"]
    assert record(shuffled, patient, definition)["domains"] == record(response, patient, definition)["domains"]
    by_domain = {d["domain"]: d for d in record(shuffled, patient, definition)["domains"]}
    # The Questionnaire's (MHSDS) order, each with its own SNOMED concept
    assert list(by_domain)[5:7] == ["friendships", "partner-family"]
    assert (by_domain["friendships"]["snomed"], by_domain["friendships"]["rating"]) == ("1037701000000108", "5")
    assert (by_domain["partner-family"]["snomed"], by_domain["partner-family"]["rating"]) == ("1037711000000105", "7")


def test_not_applicable_and_unanswered_items_carry_no_rating(definition):
    response, patient = case()
    items = [i for i in response["item"] if i["linkId"] not in ("medication", "job-situation.more-help")]
    for item in items:
        if item["linkId"] == "accommodation":
            item["answer"][0]["valueCoding"]["code"] = "8"
    domains = {d["domain"]: d for d in record({**response, "item": items}, patient, definition)["domains"]}
    assert domains["accommodation"]["rating"] is None and domains["medication"]["rating"] is None
    assert domains["job-situation"]["help"] is None and domains["job-situation"]["rating"] == "2"
    mapping = load_outbound_mapping(REPO / "mappings/hl7-out/oru-dialog.yaml", RECORD)
    text = mapping.build(record({**response, "item": items}, patient, definition),
                         {"receiving-application": "", "receiving-facility": "RAT"})
    assert "1037681000000106" not in text and "1037731000000102" not in text and "DIALOG-HELP-03" not in text


def test_pid3_has_the_nhs_number_then_only_the_receiving_epr_s_own_ids(definition):
    response, patient = case()
    assert record(response, patient, definition)["identifiers"] == [
        {"value": "9434765919", "authority": "NHS", "type": "NH"},
        {"value": "RX104233", "authority": "RAT", "type": "MR"}]
    assert record(response, patient, definition, "RV3")["identifiers"][1] == {"value": "77123", "authority": "RV3",
                                                                              "type": "MR"}
    assigned = {**patient, "identifier": [{"value": "K-9", "assigner": {"identifier": {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "rat"}}}]}
    assert record(response, assigned, definition)["identifiers"] == [{"value": "K-9", "authority": "RAT", "type": "MR"}]


def test_a_person_the_epr_cannot_match_is_not_sent(definition):
    response, patient = case()
    only_vcse = {**patient, "identifier": [i for i in patient["identifier"] if "vcse-client" in i["system"]]}
    with pytest.raises(Unprocessable, match="neither a valid NHS number nor an identifier of RAT"):
        record(response, only_vcse, definition)
    bad_nhs = {**patient, "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}]}
    with pytest.raises(Unprocessable, match="could not match the person"):
        record(response, bad_nhs, definition)


def test_an_answer_given_twice_is_not_guessed(definition):
    response, patient = case()
    doubled = {**response, "item": response["item"] + [response["item"][0]]}
    with pytest.raises(Unprocessable, match="answered more than once"):
        record(doubled, patient, definition)


@pytest.mark.parametrize("value, ts", [
    ("2025-03-04T15:45:00+01:00", "20250304154500+0100"),
    ("2025-02-10T10:30:15.25Z", "20250210103015.25+0000"),
    ("2025-02-10T10:30:15.123456-05:00", "20250210103015.1234-0500"),
    ("1980-04-02", "19800402"), ("1999-11", "199911"), ("1999", "1999"),
    ("02/04/1980", None), ("", None), (None, None),
])
def test_hl7_timestamps_keep_the_precision(value, ts):
    assert hl7_timestamp(value) == ts


def test_recorder_by_ods_code_or_by_reference():
    ods = {"url": "https://fhir-bridge.example.org/StructureDefinition/recording-organization",
           "valueReference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "nqx01"}}}
    ref = {**ods, "valueReference": {"reference": "Organization/vcse-1"}}
    assert recorder_of({"extension": [ods]}) == ("NQX01", None)
    assert recorder_of({"extension": [ref]}) == (None, "Organization/vcse-1")
    assert recorder_of({}) == (None, None)


def test_help_codes_equal_the_inbound_mapping_s():
    inbound = yaml.safe_load((REPO / "mappings/hl7/oru-dialog.yaml").read_text())["lists"]["dialog-domains"]
    outbound = yaml.safe_load((REPO / "mappings/hl7-out/oru-dialog.yaml").read_text())["codes"]["help-code"]
    assert outbound == {d["domain"]: d["help"] for d in inbound}
    assert set(RECORD) >= {"identifiers", "domains"}
