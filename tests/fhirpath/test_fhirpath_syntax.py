"""Parsing: literals, precedence, identifiers, and errors that name their position."""
from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath import compile_expression, evaluate


@pytest.mark.parametrize(("expr", "position"), [
    ("(answer.exists() and )", 21),
    ("name.given.", 11),
    ("a.b(", 4),
    ("1 + ", 4),
    ("where(x = 1", 11),
    ("a ## b", 2),
    ("'unterminated", 0),
    ("a b", 2),
    ("", 0),
    ("@2020-13-01", 0),
    ("x is 1", 5),
    ("ofType('Coding')", 7),
])
def test_syntax_errors_name_the_position(expr, position):
    with pytest.raises(FhirPathError) as info:
        compile_expression(expr)
    assert f"position {position}" in str(info.value)
    assert repr(expr) in str(info.value)


def test_unknown_function_is_a_compile_error_at_its_name():
    with pytest.raises(FhirPathError, match=r"position 5: unknown function frobnicate\(\)"):
        compile_expression("name.frobnicate()")


@pytest.mark.parametrize("expr", ["count(1)", "where()", "substring()", "iif(true)", "exists(a, b)"])
def test_wrong_argument_count_is_a_compile_error(expr):
    with pytest.raises(FhirPathError, match="argument"):
        compile_expression(expr)


def test_absurd_nesting_is_a_fhirpath_error():
    with pytest.raises(FhirPathError, match="too deeply nested"):
        compile_expression("(" * 5000 + "1" + ")" * 5000)


def test_compiled_expressions_are_cached():
    assert compile_expression("name.given") is compile_expression("name.given")


@pytest.mark.parametrize(("expr", "expected"), [
    ("1 + 2 * 3", [7]),
    ("(1 + 2) * 3", [9]),
    ("10 - 4 - 3", [3]),
    ("2 * 3 div 4", [1]),
    ("-2 * 3", [-6]),
    ("- 'a'.length()", [-1]),
    ("1 + 2 = 3", [True]),
    ("1 | 2 | 2 = 1 | 2", [True]),
    ("1 < 2 = true", [True]),
    ("true or false and false", [True]),
    ("false and true or true", [True]),
    ("true xor true or true", [True]),
    ("false implies false and true", [True]),
    ("2 in (1 | 2) and true", [True]),
    ("'a' & 'b' + 'c'", ["abc"]),
    ("5 is Integer and true", [True]),
])
def test_operator_precedence(expr, expected):
    assert evaluate(expr, {}) == expected


@pytest.mark.parametrize(("expr", "expected"), [
    (r"'it\'s'", ["it's"]),
    (r"'tab\there'", ["tab\there"]),
    (r"'\u00e9'", ["é"]),
    (r"'a\\b'", ["a\\b"]),
    (r"'\/'", ["/"]),
    (r"'\s\.'", [r"\s\."]),  # regex escapes survive: invariants rely on it (eld-19, sdf-8a)
    ("12", [12]),
    ("1.50", [Decimal("1.50")]),
    ("true", [True]),
    ("{}", []),
    ("@2020-02-03", ["2020-02-03"]),
    ("@2020-02-03T04:05:06.789+01:00", ["2020-02-03T04:05:06.789+01:00"]),
    ("@2020T", ["2020"]),
    ("@T14:30", ["14:30"]),
    ("4 'mg'", [{"value": 4, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}]),
    ("2 years", [{"value": 2, "unit": "year"}]),
    ("%ucum", ["http://unitsofmeasure.org"]),
    ("%sct", ["http://snomed.info/sct"]),
    ("%loinc", ["http://loinc.org"]),
    ("%`vs-administrative-gender`", ["http://hl7.org/fhir/ValueSet/administrative-gender"]),
    ("%`ext-patient-birthTime`", ["http://hl7.org/fhir/StructureDefinition/patient-birthTime"]),
    ("1 // a comment\n + /* another */ 1", [2]),
])
def test_literals(expr, expected):
    assert evaluate(expr, {}) == expected


def test_delimited_identifiers_and_keywords_as_names():
    node = {"div": "<div/>", "as": 1, "contains": [2, 3]}
    assert evaluate("`div`", node) == ["<div/>"]
    assert evaluate("$this.div", node) == ["<div/>"]
    assert evaluate("contains", node) == [2, 3]
    assert evaluate("$this.as", node) == [1]


def test_evaluation_errors_name_the_expression():
    with pytest.raises(FhirPathError, match=r"single item.*evaluating 'a.upper\(\)'"):
        evaluate("a.upper()", {"a": ["x", "y"]})


def test_variables():
    assert evaluate("%who", {}, variables={"who": "me"}) == ["me"]
    assert evaluate("%many", {}, variables={"many": [1, 2]}) == [1, 2]
    assert evaluate("%nothing", {}, variables={"nothing": None}) == []
    with pytest.raises(FhirPathError, match="undefined variable %missing"):
        evaluate("%missing", {})
