"""GET /metadata: the CapabilityStatement, generated from what this server really has registered:
its resource types, their search parameters, the operations mounted, the profiles loaded."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_bridge import __version__
from fhir_bridge.api import context as ctx

router = APIRouter(prefix=ctx.FHIR_BASE)
INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"]
OPERATIONS: dict[str, list[dict]] = {}  # resource type ("*" system level, "Resource" every type) -> [{name, definition}]
READ_ONLY: dict[str, list[dict]] = {}   # types served from the project's data, not stored -> their searchParams


def register_operation(resource_type: str, name: str, definition: str) -> None:
    """Called by the modules that mount operations, so /metadata lists exactly what exists."""
    entry = {"name": name, "definition": definition}
    if entry not in OPERATIONS.setdefault(resource_type, []):
        OPERATIONS[resource_type].append(entry)


def register_read_only(resource_type: str, search_params: list[dict]) -> None:
    """A type answered from data files (read and search only), e.g. the project's CodeSystems."""
    READ_ONLY[resource_type] = search_params


@router.get("/metadata")
def metadata(request: Request) -> Response:
    return ctx.render(request, capability_statement(request))


def capability_statement(request: Request) -> dict:
    st = ctx.state(request)
    bridge = st.bridge
    profiles: dict[str, list[str]] = {}
    for url, node in sorted(bridge.validator.profile_nodes.items()):
        profiles.setdefault(node.type_name, []).append(url)
    resources = []
    for rtype in sorted(st.resource_types):
        entry = {
            "type": rtype,
            "interaction": [{"code": code} for code in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalDelete": "not-supported",
            "searchInclude": [f"{rtype}:{p.code}" for p in bridge.registry.for_type(rtype).values() if p.type == "reference"],
            "searchRevInclude": ["Provenance:target"],
            "searchParam": [{"name": p.code, "type": p.type, **({"definition": p.url} if getattr(p, "url", None) else {})}
                            for p in sorted(bridge.registry.for_type(rtype).values(), key=lambda p: p.code)],
        }
        if rtype in profiles:
            entry["supportedProfile"] = profiles[rtype]
        operations = OPERATIONS.get(rtype, []) + OPERATIONS.get("Resource", [])
        if operations:
            entry["operation"] = operations
        resources.append(entry)
    for rtype in sorted((set(OPERATIONS) | set(READ_ONLY)) - {"*", "Resource"} - st.resource_types):
        entry = {"type": rtype}
        if rtype in READ_ONLY:
            entry["interaction"] = [{"code": "read"}, {"code": "search-type"}]
            entry["searchParam"] = READ_ONLY[rtype]
        if OPERATIONS.get(rtype):
            entry["operation"] = OPERATIONS[rtype]
        resources.append(entry)
    rest = {
        "mode": "server",
        "security": {
            "cors": False,
            "description": ("Bearer tokens issued per partner organisation with SMART v1 system scopes "
                            "(system/<Type>.read|write). A partner sees and changes a person's records only "
                            "while it holds their record, is on their care team, or has a referral, episode "
                            "of care or consent naming it (else 403; searches leave them out). /metadata is public."
                            if st.tokens is not None else "AUTHENTICATION IS OFF (--insecure-dev): local experiments only."),
        },
        "resource": resources,
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
    }
    if OPERATIONS.get("*"):
        rest["operation"] = OPERATIONS["*"]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "fhir-bridge",
        "kind": "instance",
        "software": {"name": "fhir-bridge", "version": __version__},
        "implementation": {"description": "fhir-bridge FHIR R4 server", "url": ctx.base_url(request)},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
