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


def serve_definitions(router: APIRouter, resource_type: str) -> None:
    """`GET [type]?url=` and `GET [type]/[id]` on `router` for conformance resources of that type,
    read-only from the data loaded at start-up (OperationDefinition here, Measure for the reports).
    Register a type's operations (`[type]/$op`) on the router before calling this."""
    register_read_only(resource_type, [{"name": "url", "type": "uri"}])

    def definitions(request: Request) -> list[dict]:
        return ctx.state(request).bridge.package.of_type(resource_type)

    @router.get(f"/{resource_type}")
    def search(request: Request) -> Response:
        ctx.caller(request, resource_type, "read")
        url = request.query_params.get("url")
        found = [d for d in definitions(request)
                 if url is None or url in (d.get("url"), f"{d.get('url')}|{d.get('version')}")]
        base = ctx.base_url(request)
        bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": len(found)}
        if found:
            bundle["entry"] = [{"fullUrl": f"{base}/{resource_type}/{d['id']}", "resource": d,
                                "search": {"mode": "match"}} for d in found]
        return ctx.render(request, bundle)

    @router.get(f"/{resource_type}/{{definition_id}}")
    def read(request: Request, definition_id: str) -> Response:
        ctx.caller(request, resource_type, "read")
        for definition in definitions(request):
            if definition.get("id") == definition_id:
                return ctx.render(request, definition)
        raise NotFound(f"{resource_type}/{definition_id} is not known here")


serve_definitions(router, "OperationDefinition")
