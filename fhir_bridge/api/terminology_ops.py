"""Terminology operations (`CodeSystem/$lookup`, `ValueSet/$validate-code`, `ValueSet/$expand`,
`ConceptMap/$translate`), plus read and search-by-url of the project's CodeSystems, ValueSets and
ConceptMaps.

Those three types are the project's data files (terminology/), loaded at start-up: they are served
read-only from memory, never stored, so partners cannot change the codes the validator enforces.
Inputs and outputs are FHIR Parameters (fhir_bridge.api.parameters).
"""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_bridge.api import context as ctx
from fhir_bridge.api.capability import register_operation, register_read_only
from fhir_bridge.api.parameters import Params, parameters, read_params
from fhir_bridge.bridge import Bridge
from fhir_bridge.errors import InputError, NotFound, Unprocessable
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.terminology import Terminology

router = APIRouter(prefix=ctx.FHIR_BASE)

HL7_OPERATION = "http://hl7.org/fhir/OperationDefinition"
TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")
NO_MATCH = {"unmatched", "disjoint"}  # ConceptMap equivalences that say "this is not a translation"

register_operation("CodeSystem", "lookup", f"{HL7_OPERATION}/CodeSystem-lookup")
register_operation("ValueSet", "validate-code", f"{HL7_OPERATION}/ValueSet-validate-code")
register_operation("ValueSet", "expand", f"{HL7_OPERATION}/ValueSet-expand")
register_operation("ConceptMap", "translate", f"{HL7_OPERATION}/ConceptMap-translate")
for _type in TERMINOLOGY_TYPES:
    register_read_only(_type, [{"name": "url", "type": "uri"}])


# -- CodeSystem/$lookup ----------------------------------------------------------------------------
@router.api_route("/CodeSystem/$lookup", methods=["GET", "POST"])
async def lookup(request: Request) -> Response:
    ctx.caller(request, "CodeSystem", "read")
    params = await read_params(request)
    system, code, _ = _coded(params, system_required=True)
    version = params.text("version")
    codesystem = ctx.state(request).bridge.package.resolve(system, "CodeSystem")
    if codesystem is None or (version and codesystem.get("version") != version):
        raise NotFound(f"CodeSystem {system}{'|' + version if version else ''} is not known here")
    concept = _concept(codesystem.get("concept", []), code)
    if concept is None:
        raise NotFound(f"Code {code!r} is not in the code system {system}", expression="code")
    wanted = set(params.all("property"))
    properties = [p for p in concept.get("property", []) if not wanted or p.get("code") in wanted]
    return ctx.render(request, parameters(
        ("name", {"valueString": codesystem.get("name") or system}),
        ("version", {"valueString": codesystem["version"]}) if codesystem.get("version") else None,
        ("display", {"valueString": concept.get("display") or code}),
        ("definition", {"valueString": concept["definition"]}) if concept.get("definition") else None,
        # The CodeSystem file's own property entries: they carry the declared value types.
        *(("property", {"part": [{"name": "code", "valueCode": p["code"]},
                                 *({"name": "value", k: v} for k, v in p.items() if k.startswith("value"))]})
          for p in properties),
    ))


def _concept(concepts: list[dict], code: str) -> dict | None:
    for concept in concepts:
        if concept.get("code") == code:
            return concept
        found = _concept(concept.get("concept", []), code)
        if found is not None:
            return found
    return None


def _coded(params: Params, *, system_required: bool = False) -> tuple[str | None, str, str | None]:
    """(system, code, display) from `coding`, or from `system` + `code` (+ `display`)."""
    coding = params.coding("coding")
    if coding is not None:
        system, code, display = coding.get("system"), coding["code"], coding.get("display")
    else:
        system, code, display = params.text("system"), params.text("code", required=True), params.text("display")
    if system_required and not system:
        raise InputError("Parameter 'system' is required (or a 'coding' with a system)")
    return system, code, display


# -- ValueSet/$validate-code and $expand ----------------------------------------------------------
@router.api_route("/ValueSet/$validate-code", methods=["GET", "POST"])
async def validate_code(request: Request) -> Response:
    return await _validate_code(request, None)


@router.api_route("/ValueSet/{resource_id}/$validate-code", methods=["GET", "POST"])
async def validate_code_instance(request: Request, resource_id: str) -> Response:
    return await _validate_code(request, resource_id)


async def _validate_code(request: Request, resource_id: str | None) -> Response:
    ctx.caller(request, "ValueSet", "read")
    params = await read_params(request)
    terminology = ctx.state(request).bridge.terminology
    url = _served(request, "ValueSet", resource_id)["url"] if resource_id else params.text("url", required=True)
    if not terminology.knows_valueset(url):
        raise NotFound(f"ValueSet {url} is not known here")
    concept = params.element("codeableConcept")
    if concept is not None:  # valid when any of its codings is
        codings = concept.get("coding") or []
        if not codings:
            raise InputError("Parameter 'codeableConcept' has no coding")
        checks = [_check_code(terminology, url, c.get("system"), c.get("code"), c.get("display")) for c in codings]
        result = next((c for c in checks if c[0]), checks[0])
    else:
        result = _check_code(terminology, url, *_coded(params))
    valid, message, display = result
    return ctx.render(request, parameters(
        ("result", {"valueBoolean": valid}),
        ("message", {"valueString": message}) if message else None,
        ("display", {"valueString": display}) if display else None,
    ))


def _check_code(terminology: Terminology, url: str, system: str | None, code: object,
                display: str | None) -> tuple[bool, str, str | None]:
    """(result, message, the code's display) for one coding."""
    if type(code) is not str or not code:
        raise InputError("Every coding to validate needs a code")
    check = terminology.validate_code(url, system, code)
    if check.valid is None:
        raise Unprocessable(check.message, outcome=operation_outcome([Issue("error", "not-supported", check.message)]))
    if not check.valid:
        return False, check.message, None
    # As tx.fhir.org and HAPI answer: a wrong display makes the coding invalid, naming the right one.
    if display and check.display and display != check.display:
        return False, f"The display {display!r} is not the display of {system}#{code}: {check.display!r}", check.display
    return True, "", check.display


@router.api_route("/ValueSet/$expand", methods=["GET", "POST"])
async def expand(request: Request) -> Response:
    return await _expand(request, None)


@router.api_route("/ValueSet/{resource_id}/$expand", methods=["GET", "POST"])
async def expand_instance(request: Request, resource_id: str) -> Response:
    return await _expand(request, resource_id)


async def _expand(request: Request, resource_id: str | None) -> Response:
    ctx.caller(request, "ValueSet", "read")
    params = await read_params(request)
    bridge = ctx.state(request).bridge
    if resource_id is not None:
        valueset = _served(request, "ValueSet", resource_id)
    else:
        url = params.text("url", required=True)
        valueset = bridge.package.resolve(url, "ValueSet")
        if valueset is None:
            raise NotFound(f"ValueSet {url} is not known here")
    _check_enumerable(bridge, valueset)
    text, count, offset = params.text("filter"), params.count("count"), params.count("offset") or 0
    concepts = bridge.terminology.expand(valueset["url"])
    if text:
        needle = text.lower()
        concepts = [c for c in concepts if needle in c.code.lower() or needle in (c.display or "").lower()]
    page = concepts[offset:offset + count if count is not None else None]
    used = [("filter", text), ("count", count), ("offset", offset if params.all("offset") else None)]
    expansion: dict = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "total": len(concepts),
        "offset": offset,
        "parameter": [{"name": n, ("valueString" if n == "filter" else "valueInteger"): v}
                      for n, v in used if v is not None],
        "contains": [{"system": c.system, "code": c.code, **({"display": c.display} if c.display else {})}
                     for c in page],
    }
    for key in ("parameter", "contains"):
        if not expansion[key]:
            del expansion[key]
    header = {k: valueset[k] for k in ("id", "url", "version", "name", "title", "status") if k in valueset}
    return ctx.render(request, {"resourceType": "ValueSet", **header, "expansion": expansion})


def _check_enumerable(bridge: Bridge, valueset: dict, depth: int = 0) -> None:
    """An include of a whole code system the project does not hold (SNOMED CT, LOINC) cannot be
    listed: say so rather than answer with the part that can."""
    for include in valueset.get("compose", {}).get("include", []):
        for nested in include.get("valueSet", []):
            inner = bridge.package.resolve(nested, "ValueSet")
            if inner is not None and depth < 8:
                _check_enumerable(bridge, inner, depth + 1)
        system = include.get("system")
        if system and not include.get("concept") and not include.get("filter"):
            codesystem = bridge.package.resolve(system, "CodeSystem")
            if codesystem is None or codesystem.get("content", "complete") != "complete":
                message = f"ValueSet {valueset['url']} includes all of {system}, which cannot be expanded here"
                raise Unprocessable(message, outcome=operation_outcome([Issue("error", "too-costly", message)]))


# -- ConceptMap/$translate -------------------------------------------------------------------------
@router.api_route("/ConceptMap/$translate", methods=["GET", "POST"])
async def translate(request: Request) -> Response:
    return await _translate(request, None)


@router.api_route("/ConceptMap/{resource_id}/$translate", methods=["GET", "POST"])
async def translate_instance(request: Request, resource_id: str) -> Response:
    return await _translate(request, resource_id)


async def _translate(request: Request, resource_id: str | None) -> Response:
    ctx.caller(request, "ConceptMap", "read")
    params = await read_params(request)
    terminology = ctx.state(request).bridge.terminology
    system, code, _ = _coded(params, system_required=True)
    reverse, target, target_system = params.flag("reverse"), params.text("target"), params.text("targetsystem")
    url = _served(request, "ConceptMap", resource_id)["url"] if resource_id else params.text("url")
    maps = terminology.conceptmaps()
    if url is not None:
        maps = [m for m in maps if m["url"] == url.split("|")[0]]
        if not maps:
            raise NotFound(f"ConceptMap {url} is not known here")
    if target is not None:  # the value set the answer must come from: the map's target (source when reversed)
        sides = ("sourceUri", "sourceCanonical") if reverse else ("targetUri", "targetCanonical")
        maps = [m for m in maps if target in (m.get(sides[0]), m.get(sides[1]))]
    found = [(m["url"], t) for m in maps for t in terminology.translate(m["url"], system, code, reverse=reverse)
             if target_system is None or t.system == target_system]
    result = any(t.equivalence not in NO_MATCH for _, t in found)
    message = None if result else f"No translation of {system}#{code} in {url or 'any ConceptMap held here'}"
    return ctx.render(request, parameters(
        ("result", {"valueBoolean": result}),
        ("message", {"valueString": message}) if message else None,
        *(("match", {"part": [
            {"name": "equivalence", "valueCode": t.equivalence},
            {"name": "concept", "valueCoding": {"system": t.system, "code": t.code,
                                                **({"display": t.display} if t.display else {})}},
            {"name": "source", "valueUri": source},
        ]}) for source, t in found),
    ))


# -- the terminology resources themselves: read and search by url -------------------------------------
def _served(request: Request, resource_type: str, resource_id: str) -> dict:
    for resource in ctx.state(request).bridge.package.of_type(resource_type):
        if resource.get("id") == resource_id:
            return resource
    raise NotFound(f"{resource_type}/{resource_id} is not known here")


def _terminology_routes(resource_type: str) -> None:
    """GET [type]/[id] and GET [type]?url=; registered after the operations so `$lookup` is never an id."""
    async def read(request: Request, resource_id: str) -> Response:
        ctx.caller(request, resource_type, "read")
        return ctx.render(request, _served(request, resource_type, resource_id))

    async def search(request: Request) -> Response:
        ctx.caller(request, resource_type, "read")
        params = Params.from_query(request)
        unknown = sorted(n for n in params.names() if n != "url")
        if unknown and ctx.prefer(request, "handling") == "strict":
            raise InputError(f"Search parameter(s) {unknown} not supported on {resource_type}: only url")
        url = params.text("url")
        found = [r for r in ctx.state(request).bridge.package.of_type(resource_type)
                 if url is None or url in (r.get("url"), f"{r.get('url')}|{r.get('version')}")]
        base = ctx.base_url(request)
        query = f"?{urlencode([('url', url)])}" if url else ""
        bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                        "link": [{"relation": "self", "url": f"{base}/{resource_type}{query}"}]}
        entries = [{"fullUrl": f"{base}/{resource_type}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                   for r in found]
        if unknown:
            entries.append({"resource": operation_outcome([Issue("warning", "not-supported",
                                                                 f"Search parameter {n!r} is not supported: ignored")
                                                           for n in unknown]), "search": {"mode": "outcome"}})
        if entries:
            bundle["entry"] = entries
        return ctx.render(request, bundle)

    router.add_api_route(f"/{resource_type}", search, methods=["GET"])
    router.add_api_route(f"/{resource_type}/{{resource_id}}", read, methods=["GET"])


for _type in TERMINOLOGY_TYPES:
    _terminology_routes(_type)
