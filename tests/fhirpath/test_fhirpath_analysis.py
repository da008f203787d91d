"""Work the compiler saves: literal subtrees evaluated once at compile time, subexpressions that
do not read the focus once per evaluation. Results and errors stay as if nothing were saved."""
from __future__ import annotations

import pytest

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath import compile_expression, evaluate
from fhir_bridge.fhirpath import nodes as n
from fhir_bridge.fhirpath.analysis import Analysis
from fhir_bridge.fhirpath.parser import parse

QR = {"resourceType": "QuestionnaireResponse", "item": [{"linkId": str(i)} for i in range(5)]}


def _deps(expr: str) -> set[str]:
    tree = parse(expr)
    return set(Analysis(tree).deps(tree))


@pytest.mark.parametrize(("expr", "deps"), [
    ("'a' | 'b'", set()),
    ("%resource.item.where(linkId = 'x')", set()),
    ("%resource.item.where(linkId = $this.linkId)", set()),  # where()'s own $this
    ("item", {"focus"}),
    ("$this", {"this"}),
    ("%resource.item.select($total)", {"total"}),  # aggregate's, from outside
    ("%resource.item.aggregate($total + 1, 0)", set()),
    ("%resource.extension(url)", {"this"}),  # a VALUE argument is evaluated on $this
    ("%resource.item[$index]", {"index"}),
    ("%resource.iif($this.exists(), 1, 2)", {"this"}),  # iif() binds no $this
    ("%resource.item.where(linkId.trace('x') = '1')", {"opaque"}),  # logging is not skipped
])
def test_what_a_subtree_reads(expr, deps):
    assert _deps(expr) == deps


def test_equal_subtrees_share_a_shape_wherever_they_are_written():
    tree = parse("%resource.item.count() / %resource.item.count()")
    assert isinstance(tree, n.Binary)
    a = Analysis(tree)
    assert a.shape(tree.left) == a.shape(tree.right) and a.counts[a.shape(tree.left)] == 2
    assert Analysis(parse("1 | 1.0")).counts.get(("Literal", int, 1)) == 1  # an integer is not a decimal


def test_an_error_in_a_literal_subtree_is_raised_when_evaluated_not_when_compiled():
    compiled = compile_expression("('a' + 1) | 'b'")
    with pytest.raises(FhirPathError):
        compiled(QR)


def test_a_subexpression_on_resource_inside_a_loop_runs_once_per_evaluation():
    calls = []

    def conforms(item, url):
        calls.append(url)
        return True

    compiled = compile_expression("item.where(%resource.conformsTo('p')).count()")
    assert compiled(QR, variables={"__conformsTo__": conforms}) == [5]
    assert calls == ["p"]
    assert compiled(QR, variables={"__conformsTo__": conforms}) == [5]
    assert calls == ["p", "p"]  # remembered for one evaluation only


def test_remembered_results_belong_to_their_resource():
    compiled = compile_expression("%resource.item.count() + %resource.item.count()")
    assert compiled(QR) == [10]
    assert compiled({"resourceType": "QuestionnaireResponse", "item": [{"linkId": "a"}]}) == [2]


@pytest.mark.parametrize(("expr", "expected"), [
    ("'b' in ('a' | 'b')", [True]),
    ("'c' in ('a' | 'b')", [False]),
    ("{} in ('a' | 'b')", []),
    ("1 in ('a' | 'b')", [False]),
    ("1 in ('a' | 1.0)", [True]),
    ("('a' | 'b') contains 'a'", [True]),
    ("'a' in {}", [False]),
])
def test_membership_in_a_literal_collection(expr, expected):
    assert evaluate(expr, QR) == expected
