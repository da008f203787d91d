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

import orjson
from sqlalchemy import Connection, bindparam, delete, func, inspect, insert, select, text, update

from fhir_bridge.config import Settings
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.fhir.package import load_package
from fhir_bridge.store import care_access, outcome_fields, schema
from fhir_bridge.store.database import Database
from fhir_bridge.store.indexer import parse_reference
from fhir_bridge.store.search_parameters import SearchParameterRegistry

__all__ = ["Migration", "MIGRATIONS", "migrate", "current_version"]

# Arbitrary constant naming "fhir-bridge schema migration" among advisory locks on the server.
_ADVISORY_LOCK_KEY = 0x0F41_B41D


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[..., None]   # apply(connection), or apply(connection, registry) if `searched`
    searched: bool = False       # it needs the search parameters the server indexes by


def _create_schema(connection: Connection) -> None:
    schema.metadata.create_all(connection)


def _create_ingest_tables(connection: Connection) -> None:
    schema.metadata.create_all(connection, tables=list(schema.INGEST_TABLES))


def _quarantine_retry_columns(connection: Connection) -> None:
    # Migration 2 builds the quarantine table from the newest schema.py, so a database that was at
    # version 1 has these columns already: add only what is missing.
    have = {c["name"] for c in inspect(connection).get_columns(schema.quarantine.name)}
    for column in ("context", "resolved_run"):
        if column not in have:
            kind = schema.quarantine.c[column].type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {schema.quarantine.name} ADD COLUMN {column} {kind}"))
    connection.execute(text(f"UPDATE {schema.quarantine.name} SET state = 'resolved' WHERE state = 'released'"))


def _create_outbound_tables(connection: Connection) -> None:
    schema.metadata.create_all(connection, tables=list(schema.OUTBOUND_TABLES))


def _outcome_report_rows(connection: Connection) -> None:
    """dialog_scores.referral_id / possible_duplicate and person_attributes, filled from the stored
    bodies so reports see data written before version 5 (later writes derive them themselves)."""
    scores = schema.dialog_scores
    have = {c["name"] for c in inspect(connection).get_columns(scores.name)}
    for column in ("referral_id", "possible_duplicate"):
        if column not in have:
            kind = scores.c[column].type.compile(dialect=connection.dialect)
            default = " NOT NULL DEFAULT FALSE" if column == "possible_duplicate" else ""
            connection.execute(text(f"ALTER TABLE {scores.name} ADD COLUMN {column} {kind}{default}"))
    schema.metadata.create_all(connection, tables=list(schema.REPORT_TABLES))
    resources = schema.resources
    live = select(resources.c.resource_type, resources.c.resource_id, resources.c.body).where(
        resources.c.deleted.is_(False), resources.c.resource_type.in_(("Patient", "QuestionnaireResponse"))
    ).execution_options(yield_per=2000)
    people, flagged = [], []
    for row in connection.execute(live):
        body = orjson.loads(row.body)
        if row.resource_type == "Patient":
            people.append({"patient_id": row.resource_id, **outcome_fields.person_row(body)})
        else:
            referral, duplicate = outcome_fields.referral_of(body), outcome_fields.is_possible_duplicate(body)
            if referral or duplicate:
                flagged.append({"rid": row.resource_id, "referral": referral, "duplicate": duplicate})
    if people:
        connection.execute(delete(schema.person_attributes))
        connection.execute(insert(schema.person_attributes), people)
    if flagged:
        connection.execute(update(scores).where(scores.c.response_id == bindparam("rid")).values(
            referral_id=bindparam("referral"), possible_duplicate=bindparam("duplicate")), flagged)


def _care_access_rows(connection: Connection) -> None:
    """The care-access rows of data stored before version 6, so that partners keep seeing the
    people they look after (and only them). Absolute references to this server's base count as
    another server's here: FHIR_BRIDGE_BASE_URL is not known to a migration."""
    schema.metadata.create_all(connection, tables=list(schema.ACCESS_TABLES))
    care_access.rebuild(connection)


def _create_submission_tables(connection: Connection) -> None:
    schema.metadata.create_all(connection, tables=list(schema.SUBMISSION_TABLES))


def _shared_reference_rows(connection: Connection, registry: SearchParameterRegistry) -> None:
    """A parameter stored as another's rows to one type (`patient` as `subject`'s to a Patient:
    SearchParam.stored_as) loses its own rows, and the other's rows to another server (URL, no
    local id) gain the target type they are found by. Otherwise searching `patient=<another server's
    Patient URL>` would miss what was written before."""
    ref = schema.reference_index
    for resource_type in registry.resource_types:
        for param in registry.for_type(resource_type).values():
            if param.stored_as is None:
                continue
            connection.execute(delete(ref).where(ref.c.resource_type == resource_type, ref.c.param == param.code))
            remote = connection.execute(select(ref.c.url).distinct().where(
                ref.c.resource_type == resource_type, ref.c.param == param.stored_as, ref.c.target_id.is_(None),
                ref.c.target_type.is_(None), ref.c.url.is_not(None))).scalars().all()
            typed = [{"u": url, "t": parse_reference(url, None)[0]} for url in remote]
            typed = [row for row in typed if row["t"] is not None]
            if typed:
                connection.execute(update(ref).where(
                    ref.c.resource_type == resource_type, ref.c.param == param.stored_as, ref.c.target_id.is_(None),
                    ref.c.url == bindparam("u")).values(target_type=bindparam("t")), typed)


def _one_reference_target_index(connection: Connection) -> None:
    """ix_reference_lookup (resource_type, param, target_type, target_id) and ix_reference_target
    (target_type, target_id) become one index led by target_id: a write lands on one page fewer
    at random, and every lookup by target still starts from the id."""
    for name in ("ix_reference_lookup", "ix_reference_target"):
        connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
    next(i for i in schema.reference_index.indexes if i.name == "ix_reference_target").create(connection)


MIGRATIONS: list[Migration] = [
    Migration(1, "resources, history, search index, DIALOG scores", _create_schema),
    Migration(2, "import runs, quarantine, identity reviews", _create_ingest_tables),
    Migration(3, "quarantine: retry context, resolving run", _quarantine_retry_columns),
    Migration(4, "outbound messages per peer", _create_outbound_tables),
    Migration(5, "outcome reports: DIALOG referral and duplicate flag, person attributes", _outcome_report_rows),
    Migration(6, "care access: the people each resource is about, partners' care relationships", _care_access_rows),
    Migration(7, "submissions made (MHSDS): file hash, period, provider, counts, who ran it", _create_submission_tables),
    Migration(8, "search index: a parameter that is another's to one type (patient) reads that one's rows",
              _shared_reference_rows, searched=True),
    Migration(9, "search index: one index for reference targets, led by the target id", _one_reference_target_index),
]


def migrate(database: Database, migrations: Sequence[Migration] = MIGRATIONS, *,
            registry: SearchParameterRegistry | None = None) -> list[int]:
    """Bring the database to the newest known version; the versions applied (empty when current).
    `registry`: the search parameters the server indexes by (None: those of FHIR_BRIDGE_PROFILES_DIR)."""
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
                if step.searched:
                    registry = registry or SearchParameterRegistry.load(load_package(Settings.from_env().profiles_dir))
                    step.apply(connection, registry)
                else:
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
