"""The R4 core invariants, taken from profiles/r4-core/structures.json, on small valid and
invalid instances: each must pass or fail as its human text says, and agree with fhirpathpy
except where noted."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from fhir_bridge.fhirpath import compile_expression

NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}
EXT_URL = "http://example.org/ext"


@dataclass
class Case:
    key: str
    type_name: str      # where the invariant is defined
    base: str           # element path of the focus, for fhirpathpy
    focus: dict
    passes: bool
    why: str            # what the human text says about this instance
    resource: dict | None = None
    oracle_differs: str = ""  # why fhirpathpy cannot be the judge for this case


def patient(**fields) -> dict:
    return {"resourceType": "Patient", "id": "p", "text": NARRATIVE, **fields}


def item(**fields) -> dict:
    return {"linkId": "1", "text": "Q", "type": "string", **fields}


PR_CONTAINED = {"resourceType": "Practitioner", "id": "pr1"}
NO_HAS_VALUE = "fhirpathpy does not implement hasValue()"
Q_CONTAINED = {"resourceType": "Questionnaire", "id": "q1", "status": "active"}

CASES = [
    # ---- DomainResource dom-2 .. dom-6 -------------------------------------------------------
    Case("dom-2", "Patient", "Patient", patient(contained=[PR_CONTAINED], generalPractitioner=[{"reference": "#pr1"}]),
         True, "a contained resource without nested resources"),
    Case("dom-2", "Patient", "Patient", patient(contained=[{**PR_CONTAINED, "contained": [{"resourceType": "Basic", "id": "b"}]}],
                                                generalPractitioner=[{"reference": "#pr1"}]),
         False, "a contained resource SHALL NOT contain nested resources"),
    Case("dom-3", "Patient", "Patient", patient(contained=[PR_CONTAINED], generalPractitioner=[{"reference": "#pr1"}]),
         True, "the contained resource is referred to from elsewhere in the resource",
         oracle_differs="fhirpathpy rejects as() on several items, which dom-3 does"),
    Case("dom-3", "Patient", "Patient", patient(contained=[PR_CONTAINED]),
         False, "a contained resource that nothing refers to",
         oracle_differs="fhirpathpy rejects as() on several items, which dom-3 does"),
    Case("dom-3", "Patient", "Patient", patient(contained=[{**PR_CONTAINED, "extension": [{"url": EXT_URL, "valueReference": {"reference": "#"}}]}]),
         True, "the contained resource refers to the containing resource",
         oracle_differs="fhirpathpy rejects as() on several items, which dom-3 does"),
    Case("dom-3", "QuestionnaireResponse", "QuestionnaireResponse",
         {"resourceType": "QuestionnaireResponse", "status": "completed", "contained": [Q_CONTAINED], "questionnaire": "#q1"},
         True, "a contained Questionnaire referred to by the canonical `questionnaire`",
         oracle_differs="fhirpathpy rejects as() on several items, which dom-3 does"),
    Case("dom-3", "QuestionnaireResponse", "QuestionnaireResponse",
         {"resourceType": "QuestionnaireResponse", "status": "completed", "contained": [Q_CONTAINED],
          "questionnaire": "http://example.org/Questionnaire/other"},
         False, "a contained Questionnaire that the canonical does not point to",
         oracle_differs="fhirpathpy rejects as() on several items, which dom-3 does"),
    Case("dom-4", "Patient", "Patient", patient(contained=[{**PR_CONTAINED, "meta": {"versionId": "2"}}], generalPractitioner=[{"reference": "#pr1"}]),
         False, "a contained resource SHALL NOT have a meta.versionId"),
    Case("dom-4", "Patient", "Patient", patient(contained=[{**PR_CONTAINED, "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}}]),
         False, "a contained resource SHALL NOT have a meta.lastUpdated"),
    Case("dom-4", "Patient", "Patient", patient(contained=[{**PR_CONTAINED, "meta": {"profile": ["http://x"]}}]),
         True, "other meta is allowed on a contained resource"),
    Case("dom-5", "Patient", "Patient", patient(contained=[{**PR_CONTAINED, "meta": {"security": [{"code": "R"}]}}]),
         False, "a contained resource SHALL NOT have a security label"),
    Case("dom-5", "Patient", "Patient", patient(meta={"security": [{"code": "R"}]}),
         True, "the containing resource may have security labels"),
    Case("dom-6", "Patient", "Patient", patient(), True, "a resource with narrative"),
    Case("dom-6", "Patient", "Patient", {"resourceType": "Patient"}, False, "a resource should have narrative"),
    # ---- Patient ------------------------------------------------------------------------------
    Case("pat-1", "Patient", "Patient.contact", {"name": {"family": "P"}}, True, "a contact with a name"),
    Case("pat-1", "Patient", "Patient.contact", {"organization": {"reference": "Organization/o"}}, True, "a contact with an organization"),
    Case("pat-1", "Patient", "Patient.contact", {"relationship": [{"text": "next of kin"}]}, False,
         "a contact SHALL at least contain details or a reference to an organization"),
    # ---- QuestionnaireResponse ------------------------------------------------------------------
    Case("qrs-1", "QuestionnaireResponse", "QuestionnaireResponse.item", {"linkId": "1", "answer": [{"valueBoolean": True}]},
         True, "an item with answers only"),
    Case("qrs-1", "QuestionnaireResponse", "QuestionnaireResponse.item", {"linkId": "g", "item": [{"linkId": "g.1"}]},
         True, "a group with nested items only"),
    Case("qrs-1", "QuestionnaireResponse", "QuestionnaireResponse.item",
         {"linkId": "1", "answer": [{"valueBoolean": True}], "item": [{"linkId": "1.1"}]},
         False, "nested items can't be beneath both item and answer"),
    # ---- Questionnaire ------------------------------------------------------------------------
    Case("que-0", "Questionnaire", "Questionnaire", {"resourceType": "Questionnaire", "name": "DialogPlus"}, True, "a machine-friendly name"),
    Case("que-0", "Questionnaire", "Questionnaire", {"resourceType": "Questionnaire", "name": "dialog plus"}, False,
         "a name should be usable as an identifier"),
    Case("que-1", "Questionnaire", "Questionnaire.item", item(type="group", item=[item(linkId="1.1")]), True, "a group with items"),
    Case("que-1", "Questionnaire", "Questionnaire.item", item(type="group"), False, "group items must have nested items"),
    Case("que-1", "Questionnaire", "Questionnaire.item", item(type="display", item=[item(linkId="1.1")]), False,
         "display items cannot have nested items"),
    Case("que-2", "Questionnaire", "Questionnaire",
         {"resourceType": "Questionnaire", "item": [item(type="group", item=[item(linkId="1.1")]), item(linkId="2")]},
         True, "unique link ids"),
    Case("que-2", "Questionnaire", "Questionnaire",
         {"resourceType": "Questionnaire", "item": [item(type="group", item=[item(linkId="2")]), item(linkId="2")]},
         False, "link ids must be unique within the questionnaire, nested ones included"),
    Case("que-3", "Questionnaire", "Questionnaire.item", item(type="display", code=[{"code": "x"}]), False,
         "display items cannot have a code"),
    Case("que-3", "Questionnaire", "Questionnaire.item", item(code=[{"code": "x"}]), True, "questions may have a code"),
    Case("que-4", "Questionnaire", "Questionnaire.item",
         item(type="choice", answerOption=[{"valueString": "a"}], answerValueSet="http://vs"), False,
         "a question cannot have both answerOption and answerValueSet"),
    Case("que-5", "Questionnaire", "Questionnaire.item", item(type="boolean", answerValueSet="http://vs"), False,
         "only choice-like items can have answerValueSet"),
    Case("que-5", "Questionnaire", "Questionnaire.item", item(type="choice", answerValueSet="http://vs"), True,
         "a choice item with answerValueSet"),
    Case("que-6", "Questionnaire", "Questionnaire.item", item(type="display", required=True), False,
         "required isn't permitted for display items"),
    Case("que-7", "Questionnaire", "Questionnaire.item.enableWhen", {"question": "1", "operator": "exists", "answerBoolean": True},
         True, "operator 'exists' with a boolean value",
         oracle_differs="fhirpathpy says a FHIR boolean is not `Boolean`, failing every valid instance"),
    Case("que-7", "Questionnaire", "Questionnaire.item.enableWhen",
         {"question": "1", "operator": "exists", "answerCoding": {"code": "Y"}},
         False, "if the operator is 'exists', the value must be a boolean"),
    Case("que-7", "Questionnaire", "Questionnaire.item.enableWhen",
         {"question": "1", "operator": "=", "answerCoding": {"code": "Y"}}, True, "other operators take any value"),
    Case("que-8", "Questionnaire", "Questionnaire.item", item(type="group", initial=[{"valueString": "x"}], item=[item()]), False,
         "initial values can't be specified for groups"),
    Case("que-9", "Questionnaire", "Questionnaire.item", item(type="display", readOnly=True), False,
         "read-only can't be specified for display items"),
    Case("que-10", "Questionnaire", "Questionnaire.item", item(type="choice", maxLength=10), False,
         "maximum length only for simple question types"),
    Case("que-10", "Questionnaire", "Questionnaire.item", item(type="string", maxLength=10), True, "maxLength on a string"),
    Case("que-11", "Questionnaire", "Questionnaire.item",
         item(type="choice", answerOption=[{"valueString": "a"}], initial=[{"valueString": "a"}]), False,
         "if answerOption is present, initial[x] must be missing"),
    Case("que-12", "Questionnaire", "Questionnaire.item",
         item(enableWhen=[{"question": q, "operator": "exists", "answerBoolean": True} for q in "abc"]), False,
         "more than one enableWhen needs enableBehavior (the expression tests more than two)"),
    Case("que-12", "Questionnaire", "Questionnaire.item",
         item(enableBehavior="all", enableWhen=[{"question": q, "operator": "exists", "answerBoolean": True} for q in "abc"]),
         True, "enableBehavior given"),
    Case("que-13", "Questionnaire", "Questionnaire.item", item(repeats=False, initial=[{"valueString": "a"}, {"valueString": "b"}]),
         False, "only repeating items can have several initial values"),
    Case("que-13", "Questionnaire", "Questionnaire.item", item(initial=[{"valueString": "a"}, {"valueString": "b"}]), True,
         "R4 quirk: without `repeats` the expression is empty ({} or false), which passes like in the FHIR validator"),
    Case("que-13", "Questionnaire", "Questionnaire.item", item(repeats=True, initial=[{"valueString": "a"}, {"valueString": "b"}]), True,
         "a repeating item with several initial values"),
    # ---- Observation ----------------------------------------------------------------------------
    Case("obs-6", "Observation", "Observation",
         {"resourceType": "Observation", "dataAbsentReason": {"text": "asked"}, "valueQuantity": {"value": 1}}, False,
         "dataAbsentReason SHALL only be present if value[x] is not"),
    Case("obs-6", "Observation", "Observation", {"resourceType": "Observation", "dataAbsentReason": {"text": "asked"}}, True,
         "dataAbsentReason without a value"),
    Case("obs-7", "Observation", "Observation",
         {"resourceType": "Observation", "code": {"coding": [{"system": "l", "code": "x"}]}, "valueString": "v",
          "component": [{"code": {"coding": [{"system": "l", "code": "x"}]}, "valueString": "w"}]}, False,
         "a component with the observation's own code means the value belongs in the component"),
    Case("obs-7", "Observation", "Observation",
         {"resourceType": "Observation", "code": {"coding": [{"system": "l", "code": "x"}]}, "valueString": "v",
          "component": [{"code": {"coding": [{"system": "l", "code": "y"}]}, "valueString": "w"}]}, True,
         "components with other codes"),
    Case("obs-3", "Observation", "Observation.referenceRange", {"low": {"value": 1}}, True, "a range with a low"),
    Case("obs-3", "Observation", "Observation.referenceRange", {"appliesTo": [{"text": "adults"}]}, False,
         "must have at least a low or a high or text"),
    # ---- CarePlan ------------------------------------------------------------------------------
    Case("cpl-3", "CarePlan", "CarePlan.activity", {"reference": {"reference": "ServiceRequest/s"}}, True, "a reference only"),
    Case("cpl-3", "CarePlan", "CarePlan.activity",
         {"reference": {"reference": "ServiceRequest/s"}, "detail": {"status": "scheduled"}}, False,
         "provide a reference or detail, not both"),
    # ---- Extension, and ext-1 on the extensions of Identifier and Coding -------------------------
    Case("ext-1", "Extension", "Extension", {"url": EXT_URL, "valueString": "x"}, True, "a value only"),
    Case("ext-1", "Extension", "Extension", {"url": EXT_URL, "extension": [{"url": "a", "valueString": "x"}]}, True,
         "nested extensions only"),
    Case("ext-1", "Extension", "Extension",
         {"url": EXT_URL, "valueString": "x", "extension": [{"url": "a", "valueString": "y"}]}, False,
         "must have either extensions or value[x], not both"),
    Case("ext-1", "Extension", "Extension", {"url": EXT_URL}, False, "must have either extensions or value[x]"),
    Case("ext-1", "Identifier", "Extension", {"url": EXT_URL, "valueCodeableConcept": {"text": "x"}}, True,
         "an Identifier's extension with a value"),
    Case("ext-1", "Identifier", "Extension",
         {"url": EXT_URL, "valueCodeableConcept": {"text": "x"}, "extension": [{"url": "a", "valueString": "y"}]}, False,
         "an Identifier's extension with both a value and extensions"),
    Case("ext-1", "Coding", "Extension", {"url": EXT_URL, "valueBoolean": False}, True, "a Coding's extension with a false value"),
    Case("ext-1", "Coding", "Extension", {"url": EXT_URL}, False, "a Coding's extension with neither"),
    # ---- Quantity, Reference, Period -------------------------------------------------------------
    Case("qty-3", "Quantity", "Quantity", {"value": 1, "code": "mg", "system": "http://unitsofmeasure.org"}, True, "code with system"),
    Case("qty-3", "Quantity", "Quantity", {"value": 1, "code": "mg"}, False, "a code for the unit needs the system"),
    Case("qty-3", "Quantity", "Quantity", {"value": 1, "unit": "mg"}, True, "a unit without a code"),
    Case("ref-1", "Reference", "Reference", {"reference": "Patient/p"}, True, "not a local reference",
         resource=patient()),
    Case("ref-1", "Reference", "Reference", {"reference": "#pr1"}, True, "a local reference to a contained resource",
         resource=patient(contained=[PR_CONTAINED])),
    Case("ref-1", "Reference", "Reference", {"reference": "#nope"}, False,
         "SHALL have a contained resource if a local reference is provided", resource=patient(contained=[PR_CONTAINED])),
    Case("per-1", "Period", "Period", {"start": "2020-01-01", "end": "2020-02-01"}, True, "start before end",
         oracle_differs=NO_HAS_VALUE),
    Case("per-1", "Period", "Period", {"start": "2020-02-01", "end": "2020-01-01"}, False, "start SHALL be lower than end",
         oracle_differs=NO_HAS_VALUE),
    Case("per-1", "Period", "Period", {"start": "2020-01-01T10:00:00+02:00", "end": "2020-01-01T09:00:00Z"}, True,
         "start is 08:00Z, before end, though its text sorts after",
         oracle_differs=NO_HAS_VALUE),
    Case("per-1", "Period", "Period", {"start": "2020-01-01"}, True, "an open-ended period",
         oracle_differs=NO_HAS_VALUE),
    Case("per-1", "Period", "Period", {"start": "2020", "end": "2020-06"}, True,
         "different precisions: the comparison is unknown, which does not fail",
         oracle_differs=NO_HAS_VALUE),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.key}-{'pass' if c.passes else 'fail'}-{i}" for i, c in enumerate(CASES)])
def test_invariant(invariant, oracle, case):
    expression = invariant(case.key, case.type_name)["expression"]
    resource = case.resource if case.resource is not None else (case.focus if "resourceType" in case.focus else None)
    check = compile_expression(expression)
    assert check.is_true(case.focus, resource=resource, root_resource=resource) is case.passes, case.why
    if not case.oracle_differs:
        expected = oracle(expression, case.focus, base=case.base, resource=resource)
        assert (expected != [False]) is case.passes, f"fhirpathpy: {expected}"


def test_every_listed_invariant_has_a_failing_case():
    failing = {c.key for c in CASES if not c.passes}
    assert {c.key for c in CASES} - failing == set()
