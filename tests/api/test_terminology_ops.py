"""Terminology operations ($lookup, $validate-code, $expand, $translate) and the project's
terminology resources served read-only (fhir_bridge.api.terminology_ops)."""
from __future__ import annotations

from fhir_bridge.fhir.xml_codec import resource_to_xml
from tests.api.helpers import expect

CANONICAL = "https://fhir-bridge.example.org"
DOMAIN = f"{CANONICAL}/CodeSystem/dialog-domain"
RATING = f"{CANONICAL}/CodeSystem/dialog-rating"
RATING_VS = f"{CANONICAL}/ValueSet/dialog-rating"
MHSDS_ITEM = f"{CANONICAL}/CodeSystem/dialog-item-number-mhsds"
QMUL_ITEM = f"{CANONICAL}/CodeSystem/dialog-item-number-qmul"
ITEM_MAP = f"{CANONICAL}/ConceptMap/dialog-mhsds-to-qmul-item-number"
SNOMED = "http://snomed.info/sct"


def parameters(**values: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": n, **v} for n, v in values.items()]}


def named(params: dict, name: str) -> list[dict]:
    return [p for p in params["parameter"] if p["name"] == name]


def value(params: dict, name: str):
    [p] = named(params, name)
    return next(v for k, v in p.items() if k.startswith("value"))


# -- $lookup ----------------------------------------------------------------------------------------------
def test_lookup_gives_both_item_numbers_of_a_domain(client, auth):
    found = expect(client.get("/fhir/CodeSystem/$lookup", params={"system": DOMAIN, "code": "friendships"},
                              headers=auth), 200)
    assert value(found, "name") == "DialogDomain" and value(found, "display") == "Friendships"
    properties = {p["part"][0]["valueCode"]: p["part"][1] for p in named(found, "property")}
    assert properties["mhsds-item"] == {"name": "value", "valueInteger": 6}
    assert properties["qmul-item"] == {"name": "value", "valueInteger": 7}
    posted = expect(client.post("/fhir/CodeSystem/$lookup", headers=auth, json=parameters(
        coding={"valueCoding": {"system": DOMAIN, "code": "friendships"}},
        property={"valueCode": "qmul-item"})), 200)
    assert [p["part"][0]["valueCode"] for p in named(posted, "property")] == ["qmul-item"]


def test_lookup_failures(client, auth):
    outcome = expect(client.get("/fhir/CodeSystem/$lookup", params={"system": DOMAIN, "code": "hobbies"},
                                headers=auth), 404)
    assert "hobbies" in outcome["issue"][0]["diagnostics"]
    expect(client.get("/fhir/CodeSystem/$lookup", params={"system": f"{CANONICAL}/CodeSystem/x", "code": "1"},
                      headers=auth), 404)
    missing = expect(client.get("/fhir/CodeSystem/$lookup", params={"code": "friendships"}, headers=auth), 400)
    assert "'system'" in missing["issue"][0]["diagnostics"]
    expect(client.get("/fhir/CodeSystem/$lookup", params={"system": DOMAIN, "code": "friendships"}), 401)


# -- $validate-code and $expand -------------------------------------------------------------------------
def test_validate_code_true_and_false(client, auth):
    def check(**query) -> dict:
        return expect(client.get("/fhir/ValueSet/$validate-code", params={"url": RATING_VS, **query}, headers=auth), 200)

    good = check(system=RATING, code="3")
    assert value(good, "result") is True and value(good, "display") == "Fairly dissatisfied"
    not_a_rating = check(system=RATING, code="8")  # "not applicable" is deliberately outside the value set
    assert value(not_a_rating, "result") is False and value(not_a_rating, "message")
    wrong_display = check(system=RATING, code="3", display="Very happy")
    assert value(wrong_display, "result") is False and value(wrong_display, "display") == "Fairly dissatisfied"
    posted = expect(client.post("/fhir/ValueSet/$validate-code", headers=auth, json=parameters(
        url={"valueUri": RATING_VS}, coding={"valueCoding": {"system": RATING, "code": "7"}})), 200)
    assert value(posted, "result") is True
    by_instance = expect(client.get("/fhir/ValueSet/dialog-rating/$validate-code",
                                    params={"system": RATING, "code": "9"}, headers=auth), 200)
    assert value(by_instance, "result") is False


def test_validate_code_failures(client, auth):
    missing = expect(client.get("/fhir/ValueSet/$validate-code", params={"url": RATING_VS}, headers=auth), 400)
    assert "'code'" in missing["issue"][0]["diagnostics"]
    expect(client.get("/fhir/ValueSet/$validate-code", params={"url": f"{CANONICAL}/ValueSet/x", "code": "1"},
                      headers=auth), 404)


def test_expand_lists_the_seven_ratings(client, auth):
    expanded = expect(client.get("/fhir/ValueSet/$expand", params={"url": RATING_VS}, headers=auth), 200)
    assert expanded["resourceType"] == "ValueSet" and expanded["url"] == RATING_VS
    expansion = expanded["expansion"]
    assert expansion["total"] == 7 and expansion["timestamp"]
    assert [c["code"] for c in expansion["contains"]] == [str(n) for n in range(1, 8)]
    assert all(c["system"] == RATING and c["display"] for c in expansion["contains"])


def test_expand_filter_and_paging(client, auth):
    filtered = expect(client.post("/fhir/ValueSet/dialog-rating/$expand", headers=auth,
                                  json=parameters(filter={"valueString": "dissatisfied"})), 200)["expansion"]
    assert [c["code"] for c in filtered["contains"]] == ["1", "2", "3"] and filtered["total"] == 3
    page = expect(client.get("/fhir/ValueSet/$expand", params={"url": RATING_VS, "count": 2, "offset": 5},
                             headers=auth), 200)["expansion"]
    assert page["total"] == 7 and page["offset"] == 5 and [c["code"] for c in page["contains"]] == ["6", "7"]
    expect(client.get("/fhir/ValueSet/$expand", params={"url": RATING_VS, "count": "many"}, headers=auth), 400)
    expect(client.get("/fhir/ValueSet/$expand", headers=auth), 400)
    expect(client.get("/fhir/ValueSet/$expand", params={"url": f"{CANONICAL}/ValueSet/x"}, headers=auth), 404)


# -- $translate -------------------------------------------------------------------------------------------
def match_codes(result: dict) -> list[tuple[str, str, str]]:
    out = []
    for match in named(result, "match"):
        parts = {p["name"]: p for p in match["part"]}
        out.append((parts["equivalence"]["valueCode"], parts["concept"]["valueCoding"]["system"],
                    parts["concept"]["valueCoding"]["code"]))
    return out


def test_translate_mhsds_item_6_is_qmul_item_7_and_back(client, auth):
    forward = expect(client.get("/fhir/ConceptMap/$translate", headers=auth,
                                params={"url": ITEM_MAP, "system": MHSDS_ITEM, "code": "6"}), 200)
    assert value(forward, "result") is True
    assert match_codes(forward) == [("equivalent", QMUL_ITEM, "7")]
    back = expect(client.post("/fhir/ConceptMap/$translate", headers=auth, json=parameters(
        url={"valueUri": ITEM_MAP}, system={"valueUri": QMUL_ITEM}, code={"valueCode": "7"},
        reverse={"valueBoolean": True})), 200)
    assert match_codes(back) == [("equivalent", MHSDS_ITEM, "6")]


def test_translate_finds_the_map_when_none_is_named(client, auth):
    result = expect(client.get("/fhir/ConceptMap/$translate", headers=auth,
                               params={"system": DOMAIN, "code": "friendships", "targetsystem": SNOMED}), 200)
    [(equivalence, system, code)] = match_codes(result)
    assert system == SNOMED and code.isdigit()
    none = expect(client.get("/fhir/ConceptMap/$translate", headers=auth,
                             params={"url": ITEM_MAP, "system": MHSDS_ITEM, "code": "12"}), 200)
    assert value(none, "result") is False and not named(none, "match")
    expect(client.get("/fhir/ConceptMap/$translate", params={"url": ITEM_MAP, "code": "6"}, headers=auth), 400)
    expect(client.get("/fhir/ConceptMap/$translate", params={"url": f"{CANONICAL}/ConceptMap/x",
                                                              "system": MHSDS_ITEM, "code": "6"}, headers=auth), 404)


# -- the terminology resources ---------------------------------------------------------------------------
def test_terminology_resources_are_served_read_only(client, auth):
    codesystem = expect(client.get("/fhir/CodeSystem/dialog-domain", headers=auth), 200)
    assert codesystem["url"] == DOMAIN and codesystem["count"] == 11
    found = expect(client.get("/fhir/ValueSet", params={"url": RATING_VS}, headers=auth), 200)
    assert found["type"] == "searchset" and found["total"] == 1 and found["entry"][0]["resource"]["id"] == "dialog-rating"
    assert expect(client.get("/fhir/ConceptMap", headers=auth), 200)["total"] >= 2
    expect(client.get("/fhir/ConceptMap/nothing", headers=auth), 404)
    expect(client.get("/fhir/ValueSet", params={"name": "x"}, headers={**auth, "Prefer": "handling=strict"}), 400)
    expect(client.post("/fhir/CodeSystem", json=codesystem, headers=auth), 404)  # data, not a stored type


def test_metadata_lists_the_terminology_operations_and_types(client):
    resources = {r["type"]: r for r in expect(client.get("/fhir/metadata"), 200)["rest"][0]["resource"]}
    names = {rtype: {op["name"] for op in entry.get("operation", [])} for rtype, entry in resources.items()}
    assert names["CodeSystem"] == {"lookup"} and names["ValueSet"] == {"validate-code", "expand"}
    assert names["ConceptMap"] == {"translate"}
    assert {i["code"] for i in resources["CodeSystem"]["interaction"]} == {"read", "search-type"}


def test_parameters_may_come_as_xml(client, auth):
    model = client.app.state.fhir.bridge.validator.model
    body = resource_to_xml(parameters(url={"valueUri": ITEM_MAP}, system={"valueUri": MHSDS_ITEM},
                                      code={"valueCode": "7"}), model)
    result = expect(client.post("/fhir/ConceptMap/$translate", content=body,
                                headers={**auth, "Content-Type": "application/fhir+xml"}), 200)
    assert match_codes(result) == [("equivalent", QMUL_ITEM, "6")]
