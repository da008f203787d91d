"""The function library: collections, filtering, strings, math, conversions, hooks."""
from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath import evaluate

DIALOG = {
    "resourceType": "QuestionnaireResponse",
    "item": [
        {"linkId": "a", "answer": [{"valueCoding": {"code": "3"}}]},
        {"linkId": "b", "answer": [{"valueCoding": {"code": "6"}}]},
        {"linkId": "c", "answer": [{"valueCoding": {"code": "7"}}]},
        {"linkId": "a.more-help", "answer": [{"valueCoding": {"code": "Y"}}]},
    ],
}
MEAN = ("%resource.item.where(linkId in ('a'|'b')).answer.value.ofType(Coding).code.toInteger()"
        ".aggregate($total + $this, 0) / %resource.item.where(linkId in ('a'|'b')).answer.count()")


def test_aggregate_computes_a_mean_score():
    assert evaluate(MEAN, DIALOG) == [Decimal("4.5")]
    assert evaluate(MEAN, DIALOG["item"][0], resource=DIALOG) == [Decimal("4.5")]


def test_aggregate_uses_total_and_index():
    assert evaluate("(1 | 2 | 3 | 4).aggregate($total + $this, 0)", {}) == [10]
    assert evaluate("(5 | 2 | 9).aggregate(iif($total.empty() or $this > $total, $this, $total))", {}) == [9]
    assert evaluate("('a' | 'b').aggregate($total + $index, 0)", {}) == [1]
    assert evaluate("{}.aggregate($total + $this, 0)", {}) == [0]


@pytest.mark.parametrize(("expr", "expected"), [
    ("(1 | 2 | 3).where($this > 1)", [2, 3]),
    ("(1 | 2 | 3).select($this * 10)", [10, 20, 30]),
    ("(1 | 2 | 3).select($index)", [0, 1, 2]),
    ("(1 | 2 | 3).exists($this > 2)", [True]),
    ("(1 | 2 | 3).exists($this > 3)", [False]),
    ("(1 | 2 | 3).all($this > 0)", [True]),
    ("(1 | 2 | 3).all($this > 1)", [False]),
    ("{}.all(false)", [True]),
    ("(true | false).allTrue()", [False]),
    ("(true | false).anyTrue()", [True]),
    ("(false).allFalse()", [True]),
    ("(true).anyFalse()", [False]),
    ("(1 | 2).subsetOf(1 | 2 | 3)", [True]),
    ("(1 | 4).subsetOf(1 | 2 | 3)", [False]),
    ("(1 | 2 | 3).supersetOf(2 | 3)", [True]),
    ("(1 | 2).combine(2 | 3)", [1, 2, 2, 3]),
    ("(1 | 2).union(2 | 3)", [1, 2, 3]),
    ("(1 | 2 | 3).intersect(2 | 3 | 4)", [2, 3]),
    ("(1 | 2 | 3).exclude(2)", [1, 3]),
    ("(1 | 2).combine(1 | 2).distinct()", [1, 2]),
    ("(1 | 2).combine(1).isDistinct()", [False]),
    ("(1 | 1.0).count()", [1]),
    ("(1 | 2 | 3).first()", [1]),
    ("(1 | 2 | 3).last()", [3]),
    ("(1 | 2 | 3).tail()", [2, 3]),
    ("(1 | 2 | 3).skip(2)", [3]),
    ("(1 | 2 | 3).take(2)", [1, 2]),
    ("(1 | 2 | 3).take(-1)", []),
    ("(7).single()", [7]),
    ("{}.single()", []),
    ("{}.empty()", [True]),
    ("iif(true, 'y', 'n')", ["y"]),
    ("iif({}, 'y', 'n')", ["n"]),
    ("iif(false, 'y')", []),
    ("(1 | 2 | 3).trace('numbers').count()", [3]),
    ("htmlChecks()", [True]),
])
def test_collection_functions(expr, expected):
    assert evaluate(expr, {}) == expected


def test_single_of_several_items_is_an_error():
    with pytest.raises(FhirPathError, match="single"):
        evaluate("(1 | 2).single()", {})


def test_repeat_walks_nested_items():
    q = {"item": [{"linkId": "1", "item": [{"linkId": "1.1", "item": [{"linkId": "1.1.1"}]}]}, {"linkId": "2"}]}
    assert evaluate("repeat(item).linkId", q) == ["1", "2", "1.1", "1.1.1"]
    assert evaluate("descendants().linkId.isDistinct()", q) == [True]


def test_iif_criterion_sees_the_input_collection():
    # ctm-1 writes member.resolve().iif(empty(), true, ofType(Practitioner).exists())
    assert evaluate("a.iif(empty(), 'none', 'some')", {}) == ["none"]
    assert evaluate("a.iif(empty(), 'none', 'some')", {"a": 1}) == ["some"]


def test_plain_arguments_are_evaluated_against_this():
    node = {"name": "abc", "prefix": "ab", "list": [{"v": 1, "limit": 2}, {"v": 3, "limit": 2}]}
    assert evaluate("name.startsWith(prefix)", node) == [True]
    assert evaluate("list.where(v < limit).v", node) == [1]


@pytest.mark.parametrize(("expr", "expected"), [
    ("'abcdef'.startsWith('abc')", [True]),
    ("'abcdef'.endsWith('def')", [True]),
    ("'abcdef'.contains('cd')", [True]),
    ("'abcdef'.indexOf('cd')", [2]),
    ("'abcdef'.indexOf('x')", [-1]),
    ("'abcdef'.substring(2)", ["cdef"]),
    ("'abcdef'.substring(2, 2)", ["cd"]),
    ("'abcdef'.substring(9)", []),
    ("'abc'.upper()", ["ABC"]),
    ("'ABC'.lower()", ["abc"]),
    ("'  a '.trim()", ["a"]),
    ("'abc'.length()", [3]),
    ("'abc'.toChars()", ["a", "b", "c"]),
    ("'a.b.c'.replace('.', '/')", ["a/b/c"]),
    ("'abc'.replace('', '-')", ["-a-b-c-"]),
    ("'2020-01'.matches('^\\\\d{4}-\\\\d{2}$')", [True]),
    ("'Abc'.matches('[A-Z]([A-Za-z0-9_]){0,254}')", [True]),
    ("'abc'.matches('^[A-Z]')", [False]),
    ("'x1y22'.replaceMatches('(\\\\d+)', '<$1>')", ["x<1>y<22>"]),
    ("'a,b'.split(',')", ["a", "b"]),
    ("('a' | 'b').join('-')", ["a-b"]),
    ("{}.startsWith('a')", []),
    ("'abc'.startsWith({})", []),
    ("'a' & {} & 'b'", ["ab"]),
    ("'a' + {}", []),
])
def test_string_functions(expr, expected):
    assert evaluate(expr, {}) == expected


def test_string_functions_reject_non_strings_and_collections():
    with pytest.raises(FhirPathError, match="expects a string"):
        evaluate("(1).startsWith('1')", {})
    with pytest.raises(FhirPathError, match="single item"):
        evaluate("('a' | 'b').upper()", {})
    with pytest.raises(FhirPathError, match="regular expression"):
        evaluate("'a'.matches('(')", {})


@pytest.mark.parametrize(("expr", "expected"), [
    ("(-5).abs()", [5]),
    ("(-5.5).abs()", [Decimal("5.5")]),
    ("(-5 'mg').abs() = 5 'mg'", [True]),
    ("1.1.ceiling()", [2]),
    ("(-1.1).floor()", [-2]),
    ("1.5.round()", [Decimal("2")]),
    ("3.14159.round(2)", [Decimal("3.14")]),
    ("(-1.9).truncate()", [-1]),
    ("1.exp().ln().round(6)", [Decimal("1.000000")]),
    ("100.log(10).round(6)", [Decimal("2.000000")]),
    ("2.power(10)", [1024]),
    ("4.power(0.5)", [Decimal("2")]),
    ("(-8).power(0.5)", []),
    ("16.sqrt()", [Decimal("4")]),
    ("(-1).sqrt()", []),
    ("0.ln()", []),
    ("7 / 2", [Decimal("3.5")]),
    ("7 div 2", [3]),
    ("-7 div 2", [-3]),
    ("7 mod 2", [1]),
    ("-7 mod 2", [-1]),
    ("7.5 mod 2", [Decimal("1.5")]),
    ("1 / 0", []),
    ("1 div 0", []),
    ("1 mod 0", []),
    ("0.1 + 0.2 = 0.3", [True]),
    ("2 * 3.5", [Decimal("7.0")]),
    ("5 'mg' + 3 'mg' = 8 'mg'", [True]),
    ("5 'mg' - 3 'g'", []),
])
def test_math(expr, expected):
    assert evaluate(expr, {}) == expected


def test_json_floats_are_the_decimals_they_spell():
    node = {"a": 0.1, "b": 0.2, "c": 1.10}
    assert evaluate("a + b = 0.3", node) == [True]
    assert evaluate("a + b", node) == [Decimal("0.3")]
    assert evaluate("c = 1.1", node) == [True]
    assert evaluate("c.toString()", node) == ["1.1"]


@pytest.mark.parametrize(("expr", "expected"), [
    ("'12'.toInteger()", [12]),
    ("'1.5'.toInteger()", []),
    ("true.toInteger()", [1]),
    ("('1' | '2' | 'x').toInteger()", [1, 2]),  # item by item, see functions._conversion
    ("'12'.convertsToInteger()", [True]),
    ("'x'.convertsToInteger()", [False]),
    ("'1.50'.toDecimal()", [Decimal("1.50")]),
    ("5.toDecimal()", [Decimal(5)]),
    ("'abc'.convertsToDecimal()", [False]),
    ("5.toString()", ["5"]),
    ("1.50.toString()", ["1.50"]),
    ("true.toString()", ["true"]),
    ("(4 'mg').toString()", ["4 'mg'"]),
    ("'yes'.toBoolean()", [True]),
    ("'F'.toBoolean()", [False]),
    ("'maybe'.toBoolean()", []),
    ("0.toBoolean()", [False]),
    ("'maybe'.convertsToBoolean()", [False]),
    ("{}.toInteger()", []),
    ("'5 mg'.toQuantity()", []),
    ("'5 \\'mg\\''.toQuantity() = 5 'mg'", [True]),
    ("'2 days'.toQuantity() = 2 days", [True]),
    ("5.toQuantity() = 5 '1'", [True]),
    ("'5 \\'mg\\''.toQuantity('g')", []),
    ("'x'.convertsToQuantity()", [False]),
])
def test_conversions(expr, expected):
    assert evaluate(expr, {}) == expected


def test_quantity_objects_convert():
    obs = {"valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
    assert evaluate("value.toQuantity() = 72.5 'kg'", obs) == [True]
    assert evaluate("value.toQuantity().toString()", obs) == ["72.5 'kg'"]


def test_terminology_hooks():
    seen = []

    def member_of(value, url):
        seen.append((value, url))
        return value.get("code") == "ok"

    variables = {"__memberOf__": member_of, "__conformsTo__": lambda value, url: url.endswith("/Patient")}
    coding = {"c": {"system": "s", "code": "ok"}}
    assert evaluate("c.memberOf(%`vs-things`)", coding, variables=variables) == [True]
    assert seen == [({"system": "s", "code": "ok"}, "http://hl7.org/fhir/ValueSet/things")]
    patient = {"resourceType": "Patient"}
    assert evaluate("conformsTo('http://hl7.org/fhir/StructureDefinition/Patient')", patient, variables=variables) == [True]


def test_terminology_without_hooks_is_an_error_at_call_time():
    with pytest.raises(FhirPathError, match="memberOf"):
        evaluate("c.memberOf('http://vs')", {"c": {"code": "x"}})
    with pytest.raises(FhirPathError, match="conformsTo"):
        evaluate("conformsTo('http://sd')", {})
    assert evaluate("c.memberOf('http://vs')", {}) == []  # nothing to test, nothing asked


def test_trace_logs_at_debug_level(caplog):
    with caplog.at_level(logging.DEBUG, logger="fhir_bridge.fhirpath.trace"):
        assert evaluate("a.trace('values', $this * 2)", {"a": [1, 2]}) == [1, 2]
    assert "values: [2, 4]" in caplog.text
