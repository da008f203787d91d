"""Building HL7 v2 with hl7apy: escaping, group placement, and strict validation that names every problem."""
from __future__ import annotations

import pytest

from fhir_bridge.errors import ConfigurationError, Unprocessable
from fhir_bridge.formats.hl7v2 import field, parse_message
from fhir_bridge.formats.hl7v2_build import SegmentValues, build_message, check_structure, escape

PATIENT = ("ORU_R01_PATIENT_RESULT", "ORU_R01_PATIENT")
ORDER = ("ORU_R01_PATIENT_RESULT", "ORU_R01_ORDER_OBSERVATION")
OBSERVATION = (*ORDER, "ORU_R01_OBSERVATION")


def msh() -> SegmentValues:
    return SegmentValues("MSH", (), {3: [{1: "FHIR-BRIDGE"}], 7: [{1: "20250305120000+0000"}],
                                     9: [{1: "ORU", 2: "R01", 3: "ORU_R01"}], 10: [{1: "C1"}], 11: [{1: "P"}],
                                     12: [{1: "2.4"}]})


def pid(changes: dict | None = None) -> SegmentValues:
    return SegmentValues("PID", PATIENT, {1: [{1: "1"}], 3: [{1: "9434765919", 4: "NHS", 5: "NH"}],
                                          5: [{1: "Okafor", 2: "Ada"}], **(changes or {})})


def obx(n: int, value: str) -> SegmentValues:
    return SegmentValues("OBX", OBSERVATION, {1: [{1: str(n)}], 2: [{1: "NM"}],
                                              3: [{1: "1037651000000100", 2: "Mental health", 3: "SCT"}],
                                              5: [{1: value}], 11: [{1: "F"}]})


def test_a_message_is_built_with_groups_repetitions_and_escapes():
    name = SegmentValues("PID", PATIENT, {1: [{1: "1"}],
                                          3: [{1: "9434765919", 4: "NHS", 5: "NH"}, {1: "R1", 4: "RAT", 5: "MR"}],
                                          5: [{1: "Smith & Sons|Ltd^", 2: "Zoë\nAnn"}]})
    obr = SegmentValues("OBR", ORDER, {1: [{1: "1"}], 4: [{1: "DIALOG", 2: "DIALOG", 3: "L"}]})
    text = build_message("ORU_R01", "2.4", [msh(), name, obr, obx(1, "4"), obx(2, "5")])
    segments = text.split("\r")
    assert [s[:3] for s in segments] == ["MSH", "PID", "OBR", "OBX", "OBX"]
    assert segments[1] == "PID|1||9434765919^^^NHS^NH~R1^^^RAT^MR||Smith \\T\\ Sons\\F\\Ltd\\S\\^Zoë Ann"
    parsed = parse_message(text)
    assert field(parsed, "PID-5.1") == "Smith & Sons|Ltd^" and field(parsed, "MSH-7") == "20250305120000+0000"


def test_escape_covers_every_delimiter_and_the_escape_itself():
    assert escape("a\\b|c^d&e~f\r\ng") == "a\\E\\b\\F\\c\\S\\d\\T\\e\\R\\f g"


def test_a_missing_required_field_makes_the_message_invalid_with_the_reason():
    no_identifier = SegmentValues("PID", PATIENT, {1: [{1: "1"}], 5: [{1: "Okafor"}]})
    with pytest.raises(Unprocessable, match=r"QR/1 is not a valid HL7 v2.4 ORU_R01: .*Missing required child PID.PID_3"):
        build_message("ORU_R01", "2.4", [msh(), no_identifier], what="QR/1")


@pytest.mark.parametrize("segment, problem", [
    (pid({8: [{1: "Q"}]}), r"Value Q not in table HL70001"),                 # a hl7apy warning: invalid here
    (pid({1: [{1: "12345"}]}), r"PID\[1\] PID-1: '12345'.*max length"),     # refused as it is set
])
def test_warnings_and_refused_values_make_the_message_invalid(segment, problem):
    with pytest.raises(Unprocessable, match=problem):
        build_message("ORU_R01", "2.4", [msh(), segment])


def test_a_segment_out_of_place_is_refused():
    with pytest.raises(Unprocessable, match="cannot place segment OBX"):
        build_message("ORU_R01", "2.4", [msh(), SegmentValues("OBX", PATIENT, {1: [{1: "1"}]})])


def test_check_structure_names_what_does_not_fit():
    check_structure("ORU_R01", "2.4", [((), "MSH", [3, 7, 12]), (OBSERVATION, "OBX", [1, 5, 14])])
    with pytest.raises(ConfigurationError, match="ORU_R01_PATIENT_RESULT/ORU_R01_PATIENT/OBX"):
        check_structure("ORU_R01", "2.4", [(PATIENT, "OBX", [1])])
    with pytest.raises(ConfigurationError, match="PID"):
        check_structure("ORU_R01", "2.4", [(PATIENT, "PID", [99])])
