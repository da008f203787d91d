"""FHIR operations: `$validate`, `QuestionnaireResponse/$extract` and the terminology operations
(`CodeSystem/$lookup`, `ValueSet/$validate-code`, `ValueSet/$expand`, `ConceptMap/$translate`),
plus read and search-by-url of the project's CodeSystems, ValueSets and ConceptMaps.

Those three types are the project's data files (terminology/), loaded at start-up: they are served
read-only from memory, never stored, so partners cannot change the codes the validator enforces.

Operation inputs come from the query string (GET) or a Parameters resource (POST, JSON or XML);
a missing or malformed input is a 400 whose message names the parameter.
"""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from fhir_bridge.api import context as ctx
from fhir_bridge.api.capability import register_operation, register_read_only
from fhir_bridge.bridge import Bridge
from fhir_bridge.errors import InputError, NotFound, Unprocessable
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.measures import extract_observations, score_dialog
from fhir_bridge.terminology import Terminology

router = APIRouter(prefix=ctx.FHIR_BASE)

HL7_OPERATION = "http://hl7.org/fhir/OperationDefinition"
SDC_EXTRACT = "http://hl7.org/fhir/uv/sdc/OperationDefinition/QuestionnaireResponse-extract"
QR = "QuestionnaireResponse"
TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")
CONTROL_PARAMS = {"_format", "_pretty"}
VALIDATE_MODES = {"create", "update", "delete", "profile"}
NO_MATCH = {"unmatched", "disjoint"}  # ConceptMap equivalences that say "this is not a translation"

# "Resource": $validate applies to every type the server serves.
register_operation("Resource", "validate", f"{HL7_OPERATION}/Resource-validate")
register_operation(QR, "extract", SDC_EXTRACT)
register_operation("CodeSystem", "lookup", f"{HL7_OPERATION}/CodeSystem-lookup")
register_operation("ValueSet", "validate-code", f"{HL7_OPERATION}/ValueSet-validate-code")
register_operation("ValueSet", "expand", f"{HL7_OPERATION}/ValueSet-expand")
register_operation("ConceptMap", "translate", f"{HL7_OPERATION}/ConceptMap-translate")
for _type in TERMINOLOGY_TYPES:
    register_read_only(_type, [{"name": "url", "type": "uri"}])


# -- operation inputs ----------------------------------------------------------------------------
class Params:
    """Operation inputs by name: strings from a query string, typed values (value[x] contents or
    resources) from a Parameters resource."""

    def __init__(self, values: dict[str, list[object]]):
        self._values = values

    @classmethod
    def from_query(cls, request: Request) -> "Params":
        values: dict[str, list[object]] = {}
        for name, value in request.query_params.multi_items():
            if name not in CONTROL_PARAMS:
                values.setdefault(name, []).append(value)
        return cls(values)

    @classmethod
    def from_parameters(cls, parameters: dict) -> "Params":
        entries = parameters.get("parameter", [])
        if type(entries) is not list:
            raise InputError("Parameters.parameter must be a list", expression="Parameters.parameter")
        values: dict[str, list[object]] = {}
        for i, entry in enumerate(entries):
            if type(entry) is not dict or type(entry.get("name")) is not str:
                raise InputError(f"Parameters.parameter[{i}] has no name", expression=f"Parameters.parameter[{i}]")
            value = entry.get("resource")
            if value is None:
                value = next((v for k, v in entry.items() if k.startswith("value")), None)
            if value is not None:  # parameters made of parts are not inputs of any operation here
                values.setdefault(entry["name"], []).append(value)
        return cls(values)

    def over(self, fallback: "Params") -> "Params":
        """These values, and the fallback's for names these lack (a POST body over its query string)."""
        return Params({**fallback._values, **self._values})

    def all(self, name: str) -> list[object]:
        return self._values.get(name, [])

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self._one(name, required)
        if value is None:
            return None
        if type(value) is not str or not value.strip():
            raise InputError(f"Parameter '{name}' must be a non-empty string")
        return value.strip()

    def flag(self, name: str) -> bool:
        value = self._one(name, False)
        if value is None or type(value) is bool:
            return bool(value)
        if value in ("true", "false"):
            return value == "true"
        raise InputError(f"Parameter '{name}' must be true or false, not {value!r}")

    def count(self, name: str) -> int | None:
        value = self._one(name, False)
        if value is None:
            return None
        if type(value) is int and value >= 0:
            return value
        if type(value) is str and value.isdigit():
            return int(value)
        raise InputError(f"Parameter '{name}' must be a whole number >= 0, not {value!r}")

    def resource(self, name: str, *, required: bool = False) -> dict | None:
        value = self._one(name, required)
        if value is not None and (type(value) is not dict or "resourceType" not in value):
            raise InputError(f"Parameter '{name}' must be a resource")
        return value

    def coding(self, name: str) -> dict | None:
        value = self.element(name)
        if value is not None and type(value.get("code")) is not str:
            raise InputError(f"Parameter '{name}' must be a Coding with a code")
        return value

    def element(self, name: str) -> dict | None:
        """A complex-typed value (Coding, CodeableConcept); only a Parameters body can carry one."""
        value = self._one(name, False)
        if value is not None and type(value) is not dict:
            raise InputError(f"Parameter '{name}' must be a complex value, sent in a Parameters resource")
        return value

    def names(self) -> list[str]:
        return list(self._values)

    def _one(self, name: str, required: bool) -> object | None:
        values = self.all(name)
        if not values:
            if required:
                raise InputError(f"Parameter '{name}' is required")
            return None
        if len(values) > 1:
            raise InputError(f"Parameter '{name}' may be given once only")
        return values[0]


async def _inputs(request: Request) -> Params:
    """GET: the query string. POST: a Parameters body over the query string (or the query alone)."""
    query = Params.from_query(request)
    if request.method == "GET":
        return query
    data = await ctx.read_body(request)
    if not data.strip():
        return query
    body = ctx.parse_resource(request, data)
    if body.get("resourceType") != "Parameters":
        raise InputError(f"This operation takes a Parameters resource, not a {body.get('resourceType')!r}")
    return Params.from_parameters(body).over(query)


def _parameters(*pairs: tuple[str, dict] | None) -> dict:
    """A Parameters resource from (name, {"valueX": ...}) pairs; None pairs are left out."""
    return {"resourceType": "Parameters",
            "parameter": [{"name": name, **value} for name, value in filter(None, pairs)]}


def _bridge(request: Request) -> Bridge:
    return ctx.state(request).bridge


# -- $validate -------------------------------------------------------------------------------------
@router.post("/{resource_type}/$validate")
async def validate_type(request: Request, resource_type: str) -> Response:
    return await _validate(request, resource_type, None)


@router.post("/{resource_type}/{resource_id}/$validate")
async def validate_instance(request: Request, resource_type: str, resource_id: str) -> Response:
    return await _validate(request, resource_type, resource_id)


async def _validate(request: Request, resource_type: str, resource_id: str | None) -> Response:
    bridge = _bridge(request)
    if resource_id is not None:
        ctx.check_type(request, resource_type)  # an instance must be one this server stores
    elif resource_type not in bridge.validator.model.resource_types:
        raise NotFound(f"Resource type {resource_type} is not a FHIR R4 resource type")
    ctx.caller(request, resource_type, "read")
    data = await ctx.read_body(request)
    params = Params.from_query(request)
    resource = ctx.parse_resource(request, data) if data.strip() else None
    if resource is not None and resource.get("resourceType") == "Parameters" and resource_type != "Parameters":
        params = Params.from_parameters(resource).over(params)
        resource = params.resource("resource")
    mode, profile = params.text("mode"), params.text("profile")
    if mode is not None and mode not in VALIDATE_MODES:
        raise InputError(f"Parameter 'mode' must be one of {sorted(VALIDATE_MODES)}, not {mode!r}")
    if mode in ("update", "delete") and resource_id is None:
        raise InputError(f"$validate with mode={mode} is an instance operation: POST [type]/[id]/$validate")
    if mode == "delete":
        bridge.repository.read(resource_type, resource_id)  # 404/410 when there is nothing to delete
        return ctx.render(request, operation_outcome([Issue(
            "information", "informational",
            f"{resource_type}/{resource_id} may be deleted: this server keeps no referential constraints")]))
    if resource is None:
        if resource_id is None:
            raise InputError("$validate needs a resource: the body, or the Parameters 'resource'")
        resource = bridge.repository.read(resource_type, resource_id).resource
    if resource.get("resourceType") != resource_type:
        raise InputError(f"$validate on {resource_type} was sent a {resource.get('resourceType')!r}")
    result = await run_in_threadpool(bridge.validator.validate, resource, profile)
    issues = list(result.issues)
    if mode == "update" and resource.get("id") != resource_id:
        issues.append(Issue("error", "invalid", f"An update of {resource_type}/{resource_id} must carry that id",
                            f"{resource_type}.id"))
    # Invalid or not, the outcome is the operation's answer: 200.
    return ctx.render(request, operation_outcome(issues))


# -- QuestionnaireResponse/$extract ----------------------------------------------------------------
@router.post(f"/{QR}/$extract")
async def extract(request: Request) -> Response:
    ctx.caller(request, QR, "read")
    body = ctx.parse_resource(request, await ctx.read_body(request))
    if body.get("resourceType") == "Parameters":
        body = Params.from_parameters(body).resource("questionnaire-response", required=True)
    return await run_in_threadpool(_extract, request, body)


@router.api_route(f"/{QR}/{{resource_id}}/$extract", methods=["GET", "POST"])
def extract_instance(request: Request, resource_id: str) -> Response:
    ctx.caller(request, QR, "read")
    return _extract(request, _bridge(request).repository.read(QR, resource_id).resource)


def _extract(request: Request, response: dict) -> Response:
    """The score Observations of a DIALOG response as a collection Bundle; nothing is stored (the
    score row written with the response is what reports read)."""
    if response.get("resourceType") != QR:
        raise InputError(f"$extract takes a QuestionnaireResponse, not a {response.get('resourceType')!r}")
    bridge = _bridge(request)
    result = bridge.validator.validate(response)
    if not result.valid:
        raise Unprocessable(f"The QuestionnaireResponse is not valid: {result.errors[0].message}",
                            outcome=result.outcome())
    if str(response.get("questionnaire", "")).split("|")[0] != bridge.dialog.url:
        message = f"$extract knows how to extract from {bridge.dialog.url} responses only"
        raise Unprocessable(message, outcome=operation_outcome(
            [Issue("error", "not-supported", message, f"{QR}.questionnaire")]))
    settings = bridge.settings
    score = score_dialog(response, bridge.dialog, min_answered={"sqol": settings.min_answered_sqol,
                                                                "treatment": settings.min_answered_treatment})
    observations = extract_observations(response, bridge.dialog, score)
    bundle: dict = {"resourceType": "Bundle", "type": "collection"}
    if observations:  # ids are uuid5s: urn:uuid fullUrls say "not stored here" without inventing a location
        bundle["entry"] = [{"fullUrl": f"urn:uuid:{o['id']}", "resource": o} for o in observations]
    return ctx.render(request, bundle)


# -- CodeSystem/$lookup ----------------------------------------------------------------------------
@router.api_route("/CodeSystem/$lookup", methods=["GET", "POST"])
async def lookup(request: Request) -> Response:
    ctx.caller(request, "CodeSystem", "read")
    params = await _inputs(request)
    system, code, _ = _coded(params, system_required=True)
    version = params.text("version")
    codesystem = _bridge(request).package.resolve(system, "CodeSystem")
    if codesystem is None or (version and codesystem.get("version") != version):
        raise NotFound(f"CodeSystem {system}{'|' + version if version else ''} is not known here")
    concept = _concept(codesystem.get("concept", []), code)
    if concept is None:
        raise NotFound(f"Code {code!r} is not in the code system {system}", expression="code")
    wanted = set(params.all("property"))
    properties = [p for p in concept.get("property", []) if not wanted or p.get("code") in wanted]
    return ctx.render(request, _parameters(
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
    params = await _inputs(request)
    terminology = _bridge(request).terminology
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
    return ctx.render(request, _parameters(
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
    params = await _inputs(request)
    bridge = _bridge(request)
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
    params = await _inputs(request)
    terminology = _bridge(request).terminology
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
    return ctx.render(request, _parameters(
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
    for resource in _bridge(request).package.of_type(resource_type):
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
        found = [r for r in _bridge(request).package.of_type(resource_type)
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
