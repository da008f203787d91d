"""Throwaway databases for tests: a SQLite file always, and a PostgreSQL schema as well when
FHIR_BRIDGE_TEST_POSTGRES_URL names a server (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test).

Each PostgreSQL use gets a schema of its own (selected through search_path in the URL), dropped
afterwards with everything in it: no assumption about what else the server holds, nothing left behind.

    @pytest.fixture(params=BACKENDS)
    def database_url(request, tmp_path):
        yield from throwaway_database_url(request.param, tmp_path / "test.db")
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

__all__ = ["BACKENDS", "POSTGRES_ENV", "postgres_schema", "throwaway_database_url"]

POSTGRES_ENV = "FHIR_BRIDGE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get(POSTGRES_ENV) else [])]  # fixture params


def throwaway_database_url(backend: str, sqlite_file: Path) -> Iterator[str]:
    """Yields the URL of an empty database of `backend` (one of BACKENDS); a generator for fixtures."""
    if backend == "sqlite":
        yield f"sqlite:///{sqlite_file}"
    else:
        yield from postgres_schema(os.environ[POSTGRES_ENV])


def postgres_schema(server_url: str) -> Iterator[str]:
    """Creates a schema of its own on the server, yields a URL whose connections use it, then drops it.

    Dispose every engine on the yielded URL before the generator resumes: a connection still
    holding the schema's tables would block the DROP.
    """
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
