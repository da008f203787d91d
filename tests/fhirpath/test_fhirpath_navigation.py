"""Navigation over FHIR JSON: flattening, choice types, type tests, tree functions, resolve()."""
from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath import evaluate

QR = {
    "resourceType": "QuestionnaireResponse",
    "id": "qr1",
    "status": "completed",
    "authored": "2024-02-06T10:15:00+00:00",
    "item": [
        {"linkId": "a", "answer": [{"valueCoding": {"system": "s", "code": "3"}}]},
        {"linkId": "b", "answer": [{"valueCoding": {"system": "s", "code": "5"}}, {"valueCoding": {"code": "6"}}]},
        {"linkId": "c", "answer": [{"valueBoolean": False}]},
        {"linkId": "d", "answer": [{"valueDecimal": 5}]},
        {"linkId": "e", "answer": [{"valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}]},
        {"linkId": "f", "answer": [{"valueDate": "2020-02-03"}, {"valueString": "free text"}]},
        {"linkId": "g", "item": [{"linkId": "g1", "answer": [{"valueInteger": 2}]}]},
    ],
}


@pytest.mark.parametrize(("expr", "expected"), [
    ("item.linkId", ["a", "b", "c", "d", "e", "f", "g"]),
    ("item.answer.count()", [8]),
    ("item[1].answer.value.code", ["5", "6"]),
    ("item.item.answer.value", [2]),
    ("item[0].linkId", ["a"]),
    ("item[99].linkId", []),
    ("item.answer.value.ofType(Coding).code", ["3", "5", "6"]),
    ("item.answer.value.ofType(Quantity).value", [70]),
    ("item.answer.value.ofType(boolean)", [False]),
    ("item.answer.value.ofType(Boolean)", [False]),
    ("item.answer.value.ofType(date)", ["2020-02-03"]),
    ("item.answer.value.ofType(integer)", []),
    ("item.item.answer.value.ofType(integer)", [2]),
    ("repeat(item).answer.value.ofType(integer)", [2]),
    ("item.where(linkId = 'c').answer.value is Boolean", [True]),
    ("item.where(linkId = 'c').answer.value is boolean", [True]),
    ("item.where(linkId = 'c').answer.value is Coding", [False]),
    ("item.where(linkId = 'a').answer.value is Coding", [True]),
    ("item.where(linkId = 'a').answer.value is FHIR.Coding", [True]),
    ("item.where(linkId = 'a').answer.value.is(Quantity)", [False]),
    ("item.where(linkId = 'e').answer.value is Quantity", [True]),
    ("item.where(linkId = 'd').answer.value is decimal", [True]),
    ("item.where(linkId = 'd').answer.value", [Decimal(5)]),
    ("(item.where(linkId = 'a').answer.value as Coding).code", ["3"]),
    ("item.answer.value.as(Coding).system", ["s", "s"]),
    ("item.where(linkId = 'e').answer.value > 60 'kg'", [True]),
    ("item.where(linkId = 'e').answer.value < 60 'kg'", [False]),
    ("item.where(linkId = 'e').answer.value > 60 'g'", []),  # no UCUM conversion: unknown
    ("QuestionnaireResponse.item.count()", [7]),
    ("Patient.name", []),
    ("$this is QuestionnaireResponse", [True]),
    ("$this is DomainResource", [True]),
    ("$this is Resource", [True]),
    ("$this is Patient", [False]),
    ("status is string", [True]),
    ("status is code", [True]),
    ("authored is dateTime", [True]),
    ("authored is date", [False]),
    ("authored is System.String", [True]),
    ("authored is DateTime", [True]),
    ("resourceType", ["QuestionnaireResponse"]),
])
def test_navigation_and_types(expr, expected):
    assert evaluate(expr, QR) == expected


def test_choice_navigation_only_for_declared_choice_elements():
    # `value` is an R4 choice name, `colour` is not: no suffix search for it.
    assert evaluate("value", {"valueString": "x"}) == ["x"]
    assert evaluate("colour", {"colourString": "x"}) == []
    assert evaluate("value", {"valueSet": "http://x"}) == []  # "Set" is not a type suffix
    assert evaluate("value", {"value": 3, "valueString": "ignored"}) == [3]  # Quantity.value is plain


def test_primitive_arrays_skip_nulls_kept_for_extensions():
    name = {"given": [None, "Ann", None], "_given": [{"extension": []}, None, {"extension": []}]}
    assert evaluate("given", name) == ["Ann"]
    assert evaluate("given.count()", name) == [1]


@pytest.mark.parametrize(("node", "expected"), [
    ({"a": "x"}, [True]),
    ({"a": 0}, [True]),
    ({"a": False}, [True]),
    ({"a": {"b": 1}}, [False]),
    ({}, [False]),
    ({"a": ["x", "y"]}, [False]),
])
def test_has_value(node, expected):
    assert evaluate("a.hasValue()", node) == expected


def test_children_and_descendants():
    node = {"resourceType": "Observation", "code": {"coding": [{"code": "x"}]}, "valueQuantity": {"value": 1}}
    assert evaluate("children().count()", node) == [2]
    assert evaluate("descendants().code", node) == ["x"]
    assert evaluate("descendants().ofType(Quantity).value", node) == [1]
    assert evaluate("descendants().count()", node) == [5]  # code, coding, "x", valueQuantity, 1


def test_extension_function_and_constant():
    patient = {"resourceType": "Patient", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1980-05-17T10:00:00Z"},
        {"url": "http://other", "valueString": "x"},
    ]}
    assert evaluate("extension(%`ext-patient-birthTime`).value", patient) == ["1980-05-17T10:00:00Z"]
    assert evaluate("extension('http://other').value", patient) == ["x"]
    assert evaluate("extension('http://none').exists()", patient) == [False]


BUNDLE = {
    "resourceType": "Bundle", "type": "collection",
    "entry": [
        {"fullUrl": "http://example.org/fhir/Patient/p1",
         "resource": {"resourceType": "Patient", "id": "p1"}},
        {"fullUrl": "urn:uuid:7f2c", "resource": {"resourceType": "Practitioner", "id": "x"}},
    ],
}


def test_resolve():
    careteam = {"resourceType": "CareTeam", "contained": [{"resourceType": "Practitioner", "id": "pr"}],
                "participant": [{"member": {"reference": "#pr"}}, {"member": {"reference": "Patient/p1"}}]}
    assert evaluate("participant.member.resolve().id", careteam) == ["pr"]
    assert evaluate("participant.member.resolve() is Practitioner", {**careteam, "participant": careteam["participant"][:1]}) == [True]
    assert evaluate("entry.resource.id.exists()", BUNDLE) == [True]
    assert evaluate("'Patient/p1'.resolve().id", {}, root_resource=BUNDLE) == ["p1"]
    assert evaluate("'http://example.org/fhir/Patient/p1'.resolve().id", {}, root_resource=BUNDLE) == ["p1"]
    assert evaluate("'urn:uuid:7f2c'.resolve().resourceType", {}, root_resource=BUNDLE) == ["Practitioner"]
    assert evaluate("'Patient/unknown'.resolve()", {}, root_resource=BUNDLE) == []
    assert evaluate("participant.member.resolve().id", careteam, root_resource=None) == ["pr"]


def test_environment_variables():
    item = QR["item"][0]
    assert evaluate("%resource.id", item, resource=QR) == ["qr1"]
    assert evaluate("%rootResource.id", item, resource={"id": "inner"}, root_resource=QR) == ["qr1"]
    assert evaluate("%context.linkId", item, resource=QR) == ["a"]
    assert evaluate("%resource.id", QR) == ["qr1"]  # a resource focus is its own %resource
    assert evaluate("%resource", item) == []


def test_index_must_be_an_integer():
    with pytest.raises(FhirPathError, match="index"):
        evaluate("item['a']", QR)
