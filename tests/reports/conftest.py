"""Report fixtures: a Bridge over a throwaway database of each kind (SQLite, and PostgreSQL when
FHIR_BRIDGE_TEST_POSTGRES_URL is set) holding the hand-worked data set of dataset.py."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.reports import OutcomeReport, ReportRequest, build_outcome_report
from fhir_bridge.validation import Validator
from tests.postgres import BACKENDS, throwaway_database_url
from tests.reports import dataset

YEAR_2024 = {"start": date(2024, 1, 1), "end": date(2024, 12, 31)}


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from throwaway_database_url(request.param, tmp_path / "reports.db")


@pytest.fixture
def bridge(database_url: str, tmp_path: Path, validator: Validator) -> Iterator[Bridge]:
    opened = Bridge(Settings(data_dir=tmp_path, database_url=database_url), validator=validator)
    yield opened
    opened.close()


@pytest.fixture
def loaded(bridge: Bridge) -> Bridge:
    dataset.load(bridge.repository)
    return bridge


@pytest.fixture
def run(loaded: Bridge) -> Callable[..., OutcomeReport]:
    """run(level=..., organizations=...) -> the report of the data set over 2024."""
    def build(**fields) -> OutcomeReport:
        return build_outcome_report(loaded.repository, loaded.dialog, ReportRequest(**{**YEAR_2024, **fields}),
                                    today=date(2025, 6, 1))
    return build
