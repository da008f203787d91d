"""The engine on tiny synthetic mappings: each rule kind, deterministic ids, and bad data reported
(never raised) with the rule, the source field and where in the output it would have gone."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.mapping import MappingEngine, MappingReport, load_mapping, resource_id
from fhir_bridge.terminology import Terminology
from tests.conftest import REPO

MAPPING = """
name: tiny
parameters:
  org: the organisation
lists:
  things:
    - {code: a, column: Alpha}
    - {code: b, column: Beta}
codes:
  yn:
    system: http://terminology.hl7.org/CodeSystem/v2-0136
    map: {"Y": "Yes", "N": {code: "N", display: "No"}}
  item-number:
    conceptmap: https://fhir-bridge.example.org/ConceptMap/dialog-mhsds-to-qmul-item-number
    source-system: https://fhir-bridge.example.org/CodeSystem/dialog-item-number-mhsds
resources:
  person:
    type: Patient
    id: [{const: tiny}, {from: nhs, transform: nhs_number}]
    rules:
      - {to: active, const: true}
      - {to: "name[]", from: name, transform: name_last_first, required: true}
      - {to: "identifier[]", use: nhs-identifier, when: {from: nhs}}
      - {to: gender, const: unknown, when: {from: sex, in: ["9", "X"]}}
      - {to: gender, const: female, when: {from: sex, equals: "2"}}
      - {to: deceasedBoolean, const: false, when: {from: died, present: false}}
      - {to: "extension[]", from: [preferred, legacy], transform: upper}
  obs:
    type: Observation
    id: [{param: org}, {from: nhs, transform: nhs_number}]
    rules:
      - {to: subject, ref: person}
      - {to: "note[]", from: actions, transform: split}
      - {to: "component[]", each: things, use: part, when: {from: "{column} Flag"}}
      - {to: "code.coding[]", from: item, codes: item-number}
      - {to: "performer[0].identifier.value", param: org}
      - {to: "interpretation[]", each: {from: visits}, use: visit}
blocks:
  nhs-identifier:
    - {to: system, const: "https://fhir.nhs.uk/Id/nhs-number"}
    - {to: value, from: nhs, transform: nhs_number}
  part:
    - {to: code.text, const: "{code}-{index}"}
    - {to: "valueCodeableConcept.coding[]", from: "{column} Flag", transform: yes_no, codes: yn}
  visit:
    - {to: text, from: place}
    - {to: "coding[0].code", from: "/nhs"}
    - {to: "coding[0].display", const: "visit {index}"}
"""

ROW = {"nhs": "943 476 5919", "name": "Pemberton, Rosa", "sex": "2", "Alpha Flag": "Y", "Beta Flag": "",
       "actions": "call GP; walk", "item": "6", "legacy": "old", "spare": "x", "blank": " ",
       "visits": [{"place": "home"}, {"place": "clinic"}]}


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return Terminology.load(REPO / "terminology")


@pytest.fixture()
def engine(tmp_path: Path, terminology: Terminology) -> MappingEngine:
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(MAPPING), encoding="utf-8")
    return MappingEngine({"tiny": load_mapping(path, terminology)}, terminology)


def run(engine: MappingEngine, **changes):
    return engine.map("tiny", {**ROW, **changes}, "rows.csv:2", {"org": "RAT"})


def test_every_rule_kind(engine):
    result = run(engine)
    assert result.ok, result.problems
    person, obs = result.resources
    assert person == {
        "resourceType": "Patient",
        "id": resource_id("Patient", ["tiny", "9434765919"]),
        "active": True,
        "name": [{"family": "Pemberton", "given": ["Rosa"]}],
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
        "gender": "female",
        "deceasedBoolean": False,
        "extension": ["OLD"],  # `from` alternatives: the first non-blank wins
    }
    assert obs["subject"] == {"reference": f"Patient/{person['id']}"}
    assert obs["note"] == ["call GP", "walk"]
    # `each` over a list in the mapping; Beta's blank flag leaves no component behind.
    assert obs["component"] == [{"code": {"text": "a-0"}, "valueCodeableConcept": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v2-0136", "code": "Y", "display": "Yes"}]}}]
    assert obs["code"]["coding"][0]["code"] == "7"  # ConceptMap: MHSDS item 6 is QMUL item 7
    assert obs["performer"] == [{"identifier": {"value": "RAT"}}]
    # `each` over a repeating source structure: paths read the element, `/` the whole record.
    assert obs["interpretation"] == [{"text": "home", "coding": [{"code": "943 476 5919", "display": "visit 0"}]},
                                     {"text": "clinic", "coding": [{"code": "943 476 5919", "display": "visit 1"}]}]
    assert result.unmapped == ["spare"]  # blank fields are not reported, unread non-blank ones are


def test_ids_are_deterministic_and_follow_business_identifiers(engine):
    first, again = run(engine), run(engine, name="Other, Name")
    assert [r["id"] for r in first.resources] == [r["id"] for r in again.resources]
    assert run(engine, nhs="9434765870").resources[0]["id"] != first.resources[0]["id"]
    other_org = engine.map("tiny", ROW, "rows.csv:2", {"org": "RX4"})
    assert other_org.resources[1]["id"] != first.resources[1]["id"]
    assert other_org.resources[0]["id"] == first.resources[0]["id"]


def test_bad_data_is_reported_with_rule_field_and_expression(engine):
    result = run(engine, **{"Alpha Flag": "maybe", "nhs": "9434765918"})
    assert not result.ok
    by_field = {p.source: p for p in result.problems}
    flag = by_field["Alpha Flag"]
    assert flag.expression == "Observation.component[0].valueCodeableConcept.coding[0]"
    assert flag.rule == "blocks.part[1]" and flag.location == "rows.csv:2"
    assert flag.code == "code-invalid" and "not a yes/no answer" in flag.message
    assert "check digit" in by_field["nhs"].message
    issue = result.outcome()["issue"][0]
    assert issue["severity"] == "error" and issue["expression"]


def test_a_problem_names_the_element_it_was_written_in(engine):
    # The location of an appended element is made only for a report: it must still be the index
    # the element took (Beta's is the second component when Alpha's is written, else the first).
    both = run(engine, **{"Alpha Flag": "Y", "Beta Flag": "maybe"})
    only_beta = run(engine, **{"Alpha Flag": "", "Beta Flag": "maybe"})
    assert [p.expression for p in both.problems if p.source == "Beta Flag"] == \
        ["Observation.component[1].valueCodeableConcept.coding[0]"]
    assert [p.expression for p in only_beta.problems if p.source == "Beta Flag"] == \
        ["Observation.component[0].valueCodeableConcept.coding[0]"]


def test_required_blank_value_is_a_problem(engine):
    result = run(engine, name="  ")
    assert [(p.code, p.source, p.expression) for p in result.problems] == [("required", "name", "Patient.name[0]")]
    assert "name" not in result.resources[0]


def test_unmapped_code_is_kept_and_reported(engine):
    result = run(engine, item="42")
    assert result.ok  # a warning: the resource keeps the source code, the validator decides
    assert result.resources[1]["code"]["coding"] == [
        {"system": "https://fhir-bridge.example.org/CodeSystem/dialog-item-number-mhsds", "code": "42"}]
    [problem] = result.problems
    assert problem.severity == "warning" and problem.code == "code-invalid" and problem.source == "item"


def test_local_table_miss_without_source_system_keeps_text(engine, tmp_path, terminology):
    result = run(engine, **{"Alpha Flag": "Y"})
    assert result.ok
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent("""
        name: t
        codes:
          colours: {system: "http://example.org/c", map: {r: Red}}
        resources:
          p:
            type: Basic
            id: [{from: id}]
            rules:
              - {to: "code.coding[]", from: colour, codes: colours}
    """), encoding="utf-8")
    other = MappingEngine({"t": load_mapping(path, terminology)}, terminology)
    mapped = other.map("t", {"id": "1", "colour": "mauve"})
    assert mapped.resources[0]["code"] == {"coding": [{"display": "mauve"}]}
    assert [p.severity for p in mapped.problems] == ["warning"]


def test_missing_nested_source_paths_are_absent_not_errors(engine):
    result = run(engine, visits="not a list")
    # A single value where a list was expected counts as a list of one (HL7 segments that occur once).
    assert result.resources[1]["interpretation"] == [{"coding": [{"code": "943 476 5919", "display": "visit 0"}]}]
    assert run(engine, visits=None).ok


def test_caller_mistakes_raise(engine):
    with pytest.raises(ConfigurationError, match="no mapping named 'rio'"):
        engine.map("rio", ROW)
    with pytest.raises(ConfigurationError, match="needs parameter"):
        engine.map("tiny", ROW, "x", {})


def test_run_report_counts_records_problems_and_unmapped_fields(engine):
    report = MappingReport()
    for flag in ("Y", "maybe", "perhaps", "N"):
        report.add(run(engine, **{"Alpha Flag": flag}))
    assert (report.records, report.mapped, report.failed) == (4, 2, 2)
    assert report.to_dict()["problems"] == {"error code-invalid blocks.part[1] (Alpha Flag)": 2}
    assert report.unmapped == {"spare": 4}
