"""Pooled DIALOG outcome reports over HTTP (thin: the work is in fhir_bridge.reports):

- `GET|POST [base]/Measure/$dialog-outcomes` (and `[base]/$dialog-outcomes`): a collection Bundle of
  MeasureReports; parameters in profiles/OperationDefinition-dialog-outcomes.json. Disclosure
  control always applies to pooled levels here: partners receive publishable figures only.
- `GET [base]/Measure/[id]` and `GET [base]/Measure?url=`: the published Measures, from profiles/.

Pooled figures need `MeasureReport` read; an individual's report also reads the person's record,
so it needs `Patient` and `QuestionnaireResponse` read as well, and a partner that cares for the
person (pipelines/care_access.py).
"""
from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from fhir_bridge.api import context as ctx
from fhir_bridge.api.auth import authorize
from fhir_bridge.api.capability import register_operation
from fhir_bridge.api.definitions import serve_definitions
from fhir_bridge.api.parameters import Params, read_params
from fhir_bridge.errors import InputError
from fhir_bridge.pipelines.resources import SYSTEM_CALLER, Caller
from fhir_bridge.reports import build_outcome_report, measure_report_bundle, parse_request

router = APIRouter(prefix=ctx.FHIR_BASE)
TYPE = "Measure"
DEFINITION = "https://fhir-bridge.example.org/OperationDefinition/dialog-outcomes"
PARAMETERS = ("periodStart", "periodEnd", "level", "subject", "organization", "team", "subgroup", "exitAsEntry")

register_operation(TYPE, "dialog-outcomes", DEFINITION)
register_operation("*", "dialog-outcomes", DEFINITION)


@router.api_route(f"/{TYPE}/$dialog-outcomes", methods=["GET", "POST"])
@router.api_route("/$dialog-outcomes", methods=["GET", "POST"])
async def dialog_outcomes(request: Request) -> Response:
    who = ctx.caller(request, "MeasureReport", "read")
    params = await read_params(request)
    report_request = _request(params, ctx.state(request).bridge.settings.report_exit_as_entry)
    if report_request.level == "individual":
        authorize(who, "Patient", "read")
        authorize(who, "QuestionnaireResponse", "read")
    bundle = await run_in_threadpool(_evaluate, request, report_request, who)
    return ctx.render(request, bundle)


def _request(params: Params, exit_as_entry: bool):
    unknown = [name for name in params.names() if name not in PARAMETERS]
    if unknown:
        raise InputError(f"$dialog-outcomes has no parameter {', '.join(map(repr, unknown))}; "
                         f"it takes {', '.join(PARAMETERS)}")
    subgroups = [str(s) for s in params.all("subgroup")] or None
    return parse_request(level=params.text("level"), start=params.text("periodStart"), end=params.text("periodEnd"),
                         organizations=[str(o) for o in params.all("organization")],
                         teams=[str(t) for t in params.all("team")], subject=params.text("subject"),
                         subgroups=subgroups,
                         exit_as_entry=params.flag("exitAsEntry") if params.all("exitAsEntry") else exit_as_entry)


def _evaluate(request: Request, report_request, who: Caller) -> dict:
    bridge = ctx.state(request).bridge
    if report_request.level == "individual":   # a person's own record: only partners caring for them
        bridge.access.require_person(who, report_request.patient_id)
    now = datetime.now(timezone.utc)
    report = build_outcome_report(bridge.repository, bridge.dialog, report_request, today=now.date())
    return measure_report_bundle(report, generated=now, reporter=None if who == SYSTEM_CALLER else who.partner)


# after the operations: Measure/{id} would otherwise take Measure/$dialog-outcomes
serve_definitions(router, TYPE)
