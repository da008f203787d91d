"""Assembles fhir-bridge from its Settings: conformance data, validator, database, repository,
search, services. The API, the CLI and tests build one `Bridge` and pass it down; nothing is
created at import time.
"""
from __future__ import annotations

from typing import Callable

from fhir_bridge.config import Settings
from fhir_bridge.measures import load_dialog_definition
from fhir_bridge.pipelines.care_access import CareAccess
from fhir_bridge.pipelines.careplan_rules import PlanNarrativeFollower, SharedCarePlanRule
from fhir_bridge.pipelines.careplan_session import CarePlanSessions
from fhir_bridge.pipelines.identity import IdentityResolver
from fhir_bridge.pipelines.recording_burden import RecordingBurdenGuard
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
        migrate(self.database, registry=self.registry)
        score_rows = ScoreRows(self.dialog, settings.min_answered)
        self.repository = Repository(self.database, Indexer(self.registry, base_url=settings.base_url,
                                                             model=self.validator.model), clock=clock,
                                     score_rows=score_rows)
        kwargs = {"new_id": new_id} if new_id else {}
        self.resources = ResourceService(self.repository, self.validator, find=self.find, **kwargs)
        self.identity = IdentityResolver(self.repository, settings.source_trust)
        # Who may see and change whose records (one policy for every read and write path).
        self.access = CareAccess(self.repository, base_url=settings.base_url)
        self.resources.access = self.access
        self.resources.guards.append(RecordingBurdenGuard(dialog_url=self.dialog.url,
                                                          min_interval_days=settings.prom_min_interval_days,
                                                          reject=settings.prom_duplicates == "reject"))
        # DIALOG+: the person's one shared plan; plain writes of it meet the rules sessions meet.
        domains = [(d.code, d.display) for d in self.dialog.domains]
        self.resources.write_rules.append(SharedCarePlanRule([code for code, _ in domains]))
        self.resources.followers.append(PlanNarrativeFollower([code for code, _ in domains]))
        self.careplans = CarePlanSessions(self.repository, self.validator, self.resources,
                                          domains=domains, dialog_url=self.dialog.url,
                                          max_domains=settings.dialog_plus_max_domains, access=self.access,
                                          base_url=settings.base_url)

    def find(self, resource_type: str, params: list[tuple[str, str]], base_url: str = "") -> list[Stored]:
        """Current resources matching search criteria (conditional create/update/references)."""
        request = parse_search(resource_type, params + [("_count", "2")], self.registry, strict=True,
                               base_url=base_url)
        return self.repository.search(request).matches

    def search_request(self, resource_type: str, params: list[tuple[str, str]]):
        """A strict SearchRequest, for searches run inside a unit of work (UnitOfWork.search)."""
        return parse_search(resource_type, params, self.registry, strict=True, base_url="")

    def close(self) -> None:
        self.database.dispose()
