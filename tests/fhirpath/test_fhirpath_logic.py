"""Three-valued Boolean logic (FHIRPath spec section 6.5) and singleton evaluation."""
from __future__ import annotations

import itertools

import pytest

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath import compile_expression, evaluate

T, F, E = "true", "false", "{}"
VALUE = {T: [True], F: [False], E: []}

# The spec's truth tables, row by row: (left, right) -> result.
AND = {(T, T): T, (T, F): F, (T, E): E, (F, T): F, (F, F): F, (F, E): F, (E, T): E, (E, F): F, (E, E): E}
OR = {(T, T): T, (T, F): T, (T, E): T, (F, T): T, (F, F): F, (F, E): E, (E, T): T, (E, F): E, (E, E): E}
XOR = {(T, T): F, (T, F): T, (T, E): E, (F, T): T, (F, F): F, (F, E): E, (E, T): E, (E, F): E, (E, E): E}
IMPLIES = {(T, T): T, (T, F): F, (T, E): E, (F, T): T, (F, F): T, (F, E): T, (E, T): T, (E, F): E, (E, E): E}
TABLES = {"and": AND, "or": OR, "xor": XOR, "implies": IMPLIES}


@pytest.mark.parametrize(("op", "left", "right"),
                         [(op, a, b) for op in TABLES for a, b in itertools.product((T, F, E), repeat=2)])
def test_truth_tables(op, left, right):
    assert evaluate(f"({left}) {op} ({right})", {}) == VALUE[TABLES[op][left, right]]


@pytest.mark.parametrize(("operand", "expected"), [(T, F), (F, T), (E, E)])
def test_not(operand, expected):
    assert evaluate(f"({operand}).not()", {}) == VALUE[expected]


@pytest.mark.parametrize(("op", "left", "right"), [(op, a, b) for op in TABLES for a, b in itertools.product((T, F, E), repeat=2)])
def test_truth_tables_match_fhirpathpy(oracle, op, left, right):
    expr = f"({left}) {op} ({right})"
    assert evaluate(expr, {}) == oracle(expr, {})


def test_short_circuit_skips_the_right_operand():
    # The right side would be an error (a comparison of several items) if it were evaluated.
    node = {"a": [1, 2]}
    assert evaluate("false and (a > 0)", node) == [False]
    assert evaluate("true or (a > 0)", node) == [True]
    assert evaluate("false implies (a > 0)", node) == [True]
    with pytest.raises(FhirPathError):
        evaluate("true and (a > 0)", node)


def test_singleton_evaluation_of_non_boolean_operands():
    # A single non-Boolean item counts as true in a Boolean context; several items are an error.
    assert evaluate("'x' and true", {}) == [True]
    assert evaluate("name.exists() and name", {"name": "n"}) == [True]
    assert evaluate("where(name)", {"name": "n"}) == [{"name": "n"}]
    with pytest.raises(FhirPathError, match="single boolean"):
        evaluate("name and true", {"name": ["a", "b"]})


@pytest.mark.parametrize(("result", "passes"), [("true", True), ("false", False), ("{}", True)])
def test_is_true_follows_invariant_semantics(result, passes):
    assert compile_expression(result).is_true({}) is passes


def test_is_true_rejects_several_items():
    with pytest.raises(FhirPathError):
        compile_expression("a").is_true({"a": [True, False]})


@pytest.mark.parametrize(("expr", "expected"), [
    ("1 = 1", [True]),
    ("1 = 1.0", [True]),
    ("1 = 'a'", [False]),
    ("{} = 1", []),
    ("1 != {}", []),
    ("(1 | 2) = (1 | 2)", [True]),
    ("(1 | 2) = (2 | 1)", [False]),
    ("(1 | 2) != (1 | 3)", [True]),
    ("true = 1", [False]),
    ("'a' ~ 'A'", [True]),
    ("'a  b ' ~ 'A B'", [True]),
    ("{} ~ {}", [True]),
    ("{} ~ 1", [False]),
    ("(1 | 2) ~ (2 | 1)", [True]),
    ("1.10 ~ 1.1", [True]),
    ("1.2 ~ 1.25", [False]),
    ("'a' !~ 'B'", [True]),
])
def test_equality_and_equivalence(expr, expected):
    assert evaluate(expr, {}) == expected


def test_deep_equality_and_equivalence_of_objects():
    node = {
        "a": {"system": "s", "code": "c", "coding": [{"code": "x"}, {"code": "y"}]},
        "b": {"code": "c", "system": "s", "coding": [{"code": "x"}, {"code": "y"}]},
        "c": {"code": "C", "system": "s", "coding": [{"code": "y"}, {"code": "X"}]},
    }
    assert evaluate("a = b", node) == [True]
    assert evaluate("a = c", node) == [False]
    assert evaluate("a ~ c", node) == [True]
    assert evaluate("a !~ c", node) == [False]
