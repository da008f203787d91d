"""The loader checks a whole mapping file at start-up: every error names the file and the rule."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.mapping import load_mapping, load_mappings
from fhir_bridge.terminology import Terminology
from tests.conftest import REPO

GOOD = """
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
    map: {"Y": "Yes", "N": "No"}
resources:
  person:
    type: Patient
    id: [{from: id}]
    rules:
      - {to: "name[0].family", from: surname}
  obs:
    type: Observation
    id: [{param: org}, {from: id}]
    rules:
      - {to: subject, ref: person}
      - {to: "component[]", each: things, use: part}
blocks:
  part:
    - {to: code.text, const: "{code}"}
    - {to: "valueCodeableConcept.coding[]", from: "{column} Flag", transform: yes_no, codes: yn}
"""

FAMILY = '{to: "name[0].family", from: surname}'


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return Terminology.load(REPO / "terminology")


def write(tmp_path: Path, text: str, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def broken(tmp_path: Path, terminology: Terminology, old: str, new: str) -> str:
    assert old in GOOD, old
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigurationError) as caught:
        load_mapping(path, terminology)
    assert str(path) in caught.value.message, "the error must name the file"
    return caught.value.message


def test_good_file_loads(tmp_path, terminology):
    mapping = load_mapping(write(tmp_path, GOOD), terminology)
    assert mapping.name == "tiny"
    assert mapping.parameters == ("org",)
    assert [r.type for r in mapping.resources] == ["Patient", "Observation"]


def test_the_projects_own_mappings_load(terminology):
    mappings = load_mappings(REPO / "mappings", terminology)
    assert "dialog-app" in mappings


@pytest.mark.parametrize("old, new, message", [
    (FAMILY, FAMILY.replace("}", ", colour: red}"),
     "resources.person.rules[0]: unknown key 'colour'"),
    (FAMILY, "{from: surname}", "resources.person.rules[0]: rule has no `to`"),
    ("transform: yes_no", "transform: yes_or_no", "blocks.part[1]: unknown transform 'yes_or_no'"),
    ("transform: yes_no", "transform: {name: split, sep: ','}", "blocks.part[1]: transform 'split': bad arguments"),
    ("codes: yn", "codes: nope", "blocks.part[1]: unknown code table 'nope'"),
    ("use: part", "use: parts", "resources.obs.rules[1][things#0]: `use` of undefined block 'parts'"),
    ("each: things", "each: thing", "resources.obs.rules[1]: `each` over undefined list 'thing'"),
    ("{to: subject, ref: person}", "{to: subject, ref: practitioner}",
     "resources.obs.rules[0]: `ref` to 'practitioner'"),
    ("{param: org}", "{param: organisation}", "resources.obs.id[0]: parameter 'organisation' is not declared"),
    (FAMILY, FAMILY.replace("}", ", const: x}"),
     "resources.person.rules[0]: a rule needs exactly one of"),
    (FAMILY, FAMILY.replace("name[0]", "name[]"),
     "`[]` (append) is only allowed on the last segment"),
    (FAMILY, FAMILY.replace("surname", '"{column}"'),
     "resources.person.rules[0]: placeholder {column} is not a key of an enclosing `each` list"),
    (FAMILY, "{to: name, from: surname, when: {from: x, equals: 1, in: [2]}}",
     "resources.person.rules[0].when: `when` takes `equals` or `in`, not both"),
    (FAMILY, "{to: ., from: surname}", "resources.person.rules[0]: `to: .` (the object being built) is only for `use`"),
    (FAMILY, "{to: x, const: 1, required: true}", "resources.person.rules[0]: `required` applies to `from` only"),
    ("use: part", "use: part, transform: trim", "`use` builds an object"),
    ("type: Patient", "type: patient", "resources.person: `type` must name a FHIR resource type"),
    ("id: [{from: id}]", "id: []", "resources.person.id: list the business identifiers"),
    ("name: tiny", "nom: tiny", "top level: unknown key 'nom'"),
    ("    - {code: b, column: Beta}", "    - {code: b}", "lists.things[1]: keys"),
    ("map: {\"Y\": \"Yes\", \"N\": \"No\"}", "conceptmap: https://example.org/ConceptMap/none\n    source-system: x",
     "codes.yn: unknown ConceptMap"),
])
def test_broken_files_fail_naming_file_and_rule(tmp_path, terminology, old, new, message):
    assert message in broken(tmp_path, terminology, old, new)


def test_named_rules_are_named_in_errors(tmp_path, terminology):
    message = broken(tmp_path, terminology, FAMILY, FAMILY.replace("{", "{name: family name, ").replace("}", ", transform: nope}"))
    assert "resources.person.rules[0] (family name): unknown transform 'nope'" in message


def test_block_using_itself_is_refused(tmp_path, terminology):
    message = broken(tmp_path, terminology, "    - {to: code.text, const: \"{code}\"}",
                     "    - {to: code.text, const: \"{code}\"}\n    - {to: extension, use: part}")
    assert "block 'part' uses itself (part -> part)" in message


def test_unused_block_is_refused(tmp_path, terminology):
    message = broken(tmp_path, terminology, "blocks:\n", "blocks:\n  spare:\n    - {to: x, const: 1}\n")
    assert "blocks.spare: block is never used" in message


def test_known_conceptmap_loads(tmp_path, terminology):
    text = GOOD.replace('map: {"Y": "Yes", "N": "No"}',
                        "conceptmap: https://fhir-bridge.example.org/ConceptMap/dialog-mhsds-to-qmul-item-number\n"
                        "    source-system: https://fhir-bridge.example.org/CodeSystem/dialog-item-number-mhsds")
    assert load_mapping(write(tmp_path, text), terminology).name == "tiny"


def test_yaml_syntax_error_names_the_file_and_shows_the_line(tmp_path, terminology):
    path = write(tmp_path, "name: tiny\nlists: [unclosed\n")
    with pytest.raises(ConfigurationError, match=str(path)) as error:
        load_mapping(path, terminology)
    assert "lists: [unclosed" in error.value.message and "^" in error.value.message  # where, as PyYAML shows it


def test_two_files_with_one_name_are_refused(tmp_path, terminology):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ConfigurationError, match="mapping name 'tiny' is also used by"):
        load_mappings(tmp_path, terminology)


def test_required_fields_expand_per_list_element_and_a_bad_entry_names_itself(tmp_path, terminology):
    with_required = GOOD.replace("resources:\n", 'required-fields:\n  - id\n  - {each: things, fields: ["{column} Flag"]}\n'
                                                "resources:\n", 1)
    mapping = load_mapping(write(tmp_path, with_required), terminology)
    assert mapping.required_fields == ("id", "Alpha Flag", "Beta Flag")
    for bad, message in [("  - {each: nothing, fields: [x]}\n", "`each` names a list"),
                         ('  - {each: things, fields: ["{colour}"]}\n', "does not have"),
                         ("  - {each: things, fields: [x], also: 1}\n", "unknown key 'also'")]:
        path = write(tmp_path, GOOD.replace("resources:\n", f"required-fields:\n{bad}resources:\n", 1), "bad.yaml")
        with pytest.raises(ConfigurationError, match=message) as raised:
            load_mapping(path, terminology)
        assert "required-fields[0]" in str(raised.value)


def test_a_record_key_names_a_record_without_case_or_spaces_and_only_when_whole(tmp_path, terminology):
    keyed = GOOD.replace("resources:\n", "record-key: [id, kind]\nresources:\n", 1)
    mapping = load_mapping(write(tmp_path, keyed), terminology)
    assert mapping.key_of({"id": " A7 ", "kind": "Visit"}) == mapping.key_of({"id": "a7", "kind": "VISIT"})
    assert mapping.key_of({"id": "a7", "kind": "visit"}, {"org": "RV3"}) == "tiny|RV3|a7|visit"
    assert mapping.key_of({"id": "a7", "kind": "visit"}, {"org": "RAT"}) != mapping.key_of(
        {"id": "a7", "kind": "visit"}, {"org": "RV3"})  # another trust's record of the same local id
    assert mapping.key_of({"id": "a7", "kind": " "}) is None and mapping.key_of({"id": "a7"}) is None
    assert load_mapping(write(tmp_path, GOOD), terminology).key_of({"id": "a7"}) is None  # none named
    with pytest.raises(ConfigurationError, match="record-key"):
        load_mapping(write(tmp_path, GOOD.replace("resources:\n", "record-key: id\nresources:\n", 1), "bad.yaml"),
                     terminology)
