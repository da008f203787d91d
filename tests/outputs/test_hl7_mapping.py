"""The outbound mapping vocabulary on tiny synthetic files, broken ones included: every mistake fails at
load naming the file and the rule; a value without a code-table entry makes the message invalid."""
from __future__ import annotations

import textwrap

import pytest

from fhir_bridge.errors import ConfigurationError, Unprocessable
from fhir_bridge.outputs.hl7_mapping import load_outbound_mapping

RECORD = {"id": None, "family": None, "sex": None, "people": frozenset({"value", "kind"}),
          "items": frozenset({"code", "value"})}
HEADER = """
name: tiny
message: ORU_R01
version: "2.4"
parameters: {app: receiving application}
codes: {sex: {male: M, female: F}}
segments:
  - segment: MSH
    rules:
      - {to: MSH-3, const: TEST}
      - {to: MSH-5, param: app}
      - {to: MSH-9.1, const: ORU}
      - {to: MSH-9.2, const: R01}
      - {to: MSH-10, from: id}
      - {to: MSH-11, const: P}
"""
PID = """
  - segment: PID
    in: ORU_R01_PATIENT_RESULT/ORU_R01_PATIENT
    rules:
      - {to: PID-1, const: "1"}
      - to: PID-3
        each: {from: people}
        rules:
          - {to: PID-3.1, from: value}
          - {to: PID-3.5, from: kind}
      - {to: PID-5.1, from: family}
      - {to: PID-8, from: sex, codes: sex}
  - segment: OBR
    in: ORU_R01_PATIENT_RESULT/ORU_R01_ORDER_OBSERVATION
    rules:
      - {to: OBR-1, const: "1"}
      - {to: OBR-4.1, const: X}
  - each: items
    segments:
      - segment: OBX
        in: ORU_R01_PATIENT_RESULT/ORU_R01_ORDER_OBSERVATION/ORU_R01_OBSERVATION
        when: {from: value}
        rules:
          - {to: OBX-1, set-id: true}
          - {to: OBX-2, const: NM}
          - {to: OBX-3.1, from: code}
          - {to: OBX-5, from: value}
          - {to: OBX-11, const: F}
"""
VALUES = {"id": "M1", "family": "Ngata", "sex": "female",
          "people": [{"value": "9434765919", "kind": "NH"}, {"value": "R1", "kind": "MR"}],
          "items": [{"code": "A", "value": "4"}, {"code": "B", "value": None}, {"code": "C", "value": "6"}]}


def write(tmp_path, text: str):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_tiny_mapping_builds_its_message(tmp_path):
    mapping = load_outbound_mapping(write(tmp_path, HEADER + PID), RECORD)
    segments = mapping.build(VALUES, {"app": "EPR"}).split("\r")
    assert segments[0].startswith("MSH|^~\\&|TEST||EPR|") and "|ORU^R01|M1|P|2.4" in segments[0]
    assert segments[1] == "PID|1||9434765919^^^^NH~R1^^^^MR||Ngata|||F"
    # an element whose `when` value is blank writes no segment; set ids count the segments written
    assert [s.split("|")[1:4] for s in segments[3:]] == [["1", "NM", "A"], ["2", "NM", "C"]]


def test_a_value_missing_from_its_code_table_makes_the_message_invalid(tmp_path):
    mapping = load_outbound_mapping(write(tmp_path, HEADER + PID), RECORD)
    with pytest.raises(Unprocessable, match=r"QR/1: .*\(PID-8\): no entry for 'robot' in code table 'sex'"):
        mapping.build({**VALUES, "sex": "robot"}, {"app": ""}, what="QR/1")


@pytest.mark.parametrize("change, problem", [
    (("- {to: PID-5.1, from: family}", "- {to: PID-5.1, from: surname}"), r"'surname' is not a value of the record"),
    (("- {to: PID-5.1, from: family}", "- {to: PID-5.1, from: people}"), r"'people' is not a value of the record"),
    (("- {to: PID-5.1, from: family}", "- {to: PID-5.1, param: nope}"), r"undeclared parameter 'nope'"),
    (("- {to: PID-5.1, from: family}", "- {to: PID-5.1, from: family, codes: gender}"), r"unknown code table 'gender'"),
    (("- {to: PID-5.1, from: family}", "- {to: PID-5.1, from: family, colour: red}"), r"unknown key 'colour'"),
    (("- {to: PID-5.1, from: family}", "- {to: OBX-5.1, from: family}"), r"`to` must be a PID field"),
    (("- {to: PID-5.1, from: family}", "- {to: PID-5.1, const: 1}"), r"`const` must be text"),
    (("- {to: PID-5.1, from: family}", "- {to: PID-3.1, from: family}"), r"write the same place"),
    (("- {to: PID-5.1, from: family}", "- {to: PID-5.1}"), r"exactly one of from, const, param, set-id"),
    (("each: {from: people}", "each: {from: family}"), r"'family' is not a list of the record"),
    (("- {to: PID-3.5, from: kind}", "- {to: PID-5.1, from: kind}"), r"inside a repeated PID-3"),
    (("in: ORU_R01_PATIENT_RESULT/ORU_R01_PATIENT", "in: ORU_R01_PATIENT_RESULT"), r"ORU_R01_PATIENT_RESULT/PID"),
    (("- {to: OBX-5, from: value}", "- {to: OBX-99, from: value}"), r"OBX"),
    (("- {to: MSH-3, const: TEST}", "- {to: MSH-2, const: TEST}"), r"MSH-1/MSH-2 are the separators"),
])
def test_mistakes_fail_at_load_naming_file_and_rule(tmp_path, change, problem):
    old, new = change
    text = HEADER + PID
    assert old in text
    with pytest.raises(ConfigurationError, match=problem) as caught:
        load_outbound_mapping(write(tmp_path, text.replace(old, new, 1)), RECORD)
    assert "tiny.yaml: " in caught.value.message


def test_the_first_segment_must_be_msh_and_a_version_is_text(tmp_path):
    with pytest.raises(ConfigurationError, match="first segment must be MSH"):
        load_outbound_mapping(write(tmp_path, HEADER.replace("segment: MSH", "segment: EVN")
                                    .replace("MSH-", "EVN-") + PID), RECORD)
    with pytest.raises(ConfigurationError, match="`version` must be a non-empty string"):
        load_outbound_mapping(write(tmp_path, (HEADER + PID).replace('version: "2.4"', "version: 2.4")), RECORD)


def test_the_inbound_loader_skips_outbound_folders(validator):
    from fhir_bridge.mapping import load_mappings
    from tests.conftest import REPO

    inbound = load_mappings(REPO / "mappings", validator.terminology)
    assert "hl7-oru-dialog" in inbound and not any(m.file.count("-out/") for m in inbound.values())
