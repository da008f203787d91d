"""Versioned schema migrations, applied on start, one transaction each, recorded in schema_version.

`schema.py` always describes the newest schema. A fresh database is built from it by migration 1
and stamped with every known version (the way Alembic builds a new database from the models and
stamps head); an existing database runs the migrations it has not recorded yet, in order, so a user
upgrading keeps their data. A later migration therefore changes schema.py AND appends a Migration
that brings an older database to the same shape.

Two processes starting at once must not both migrate: each step takes a lock first (PostgreSQL:
a transaction-scoped advisory lock; SQLite: BEGIN IMMEDIATE) and re-reads the recorded version.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, inspect, insert, select, text

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.store import schema
from fhir_bridge.store.database import Database

__all__ = ["Migration", "MIGRATIONS", "migrate", "current_version"]

# Arbitrary constant naming "fhir-bridge schema migration" among advisory locks on the server.
_ADVISORY_LOCK_KEY = 0x0F41_B41D


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_schema(connection: Connection) -> None:
    schema.metadata.create_all(connection)


def _create_ingest_tables(connection: Connection) -> None:
    schema.metadata.create_all(connection, tables=list(schema.INGEST_TABLES))


MIGRATIONS: list[Migration] = [
    Migration(1, "resources, history, search index, DIALOG scores", _create_schema),
    Migration(2, "import runs, quarantine, identity reviews", _create_ingest_tables),
]


def migrate(database: Database, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the database to the newest known version; the versions applied (empty when current)."""
    _check_sequence(migrations)
    applied: list[int] = []
    while True:
        with database.connect(write=True) as connection, connection.begin():
            _lock(connection, database.dialect)
            recorded = current_version(connection)
            newest = migrations[-1].version
            if recorded > newest:
                raise ConfigurationError(
                    f"the database schema is at version {recorded} but this fhir-bridge knows versions up to "
                    f"{newest}: upgrade fhir-bridge, or point FHIR_BRIDGE_DATABASE_URL at another database")
            if recorded == newest:
                return applied
            if recorded == 0:
                migrations[0].apply(connection)
                steps = list(migrations)  # the fresh schema is already the newest one
            else:
                step = migrations[recorded]  # numbered 1, 2, 3 ...: the one after `recorded`
                step.apply(connection)
                steps = [step]
            now = time.time_ns() // 1000
            connection.execute(insert(schema.schema_version),
                               [{"version": m.version, "applied": now, "description": m.description}
                                for m in steps])
            applied += [m.version for m in steps]


def current_version(connection: Connection) -> int:
    """The newest version recorded in the database; 0 for a database fhir-bridge never set up."""
    if not inspect(connection).has_table(schema.schema_version.name):
        return 0
    return connection.scalar(select(func.max(schema.schema_version.c.version))) or 0


def _lock(connection: Connection, dialect: str) -> None:
    # SQLite already holds the write lock: the connection began with BEGIN IMMEDIATE.
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})


def _check_sequence(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if not versions or versions != list(range(1, len(versions) + 1)):
        raise ConfigurationError(f"migrations must be numbered 1, 2, 3 ... without gaps, got {versions}")
