"""Opening databases: the default SQLite file and its settings, URLs, write transactions."""
from __future__ import annotations

import os

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from fhir_bridge.config import REPO_ROOT, Settings
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.store.database import Database, open_database
from tests.postgres import POSTGRES_ENV, throwaway_database_url


def test_without_a_url_the_sqlite_file_is_created_in_the_data_folder(tmp_path: Path):
    data_dir = tmp_path / "not" / "yet"
    database = open_database(None, data_dir)
    try:
        with database.connect() as connection:
            connection.execute(text("SELECT 1"))
        assert database.dialect == "sqlite"
        assert (data_dir / "fhir-bridge.db").is_file()
    finally:
        database.dispose()


def test_every_sqlite_connection_gets_wal_busy_timeout_normal_sync_and_foreign_keys(tmp_path: Path):
    database = open_database(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    try:
        for _ in range(2):  # a second pooled connection too
            with database.engine.connect() as connection:
                pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
                assert pragma("journal_mode") == "wal"
                assert pragma("busy_timeout") == 10_000
                assert pragma("synchronous") == 1  # NORMAL
                assert pragma("foreign_keys") == 1
    finally:
        database.dispose()


def test_a_sqlite_write_transaction_holds_the_write_lock_from_its_start(tmp_path: Path):
    path = tmp_path / "x.db"
    database = open_database(f"sqlite:///{path}", tmp_path)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with database.connect(write=True) as connection, connection.begin():
            connection.execute(text("SELECT 1"))  # no write yet, yet the lock is held
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            assert other.execute("SELECT 1").fetchone() == (1,)  # WAL: readers are not blocked
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
        database.dispose()


def test_a_read_transaction_takes_no_write_lock(tmp_path: Path):
    path = tmp_path / "x.db"
    database = open_database(f"sqlite:///{path}", tmp_path)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with database.connect() as connection, connection.begin():
            connection.execute(text("SELECT 1"))
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()
        database.dispose()


@pytest.mark.parametrize("url", ["postgresql://u@db.example/fhir", "postgres://u@db.example/fhir",
                                 "postgresql+psycopg://u@db.example/fhir"])
def test_postgresql_urls_run_on_psycopg_3(url: str, tmp_path: Path):
    database = open_database(url, tmp_path)  # the engine connects lazily: no server needed
    assert database.dialect == "postgresql"
    assert database.engine.url.drivername == "postgresql+psycopg"
    assert not tmp_path.joinpath("fhir-bridge.db").exists()


@pytest.mark.parametrize("url", ["mysql://u@db.example/fhir", "not a url"])
def test_other_urls_are_refused_at_start(url: str, tmp_path: Path):
    with pytest.raises(ConfigurationError, match="FHIR_BRIDGE_DATABASE_URL"):
        open_database(url, tmp_path)


def test_settings_read_the_database_url_and_data_folder():
    assert Settings.from_env({}).database_url is None
    assert Settings.from_env({}).data_dir == REPO_ROOT / "var"
    settings = Settings.from_env({"FHIR_BRIDGE_DATABASE_URL": "postgresql://x/y", "FHIR_BRIDGE_DATA_DIR": "/srv/fb"})
    assert settings.database_url == "postgresql://x/y"
    assert settings.data_dir == Path("/srv/fb")


def test_the_shared_fixture_opens_each_configured_database(database: Database):
    with database.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    assert database.dialect in ("sqlite", "postgresql")



if os.environ.get(POSTGRES_ENV):  # a psycopg setting: collected only where PostgreSQL runs (as in CI)
    def test_postgresql_connections_do_not_auto_prepare(tmp_path):
        """Auto-prepared statements keep the plan made while tables were empty: the bulk id lookup
        became a sequential scan (create_many 10,000 -> 1,700 resources/s past 12,000 rows)."""
        for url in throwaway_database_url("postgresql", tmp_path / "unused.db"):
            database = open_database(url, tmp_path)
            try:
                with database.engine.connect() as connection:
                    assert connection.connection.driver_connection.prepare_threshold is None
            finally:
                database.dispose()
