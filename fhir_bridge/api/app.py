"""The FastAPI application factory. Nothing is built at import time: `create_app(bridge, ...)`."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio

from fastapi import FastAPI

from fhir_bridge.api import capability, errors, rest
from fhir_bridge.api.auth import TokenStore
from fhir_bridge.api.context import ApiState
from fhir_bridge.bridge import Bridge

log = logging.getLogger("fhir_bridge.api")

# The types partners and the mappers exchange; terminology and conformance resources are served
# from the project's data by operations, not stored.
RESOURCE_TYPES = frozenset({
    "Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson", "Questionnaire",
    "QuestionnaireResponse", "Observation", "CarePlan", "Goal", "CareTeam", "Provenance", "Encounter",
    "EpisodeOfCare", "ServiceRequest", "Condition", "Consent",
})
DEFAULT_MAX_BODY = 5 * 1024 * 1024


def create_app(bridge: Bridge, *, tokens: TokenStore | None, max_body_bytes: int = DEFAULT_MAX_BODY,
               resource_types: frozenset[str] = RESOURCE_TYPES, worker_threads: int = 4) -> FastAPI:
    """`tokens=None` switches authentication off: only for local experiments (`--insecure-dev`)."""
    if tokens is None:
        log.warning("AUTHENTICATION IS OFF: every request is accepted as the fhir-bridge system. "
                    "Never expose this server to a network.")
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Handlers are synchronous and run in anyio's thread pool (40 threads by default). On a
        # 2-core machine 16 busy threads only fight over the GIL: a small pool keeps the cores
        # busy and lets the others queue in the event loop, where queueing is cheap.
        anyio.to_thread.current_default_thread_limiter().total_tokens = worker_threads
        yield

    app = FastAPI(title="fhir-bridge", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.fhir = ApiState(bridge, tokens, max_body_bytes, resource_types)
    errors.install(app)
    app.include_router(capability.router)
    _include_optional(app)
    app.include_router(rest.router)
    return app


def _include_optional(app: FastAPI) -> None:
    """Routers with fixed path segments ($operations, the terminology resources, the base for bundles)
    go before the generic /{type}/{id} routes so that `$validate` is never read as an id."""
    from fhir_bridge.api import (bundles, careplan_ops, definitions, ingest_op, operations, outcome_ops,
                                terminology_ops)

    app.include_router(careplan_ops.router)
    app.include_router(definitions.router)
    app.include_router(ingest_op.router)
    app.include_router(operations.router)
    app.include_router(outcome_ops.router)
    app.include_router(terminology_ops.router)
    app.include_router(bundles.router)
