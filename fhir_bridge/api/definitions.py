"""The project's OperationDefinitions (profiles/OperationDefinition-*.json), served read-only from
the conformance data like the terminology resources: `GET OperationDefinition/[id]` and
`GET OperationDefinition?url=`, so the canonicals the CapabilityStatement lists resolve here."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_bridge.api import context as ctx
from fhir_bridge.api.capability import register_read_only
from fhir_bridge.errors import NotFound

router = APIRouter(prefix=ctx.FHIR_BASE)
TYPE = "OperationDefinition"
register_read_only(TYPE, [{"name": "url", "type": "uri"}])


def _definitions(request: Request) -> list[dict]:
    return ctx.state(request).bridge.package.of_type(TYPE)


@router.get(f"/{TYPE}")
def search(request: Request) -> Response:
    ctx.caller(request, TYPE, "read")
    url = request.query_params.get("url")
    found = [d for d in _definitions(request) if url is None or url in (d.get("url"), f"{d.get('url')}|{d.get('version')}")]
    base = ctx.base_url(request)
    bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": len(found)}
    if found:
        bundle["entry"] = [{"fullUrl": f"{base}/{TYPE}/{d['id']}", "resource": d, "search": {"mode": "match"}}
                           for d in found]
    return ctx.render(request, bundle)


@router.get(f"/{TYPE}/{{definition_id}}")
def read(request: Request, definition_id: str) -> Response:
    ctx.caller(request, TYPE, "read")
    for definition in _definitions(request):
        if definition.get("id") == definition_id:
            return ctx.render(request, definition)
    raise NotFound(f"{TYPE}/{definition_id} is not known here")
