"""The one place exceptions become HTTP answers: always an OperationOutcome, never a stack trace.

A BridgeError carries its IssueType code and status; anything unexpected is a 500 whose
correlation id is logged with the trace and returned to the client, so support can find it.
"""
from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhir_bridge.api.context import render
from fhir_bridge.api.formats import JSON, response_format
from fhir_bridge.errors import BridgeError, Unauthorized, Unprocessable
from fhir_bridge.fhir.outcome import Issue, operation_outcome

log = logging.getLogger("fhir_bridge.api")
HTTP_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
              406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 413: "too-costly",
              415: "not-supported", 422: "processing"}


def _format_or_json(request: Request) -> str:
    try:
        return response_format(request.query_params.get("_format"), request.headers.get("accept"))
    except BridgeError:
        return JSON  # the client's format is itself the problem: answer in JSON


def outcome_response(request: Request, status: int, outcome: dict, headers: dict | None = None):
    return render(request, outcome, status, headers, fmt=_format_or_json(request))


def install(app: FastAPI) -> None:
    @app.exception_handler(BridgeError)
    async def bridge_error(request: Request, exc: BridgeError):
        if isinstance(exc, Unprocessable) and exc.outcome:
            outcome = exc.outcome
        else:
            severity = "fatal" if exc.http_status >= 500 else "error"
            outcome = operation_outcome([Issue(severity, exc.code, exc.message, exc.expression)])
        headers = {"WWW-Authenticate": 'Bearer realm="fhir-bridge"'} if isinstance(exc, Unauthorized) else None
        if getattr(exc, "current_version", None):  # a 412 that knows the version to read again (ETag)
            headers = {"ETag": f'W/"{exc.current_version}"'}
        if exc.http_status >= 500:
            log.error("configuration or internal error: %s", exc.message)
        return outcome_response(request, exc.http_status, outcome, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = {404: f"No such endpoint: {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        code = HTTP_CODES.get(exc.status_code, "exception")
        return outcome_response(request, exc.status_code, operation_outcome([Issue("error", code, message)]))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError):
        issues = [Issue("error", "invalid", f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}")
                  for e in exc.errors()]
        return outcome_response(request, 400, operation_outcome(issues))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        correlation = str(uuid.uuid4())
        log.exception("internal error %s on %s %s", correlation, request.method, request.url.path)
        outcome = operation_outcome([Issue("fatal", "exception",
                                           f"Internal error; quote correlation id {correlation} to support")])
        return outcome_response(request, 500, outcome, {"X-Correlation-Id": correlation})
