"""FHIR XML <-> JSON (xml_codec) and the byte-level entry point (codec)."""
from __future__ import annotations

import copy
import json
import random
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from lxml import etree

from fhir_bridge.errors import InputError, UnsupportedFormat
from fhir_bridge.fhir import codec
from fhir_bridge.fhir.codec import dumps_json, json_default, loads_json, parse_resource_bytes
from fhir_bridge.fhir.model import StructureModel
from fhir_bridge.fhir.xml_codec import decimal_from_text, resource_to_xml, xml_to_resource

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
F = "{http://hl7.org/fhir}"
XHTML_DIV = '<div xmlns="http://www.w3.org/1999/xhtml">'


@pytest.fixture(scope="module")
def model() -> StructureModel:
    return StructureModel.load(REPO / "profiles" / "r4-core" / "structures.json")


def coding(code: str, display: str) -> dict:
    return {"system": "https://fhir-bridge.example.org/CodeSystem/dialog-rating", "code": code, "display": display}


def questionnaire_response(items: int = 3) -> dict:
    item = [
        {
            "linkId": f"q{n}",
            "text": f"Question {n}",
            "answer": [{"valueCoding": coding(str(n % 7 + 1), f"Rating {n % 7 + 1}")}],
        }
        for n in range(items)
    ]
    item[0] = {"linkId": "q0", "text": "Question 0",
               "_text": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/rendering-markdown",
                                        "valueMarkdown": "**Question 0**"}]},
               "answer": item[0]["answer"]}
    item[1]["answer"] = [
        {"valueDecimal": 4.5},
        {"valueDecimal": Decimal("4.50")},
        {"valueDecimal": 3},
        {"valueBoolean": False,
         "item": [{"linkId": f"q1.{n}", "answer": [{"valueString": "more help\nplease"}]} for n in range(2)]},
    ]
    item[2] = {  # id attribute, extension and nested items, in spec order
        "id": "item-2",
        "extension": [{"url": "https://fhir-bridge.example.org/StructureDefinition/not-answered-value",
                       "valueCode": "declined"}],
        **item[2],
        "item": [{"linkId": "q2.a", "item": [{"linkId": "q2.a.i", "answer": [{"valueInteger": 0}]}]}],
    }
    return {
        "resourceType": "QuestionnaireResponse",
        "id": "qr-1",
        "extension": [{"url": "https://fhir-bridge.example.org/StructureDefinition/dialog-timepoint",
                       "valueCoding": {"code": "assessment"}}],
        "questionnaire": "https://fhir-bridge.example.org/Questionnaire/dialog|1.0.0",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "authored": "2024-02-06T10:15:00+00:00",
        "item": item,
    }


def patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"profile": ["https://fhir-bridge.example.org/StructureDefinition/bridge-patient"]},
        "identifier": [{
            "extension": [{
                "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                    "code": "number-present-and-verified",
                }]},
            }],
            "system": "https://fhir.nhs.uk/Id/nhs-number",
            "value": "9000000009",
        }],
        "active": True,
        "name": [{"use": "official", "family": "Pemberton", "given": ["Rosa", None, "Jane"],
                  "_given": [None, {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                                   "valueCode": "masked"}]}, {"id": "g3"}]}],
        "gender": "female",
        "birthDate": "1970-03-01",
        "_birthDate": {
            "id": "bd",
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                           "valueDateTime": "1970-03-01T14:35:45-05:00"}],
        },
        "multipleBirthInteger": 2,
        "contact": [{"id": "c1", "relationship": [{"text": "sister"}], "name": {"text": "Ann"}}],
    }


def observation() -> dict:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "Blood pressure"},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2024-02-06T10:15:00Z", "end": "2024-02-06T10:20:00Z"},
        "valueQuantity": {"value": 72.25, "comparator": "<", "unit": "kg", "system": "http://unitsofmeasure.org",
                          "code": "kg"},
        "component": [
            {"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
            {"code": {"text": "diastolic"}, "valueQuantity": {"value": Decimal("80.10"), "unit": "mm[Hg]"}},
            {"code": {"text": "note"}, "valueString": "taken seated", "interpretation": [{"text": "normal"}]},
        ],
    }


def narrative_resource() -> dict:
    return {
        "resourceType": "CarePlan",
        "id": "cp1",
        "text": {
            "status": "generated",
            "div": XHTML_DIV + "<p>Plan for <b>Rosa</b> &amp; family</p>"
                               "<ul><li>walk</li><li>sleep</li></ul><br/></div>",
        },
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
    }


def bundle() -> dict:
    qr = {"resourceType": "QuestionnaireResponse", "id": "qr-1",
          "contained": [{"resourceType": "Patient", "id": "inline", "gender": "other"}]}  # spec order
    qr.update((k, v) for k, v in questionnaire_response().items() if k not in qr)
    qr["subject"] = {"reference": "#inline"}
    return {
        "resourceType": "Bundle",
        "id": "b1",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:0d7c2f3e-35a4-4a38-9f8b-6f0f2f0b7a11", "resource": qr,
             "request": {"method": "POST", "url": "QuestionnaireResponse"}},
            {"resource": narrative_resource(), "request": {"method": "PUT", "url": "CarePlan/cp1"}},
            {"resource": {"resourceType": "Parameters", "parameter": [
                {"name": "resource", "resource": patient()},
                {"name": "score", "valueDecimal": Decimal("0.010")},
                {"name": "nested", "part": [{"name": "flag", "valueBoolean": True}]},
            ]}},
        ],
    }


RESOURCES = {
    "questionnaire-response": questionnaire_response,
    "questionnaire-response-24": lambda: questionnaire_response(24),
    "patient": patient,
    "observation": observation,
    "narrative": narrative_resource,
    "bundle": bundle,
}


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_json_xml_json_round_trip(model, name, pretty):
    resource = RESOURCES[name]()
    back = xml_to_resource(resource_to_xml(resource, model, pretty=pretty), model)
    assert back == resource
    assert dumps_json(back) == dumps_json(resource)  # key order too: these are written in spec order
    assert next(iter(back)) == "resourceType"


def test_decimal_precision_survives(model):
    back = xml_to_resource(resource_to_xml(observation(), model), model)
    diastolic = back["component"][1]["valueQuantity"]["value"]
    assert isinstance(diastolic, Decimal) and str(diastolic) == "80.10"
    assert b'"value":80.10' in dumps_json(back)
    assert type(back["valueQuantity"]["value"]) is float
    assert type(back["component"][0]["valueQuantity"]["value"]) is int


@pytest.mark.parametrize("text, expected", [
    ("4.5", 4.5), ("1.0", 1.0), ("3", 3), ("-2", -2), ("4.50", Decimal("4.50")), ("0.010", Decimal("0.010")),
    ("3.14159265358979323846", Decimal("3.14159265358979323846")), ("1e-7", Decimal("1e-7")),
    ("-0", Decimal("-0")),
])
def test_decimal_rule(text, expected):
    value = decimal_from_text(text)
    assert value == expected and type(value) is type(expected)
    if isinstance(value, Decimal) and "e" not in text:
        assert orjson.dumps(value, default=json_default) == text.encode()  # written as it was read


def test_json_bytes_keep_decimal_precision(model):
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
           b'"valueQuantity":{"value":4.50},"note":[{"text":"value: 1.50, not a number"}],'
           b'"component":[{"code":{"text":"y"},"valueQuantity":{"value":0.25}}]}')
    resource = parse_resource_bytes(raw, model)
    assert resource["valueQuantity"]["value"] == Decimal("4.50")
    assert type(resource["component"][0]["valueQuantity"]["value"]) is float
    assert dumps_json(resource) == raw
    assert dumps_json(xml_to_resource(resource_to_xml(resource, model), model)) == raw
    assert b'<value value="4.50"/>' in resource_to_xml(resource, model)


def test_every_inexact_number_is_found():
    value = loads_json(b'{"a": [4.5,4.50, 1e5], "b": {"c": 0.00001}, "d": "t:10:00:00.000Z"}')
    assert value == {"a": [4.5, Decimal("4.50"), Decimal("1e5")], "b": {"c": Decimal("0.00001")},
                     "d": "t:10:00:00.000Z"}
    assert type(value["a"][0]) is float
    assert dumps_json(value) == b'{"a":[4.5,4.50,1E+5],"b":{"c":0.00001},"d":"t:10:00:00.000Z"}'


def test_a_body_orjson_wrote_back_byte_for_byte_parses_as_the_full_scan_says():
    """loads_json skips the scan for numbers when orjson writes the body back unchanged (the store's
    bodies): floats of every magnitude, and strings that look like numbers, parse as they did."""
    rng = random.Random(5)
    numbers = [4.5, 0.0001, 1e-05, -6.4e-05, 1e-07, -1.5e-09, 1e-10, 1e16, 1.5e300, 100.0, 0.1]
    numbers += [float(f"{rng.choice([1, -1]) * rng.random() * 10 ** rng.uniform(-12, 20):.{rng.randint(1, 17)}g}")
                for _ in range(3000)]
    for number in numbers:
        uuid_like = f"{rng.randrange(10**6)}e-{rng.randrange(10)}a"
        for resource in ({"id": uuid_like, "a": [number, 2], "b": {"c": number}},
                         {"a": [-number], "s": f"x:{number},"}):
            body = orjson.dumps(resource)
            full = json.loads(body, parse_float=decimal_from_text) if codec._has_inexact_float(body) else orjson.loads(body)
            value = loads_json(body)
            assert value == full and type(value["a"][0]) is type(full["a"][0]), body


def test_dumps_json_pretty_and_plain_json_unchanged():
    assert dumps_json({"a": [1, 2.5]}) == b'{"a":[1,2.5]}'
    assert dumps_json({"a": Decimal("2.50")}, pretty=True) == b'{\n  "a": 2.50\n}'
    assert loads_json(b'{"a": 2.5}') == {"a": 2.5}


# ---------------------------------------------------------------- XML shape


def test_xml_follows_the_spec_conventions(model):
    resource = patient()
    shuffled = dict(reversed(list(resource.items())))  # JSON key order must not matter
    root = etree.fromstring(resource_to_xml(shuffled, model))
    assert root.tag == F + "Patient" and root.nsmap == {None: "http://hl7.org/fhir"}
    assert [el.tag[len(F):] for el in root] == [
        "id", "meta", "identifier", "active", "name", "gender", "birthDate", "multipleBirthInteger", "contact"]
    assert root.find(F + "id").get("value") == "p1"
    birth = root.find(F + "birthDate")
    assert (birth.get("id"), birth.get("value")) == ("bd", "1970-03-01")
    assert birth.find(F + "extension").get("url") == "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
    given = root.find(F + "name").findall(F + "given")
    assert [g.get("value") for g in given] == ["Rosa", None, "Jane"]
    assert given[2].get("id") == "g3"
    assert root.find(F + "contact").get("id") == "c1"  # Element.id is an attribute
    assert root.find(F + "active").get("value") == "true"


def test_narrative_is_xhtml_in_xml_and_a_string_in_json(model):
    xml = resource_to_xml(narrative_resource(), model, pretty=True)
    div = etree.fromstring(xml).find(F + "text").find("{http://www.w3.org/1999/xhtml}div")
    assert div is not None and div.find("{http://www.w3.org/1999/xhtml}ul") is not None
    assert xml_to_resource(xml, model)["text"]["div"] == narrative_resource()["text"]["div"]


def test_narrative_with_prefix_and_inherited_namespaces_is_normalized(model):
    xml = b"""<CarePlan xmlns="http://hl7.org/fhir" xmlns:h="http://www.w3.org/1999/xhtml"
      xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://hl7.org/fhir x.xsd">
      <text><status value="generated"/><h:div><h:p>Hi <h:i>there</h:i></h:p></h:div></text>
      <status value="active"/><intent value="plan"/><subject><reference value="Patient/p1"/></subject>
    </CarePlan>"""
    assert xml_to_resource(xml, model)["text"]["div"] == XHTML_DIV + "<p>Hi <i>there</i></p></div>"


def test_hand_written_xml_parses_to_the_expected_json(model):
    xml = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- written by hand after http://hl7.org/fhir/R4/xml.html -->
<QuestionnaireResponse xmlns="http://hl7.org/fhir">
  <id value="qr-hand"/>
  <contained>
    <Patient>
      <id value="p"/>
      <birthDate id="bd" value="1970">
        <extension url="http://example.org/accuracy"><valueCode value="year"/></extension>
      </birthDate>
    </Patient>
  </contained>
  <extension url="http://example.org/purpose">
    <valueCoding><system value="http://example.org/cs"/><code value="prom"/></valueCoding>
  </extension>
  <status value="completed"/>
  <subject><reference value="#p"/></subject>
  <item id="i1">
    <linkId value="1"/>
    <answer><valueDecimal value="4.50"/></answer>
    <answer><valueInteger value="-3"/></answer>
    <item>
      <linkId value="1.1"/>
      <answer>
        <valueBoolean value="true"/>
        <item><linkId value="1.1.1"/><answer><valueString value="line one&#10;line two"/></answer></item>
      </answer>
    </item>
  </item>
  <item>
    <linkId value="2"/>
    <text>
      <extension url="http://hl7.org/fhir/StructureDefinition/data-absent-reason">
        <valueCode value="unknown"/>
      </extension>
    </text>
  </item>
</QuestionnaireResponse>
"""
    assert xml_to_resource(xml, model) == {
        "resourceType": "QuestionnaireResponse",
        "id": "qr-hand",
        "contained": [{
            "resourceType": "Patient", "id": "p", "birthDate": "1970",
            "_birthDate": {"id": "bd", "extension": [{"url": "http://example.org/accuracy", "valueCode": "year"}]},
        }],
        "extension": [{"url": "http://example.org/purpose",
                       "valueCoding": {"system": "http://example.org/cs", "code": "prom"}}],
        "status": "completed",
        "subject": {"reference": "#p"},
        "item": [
            {
                "id": "i1",
                "linkId": "1",
                "answer": [{"valueDecimal": Decimal("4.50")}, {"valueInteger": -3}],
                "item": [{"linkId": "1.1", "answer": [{
                    "valueBoolean": True,
                    "item": [{"linkId": "1.1.1", "answer": [{"valueString": "line one\nline two"}]}],
                }]}],
            },
            {"linkId": "2", "_text": {"extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}},
        ],
    }


def test_json_keys_come_out_in_spec_order_whatever_the_xml_order(model):
    xml = (b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><active value="false"/>'
           b'<id value="x"/></Patient>')
    assert list(xml_to_resource(xml, model)) == ["resourceType", "id", "active", "gender"]


# ---------------------------------------------------------------- refusals


def expect_error(match: str, fn, *args) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        fn(*args)
    return info.value


def test_unknown_xml_element_names_its_path(model):
    xml = (b'<QuestionnaireResponse xmlns="http://hl7.org/fhir">\n<status value="completed"/>\n'
           b'<colour value="blue"/>\n</QuestionnaireResponse>')
    error = expect_error("QuestionnaireResponse.colour: unknown element", xml_to_resource, xml, model)
    assert error.expression == "QuestionnaireResponse.colour"
    assert error.location == "line 3"


def test_unknown_nested_element_names_the_indexed_path(model):
    xml = (b'<QuestionnaireResponse xmlns="http://hl7.org/fhir"><status value="completed"/>'
           b'<item><linkId value="a"/></item><item><linkId value="b"/><answer><valueColour value="x"/>'
           b'</answer></item></QuestionnaireResponse>')
    expect_error(r"QuestionnaireResponse\.item\[1\]\.answer\[0\]\.valueColour: unknown element",
                 xml_to_resource, xml, model)


def test_unknown_root_type(model):
    expect_error("unknown resource type Colour", xml_to_resource, b'<Colour xmlns="http://hl7.org/fhir"/>', model)


def test_unknown_contained_type(model):
    xml = b'<Patient xmlns="http://hl7.org/fhir"><contained><Widget/></contained></Patient>'
    error = expect_error("unknown resource type Widget", xml_to_resource, xml, model)
    assert error.expression == "Patient.contained[0]"


def test_abstract_type_is_not_a_resource_type(model):
    expect_error("unknown resource type DomainResource", xml_to_resource,
                 b'<DomainResource xmlns="http://hl7.org/fhir"/>', model)


@pytest.mark.parametrize("xml, match", [
    (b"<Patient/>", "not a FHIR XML document"),
    (b'<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>', "Patient.active: 'yes' is not a boolean"),
    (b'<Patient xmlns="http://hl7.org/fhir"><multipleBirthInteger value="1.5"/></Patient>', "is not an integer"),
    (b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="female"/></Patient>',
     "Patient.gender: appears more than once"),
    (b'<Patient xmlns="http://hl7.org/fhir"><birthDate/></Patient>', "Patient.birthDate: has neither a value"),
    (b'<Patient xmlns="http://hl7.org/fhir"><id value="x" colour="red"/></Patient>', "unknown attribute colour"),
    (b'<Patient xmlns="http://hl7.org/fhir">text<id value="x"/></Patient>', "text content is not allowed"),
    (b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div>x</div></text></Patient>',
     "Patient.text.div: must be in the XHTML namespace"),
    (b'<Patient xmlns="http://hl7.org/fhir"><contained><Patient/><Patient/></contained></Patient>',
     "must hold exactly one resource"),
    (b'<Patient xmlns="http://hl7.org/fhir"><name><id value="x"/></name></Patient>',
     r"Patient.name\[0\].id: unknown element"),
    (b'<Patient xmlns="http://hl7.org/fhir"><other:x xmlns:other="urn:other"/></Patient>', "unknown element"),
    (b'<Observation xmlns="http://hl7.org/fhir"><valueQuantity><value value="1,5"/></valueQuantity></Observation>',
     "Observation.valueQuantity.value: '1,5' is not a decimal"),
])
def test_bad_xml_content(model, xml, match):
    expect_error(match, xml_to_resource, xml, model)


def test_malformed_xml_gives_the_line(model):
    error = expect_error("malformed XML at line 4", xml_to_resource,
                         b'<Patient xmlns="http://hl7.org/fhir">\n<id value="x"/>\n<active value="true">\n</Patient>',
                         model)
    assert error.location == "line 4"  # libxml2 notices the unclosed <active> at </Patient>


def test_xxe_is_refused_by_the_codec(model, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET")
    xml = (f'<!DOCTYPE Patient [<!ENTITY e SYSTEM "{secret.as_uri()}">]>'
           '<Patient xmlns="http://hl7.org/fhir"><id value="&e;"/></Patient>').encode()
    expect_error("XML with a DOCTYPE is refused", xml_to_resource, xml, model)


@pytest.mark.parametrize("mutate, match", [
    (lambda r: r.update(colour="blue"), "Patient.colour: unknown element"),
    (lambda r: (r.pop("gender"), r.update(_gender={"extension": []})), "Patient.gender: has neither a value"),
    (lambda r: r.update(_contact=[{}]), r"Patient._contact: unknown element"),
    (lambda r: r.update(active="true"), "Patient.active: expected a boolean, found a string"),
    (lambda r: r.update(gender=["female"]), "Patient.gender: is a single element, found a list"),
    (lambda r: r.update(identifier={"value": "x"}), "Patient.identifier: must be a list"),
    (lambda r: r["name"][0].update(_given=[None]), r"Patient.name\[0\]._given: must have as many entries as given"),
    (lambda r: r["contact"][0].update(_id={"extension": []}), r"Patient.contact\[0\]._id: unknown element"),
    (lambda r: r.update(contained=[{"resourceType": "Widget"}]), "unknown resource type Widget"),
    (lambda r: r.update(text={"status": "generated", "div": "<p>not a div</p>"}), "must be a <div>"),
    (lambda r: r.update(text={"status": "generated", "div": "<div xmlns='http://www.w3.org/1999/xhtml'>"}),
     "Patient.text.div: malformed XML"),
    (lambda r: r.update(multipleBirthInteger=True), "expected a integer, found a boolean"),
    (lambda r: r["_birthDate"].update(colour="red"), "Patient.birthDate: its `_` companion may hold only"),
])
def test_bad_json_content(model, mutate, match):
    resource = patient()
    mutate(resource)
    expect_error(match, resource_to_xml, resource, model)


def test_deep_nesting_is_an_input_error_not_a_crash(model):
    item: dict = {"linkId": "leaf"}
    for level in range(1000):
        item = {"linkId": str(level), "item": [item]}
    resource = {"resourceType": "QuestionnaireResponse", "status": "completed", "item": [item]}
    expect_error("nested too deeply", resource_to_xml, resource, model)


def test_unknown_resource_type_in_json(model):
    expect_error("unknown resource type Colour", resource_to_xml, {"resourceType": "Colour"}, model)


# ---------------------------------------------------------------- bytes in: sniffing and decoding


def test_parse_resource_bytes_sniffs_json_and_xml(model):
    resource = patient()
    json_bytes = dumps_json(resource)
    xml_bytes = resource_to_xml(resource, model)
    assert parse_resource_bytes(json_bytes, model) == resource
    assert parse_resource_bytes(b"\xef\xbb\xbf \n\t" + json_bytes, model) == resource
    assert parse_resource_bytes(xml_bytes, model) == resource
    assert parse_resource_bytes(b"\xef\xbb\xbf" + xml_bytes, model, "application/fhir+xml; charset=utf-8") == resource
    assert parse_resource_bytes(json_bytes, model, "application/json") == resource


@pytest.mark.parametrize("data, match", [
    (b"", "the body is empty"),
    (b"  \n", "the body is empty"),
    (b"[]", "a JSON array is not a FHIR resource"),
    (b'"Patient"', "neither a JSON object nor an XML document"),
    (b"resourceType=Patient", "neither a JSON object nor an XML document"),
    (b'{"resourceType": "Patient",\n "id": }', "malformed JSON at line 2"),
    (b'{"id": "x"}', "resourceType is missing"),
    (b'{"resourceType": "Colour"}', "unknown resource type Colour"),
    (b'{"resourceType": "Patient", "name": "\xff"}', "not valid UTF-8"),
    (b'<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir"/>', "must be UTF-8"),
    (b"<Patient", "malformed XML at line 1"),
])
def test_parse_resource_bytes_refusals(model, data, match):
    expect_error(match, parse_resource_bytes, data, model)


def test_content_type_must_agree_with_the_body(model):
    expect_error("the body is JSON but the Content-Type says XML", parse_resource_bytes,
                 b'{"resourceType": "Patient"}', model, "application/fhir+xml")
    with pytest.raises(UnsupportedFormat):
        parse_resource_bytes(b'{"resourceType": "Patient"}', model, "text/csv")
    with pytest.raises(UnsupportedFormat):
        parse_resource_bytes(b'{"resourceType": "Patient"}', model, "application/fhir+json; charset=latin-1")


# ---------------------------------------------------------------- the repository's examples


def example_resources() -> list[Path]:
    found = []
    for path in sorted(EXAMPLES.rglob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        if isinstance(orjson.loads(path.read_bytes()), dict) and b'"resourceType"' in path.read_bytes()[:200]:
            found.append(path)
    return found


@pytest.mark.parametrize("path", example_resources(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_files_round_trip(model, path):
    resource = parse_resource_bytes(path.read_bytes(), model)
    if "unknown-element" in path.name:  # deliberately invalid: XML cannot carry the stray element
        with pytest.raises(InputError, match="unknown element"):
            resource_to_xml(resource, model)
        return
    before = copy.deepcopy(resource)
    assert xml_to_resource(resource_to_xml(resource, model), model) == resource
    assert resource == before  # the writer does not touch its input


XML_EXAMPLES = sorted((EXAMPLES / "xml").glob("*.xml"))


def test_there_are_xml_examples():
    assert XML_EXAMPLES, "examples/xml/*.xml is empty: the XML codec would be tested on nothing"


@pytest.mark.parametrize("path", XML_EXAMPLES, ids=lambda p: p.name)
def test_xml_examples_equal_their_json_twins(model, path):
    twins = [p for p in EXAMPLES.rglob(path.stem + ".json") if p.parent.name != "xml"]
    assert twins, f"no JSON twin for {path.name}"
    resource = parse_resource_bytes(path.read_bytes(), model)
    for twin in twins:
        assert resource == parse_resource_bytes(twin.read_bytes(), model), twin
