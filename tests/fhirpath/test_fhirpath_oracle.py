"""Results agree with fhirpathpy (the project's independent FHIRPath engine) on a
representative set of expressions over small resources."""
from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_bridge.fhirpath import evaluate

PATIENT = {
    "resourceType": "Patient", "id": "p1", "active": True, "gender": "female", "birthDate": "1980-05-17",
    "name": [{"use": "official", "family": "Pemberton", "given": ["Rosa", "May"]},
             {"use": "nickname", "given": ["Ro"]}],
    "telecom": [{"system": "phone", "value": "0123 456", "use": "home"}, {"system": "email", "value": "r@x.org"}],
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
    "deceasedBoolean": False,
    "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
                 "name": {"family": "Pemberton"}}],
}
OBSERVATION = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2024-02-06T10:15:00+00:00",
    "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    "component": [
        {"code": {"coding": [{"code": "a"}]}, "valueInteger": 3},
        {"code": {"coding": [{"code": "b"}]}, "valueString": "x"},
    ],
}
QR = {
    "resourceType": "QuestionnaireResponse", "status": "completed", "authored": "2024-02-06",
    "item": [
        {"linkId": "mental-health", "answer": [{"valueCoding": {"system": "r", "code": "3"}}]},
        {"linkId": "mental-health.more-help", "answer": [{"valueCoding": {"system": "y", "code": "Y"}}]},
        {"linkId": "physical-health", "answer": [{"valueCoding": {"system": "r", "code": "6"}}]},
        {"linkId": "notes", "answer": [{"valueString": "Feeling Better"}]},
        {"linkId": "grp", "item": [{"linkId": "grp.1", "answer": [{"valueBoolean": True}]}]},
    ],
}
RESOURCES = {"Patient": PATIENT, "Observation": OBSERVATION, "QuestionnaireResponse": QR}

CASES = [
    ("Patient", "name.given"),
    ("Patient", "name.where(use = 'official').family"),
    ("Patient", "name.given.first()"),
    ("Patient", "name.given.last()"),
    ("Patient", "name.given.count()"),
    ("Patient", "name.given.skip(1).take(1)"),
    ("Patient", "name[1].given"),
    ("Patient", "name.select(given.first())"),
    ("Patient", "name.exists(use = 'nickname')"),
    ("Patient", "name.all(given.exists())"),
    ("Patient", "telecom.where(system = 'phone').value.replace(' ', '')"),
    ("Patient", "telecom.system.distinct()"),
    ("Patient", "telecom.value.where(contains('@'))"),
    ("Patient", "identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value.matches('^\\\\d{10}$')"),
    ("Patient", "identifier.value.substring(0, 3)"),
    ("Patient", "gender = 'female' and active"),
    ("Patient", "gender != 'male' implies birthDate.exists()"),
    ("Patient", "deceased"),
    ("Patient", "deceased is boolean"),
    ("Patient", "birthDate < @2000-01-01"),
    ("Patient", "birthDate > @1979"),
    ("Patient", "name.family | name.given"),
    ("Patient", "name.given.union(name.family)"),
    ("Patient", "name.given.combine(name.given).count()"),
    ("Patient", "name.given.intersect('Rosa' | 'Ro')"),
    ("Patient", "name.given.exclude('May')"),
    ("Patient", "name.given.first().indexOf('s')"),
    ("Patient", "name.given.first().upper() + '-' + name.family.lower()"),
    ("Patient", "name.given.first() & ' ' & name.family"),
    ("Patient", "contact.relationship.coding.code"),
    ("Patient", "Patient.name.family"),
    ("Patient", "contact.children().count()"),
    ("Patient", "descendants().where($this = 'N').count()"),
    ("Patient", "iif(active, 'on', 'off')"),
    ("Patient", "name.given.isDistinct()"),
    ("Patient", "name.given.subsetOf('Rosa' | 'May' | 'Ro' | 'X')"),
    ("Patient", "telecom.where(use.empty()).system"),
    ("Observation", "value.value"),
    ("Observation", "value.unit"),
    ("Observation", "value.ofType(Quantity).code"),
    ("Observation", "value is Quantity"),
    ("Observation", "value.value > 70"),
    ("Observation", "value.value * 2"),
    ("Observation", "(value.value / 2).round(2)"),
    ("Observation", "value.value.floor()"),
    ("Observation", "component.value"),
    ("Observation", "component.value.ofType(integer)"),
    ("Observation", "component.code.coding.code"),
    ("Observation", "component.where(value.exists()).count()"),
    ("Observation", "code.coding.where(system = 'http://loinc.org').code"),
    ("Observation", "effective > @2024-01-01T00:00:00Z"),
    ("Observation", "subject.reference.startsWith('Patient/')"),
    ("Observation", "status in ('final' | 'amended')"),
    ("Observation", "('final' | 'amended') contains status"),
    ("Observation", "value.value.toString()"),
    ("Observation", "component.value.ofType(integer).toString().toInteger() + 1"),
    ("QuestionnaireResponse", "item.linkId"),
    ("QuestionnaireResponse", "item.where(linkId.endsWith('.more-help')).answer.value.code"),
    ("QuestionnaireResponse", "item.answer.value.ofType(Coding).where(system = 'r').code"),
    ("QuestionnaireResponse", "item.where(linkId = 'mental-health').answer.value.code.toInteger()"),
    ("QuestionnaireResponse", "item.answer.value.ofType(string).lower()"),
    ("QuestionnaireResponse", "item.answer.value.ofType(Coding).count()"),
    ("QuestionnaireResponse", "item.item.answer.value"),
    ("QuestionnaireResponse", "repeat(item).linkId.count()"),
    ("QuestionnaireResponse", "descendants().linkId.isDistinct()"),
    ("QuestionnaireResponse", "item.where(answer.exists() and item.exists()).empty()"),
    ("QuestionnaireResponse", "item.select(linkId + ':' + $index.toString())"),
    ("QuestionnaireResponse", "(1 | 2 | 3).aggregate($total + $this, 0)"),
    ("QuestionnaireResponse", "item.answer.value.ofType(Coding).code.where($this != 'Y').select(toInteger()).aggregate($total + $this, 0)"),
    ("QuestionnaireResponse", "authored < today()"),
    ("QuestionnaireResponse", "item.count() > 3 xor status = 'completed'"),
    ("QuestionnaireResponse", "(item.count() / 2).toString()"),
    ("QuestionnaireResponse", "5 div 2 + 5 mod 2"),
    ("QuestionnaireResponse", "'a' ~ 'A'"),
    ("QuestionnaireResponse", "{} = {}"),
    ("QuestionnaireResponse", "item.first().answer.value = item.first().answer.value"),
    ("QuestionnaireResponse", "item[0].answer.value ~ item[2].answer.value"),
    # presence tests read from the object; literal collections evaluated at compile time;
    # subexpressions remembered per evaluation
    ("Patient", "name.given.exists() and photo.empty() and contact.name.family.exists()"),
    ("Patient", "deceased.exists() and multipleBirth.empty()"),
    ("Observation", "value.exists() and value.ofType(Quantity).unit.exists() and component.value.empty()"),
    ("Observation", "component.where(value.ofType(string).exists()).code.coding.code"),
    ("QuestionnaireResponse", "item.where(linkId in ('mental-health' | 'notes' | 'nothing')).linkId"),
    ("QuestionnaireResponse", "item.where(('grp' | 'physical-health') contains linkId).linkId"),
    ("QuestionnaireResponse", "item.select(linkId in ('notes' | 3 | 'grp'))"),
    ("QuestionnaireResponse", "3 in (1 | 2 | 3.0)"),
    ("QuestionnaireResponse", "(2 + 3) * 4 - 10 / 4"),
    ("QuestionnaireResponse", "item.where(linkId in %resource.item.linkId.where(startsWith('mental'))).count()"),
    ("QuestionnaireResponse", "item.where(%resource.item.count() > 4 and linkId = 'notes').linkId"),
    ("QuestionnaireResponse",
     "%resource.item.where(linkId in ('mental-health' | 'physical-health')).answer.value.ofType(Coding)"
     ".where(system = 'r' and code != '8').select(code.toInteger()).aggregate($total + $this, 0)"
     " / %resource.item.where(linkId in ('mental-health' | 'physical-health')).answer.value.ofType(Coding)"
     ".where(system = 'r' and code != '8').count()"),
]


def _normalized(values: list) -> list:
    return [Decimal(str(v)) if type(v) in (float, Decimal) else v for v in values]


@pytest.mark.parametrize(("resource_type", "expr"), CASES, ids=[f"{t}:{e}" for t, e in CASES])
def test_agrees_with_fhirpathpy(oracle, resource_type, expr):
    resource = RESOURCES[resource_type]
    ours = evaluate(expr, resource)
    expected = oracle(expr, resource, resource=resource)
    assert _normalized(ours) == _normalized(expected)
