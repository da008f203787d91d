"""Transaction and batch Bundles: `POST [base]`.

A transaction is all or nothing: its writes share one unit of work (one database transaction), in
the FHIR order DELETE, POST, PUT/PATCH, GET. Before anything is written, every POST gets its id, so
`urn:uuid:` (and `Type/id`) fullUrls can be rewritten to `Type/id` in every `reference` of every
entry, and conditional references (`Patient?identifier=...|...`) are resolved by search. The first
failing entry rolls everything back; the answer is that entry's status with an OperationOutcome
naming `Bundle.entry[n]`.

A batch runs each entry on its own (its own unit of work, in Bundle order) and reports each.

Conditions (ifNoneExist, conditional update, conditional references) are matched against what was
stored before the transaction, except that one ifNoneExist repeated in the same transaction names one
resource. GET search and vread entries see the state before the transaction; reads by id see its writes.
Not supported: conditional DELETE, PATCH by criteria, FHIRPath Patch (Parameters), operations inside
bundles.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Callable
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from fhir_bridge.api import context as ctx
from fhir_bridge.api.auth import USER_HEADER, authorize
from fhir_bridge.bridge import Bridge
from fhir_bridge.errors import BridgeError, InputError, PreconditionFailed, Unprocessable
from fhir_bridge.fhir.codec import loads_json
from fhir_bridge.fhir.outcome import Issue, issues_from_outcome, operation_outcome
from fhir_bridge.pipelines.resources import SYSTEM_CALLER, Caller, Written
from fhir_bridge.store.search import parse_search
from fhir_bridge.store.repository import UnitOfWork
from fhir_bridge.store.types import Stored, WriteResult

router = APIRouter(prefix=ctx.FHIR_BASE)

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3}
JSON_PATCH = "application/json-patch+json"
CONTROL_PARAMS = {"_format", "_pretty"}
_CONDITIONAL_REFERENCE = re.compile(r"([A-Z][A-Za-z]+)\?(.+)")
_PLACEHOLDER = ("urn:uuid:", "urn:oid:")


@dataclass
class Entry:
    index: int
    method: str
    resource_type: str
    resource_id: str | None = None          # from the url; for POST, the id assigned in advance
    version_id: int | None = None           # GET [type]/[id]/_history/[vid]
    criteria: list[tuple[str, str]] | None = None  # conditional PUT, or GET search
    resource: dict | None = None
    patch: list | None = None
    full_url: str | None = None
    if_none_exist: list[tuple[str, str]] | None = None
    if_match: int | None = None
    existing: Stored | None = None          # a conditional create that matched
    same_as: int | None = None              # a conditional create repeating an earlier entry's condition

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def mode(self) -> str:
        return "read" if self.method == "GET" else "write"


@router.post("")
@router.post("/")
async def process(request: Request) -> Response:
    who = _who(request)  # 401 before the body is even read
    bundle = ctx.parse_resource(request, await ctx.read_body(request))
    if bundle.get("resourceType") != "Bundle":
        raise InputError(f"POST to the base takes a transaction or batch Bundle, not a {bundle.get('resourceType')!r}")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise InputError(f"POST to the base takes a transaction or batch Bundle, not type {kind!r}",
                         expression="Bundle.type")
    problems = await run_in_threadpool(_structure_problems, ctx.state(request).bridge, bundle)
    if problems is not None:
        return ctx.render(request, problems, 400)
    run = _transaction if kind == "transaction" else _batch
    return await run_in_threadpool(run, request, who, bundle)


def _who(request: Request) -> Caller:
    """Authenticate only: each entry is authorised for its own type and mode."""
    st = ctx.state(request)
    if st.tokens is None:
        return SYSTEM_CALLER
    return st.tokens.authenticate(request.headers.get("authorization"), request.headers.get(USER_HEADER))


def _structure_problems(bridge: Bridge, bundle: dict) -> dict | None:
    """The Bundle's own structure and invariants, checked without its entries' resources: those are
    validated (against their profiles) when written, and validating them twice would double the cost."""
    entries = bundle.get("entry")
    shell = bundle
    if type(entries) is list:
        shell = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} if type(e) is dict else e
                                     for e in entries]}
    result = bridge.validator.validate(shell)
    return None if result.valid else result.outcome()


# -- transaction -------------------------------------------------------------------------------------
def _transaction(request: Request, who: Caller, bundle: dict) -> Response:
    bridge = ctx.state(request).bridge
    raw = bundle.get("entry") or []
    current = 0  # the entry being worked on: any failure names it
    try:
        entries = []
        for current, item in enumerate(raw):
            entries.append(_parse_entry(request, current, item))
        for entry in entries:
            current = entry.index
            authorize(who, entry.resource_type, entry.mode)  # one forbidden entry refuses the whole
        ordered = sorted(entries, key=lambda e: ORDER[e.method])  # stable: Bundle order within a method
        placeholders: dict[str, str] = {}
        claimed: dict[tuple, Entry] = {}
        for entry in ordered:
            current = entry.index
            placeholders.update(_identify(bridge, entry, claimed))
        for entry in entries:
            current = entry.index
            entry.resource = _rewritten(bridge, entry, placeholders)
        results: dict[int, dict] = {}
        with bridge.repository.unit_of_work() as uow:
            for entry in ordered:
                current = entry.index
                results[entry.index] = (_repeat(results[entry.same_as]) if entry.same_as is not None
                                        else _perform(request, bridge, who, entry, uow))
    except BridgeError as exc:  # the unit of work has rolled back: nothing was written
        return ctx.render(request, _failure(current, raw[current], exc,
                                            "the transaction was rolled back: nothing was written"), exc.http_status)
    return ctx.render(request, {"resourceType": "Bundle", "type": "transaction-response",
                                "entry": [results[i] for i in range(len(raw))]})


# -- batch -----------------------------------------------------------------------------------------
def _batch(request: Request, who: Caller, bundle: dict) -> Response:
    bridge = ctx.state(request).bridge
    answers = []
    for index, item in enumerate(bundle.get("entry") or []):
        try:
            entry = _parse_entry(request, index, item)
            authorize(who, entry.resource_type, entry.mode)
            _identify(bridge, entry, {})
            entry.resource = _rewritten(bridge, entry, {})  # entries are independent: no placeholders
            if entry.method == "GET":  # a read needs no write lock
                answers.append(_perform(request, bridge, who, entry, None))
                continue
            with bridge.repository.unit_of_work() as uow:
                answers.append(_perform(request, bridge, who, entry, uow))
        except BridgeError as exc:
            outcome = _failure(index, item, exc, "other entries were processed on their own")
            answers.append({"response": {"status": _status(exc.http_status), "outcome": outcome}})
    return ctx.render(request, {"resourceType": "Bundle", "type": "batch-response", "entry": answers})


# -- entries -------------------------------------------------------------------------------------------
def _parse_entry(request: Request, index: int, item: object) -> Entry:
    where = f"Bundle.entry[{index}]"
    if type(item) is not dict or type(item.get("request")) is not dict:
        raise InputError(f"{where} has no request", expression=f"{where}.request")
    req = item["request"]
    method = str(req.get("method", "")).upper()
    if method not in ORDER:
        raise InputError(f"{where}.request.method must be one of {sorted(ORDER)}", expression=f"{where}.request.method")
    url = req.get("url")
    if type(url) is not str or not url.strip():
        raise InputError(f"{where}.request.url is required", expression=f"{where}.request.url")
    path, _, query = _relative(request, url.strip(), where).partition("?")
    parts = path.strip("/").split("/")
    if len(parts) > 1 and parts[1].startswith(("$", "_")):
        raise InputError(f"{where}: operations and history are not supported inside a Bundle ({url})",
                         expression=f"{where}.request.url")
    ctx.check_type(request, parts[0])
    entry = Entry(index, method, parts[0], full_url=item.get("fullUrl"), resource=item.get("resource"),
                  if_match=_version(req.get("ifMatch"), where))
    if query:
        entry.criteria = parse_qsl(query, keep_blank_values=True)
    if len(parts) >= 2:
        entry.resource_id = parts[1]
    if len(parts) == 4 and parts[2] == "_history" and parts[3].isdigit():
        entry.version_id = int(parts[3])
    shape = {1: "type", 2: "instance"}.get(len(parts), "version" if entry.version_id else None)
    supported = {
        "POST": shape == "type" and not query,
        "PUT": (shape == "instance" and not query) or (shape == "type" and bool(query)),  # PUT Type?criteria
        "PATCH": shape == "instance" and not query,
        "DELETE": shape == "instance" and not query,
        "GET": shape == "type" or (shape is not None and not query),
    }[method]
    if not supported:
        raise InputError(f"{where}: {method} {url} is not supported here (nor are conditional DELETE and PATCH)",
                         expression=f"{where}.request.url")
    if method in ("POST", "PUT"):
        _check_resource(entry)
    if method == "PATCH":
        entry.patch = _json_patch(entry.resource, where)
    if method == "POST" and req.get("ifNoneExist"):
        entry.if_none_exist = parse_qsl(str(req["ifNoneExist"]).split("?", 1)[-1], keep_blank_values=True)
    return entry


def _relative(request: Request, url: str, where: str) -> str:
    if not url.startswith(("http://", "https://")):
        return url
    base = ctx.base_url(request) + "/"
    if not url.startswith(base):
        raise InputError(f"{where}.request.url {url} is not on this server", expression=f"{where}.request.url")
    return url[len(base):]


def _version(value: object, where: str) -> int | None:
    """`W/"3"` -> 3."""
    if value is None:
        return None
    text = str(value).strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InputError(f"{where}.request.ifMatch must be a version ETag such as W/\"3\"",
                         expression=f"{where}.request.ifMatch")
    return int(text)


def _check_resource(entry: Entry) -> None:
    if type(entry.resource) is not dict:
        raise InputError(f"{entry.where}: {entry.method} needs a resource", expression=f"{entry.where}.resource")
    if entry.resource.get("resourceType") != entry.resource_type:
        raise InputError(f"{entry.where}: {entry.method} to {entry.resource_type} carries a "
                         f"{entry.resource.get('resourceType')!r}", expression=f"{entry.where}.resource")


def _json_patch(resource: object, where: str) -> list:
    """A PATCH entry carries its JSON Patch as a Binary (the Bundle has no other place for it)."""
    binary = type(resource) is dict and resource.get("resourceType") == "Binary"
    if not binary or resource.get("contentType") != JSON_PATCH:
        raise InputError(f"{where}: a PATCH entry needs a Binary with contentType {JSON_PATCH} "
                         "(FHIRPath Patch is not supported)", expression=f"{where}.resource")
    try:
        document = base64.b64decode(str(resource.get("data", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{where}: Binary.data is not base64", expression=f"{where}.resource.data") from exc
    patch = loads_json(document)
    if type(patch) is not list:
        raise InputError(f"{where}: a JSON Patch is a JSON array of operations", expression=f"{where}.resource.data")
    return patch


# -- identities and references ------------------------------------------------------------------------
def _identify(bridge: Bridge, entry: Entry, claimed: dict[tuple, Entry]) -> dict[str, str]:
    """Settle which resource a POST or PUT entry will be, before anything is written; the fullUrl
    aliases that other entries' references to it will be rewritten from."""
    if entry.method == "POST":
        if entry.if_none_exist is not None:
            key = (entry.resource_type, tuple(sorted(entry.if_none_exist)))
            if key in claimed:  # the same condition twice in one transaction: one resource
                entry.same_as, entry.resource_id = claimed[key].index, claimed[key].resource_id
            else:
                entry.existing = _one_match(bridge, entry.resource_type, entry.if_none_exist, "conditional create")
                claimed[key] = entry
        if entry.resource_id is None:
            entry.resource_id = entry.existing.resource_id if entry.existing else bridge.resources.new_id()
    elif entry.method == "PUT" and entry.criteria is not None:
        match = _one_match(bridge, entry.resource_type, entry.criteria, "conditional update")
        if match is not None:
            entry.resource_id = match.resource_id
        else:  # will be created: with the body's id, or one chosen now so references can point at it
            entry.resource_id = entry.resource.get("id") or bridge.resources.new_id()
            entry.resource = {**entry.resource, "id": entry.resource_id}
    if entry.method not in ("POST", "PUT") or not entry.full_url:
        return {}
    target = f"{entry.resource_type}/{entry.resource_id}"
    aliases = {entry.full_url: target}
    if entry.method == "POST" and not entry.full_url.startswith(_PLACEHOLDER):
        # A POST's `[base/]Type/id` fullUrl is the sender's id for it: references by either form move too.
        aliases["/".join(entry.full_url.rstrip("/").split("/")[-2:])] = target
    return aliases


def _one_match(bridge: Bridge, resource_type: str, criteria: list[tuple[str, str]], what: str) -> Stored | None:
    matches = bridge.find(resource_type, criteria)
    if len(matches) > 1:
        raise PreconditionFailed(f"The {what} criteria match {len(matches)} {resource_type} resources; "
                                 "they must select one at most")
    return matches[0] if matches else None


def _rewritten(bridge: Bridge, entry: Entry, placeholders: dict[str, str]) -> dict | None:
    if entry.method not in ("POST", "PUT"):
        return entry.resource
    resolved: dict[str, str] = {}

    def resolve(reference: str, expression: str) -> str:
        if reference in placeholders:
            return placeholders[reference]
        if reference.startswith(_PLACEHOLDER):
            raise InputError(f"{reference} is not the fullUrl of any POST or PUT entry in this Bundle",
                             expression=expression)
        conditional = _CONDITIONAL_REFERENCE.fullmatch(reference)
        if conditional is None:
            return reference
        if reference not in resolved:
            resolved[reference] = _resolve_conditional(bridge, reference, *conditional.groups(), expression)
        return resolved[reference]

    return _rewrite(entry.resource, f"{entry.where}.resource", resolve)


def _resolve_conditional(bridge: Bridge, reference: str, resource_type: str, query: str, expression: str) -> str:
    matches = bridge.find(resource_type, parse_qsl(query, keep_blank_values=True))
    if len(matches) != 1:
        raise PreconditionFailed(f"The conditional reference {reference} matches {len(matches)} {resource_type} "
                                 "resources; it must match exactly one", expression=expression)
    return f"{resource_type}/{matches[0].resource_id}"


def _rewrite(value: object, path: str, resolve: Callable[[str, str], str]) -> object:
    """A copy with every `reference` string (Reference, and so valueReference in extensions) resolved."""
    if type(value) is dict:
        return {k: resolve(v, f"{path}.{k}") if k == "reference" and type(v) is str
                else _rewrite(v, f"{path}.{k}", resolve) for k, v in value.items()}
    if type(value) is list:
        return [_rewrite(v, f"{path}[{i}]", resolve) for i, v in enumerate(value)]
    return value


# -- performing one entry ----------------------------------------------------------------------------
def _perform(request: Request, bridge: Bridge, who: Caller, entry: Entry, uow: UnitOfWork | None) -> dict:
    """One entry in the given unit of work; its transaction-/batch-response entry."""
    service, rtype = bridge.resources, entry.resource_type
    if entry.method == "DELETE":
        stored = service.delete(rtype, entry.resource_id, who, if_match=entry.if_match, uow=uow)
        response = {"status": _status(204)}
        if stored is not None:
            response["etag"] = stored.etag
        return {"response": response}
    if entry.method == "GET":
        return _get(request, bridge, who, entry, uow)
    if entry.method == "POST":
        if entry.existing is not None:
            bridge.access.check_read(who, entry.existing, uow)  # the match is answered: the caller must see it
            return _written(request, Written(WriteResult(entry.existing, created=False, unchanged=True)), 200)
        done = service.create(entry.resource, who, uow=uow, assigned_id=entry.resource_id)
        return _written(request, done, 201)
    if entry.method == "PATCH":
        done = service.patch(rtype, entry.resource_id, entry.patch, who, if_match=entry.if_match, uow=uow)
        return _written(request, done, 200)
    if entry.criteria is not None:
        done = service.conditional_update(rtype, entry.criteria, entry.resource, who, uow=uow)
    else:
        done = service.update(rtype, entry.resource_id, entry.resource, who, if_match=entry.if_match, uow=uow)
    return _written(request, done, 201 if done.result.created else 200)


def _get(request: Request, bridge: Bridge, who: Caller, entry: Entry, uow: UnitOfWork | None) -> dict:
    base = ctx.base_url(request)
    if entry.resource_id is None:
        params = [(k, v) for k, v in entry.criteria or [] if k not in CONTROL_PARAMS]
        query = parse_search(entry.resource_type, params, bridge.registry,
                             strict=ctx.prefer(request, "handling") == "strict", base_url=base)
        query.visible_to = bridge.access.scope(who)
        found = bridge.repository.search(query)
        bundle: dict = {"resourceType": "Bundle", "type": "searchset"}
        if found.total is not None:
            bundle["total"] = found.total
        hits = [(s, "match") for s in found.matches] + [(s, "include") for s in found.included]
        if hits:
            bundle["entry"] = [{"fullUrl": f"{base}/{s.resource_type}/{s.resource_id}", "resource": s.resource,
                                "search": {"mode": mode}} for s, mode in hits]
        return {"resource": bundle, "response": {"status": _status(200)}}
    if entry.version_id is not None:
        stored = bridge.repository.vread(entry.resource_type, entry.resource_id, entry.version_id)
    else:
        stored = (uow or bridge.repository).read(entry.resource_type, entry.resource_id)
    bridge.access.check_read(who, stored, uow)
    return {"fullUrl": f"{base}/{stored.resource_type}/{stored.resource_id}", "resource": stored.resource,
            "response": {"status": _status(200), "etag": stored.etag, "lastModified": stored.last_updated_instant}}


def _written(request: Request, done: Written, status: int) -> dict:
    """A write's response entry, shaped by `Prefer: return=` as a single write would be."""
    stored = done.result.stored
    answer: dict = {}
    response = {"status": _status(status), "location": stored.location, "etag": stored.etag,
                "lastModified": stored.last_updated_instant}
    choice = ctx.prefer(request, "return")
    if choice not in ("minimal", "operationoutcome"):
        answer = {"fullUrl": f"{ctx.base_url(request)}/{stored.resource_type}/{stored.resource_id}",
                  "resource": stored.resource}
    if choice == "operationoutcome" or done.issues:  # warnings travel with the success they qualify
        response["outcome"] = operation_outcome(done.issues)
    answer["response"] = response
    return answer


def _repeat(first: dict) -> dict:
    """A conditional create repeating an earlier entry's condition: the resource exists by now."""
    return {**first, "response": {**first["response"], "status": _status(200)}}


def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


# -- failures --------------------------------------------------------------------------------------
def _failure(index: int, item: object, exc: BridgeError, consequence: str) -> dict:
    """An OperationOutcome naming `Bundle.entry[n]`; a resource's own issues are moved under it."""
    where = f"Bundle.entry[{index}]"
    req = item.get("request") if type(item) is dict and type(item.get("request")) is dict else {}
    label = f"{req.get('method', '?')} {req.get('url', '?')}"
    resource = item.get("resource") if type(item) is dict else None
    rtype = resource.get("resourceType") if type(resource) is dict else None
    details = issues_from_outcome(exc.outcome) if isinstance(exc, Unprocessable) and exc.outcome else []
    # With details (a resource's validation issues) the lead names the entry and they point inside it.
    lead = Issue("error", exc.code, f"{where} ({label}) failed: {exc.message}; {consequence}",
                 where if details else _rebase(exc.expression, where, rtype))
    return operation_outcome([lead, *(replace(i, expression=_rebase(i.expression, where, rtype)) for i in details)])


def _rebase(expression: str | None, where: str, rtype: str | None) -> str:
    """`QuestionnaireResponse.item[3]` -> `Bundle.entry[1].resource.item[3]`."""
    if expression and expression.startswith("Bundle.entry["):
        return expression
    if expression and rtype and (expression == rtype or expression.startswith(f"{rtype}.")):
        return f"{where}.resource{expression[len(rtype):]}"
    return where
