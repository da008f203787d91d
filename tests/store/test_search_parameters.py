"""The search parameter registry: R4 core + the project's own, split per type, R4 idioms resolved at load."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.fhir.package import ConformancePackage, load_package
from fhir_bridge.store.search_parameters import SearchParameterRegistry, split_union

REPO = Path(__file__).resolve().parents[2]
SERVED = ("Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson", "Questionnaire",
          "QuestionnaireResponse", "Observation", "CarePlan", "Goal", "CareTeam", "Provenance", "Encounter",
          "EpisodeOfCare", "ServiceRequest", "Condition", "Bundle", "CodeSystem", "ValueSet", "ConceptMap",
          "StructureDefinition", "SearchParameter", "OperationOutcome", "Parameters")
PROJECT = "https://fhir-bridge.example.org"


@pytest.fixture(scope="module")
def search_registry() -> SearchParameterRegistry:
    return SearchParameterRegistry.load(load_package(REPO / "profiles"))


def package_of(*definitions: dict) -> ConformancePackage:
    package = ConformancePackage()
    for i, sp in enumerate(definitions):
        package.add({"resourceType": "SearchParameter", "url": f"http://example.org/sp/{i}", **sp},
                    Path(f"sp-{i}.json"))
    return package


def test_every_served_type_has_the_common_parameters(search_registry):
    for rtype in SERVED:
        assert {"_id", "_lastUpdated", "_tag", "_profile", "_security"} <= set(search_registry.for_type(rtype))
    assert search_registry.get("Patient", "_lastUpdated").type == "date"
    assert search_registry.get("Patient", "_profile").table == "reference"


def test_the_parameters_the_issue_names_are_there_with_their_types(search_registry):
    expected = {
        "Patient": {"identifier": "token", "name": "string", "birthdate": "date"},
        "QuestionnaireResponse": {"subject": "reference", "patient": "reference", "questionnaire": "reference",
                                  "authored": "date", "status": "token", "author": "reference",
                                  "purpose": "token", "timepoint": "token", "recording-organization": "reference"},
        "Observation": {"subject": "reference", "code": "token", "date": "date", "derived-from": "reference"},
        "CarePlan": {"subject": "reference", "status": "token", "category": "token"},
        "Provenance": {"target": "reference"},
    }
    for rtype, params in expected.items():
        assert {code: search_registry.get(rtype, code).type for code in params} == params


def test_types_without_parameters_of_their_own_get_the_common_ones(search_registry):
    assert set(search_registry.for_type("OperationOutcome")) == {"_id", "_lastUpdated", "_tag", "_profile", "_security"}
    assert "OperationOutcome" not in search_registry.resource_types
    assert "Patient" in search_registry.resource_types


def test_union_expressions_are_split_per_type_and_made_relative(search_registry):
    assert search_registry.get("Practitioner", "name").expression.source == "name"
    assert search_registry.get("Patient", "family").expression.source == "name.family"
    assert search_registry.get("Patient", "_tag").expression.source == "meta.tag"
    assert search_registry.get("CodeSystem", "url").expression.source == "url"


def test_resolve_is_patient_becomes_a_type_filter(search_registry):
    patient = search_registry.get("QuestionnaireResponse", "patient")
    assert patient.expression.source == "subject"
    assert patient.type_filter == frozenset({"Patient"})
    assert search_registry.get("QuestionnaireResponse", "subject").type_filter is None
    assert search_registry.get("Encounter", "practitioner").type_filter == frozenset({"Practitioner"})


def test_casts_on_choice_elements_become_their_json_keys(search_registry):
    assert search_registry.get("Observation", "value-concept").expression.source == "valueCodeableConcept"
    assert search_registry.get("Observation", "value-string").expression.source == \
        "valueString | valueCodeableConcept.text"
    assert search_registry.get("Condition", "onset-date").expression.source == "onsetDateTime | onsetPeriod"
    assert search_registry.get("Patient", "death-date").expression.source == "deceasedDateTime"
    assert search_registry.get("ConceptMap", "source").expression.source == "sourceCanonical"
    assert search_registry.get("Goal", "target-date").expression.source == "target.dueDate"


def test_a_cast_on_a_plain_element_is_dropped():
    registry = SearchParameterRegistry.load(package_of(
        {"code": "org", "base": ["Patient"], "type": "reference",
         "expression": "(Patient.managingOrganization as Reference)"},
        {"code": "died", "base": ["Patient"], "type": "date", "expression": "Patient.deceased as dateTime"}))
    assert registry.get("Patient", "org").expression.source == "managingOrganization"
    assert registry.get("Patient", "died").expression.source == "deceasedDateTime"


def test_composite_special_and_quantity_parameters_are_recorded_as_unsupported(search_registry):
    unsupported = search_registry.unsupported("Observation")
    assert "composite" in unsupported["code-value-quantity"]
    assert "quantity" in unsupported["value-quantity"]
    assert "code-value-quantity" not in search_registry.for_type("Observation")
    registry = SearchParameterRegistry.load(package_of({"code": "_text", "base": ["DomainResource"],
                                                        "type": "special"}))
    assert registry.unsupported("Patient") == {"_text": "special parameters are not supported"}


def test_the_project_parameters_read_the_dialog_extensions(search_registry):
    purpose = search_registry.get("QuestionnaireResponse", "purpose")
    assert purpose.url == f"{PROJECT}/SearchParameter/purpose"
    assert "dialog-collection-purpose" in purpose.expression.source
    assert search_registry.get("QuestionnaireResponse", "timepoint").url == f"{PROJECT}/SearchParameter/timepoint"
    organization = search_registry.get("QuestionnaireResponse", "recording-organization")
    assert organization.targets == ("Organization",)
    assert organization.url == f"{PROJECT}/SearchParameter/recording-organization"


def test_the_generated_core_bundle_holds_only_served_types():
    bundle = orjson.loads((REPO / "profiles/search-parameters/r4-core-search-parameters.json").read_bytes())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    for entry in bundle["entry"]:
        sp = entry["resource"]
        assert entry["fullUrl"] == sp["url"]
        assert set(sp["base"]) <= set(SERVED) | {"Resource"}, sp["id"]
        assert not sp.get("experimental"), sp["id"]
        assert "xpath" not in sp


def test_standalone_and_bundled_definitions_both_load():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "SearchParameter", "url": "http://example.org/sp/b", "code": "b",
                      "base": ["Patient"], "type": "token", "expression": "Patient.gender"}}]}
    package = package_of({"code": "a", "base": ["Patient"], "type": "string", "expression": "Patient.name"})
    package.add(bundle, Path("bundle.json"))
    assert set(SearchParameterRegistry.load(package).by_type["Patient"]) == {"a", "b"}


@pytest.mark.parametrize("definition, message", [
    ({"code": "x", "base": ["Patient"], "type": "token", "expression": "Patient.name.where("}, "sp-0.json"),
    ({"code": "x", "base": ["Patient"], "type": "token", "expression": "Observation.code"},
     "no expression for Patient"),
    ({"code": "x", "type": "token", "expression": "Patient.gender"}, "needs code, type and base"),
    ({"code": "x", "base": ["Patient"], "type": "colour", "expression": "Patient.gender"}, "unknown type"),
])
def test_a_broken_definition_fails_at_load_naming_its_file(definition, message):
    with pytest.raises(ConfigurationError, match=message) as raised:
        SearchParameterRegistry.load(package_of(definition))
    assert "sp-0.json" in raised.value.message


def test_a_code_defined_twice_for_a_type_fails_at_load():
    twice = {"code": "gender", "base": ["Patient"], "type": "token", "expression": "Patient.gender"}
    with pytest.raises(ConfigurationError, match="already defined"):
        SearchParameterRegistry.load(package_of(twice, twice))


def test_split_union_leaves_bars_in_brackets_and_quotes_alone():
    assert split_union("A.b | (C.d | C.e) | F.where(g = 'x|y')") == ["A.b", "(C.d | C.e)", "F.where(g = 'x|y')"]
