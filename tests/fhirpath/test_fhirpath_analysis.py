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


def _recording_conforms() -> tuple[list, object]:
    """A %resource.conformsTo() stand-in that records each call."""
    calls: list = []

    def conforms(item, url):
        calls.append(url)
        return True

    return calls, conforms


def test_a_subexpression_on_resource_inside_a_loop_runs_once_per_evaluation():
    calls, conforms = _recording_conforms()
    compiled = compile_expression("item.where(%resource.conformsTo('p')).count()")
    assert compiled(QR, variables={"__conformsTo__": conforms}) == [5]
    assert calls == ["p"]
    assert compiled(QR, variables={"__conformsTo__": conforms}) == [5]
    assert calls == ["p", "p"]  # remembered for one evaluation only


def test_a_subexpression_written_twice_runs_once_per_evaluation():
    calls, conforms = _recording_conforms()
    compiled = compile_expression("%resource.conformsTo('p') and item.exists() and %resource.conformsTo('p')")
    assert compiled(QR, variables={"__conformsTo__": conforms}) == [True]
    assert calls == ["p"]


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


@pytest.mark.parametrize(("expr", "guard"), [
    ("contained.contained.empty()", (("contained",), ())),
    ("onBehalfOf.exists() implies member.resolve().exists()", (("onBehalfOf",), ())),  # the right side unread
    ("(answer.exists() and item.exists()).not()", (("answer",), ("answer",))),  # answer[x] is a choice name
    ("contained.where(%resource.id.exists()).empty()", (("contained",), ())),  # the criteria never run on {}
    ("extension.exists() != value.exists()", None),  # fails on {}
    ("hasValue() or children().exists()", None),  # reads the focus as a whole
    ("$this.id.empty()", None),
    ("%resource.id.empty()", None),  # reads the resource
    ("id.trace('x').empty()", None),  # logs
    ("birthDate.empty() or birthDate < today()", (("birthDate",), ())),  # settled before the clock
    ("birthDate.empty() and @2000-01-01 < today()", None),  # the clock
    ("Patient.id.empty()", None),  # a type test of the focus
])
def test_where_an_invariant_cannot_fail(expr, guard):
    assert compile_expression(expr).absence_guard() == guard


def test_every_guarded_r4_invariant_holds_on_objects_without_its_keys(r4_types):
    """The guard's claim, checked on objects full of other members: each guarded R4 core
    invariant holds wherever none of its keys is present."""
    reference = {"reference": "#x", "display": "x"}
    members = {"resourceType": "Patient", "id": "x", "url": "http://x", "system": "s", "code": "c",
               "text": {"status": "generated", "div": "<div/>"}, "contained": [{"resourceType": "Patient", "id": "y"}],
               "extension": [{"url": "http://x", "valueString": "x"}], "subject": reference, "status": "final",
               "name": [{"family": "x"}], "identifier": [{"system": "s", "value": "v"}], "item": [{"linkId": "1"}]}
    guarded = 0
    for definition in r4_types.values():
        for element in definition["elements"]:
            for constraint in element.get("constraint", ()):
                compiled = compile_expression(constraint["expression"])
                guard = compiled.absence_guard()
                if guard is None:
                    continue
                keys, prefixes = guard
                focus = {k: v for k, v in members.items() if k not in keys and not k.startswith(prefixes)}
                guarded += 1
                assert compiled.holds(focus, focus, focus), (constraint["key"], constraint["expression"])
    assert guarded > 100


@pytest.mark.parametrize(("expr", "local"), [
    ("(answer.exists() and item.exists()).not()", True),
    ("code.memberOf(%`vs-observation-codes`).not() or system = %sct", False),  # a terminology hook
    ("system = %sct and coding.where(system = %loinc).exists()", True),  # fixed constants
    ("url.startsWith(%`ext-foo`)", True),
    ("contained.where(%resource.id.exists()).empty()", False),
    ("reference.substring(1) in %rootResource.contained.id", False),
    ("%context.id.exists()", False),
    ("%answers.exists()", False),  # a variable the caller supplies
    ("subject.resolve().exists()", False),
    ("birthDate < today()", False),  # the clock
    ("item.select(linkId).isDistinct() and $this.id.trace('x').exists().not()", True),  # trace only logs
])
def test_whether_an_expression_reads_only_its_focus(expr, local):
    """What the validator's memo of clean elements relies on: a verdict that reads nothing else
    may be remembered by the element's content."""
    assert compile_expression(expr).reads_only_focus() is local
