"""The terminology service over the project's data: lookup, validate-code, expand, translate."""
from __future__ import annotations

import pytest

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.fhir.package import ConformancePackage
from fhir_bridge.terminology import Terminology
from tests.conftest import REPO

BASE = "https://fhir-bridge.example.org"
DOMAIN = f"{BASE}/CodeSystem/dialog-domain"
SNOMED = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return Terminology.load(REPO / "terminology")


def test_lookup_gives_display_and_both_numberings(terminology):
    friendships = terminology.lookup(DOMAIN, "friendships")
    partner = terminology.lookup(DOMAIN, "partner-family")
    assert (friendships.properties["mhsds-item"], friendships.properties["qmul-item"]) == (6, 7)
    assert (partner.properties["mhsds-item"], partner.properties["qmul-item"]) == (7, 6)
    assert friendships.properties["snomed-item"] == "1037701000000108"
    assert terminology.lookup(DOMAIN, "nope") is None


@pytest.mark.parametrize("code, valid", [("1", True), ("7", True), ("8", False), ("0", False), ("seven", False)])
def test_rating_value_set_is_1_to_7(terminology, code, valid):
    check = terminology.validate_code(f"{BASE}/ValueSet/dialog-rating", f"{BASE}/CodeSystem/dialog-rating", code)
    assert check.valid is valid
    if not valid:
        assert "dialog-rating" in check.message


def test_validate_code_without_system_for_code_elements(terminology):
    vs = "http://hl7.org/fhir/ValueSet/questionnaire-answers-status"
    assert terminology.validate_code(vs, None, "completed").valid is True
    assert terminology.validate_code(vs, None, "finished").valid is False


def test_value_set_that_cannot_be_enumerated_is_unknown_not_wrong(terminology):
    assert terminology.validate_code("http://example.org/ValueSet/unknown", None, "x").valid is None


def test_snomed_codes_are_checked_for_their_verhoeff_digit(terminology):
    assert terminology.code_problem(SNOMED, "1037651000000100") is None
    assert "Verhoeff" in terminology.code_problem(SNOMED, "1037651000000101") or \
        "check" in terminology.code_problem(SNOMED, "1037651000000101")


def test_unknown_code_in_a_complete_code_system(terminology):
    assert terminology.code_problem(DOMAIN, "mood") is not None
    assert terminology.code_problem("http://example.org/unknown-system", "anything") is None


def test_expand_lists_the_members_with_displays(terminology):
    ratings = terminology.expand(f"{BASE}/ValueSet/dialog-rating")
    assert [c.code for c in ratings] == [str(i) for i in range(1, 8)]
    assert ratings[0].display.lower().startswith("totally dissatisfied")
    scores = {(c.system, c.code) for c in terminology.expand(f"{BASE}/ValueSet/dialog-score-codes")}
    assert (SNOMED, "1037751000000109") in scores and (f"{BASE}/CodeSystem/dialog-score", "sqol-mean") in scores


def test_translate_domain_to_snomed_and_back(terminology):
    cm = f"{BASE}/ConceptMap/dialog-domain-to-snomed"
    [t] = terminology.translate(cm, DOMAIN, "partner-family")
    assert (t.system, t.code, t.equivalence) == (SNOMED, "1037711000000105", "equivalent")
    [back] = terminology.translate(cm, SNOMED, "1037711000000105", reverse=True)
    assert (back.system, back.code) == (DOMAIN, "partner-family")


@pytest.mark.parametrize("mhsds, qmul", [("6", "7"), ("7", "6"), ("1", "1"), ("11", "11")])
def test_item_numbering_map_swaps_6_and_7_only(terminology, mhsds, qmul):
    cm = f"{BASE}/ConceptMap/dialog-mhsds-to-qmul-item-number"
    [t] = terminology.translate(cm, f"{BASE}/CodeSystem/dialog-item-number-mhsds", mhsds)
    assert t.code == qmul
    [back] = terminology.translate(cm, f"{BASE}/CodeSystem/dialog-item-number-qmul", qmul, reverse=True)
    assert back.code == mhsds


def test_value_set_including_an_unknown_value_set_fails_at_load():
    package = ConformancePackage()
    package.add({"resourceType": "ValueSet", "url": "http://x/vs", "compose": {"include": [{"valueSet": ["http://x/missing"]}]}})
    with pytest.raises(ConfigurationError, match="http://x/missing"):
        Terminology(package)
