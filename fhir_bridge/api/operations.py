"""FHIR operations on stored resources: `$validate` (every type) and `QuestionnaireResponse/$extract`.

Inputs are read as FHIR Parameters (fhir_bridge.api.parameters); the terminology operations live in
fhir_bridge.api.terminology_ops.
"""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from fhir_bridge.api import context as ctx
from fhir_bridge.api.capability import register_operation
from fhir_bridge.api.parameters import Params
from fhir_bridge.errors import InputError, NotFound, Unprocessable
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.measures import extract_observations, score_dialog

router = APIRouter(prefix=ctx.FHIR_BASE)

HL7_OPERATION = "http://hl7.org/fhir/OperationDefinition"
SDC_EXTRACT = "http://hl7.org/fhir/uv/sdc/OperationDefinition/QuestionnaireResponse-extract"
QR = "QuestionnaireResponse"
VALIDATE_MODES = {"create", "update", "delete", "profile"}

# "Resource": $validate applies to every type the server serves.
register_operation("Resource", "validate", f"{HL7_OPERATION}/Resource-validate")
register_operation(QR, "extract", SDC_EXTRACT)


# -- $validate -------------------------------------------------------------------------------------
@router.post("/{resource_type}/$validate")
async def validate_type(request: Request, resource_type: str) -> Response:
    return await _validate(request, resource_type, None)


@router.post("/{resource_type}/{resource_id}/$validate")
async def validate_instance(request: Request, resource_type: str, resource_id: str) -> Response:
    return await _validate(request, resource_type, resource_id)


async def _validate(request: Request, resource_type: str, resource_id: str | None) -> Response:
    bridge = ctx.state(request).bridge
    if resource_id is not None:
        ctx.check_type(request, resource_type)  # an instance must be one this server stores
    elif resource_type not in bridge.validator.model.resource_types:
        raise NotFound(f"Resource type {resource_type} is not a FHIR R4 resource type")
    who = ctx.caller(request, resource_type, "read")
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
        bridge.access.check_read(who, bridge.repository.read(resource_type, resource_id))  # 404/410/403
        return ctx.render(request, operation_outcome([Issue(
            "information", "informational",
            f"{resource_type}/{resource_id} may be deleted: this server keeps no referential constraints")]))
    if resource is None:
        if resource_id is None:
            raise InputError("$validate needs a resource: the body, or the Parameters 'resource'")
        resource = bridge.access.check_read(who, bridge.repository.read(resource_type, resource_id)).resource
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
    who = ctx.caller(request, QR, "read")
    bridge = ctx.state(request).bridge
    return _extract(request, bridge.access.check_read(who, bridge.repository.read(QR, resource_id)).resource)


def _extract(request: Request, response: dict) -> Response:
    """The score Observations of a DIALOG response as a collection Bundle; nothing is stored (the
    score row written with the response is what reports read)."""
    if response.get("resourceType") != QR:
        raise InputError(f"$extract takes a QuestionnaireResponse, not a {response.get('resourceType')!r}")
    bridge = ctx.state(request).bridge
    result = bridge.validator.validate(response)
    if not result.valid:
        raise Unprocessable(f"The QuestionnaireResponse is not valid: {result.errors[0].message}",
                            outcome=result.outcome())
    if str(response.get("questionnaire", "")).split("|")[0] != bridge.dialog.url:
        message = f"$extract knows how to extract from {bridge.dialog.url} responses only"
        raise Unprocessable(message, outcome=operation_outcome(
            [Issue("error", "not-supported", message, f"{QR}.questionnaire")]))
    score = score_dialog(response, bridge.dialog, min_answered=bridge.settings.min_answered)
    observations = extract_observations(response, bridge.dialog, score)
    bundle: dict = {"resourceType": "Bundle", "type": "collection"}
    if observations:  # ids are uuid5s: urn:uuid fullUrls say "not stored here" without inventing a location
        bundle["entry"] = [{"fullUrl": f"urn:uuid:{o['id']}", "resource": o} for o in observations]
    return ctx.render(request, bundle)
