"""Real databases for store tests: a fresh SQLite file, and a fresh PostgreSQL schema as well when
FHIR_BRIDGE_TEST_POSTGRES_URL is set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test).

`database_url` is an empty database of each kind; `database` is one opened and migrated.
Each PostgreSQL test gets its own schema (selected through search_path in the URL), dropped
afterwards with everything in it: no assumption about what else the server holds, nothing left behind.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from fhir_bridge.store.database import Database, open_database
from fhir_bridge.store.migrations import migrate

POSTGRES_ENV = "FHIR_BRIDGE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get(POSTGRES_ENV) else [])]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield from _postgres_schema(os.environ[POSTGRES_ENV])


@pytest.fixture
def database(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """An opened, migrated database, disposed after the test."""
    opened = open_database(database_url, tmp_path)
    migrate(opened)
    yield opened
    opened.dispose()


def _postgres_schema(server_url: str) -> Iterator[str]:
    url = make_url(server_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    name = f"fhir_bridge_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    try:
        yield url.update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()
