"""`ref: {type, id}`: a reference to a resource another record makes, computed from its business
identifiers (two tiny synthetic mappings, as two files of one export would have), checked at load.
Also the transforms that came with it: `prefix`, `recode` and `date` with `day_only`."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.mapping import MappingEngine, MappingProblem, load_mapping, load_mappings
from fhir_bridge.mapping.transforms import build_transform
from fhir_bridge.terminology import Terminology
from tests.conftest import REPO

PEOPLE = """
name: people
parameters:
  org: the organisation
resources:
  person:
    type: Patient
    id: [{const: tiny}, {param: org}, {from: PersonID}]
    rules:
      - {to: "identifier[0].value", from: PersonID}
"""
VISITS = """
name: visits
parameters:
  org: the organisation
resources:
  visit:
    type: Encounter
    id: [{const: tiny}, {param: org}, {from: VisitID}]
    rules:
      - to: subject
        ref: {type: Patient, id: [{const: tiny}, {param: org}, {from: PersonID, transform: trim}]}
"""


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return Terminology.load(REPO / "terminology")


def engine_for(tmp_path: Path, terminology: Terminology, **files: str) -> MappingEngine:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text))
    return MappingEngine(load_mappings(tmp_path, terminology), terminology)


def test_the_reference_is_the_id_the_other_record_gets(tmp_path, terminology):
    engine = engine_for(tmp_path, terminology, people=PEOPLE, visits=VISITS)
    [person] = engine.map("people", {"PersonID": "42"}, "people.csv:2", {"org": "RV3"}).resources
    result = engine.map("visits", {"VisitID": "7", "PersonID": " 42 "}, "visits.csv:2", {"org": "RV3"})
    assert result.ok and not result.unmapped  # the key's column counts as read
    assert result.resources[0]["subject"] == {"reference": f"Patient/{person['id']}"}
    other_org = engine.map("visits", {"VisitID": "7", "PersonID": "42"}, "visits.csv:2", {"org": "RVV"})
    assert other_org.resources[0]["subject"] != result.resources[0]["subject"]


def test_a_blank_key_is_reported_and_writes_no_reference(tmp_path, terminology):
    engine = engine_for(tmp_path, terminology, visits=VISITS)
    result = engine.map("visits", {"VisitID": "7", "PersonID": ""}, "visits.csv:3", {"org": "RV3"})
    assert not result.ok and "subject" not in result.resources[0]
    [problem] = result.problems
    assert (problem.code, problem.source, problem.expression) == ("required", "PersonID", "Encounter.subject")
    assert problem.rule == "resources.visit.rules[0].ref.id[2]"


@pytest.mark.parametrize("ref, message", [
    ("{type: patient, id: [{from: PersonID}]}", "`type` must name a FHIR resource type"),
    ("{type: Patient}", "list the business identifiers"),
    ("{type: Patient, id: []}", "list the business identifiers"),
    ("{type: Patient, id: [{from: PersonID}], extra: 1}", "unknown key 'extra'"),
    ("{type: Patient, id: [{param: nope}]}", "parameter 'nope' is not declared"),
    ("{type: Patient, id: [{ref: person}]}", "unknown key 'ref'"),
    ("{type: Patient, id: [{from: PersonID, transform: shout}]}", "unknown transform 'shout'"),
    ("[Patient, x]", "which this mapping does not produce"),
])
def test_a_bad_ref_fails_at_load_naming_the_rule(tmp_path, terminology, ref, message):
    text = VISITS.replace("{type: Patient, id: [{const: tiny}, {param: org}, {from: PersonID, transform: trim}]}", ref)
    (tmp_path / "visits.yaml").write_text(textwrap.dedent(text))
    with pytest.raises(ConfigurationError, match="resources.visit.rules\\[0\\]") as caught:
        load_mapping(tmp_path / "visits.yaml", terminology)
    assert message in str(caught.value)


def test_prefix_recode_and_day_only():
    assert build_transform("prefix", {"text": "https://x/"})("RV3") == "https://x/RV3"
    gender = build_transform("recode", {"map": {"1": "male", "X": "unknown"}})
    assert gender(" 1 ") == "male"
    with pytest.raises(MappingProblem, match="'7' is not one of 1, X"):
        gender("7")
    day = build_transform("date", {"day_only": True})
    assert day("05/03/1980 00:00") == day("1980-03-05T00:00:00") == day("05/03/1980") == "1980-03-05"
    with pytest.raises(MappingProblem):
        day("05/03/1980 25:00")
    for name, arguments in (("prefix", {"text": ""}), ("recode", {"map": {}}), ("recode", {"map": {"1": 1}}),
                            ("date", {"day_only": "yes"})):
        with pytest.raises(ValueError):
            build_transform(name, arguments)
