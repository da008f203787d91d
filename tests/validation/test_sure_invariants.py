"""The plain-Python shortcuts of ref-1, ext-1, qrs-1 and dom-3 say "holds" only where the FHIRPath does."""
from __future__ import annotations

import itertools

import pytest

from fhir_bridge.fhirpath import compile_expression
from fhir_bridge.validation.nodes import Node
from fhir_bridge.validation.sure_invariants import _SURE, sure_check

ROOT = {"resourceType": "CarePlan", "contained": [{"resourceType": "Goal", "id": "g1"}]}

REFERENCES = [{}, {"reference": "Patient/p1"}, {"reference": ""}, {"reference": "#g1"}, {"reference": "#nope"},
              {"reference": "#"}, {"reference": None}, {"reference": 3}, {"reference": ["#g1"]},
              {"display": "Sam"}, {"reference": "https://other.example.org/fhir/Patient/1"}]
VALUES = [None, "x", 0, False, [], {}, {"code": "a"}, [1]]
EXTENSIONS = [None, [], [{"url": "u", "valueString": "x"}], {"url": "u"}]
SHAPES = {
    "ref-1": REFERENCES,
    "ext-1": [{"url": "u", **({} if ext is None else {"extension": ext}), **({} if key is None else {key: value})}
              for ext, key, value in itertools.product(EXTENSIONS, [None, "valueString", "valueCoding"], VALUES)]
    + [{"url": "u", "_valueString": {"extension": [{"url": "x", "valueBoolean": True}]}},
       {"url": "u", "valueString": "a", "valueBoolean": True}, {"url": "u", "value": "x"}, {"url": "u", "valueset": "x"}],
    "qrs-1": [{"linkId": "a", **({} if a is None else {"answer": a}), **({} if i is None else {"item": i})}
              for a, i in itertools.product([None, [], [{"valueInteger": 1}], 0, {}], [None, [], [{"linkId": "b"}], ""])],
    # dom-3 runs on the resource itself (the focus is ROOT-like): an unreferenced contained Goal fails it
    "dom-3": [{"resourceType": "CarePlan", **({} if c is None else {"contained": c}),
               **({} if g is None else {"goal": g})}
              for c, g in itertools.product([None, [], [{"resourceType": "Goal", "id": "g1"}]],
                                            [None, [{"reference": "#g1"}], [{"reference": "Goal/g1"}]])],
}
EXPRESSIONS = {"ref-1": "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
                        "%rootResource.contained.id.trace('ids'))",
               "ext-1": "extension.exists() != value.exists()",
               "qrs-1": "(answer.exists() and item.exists()).not()",
               "dom-3": "contained.where((('#'+id in (%resource.descendants().reference | "
                        "%resource.descendants().as(canonical) | %resource.descendants().as(uri) | "
                        "%resource.descendants().as(url))) or descendants().where(reference = '#').exists() or "
                        "descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = "
                        "'#').exists()).not()).trace('unmatched', id).empty()"}


@pytest.mark.parametrize("key", sorted(EXPRESSIONS))
def test_a_shortcut_says_holds_only_where_the_expression_holds(key):
    expression = compile_expression(EXPRESSIONS[key])
    sure = sure_check(EXPRESSIONS[key])
    said = 0
    for obj in SHAPES[key]:
        resource = obj if "resourceType" in obj else ROOT
        if sure(obj):
            said += 1
            assert expression.holds(obj, resource, resource), obj
    assert said >= 3  # it does answer for the ordinary shapes
    if key == "dom-3":  # the shapes include one the expression rejects, which the shortcut must not pass
        failing = [obj for obj in SHAPES[key] if not expression.holds(obj, obj, obj)]
        assert failing and not any(sure(obj) for obj in failing)


def test_the_shortcuts_are_those_of_the_base_invariants_the_validator_loads(validator):
    """Keyed by the expression text: if the core tables' text changed, the shortcut would silently stop."""
    import gc

    found = {inv.key: inv for node in gc.get_objects() if isinstance(node, Node)
             for inv in node.invariants or () if inv.key in EXPRESSIONS}
    assert set(found) == set(EXPRESSIONS)
    assert all(found[key].sure is not None and found[key].expression == EXPRESSIONS[key] for key in EXPRESSIONS)
    assert set(_SURE) == set(EXPRESSIONS.values())


def test_a_broken_contained_reference_is_still_caught(validator):
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/p"},
            "goal": [{"reference": "#missing"}]}
    result = validator.validate(plan)
    assert any("ref-1" in issue.message for issue in result.errors)
