"""Per-request plumbing shared by every route: who is calling, the body, the answer's format.

Async only here, at the I/O edge (reading the body); everything else is synchronous and runs in
the thread pool.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import formatdate

import anyio
from fastapi import Request
from fastapi.responses import Response

from fhir_bridge.api.auth import USER_HEADER, TokenStore, authorize
from fhir_bridge.api.formats import MEDIA_TYPES, XML, body_format, response_format
from fhir_bridge.bridge import Bridge
from fhir_bridge.errors import InputError, NotFound, PayloadTooLarge
from fhir_bridge.fhir.codec import dumps_json, parse_resource_bytes
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.fhir.xml_codec import resource_to_xml
from fhir_bridge.pipelines.resources import SYSTEM_CALLER, Caller
from fhir_bridge.store.types import Stored

FHIR_BASE = "/fhir"


@dataclass
class ApiState:
    bridge: Bridge
    tokens: TokenStore | None       # None: authentication switched off (--insecure-dev)
    max_body_bytes: int
    resource_types: frozenset[str]
    # DIALOG+ sessions run one at a time in a server process, queued in the event loop: they are
    # CPU work under one GIL whose writes queue on the one writer anyway, and 4 threads at once only
    # traded the GIL (10 clients, bench/careplan.py: ~10% more CPU a session, p95 +30% on 2 workers).
    session_limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(1))


def state(request: Request) -> ApiState:
    return request.app.state.fhir


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + FHIR_BASE


def caller(request: Request, resource_type: str, mode: str) -> Caller:
    """Authenticate (401) and authorise (403) the request for `mode` access to `resource_type`."""
    st = state(request)
    if st.tokens is None:
        return SYSTEM_CALLER
    who = st.tokens.authenticate(request.headers.get("authorization"), request.headers.get(USER_HEADER))
    authorize(who, resource_type, mode)
    return who


def check_type(request: Request, resource_type: str) -> None:
    st = state(request)
    if resource_type not in st.resource_types:
        known = resource_type in st.bridge.validator.model.resource_types
        raise NotFound(f"Resource type {resource_type} is {'not served here' if known else 'not a FHIR R4 resource type'}")


async def read_body(request: Request) -> bytes:
    """The body, refusing (413) anything over the limit without reading it all into memory."""
    limit = state(request).max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_resource(request: Request, data: bytes) -> dict:
    if not data.strip():
        raise InputError("The request has no body: send a FHIR resource")
    fmt = body_format(request.headers.get("content-type"))
    content_type = MEDIA_TYPES[fmt]
    return parse_resource_bytes(data, state(request).bridge.validator.model, content_type)


def wanted_format(request: Request) -> str:
    return response_format(request.query_params.get("_format"), request.headers.get("accept"))


def render(request: Request, payload: dict | None, status: int = 200, headers: dict | None = None,
           fmt: str | None = None) -> Response:
    fmt = fmt or wanted_format(request)
    if payload is None:
        return Response(status_code=status, headers=headers)
    body = resource_to_xml(payload, state(request).bridge.validator.model) if fmt == XML else dumps_json(payload)
    return Response(body, status_code=status, headers=headers, media_type=f"{MEDIA_TYPES[fmt]}; charset=utf-8")


def version_headers(request: Request, stored: Stored, *, location: bool = False) -> dict:
    headers = {"ETag": stored.etag, "Last-Modified": formatdate(stored.last_updated / 1_000_000, usegmt=True)}
    if location:
        headers["Location"] = f"{base_url(request)}/{stored.location}"
        headers["Content-Location"] = headers["Location"]
    return headers


def if_match(request: Request) -> int | None:
    """`If-Match: W/"3"` -> 3."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise InputError(f"If-Match must be a version ETag such as W/\"3\", not {value!r}")
    return int(text)


def prefer(request: Request, name: str) -> str | None:
    """The value of one Prefer token: `Prefer: return=minimal, handling=strict`."""
    for part in request.headers.get("prefer", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"').lower()
    return None


def written(request: Request, stored: Stored, status: int, issues: list[Issue]) -> Response:
    """Answer a write as the client prefers: the resource (default), nothing, or an OperationOutcome."""
    headers = version_headers(request, stored, location=status == 201)
    choice = prefer(request, "return")
    if choice == "minimal":
        return render(request, None, status, headers)
    if choice == "operationoutcome":
        return render(request, operation_outcome(issues), status, headers)
    return render(request, stored.resource, status, headers)
