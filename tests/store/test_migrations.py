"""Schema migrations: created on first start, idempotent, upgrades keep data, newer schemas refused."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, inspect, insert, select, text

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.store import schema
from fhir_bridge.store.database import Database, open_database
from fhir_bridge.store.migrations import MIGRATIONS, Migration, current_version, migrate
from fhir_bridge.store.repository import Repository

PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Ngata"}]}


class NoIndex:
    def rows(self, resource: dict) -> dict[str, list[dict]]:
        return {}


@pytest.fixture
def open_db(database_url: str, tmp_path: Path) -> Iterator[Callable[[], Database]]:
    """Opens the test database as a starting process would; every opening is disposed at the end."""
    opened: list[Database] = []

    def start() -> Database:
        opened.append(open_database(database_url, tmp_path))
        return opened[-1]

    yield start
    for database in opened:
        database.dispose()


def versions(database: Database) -> list[tuple[int, str]]:
    with database.connect() as connection:
        return [tuple(row) for row in connection.execute(
            select(schema.schema_version.c.version, schema.schema_version.c.description)
            .order_by(schema.schema_version.c.version))]


def table_names(database: Database) -> set[str]:
    with database.connect() as connection:
        return set(inspect(connection).get_table_names())


def add_source_column(connection: Connection) -> None:
    connection.execute(text("ALTER TABLE resources ADD COLUMN source VARCHAR(64)"))
    connection.execute(text("UPDATE resources SET source = 'migrated'"))


NEWEST = MIGRATIONS[-1].version
ALL = list(range(1, NEWEST + 1))
NEXT = Migration(NEWEST + 1, "resources.source", add_source_column)  # a future release's step


def test_first_start_creates_every_table_and_records_every_version(open_db):
    database = open_db()
    assert migrate(database) == ALL
    assert table_names(database) >= set(schema.metadata.tables)
    assert versions(database) == [(m.version, m.description) for m in MIGRATIONS]


def test_a_second_start_applies_nothing(open_db):
    assert migrate(open_db()) == ALL
    again = open_db()
    assert migrate(again) == []
    assert migrate(again) == []
    assert len(versions(again)) == NEWEST


def test_data_survives_a_restart(open_db):
    first = open_db()
    migrate(first)
    with Repository(first, NoIndex()).unit_of_work() as uow:
        uow.create(PATIENT)
    first.dispose()

    second = open_db()
    assert migrate(second) == []
    assert Repository(second, NoIndex()).read("Patient", "p1").resource["name"] == PATIENT["name"]


def test_a_schema_newer_than_the_code_is_refused_naming_both_versions(open_db):
    database = open_db()
    migrate(database)
    with database.connect() as connection, connection.begin():
        connection.execute(insert(schema.schema_version), {"version": NEWEST + 1, "applied": 0, "description": "future"})
    with pytest.raises(ConfigurationError, match=rf"version {NEWEST + 1} .* up to {NEWEST}\b"):
        migrate(open_db())


def test_a_new_migration_upgrades_an_existing_database_and_keeps_its_data(open_db):
    database = open_db()
    migrate(database)
    with Repository(database, NoIndex()).unit_of_work() as uow:
        uow.create(PATIENT)

    upgraded = open_db()
    assert migrate(upgraded, [*MIGRATIONS, NEXT]) == [NEXT.version]
    assert [v for v, _ in versions(upgraded)] == ALL + [NEXT.version]
    with upgraded.connect() as connection:
        assert connection.execute(text("SELECT resource_id, source FROM resources")).all() == [("p1", "migrated")]
    assert Repository(upgraded, NoIndex()).read("Patient", "p1").version_id == 1
    assert migrate(upgraded, [*MIGRATIONS, NEXT]) == []


def test_a_version_1_database_gains_the_ingest_tables_and_keeps_its_data(open_db):
    """A database made by the first release (version 1: no ingest tables) upgraded in place."""
    database = open_db()
    v1_tables = [t for t in schema.metadata.sorted_tables if t not in schema.INGEST_TABLES]
    with database.connect(write=True) as connection, connection.begin():
        schema.metadata.create_all(connection, tables=v1_tables)
        connection.execute(insert(schema.schema_version), {"version": 1, "applied": 0, "description": "v1"})
    with Repository(database, NoIndex()).unit_of_work() as uow:
        uow.create(PATIENT)
    assert not {t.name for t in schema.INGEST_TABLES} & table_names(database)

    assert migrate(open_db()) == ALL[1:]
    assert {t.name for t in schema.INGEST_TABLES} <= table_names(database)
    assert Repository(database, NoIndex()).read("Patient", "p1").resource["name"] == PATIENT["name"]


def test_a_fresh_database_is_built_at_the_newest_version_and_stamped(open_db):
    # schema.py describes the newest schema, so a fresh database never replays upgrade steps.
    database = open_db()
    assert migrate(database, [*MIGRATIONS, NEXT]) == ALL + [NEXT.version]
    assert "source" not in {c["name"] for c in inspect(database.engine).get_columns("resources")}


def test_a_failing_migration_leaves_the_database_at_the_previous_version(open_db):
    def half_then_fail(connection: Connection) -> None:
        connection.execute(text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("disk on fire")

    database = open_db()
    migrate(database)
    with pytest.raises(RuntimeError, match="disk on fire"):
        migrate(database, [*MIGRATIONS, Migration(NEWEST + 1, "fails", half_then_fail)])
    with database.connect() as connection:
        assert current_version(connection) == NEWEST
    assert "half_done" not in table_names(database)


def test_two_processes_starting_at_once_migrate_once(open_db):
    def slow_create(connection: Connection) -> None:
        time.sleep(0.3)  # keep the first start inside its transaction while the second arrives
        MIGRATIONS[0].apply(connection)

    migrations = [Migration(1, MIGRATIONS[0].description, slow_create)]
    starts = [open_db(), open_db()]
    barrier = threading.Barrier(2)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def start(database: Database) -> None:
        barrier.wait()
        try:
            applied.append(migrate(database, migrations))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(database,)) for database in starts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(applied) == [[], [1]]
    assert len(versions(starts[0])) == 1


def test_migrations_must_be_numbered_without_gaps(open_db):
    with pytest.raises(ConfigurationError, match="without gaps"):
        migrate(open_db(), [*MIGRATIONS, Migration(NEWEST + 2, "skips one", add_source_column)])


def test_a_version_2_database_gains_the_quarantine_retry_columns(open_db):
    """Version 2 quarantine rows (no retry context; 'released' for stored) upgraded in place."""
    database = open_db()
    migrate(database, MIGRATIONS[:2])
    with database.connect(write=True) as connection, connection.begin():
        for column in ("context", "resolved_run"):
            connection.execute(text(f"ALTER TABLE quarantine DROP COLUMN {column}"))
        connection.execute(text("INSERT INTO quarantine (entry_id, run_id, source, location, reason, raw, outcome, "
                                "created, state) VALUES ('q-1', 'r', 'rio', 'a.csv:2', 'mapping', :raw, :raw, 1, "
                                "'released')"), {"raw": b"{}"})
    assert migrate(open_db()) == ALL[2:]
    entry = Repository(database, NoIndex()).quarantine_entry("q-1")
    assert (entry.state, entry.context, entry.resolved_run) == ("resolved", None, None)


def test_a_version_7_database_reads_patient_from_the_subject_rows(open_db):
    """Before version 8 `patient` had rows of its own, and a reference to another server's Patient
    was stored without its type: the rows `patient` now reads (subject's to a Patient) gain the
    type, `patient`'s own go, so a search by patient finds what was written before."""
    database = open_db()
    migrate(database, MIGRATIONS[:7])
    other = "https://other.example.org/fhir/Patient/p9"
    rows = [("q1", "subject", "Patient", "p1", None), ("q1", "patient", "Patient", "p1", None),
            ("q2", "subject", None, None, other), ("q2", "patient", None, None, other),
            ("q3", "subject", None, None, "urn:uuid:0b5c1d2e-0000-4000-8000-000000000001"),
            ("q3", "author", None, None, "https://other.example.org/fhir/Practitioner/x")]
    with database.connect(write=True) as connection, connection.begin():
        connection.execute(insert(schema.reference_index), [
            {"resource_type": "QuestionnaireResponse", "resource_id": rid, "param": param, "target_type": ttype,
             "target_id": tid, "url": url} for rid, param, ttype, tid, url in rows])
    assert migrate(open_db()) == ALL[7:]
    ref = schema.reference_index
    with database.connect() as connection:
        left = sorted(tuple(r) for r in connection.execute(
            select(ref.c.resource_id, ref.c.param, ref.c.target_type, ref.c.target_id, ref.c.url)))
        indexes = {i["name"]: i["column_names"] for i in inspect(connection).get_indexes(ref.name)}
    assert left == [("q1", "subject", "Patient", "p1", None), ("q2", "subject", "Patient", None, other),
                    ("q3", "author", None, None, "https://other.example.org/fhir/Practitioner/x"),
                    ("q3", "subject", None, None, "urn:uuid:0b5c1d2e-0000-4000-8000-000000000001")]
    # version 9: one index by target, led by its id
    assert "ix_reference_lookup" not in indexes
    assert indexes["ix_reference_target"] == ["target_id", "target_type", "resource_type", "param"]
