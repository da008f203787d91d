"""Assembles fhir-bridge from its Settings: conformance data, validator, database, repository,
search, services. The API, the CLI and tests build one `Bridge` and pass it down; nothing is
created at import time.
"""
from __future__ import annotations

from typing import Callable

from fhir_bridge.config import Settings
from fhir_bridge.measures import load_dialog_definition
from fhir_bridge.pipelines.identity import IdentityResolver
from fhir_bridge.pipelines.resources import ResourceService
from fhir_bridge.pipelines.score_rows import ScoreRows
from fhir_bridge.store.database import open_database
from fhir_bridge.store.indexer import Indexer
from fhir_bridge.store.migrations import migrate
from fhir_bridge.store.repository import Repository
from fhir_bridge.store.search import parse_search
from fhir_bridge.store.search_parameters import SearchParameterRegistry
from fhir_bridge.store.types import Stored
from fhir_bridge.validation import Validator


class Bridge:
    def __init__(self, settings: Settings, *, clock: Callable[[], int] | None = None,
                 new_id: Callable[[], str] | None = None, validator: Validator | None = None):
        self.settings = settings
        self.validator = validator or Validator.load(settings)
        self.terminology = self.validator.terminology
        self.package = self.validator.package
        self.dialog = load_dialog_definition(settings.profiles_dir, settings.terminology_dir)
        self.registry = SearchParameterRegistry.load(self.package)
        self.database = open_database(settings.database_url, settings.data_dir)
        migrate(self.database)
        score_rows = ScoreRows(self.dialog, {"sqol": settings.min_answered_sqol,
                                             "treatment": settings.min_answered_treatment})
        self.repository = Repository(self.database, Indexer(self.registry, base_url=settings.base_url), clock=clock,
                                     score_rows=score_rows)
        kwargs = {"new_id": new_id} if new_id else {}
        self.resources = ResourceService(self.repository, self.validator, find=self.find, **kwargs)
        self.identity = IdentityResolver(self.repository, self.find, settings.source_trust)

    def find(self, resource_type: str, params: list[tuple[str, str]], base_url: str = "") -> list[Stored]:
        """Current resources matching search criteria (conditional create/update/references)."""
        request = parse_search(resource_type, params + [("_count", "2")], self.registry, strict=True,
                               base_url=base_url)
        return self.repository.search(request).matches

    def close(self) -> None:
        self.database.dispose()
