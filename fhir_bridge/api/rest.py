"""The FHIR RESTful interactions: read, vread, create, update, patch, delete, history, search.

Thin: check type and access, parse, call the repository or the resource service, answer.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from fhir_bridge.api import careplan_ops
from fhir_bridge.api import context as ctx
from fhir_bridge.errors import InputError, NotFound, UnsupportedFormat
from fhir_bridge.fhir.dates import to_microseconds
from fhir_bridge.fhir.codec import loads_json
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.store.search import parse_search
from fhir_bridge.store.types import SearchResult, Stored

router = APIRouter(prefix=ctx.FHIR_BASE)
CONTROL_PARAMS = {"_format", "_pretty"}
HISTORY_MAX = 1000


# -- history (before the instance routes so /_history is not taken for an id) ---------------------------
@router.get("/_history")
def system_history(request: Request) -> Response:
    return _history(request, None, None, ctx.caller(request, "*", "read"))


@router.get("/{resource_type}/_history")
def type_history(request: Request, resource_type: str) -> Response:
    ctx.check_type(request, resource_type)
    return _history(request, resource_type, None, ctx.caller(request, resource_type, "read"))


@router.get("/{resource_type}/{resource_id}/_history")
def instance_history(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx.check_type(request, resource_type)
    who = ctx.caller(request, resource_type, "read")
    ctx.state(request).bridge.access.check_key(who, resource_type, resource_id)
    return _history(request, resource_type, resource_id, who)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
def vread(request: Request, resource_type: str, resource_id: str, version_id: str) -> Response:
    ctx.check_type(request, resource_type)
    who = ctx.caller(request, resource_type, "read")
    if not version_id.isdigit():
        raise InputError(f"Version {version_id!r} is not a version id")
    bridge = ctx.state(request).bridge
    stored = bridge.access.check_read(who, bridge.repository.vread(resource_type, resource_id, int(version_id)))
    return ctx.render(request, stored.resource, 200, ctx.version_headers(request, stored))


# -- search ----------------------------------------------------------------------------------------
@router.get("/{resource_type}")
def search_get(request: Request, resource_type: str) -> Response:
    return _search(request, resource_type, list(request.query_params.multi_items()))


@router.post("/{resource_type}/_search")
async def search_post(request: Request, resource_type: str) -> Response:
    # The body is application/x-www-form-urlencoded (http.html#search), parsed here: Starlette's
    # request.form() needs python-multipart, and this way the body size limit applies too.
    ctx.check_type(request, resource_type)
    ctx.caller(request, resource_type, "read")  # refuse before reading an unauthenticated body
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("", "application/x-www-form-urlencoded"):
        raise UnsupportedFormat("POST _search takes its parameters as application/x-www-form-urlencoded")
    try:
        form = parse_qsl((await ctx.read_body(request)).decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise InputError("The search parameters are not UTF-8") from exc
    params = list(request.query_params.multi_items()) + form
    return await run_in_threadpool(_search, request, resource_type, params)


# -- instance --------------------------------------------------------------------------------------
@router.get("/{resource_type}/{resource_id}")
def read(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx.check_type(request, resource_type)
    who = ctx.caller(request, resource_type, "read")
    if resource_type == "CarePlan" and careplan_ops.wants_page(request):  # a page the person can be handed
        return careplan_ops.page_response(request, resource_id, who)
    bridge = ctx.state(request).bridge
    stored = bridge.access.check_read(who, bridge.repository.read(resource_type, resource_id))
    return ctx.render(request, _elements(request, stored.resource), 200, ctx.version_headers(request, stored))


@router.post("/{resource_type}")
async def create(request: Request, resource_type: str) -> Response:
    ctx.check_type(request, resource_type)
    who = ctx.caller(request, resource_type, "write")
    resource = ctx.parse_resource(request, await ctx.read_body(request))
    if resource.get("resourceType") != resource_type:
        raise InputError(f"POST to {resource_type} with a {resource.get('resourceType')!r} body")
    condition = request.headers.get("if-none-exist")
    criteria = _query(condition) if condition is not None else None
    service = ctx.state(request).bridge.resources
    done = await run_in_threadpool(service.create, resource, who, if_none_exist=criteria)
    return ctx.written(request, done.result.stored, 201 if done.result.created else 200, done.issues)


@router.put("/{resource_type}/{resource_id}")
async def update(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx.check_type(request, resource_type)
    who = ctx.caller(request, resource_type, "write")
    resource = ctx.parse_resource(request, await ctx.read_body(request))
    service = ctx.state(request).bridge.resources
    done = await run_in_threadpool(service.update, resource_type, resource_id, resource, who,
                                   if_match=ctx.if_match(request))
    return ctx.written(request, done.result.stored, 201 if done.result.created else 200, done.issues)


@router.put("/{resource_type}")
async def conditional_update(request: Request, resource_type: str) -> Response:
    ctx.check_type(request, resource_type)
    who = ctx.caller(request, resource_type, "write")
    criteria = _criteria(request)
    resource = ctx.parse_resource(request, await ctx.read_body(request))
    service = ctx.state(request).bridge.resources
    done = await run_in_threadpool(service.conditional_update, resource_type, criteria, resource, who)
    return ctx.written(request, done.result.stored, 201 if done.result.created else 200, done.issues)


@router.patch("/{resource_type}/{resource_id}")
async def patch(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx.check_type(request, resource_type)
    who = ctx.caller(request, resource_type, "write")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json-patch+json":
        raise UnsupportedFormat("PATCH takes a JSON Patch document (Content-Type: application/json-patch+json)")
    operations = loads_json(await ctx.read_body(request))
    service = ctx.state(request).bridge.resources
    done = await run_in_threadpool(service.patch, resource_type, resource_id, operations, who,
                                   if_match=ctx.if_match(request))
    return ctx.written(request, done.result.stored, 200, done.issues)


@router.delete("/{resource_type}/{resource_id}")
def delete(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx.check_type(request, resource_type)
    who = ctx.caller(request, resource_type, "write")
    stored = ctx.state(request).bridge.resources.delete(resource_type, resource_id, who, if_match=ctx.if_match(request))
    message = f"Deleted {resource_type}/{resource_id}" if stored else f"{resource_type}/{resource_id} was already absent"
    headers = {"ETag": stored.etag} if stored else None
    return ctx.render(request, operation_outcome([Issue("information", "informational", message)]), 200, headers)


# -- helpers -----------------------------------------------------------------------------------------
def _query(text: str) -> list[tuple[str, str]]:
    text = text.split("?", 1)[-1]
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        raise InputError(f"The condition {text!r} has no search criteria")
    return pairs


def _criteria(request: Request) -> list[tuple[str, str]]:
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k not in CONTROL_PARAMS]
    if not pairs:
        raise InputError("A conditional update needs search criteria in the URL")
    return pairs


def _elements(request: Request, resource: dict | None) -> dict | None:
    """`_elements` and `_summary` on a read: keep the named top-level elements (marked SUBSETTED)."""
    wanted = request.query_params.get("_elements")
    if not wanted or resource is None:
        return resource
    keep = {"resourceType", "id", "meta"} | {e.strip() for e in wanted.split(",") if e.strip()}
    subset = {k: v for k, v in resource.items() if k in keep}
    meta = dict(subset.get("meta", {}))
    meta["tag"] = meta.get("tag", []) + [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                                          "code": "SUBSETTED"}]
    subset["meta"] = meta
    return subset


def _search(request: Request, resource_type: str, params: list[tuple[str, str]]) -> Response:
    ctx.check_type(request, resource_type)
    who = ctx.caller(request, resource_type, "read")
    bridge = ctx.state(request).bridge
    strict = ctx.prefer(request, "handling") == "strict"
    base = ctx.base_url(request)
    search_params = [(k, v) for k, v in params if k not in CONTROL_PARAMS]
    query = parse_search(resource_type, search_params, bridge.registry, strict=strict, base_url=base)
    query.visible_to = bridge.access.scope(who)  # other people's resources are left out, counts too
    result = bridge.repository.search(query)
    bundle = _searchset(request, resource_type, search_params, query, result, base)
    return ctx.render(request, bundle)


def _searchset(request: Request, resource_type: str, params, query, result: SearchResult, base: str) -> dict:
    bundle: dict = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    bundle["link"] = _paging_links(resource_type, params, result, base)
    entries = [_entry(s, base, "match", request) for s in result.matches]
    entries += [_entry(s, base, "include", request) for s in result.included]
    if getattr(query, "ignored", None):
        outcome = operation_outcome([Issue("warning", "not-supported", f"Search parameter {name!r} is not supported: ignored")
                                     for name in query.ignored])
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(stored: Stored, base: str, mode: str, request: Request) -> dict:
    return {"fullUrl": f"{base}/{stored.resource_type}/{stored.resource_id}",
            "resource": _elements(request, stored.resource), "search": {"mode": mode}}


def _paging_links(resource_type: str, params, result: SearchResult, base: str) -> list[dict]:
    return page_links(f"{base}/{resource_type}", params, result.offset, result.count, result.total,
                      len(result.matches))


def page_links(url: str, params, offset: int, count: int, total: int | None, returned: int) -> list[dict]:
    """self / first / previous / next / last by _offset, so every page can be reached from any other."""
    kept = [(k, v) for k, v in params if k not in ("_offset", "_count")]
    count = max(count, 1)

    def link(relation: str, at: int) -> dict:
        return {"relation": relation, "url": f"{url}?" + urlencode(kept + [("_count", str(count)), ("_offset", str(at))])}

    links = [link("self", offset), link("first", 0)]
    if offset > 0:
        links.append(link("previous", max(offset - count, 0)))
    if total is not None:
        if offset + count < total:
            links.append(link("next", offset + count))
        links.append(link("last", max((total - 1) // count * count, 0)))
    elif returned == count:
        links.append(link("next", offset + count))
    return links


def _history(request: Request, resource_type: str | None, resource_id: str | None, who) -> Response:
    params = request.query_params
    since = params.get("_since")
    count = max(_int_param(params.get("_count"), 50, "_count"), 1)
    offset = _int_param(params.get("_offset"), 0, "_offset")
    since_us = to_microseconds(since) if since else None
    if since and since_us is None:
        raise InputError(f"_since={since!r} is not a FHIR instant")
    repo = ctx.state(request).bridge.repository
    total, versions = repo.history(resource_type, resource_id, since=since_us, count=min(count, HISTORY_MAX), offset=offset,
                                   visible_to=ctx.state(request).bridge.access.scope(who))
    if resource_id and total == 0 and since_us is None:
        raise NotFound(f"{resource_type}/{resource_id} has never existed here")
    base = ctx.base_url(request)
    bundle = {"resourceType": "Bundle", "type": "history", "total": total, "entry": [_history_entry(v, base) for v in versions]}
    if not bundle["entry"]:
        del bundle["entry"]
    path = "/".join(p for p in (base, resource_type, resource_id, "_history") if p)
    bundle["link"] = page_links(path, params.multi_items(), offset, count, total, len(versions))
    return ctx.render(request, bundle)


def _history_entry(stored: Stored, base: str) -> dict:
    url = f"{stored.resource_type}/{stored.resource_id}"
    entry: dict = {"fullUrl": f"{base}/{url}"}
    if stored.resource is not None:
        entry["resource"] = stored.resource
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(stored.method, "200 OK")
    entry["request"] = {"method": stored.method, "url": url if stored.method != "POST" else stored.resource_type}
    entry["response"] = {"status": status, "etag": stored.etag, "lastModified": stored.last_updated_instant}
    return entry


def _int_param(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    if not value.isdigit():
        raise InputError(f"{name}={value!r} must be a whole number")
    return int(value)
