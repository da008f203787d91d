"""Real databases for store tests: a fresh SQLite file, and a fresh PostgreSQL schema as well when
FHIR_BRIDGE_TEST_POSTGRES_URL is set (see tests/postgres.py).

`database_url` is an empty database of each kind; `database` is one opened and migrated.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_bridge.store.database import Database, open_database
from fhir_bridge.store.migrations import migrate
from tests.postgres import BACKENDS, throwaway_database_url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: SQLite file, or a PostgreSQL schema of its own."""
    yield from throwaway_database_url(request.param, tmp_path / "store.db")


@pytest.fixture
def database(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """An opened, migrated database, disposed after the test."""
    opened = open_database(database_url, tmp_path)
    migrate(opened)
    yield opened
    opened.dispose()
