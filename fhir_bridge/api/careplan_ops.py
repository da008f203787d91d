"""DIALOG+ over HTTP (thin: the work is in fhir_bridge.pipelines.careplan_session):

- `POST [base]/Patient/[id]/$dialog-plus-session` (Parameters in, the person's updated CarePlan out);
  `If-Match: W/"n"` names the plan version the partner read, which reviews of actions need;
- the plan as an HTML page a person could be handed: `GET CarePlan/[id]?_format=html` (or a
  browser's Accept) and `GET CarePlan/[id]/$render`, which answers a Binary to a client that asks
  for FHIR JSON or XML.
"""
from __future__ import annotations

import base64
from functools import partial

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_bridge.api import context as ctx
from fhir_bridge.api.auth import authorize
from fhir_bridge.api.capability import register_operation
from fhir_bridge.api.formats import HTML_MEDIA, wants_html
from fhir_bridge.careplan import PAGE_HEADERS
from fhir_bridge.errors import InputError
from fhir_bridge.careplan.summary_page import summary_page
from fhir_bridge.pipelines.careplan_views import render_page
from fhir_bridge.pipelines.dialog_summary import dialog_summary
from fhir_bridge.pipelines.patient_links import surviving_patient

router = APIRouter(prefix=ctx.FHIR_BASE)
DEFINITIONS = "https://fhir-bridge.example.org/OperationDefinition"
SESSION_WRITES = ("CarePlan", "CareTeam", "Goal", "QuestionnaireResponse")
FHIR_MEDIA = {"application/fhir+json", "application/json", "application/fhir+xml", "application/xml", "text/xml",
              "json", "xml"}

register_operation("Patient", "dialog-plus-session", f"{DEFINITIONS}/dialog-plus-session")
register_operation("CarePlan", "render", f"{DEFINITIONS}/careplan-render")
register_operation("Patient", "dialog-summary", f"{DEFINITIONS}/dialog-summary")
SUMMARY_READS = ("Patient", "QuestionnaireResponse", "CarePlan")


@router.post("/Patient/{patient_id}/$dialog-plus-session")
async def dialog_plus_session(request: Request, patient_id: str) -> Response:
    who = ctx.caller(request, SESSION_WRITES[0], "write")
    for resource_type in SESSION_WRITES[1:]:
        authorize(who, resource_type, "write")
    body = ctx.parse_resource(request, await ctx.read_body(request))
    if body.get("resourceType") != "Parameters":
        raise InputError(f"$dialog-plus-session takes a Parameters resource, not a {body.get('resourceType')!r}",
                         expression="resourceType")
    state = ctx.state(request)
    record = partial(state.bridge.careplans.record, patient_id, body, who, based_on_version=ctx.if_match(request))
    result = await anyio.to_thread.run_sync(record, limiter=state.session_limiter)
    response = ctx.written(request, result.plan, 200, [])
    response.headers["Content-Location"] = f"{ctx.base_url(request)}/{result.plan.location}"
    return response


@router.get("/Patient/{patient_id}/$dialog-summary")
def summary(request: Request, patient_id: str) -> Response:
    """What a worker checks before another DIALOG: Parameters, or a page with _format=html."""
    who = ctx.caller(request, SUMMARY_READS[0], "read")
    for resource_type in SUMMARY_READS[1:]:
        authorize(who, resource_type, "read")
    bridge = ctx.state(request).bridge
    bridge.access.require_person(who, surviving_patient(bridge.repository, patient_id))
    result = dialog_summary(bridge.repository, bridge.find, patient_id,
                            domains=[(d.code, d.display) for d in bridge.dialog.domains],
                            min_interval_days=bridge.settings.prom_min_interval_days)
    return _html(summary_page(result)) if wants_page(request) else ctx.render(request, result)


@router.api_route("/CarePlan/{plan_id}/$render", methods=["GET", "POST"])
def render(request: Request, plan_id: str) -> Response:
    html = _page(request, plan_id, ctx.caller(request, "CarePlan", "read"))
    if not _wants_fhir(request):
        return _html(html)
    binary = {"resourceType": "Binary", "contentType": f"{HTML_MEDIA}; charset=utf-8",
              "data": base64.b64encode(html.encode("utf-8")).decode("ascii")}
    return ctx.render(request, binary)


def wants_page(request: Request) -> bool:
    return wants_html(request.query_params.get("_format"), request.headers.get("accept"))


def page_response(request: Request, plan_id: str, who) -> Response:
    """The HTML page for a CarePlan read (rest.read hands over when wants_page)."""
    return _html(_page(request, plan_id, who))


def _page(request: Request, plan_id: str, who) -> str:
    bridge = ctx.state(request).bridge
    bridge.access.check_read(who, bridge.repository.read("CarePlan", plan_id))  # the person's team, not anyone
    return render_page(bridge.repository, plan_id, [d.code for d in bridge.dialog.domains])


def _html(page: str) -> Response:
    return Response(page, media_type=f"{HTML_MEDIA}; charset=utf-8", headers=dict(PAGE_HEADERS))


def _wants_fhir(request: Request) -> bool:
    """A Binary only for a client that names a FHIR format; a browser or `curl` gets the page."""
    requested = request.query_params.get("_format")
    accept = request.headers.get("accept") or ""
    if wants_html(requested, accept):
        return False
    if requested:
        return True
    return any(part.split(";")[0].strip().lower() in FHIR_MEDIA for part in accept.split(","))
