"""Opening the database: the embedded SQLite file by default, any SQLAlchemy URL when configured.

SQLite and PostgreSQL share one code path; what differs is settled here, once per connection:
SQLite gets WAL (readers never wait for the writer), a 10 s busy timeout (a second writer waits
instead of failing), synchronous=NORMAL (safe under WAL, far fewer fsyncs), foreign keys, and WAL
checkpoints in a background thread rather than inside commits (store/wal_checkpoint.py).
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.store.driver_statements import run_driver_sql
from fhir_bridge.store.wal_checkpoint import WRITER_CHECKPOINT_PAGES, WalCheckpointer
from fhir_bridge.store.writer_lock import WriterLock

__all__ = ["Database", "open_database", "DEFAULT_FILE_NAME"]

DEFAULT_FILE_NAME = "fhir-bridge.db"
BUSY_TIMEOUT_MS = 10_000
_SUPPORTED = ("sqlite", "postgresql")
# Execution option asking for a transaction that holds the write lock from its first statement.
_WRITE_OPTION = "fhir_bridge_write"


@dataclass(frozen=True)
class Database:
    engine: Engine
    dialect: str  # "sqlite" | "postgresql"
    checkpointer: WalCheckpointer | None = None  # an SQLite file's background WAL checkpoints
    writers: WriterLock | None = None            # SQLite: held around every write transaction

    def connect(self, *, write: bool = False) -> Connection:
        """A connection whose transactions, with write=True, take SQLite's write lock at BEGIN
        (BEGIN IMMEDIATE): a read-then-write transaction is never overtaken by another writer
        between its read and its write, and waits on the busy timeout instead of failing."""
        connection = self.engine.connect()
        return connection.execution_options(**{_WRITE_OPTION: True}) if write else connection

    def written(self) -> None:
        """Called after a write transaction commits: the WAL's new pages get checkpointed soon,
        off the writer's path (store/wal_checkpoint.py)."""
        if self.checkpointer is not None:
            self.checkpointer.poke()

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self.writers is not None:
            self.writers.close()
        self.engine.dispose()


def open_database(url: str | None, data_dir: Path) -> Database:
    """No URL: `<data_dir>/fhir-bridge.db`, created on first use. Otherwise sqlite:/// or postgresql://
    (plain postgresql:// and postgres:// are run on psycopg 3)."""
    parsed = _parse(url) if url else URL.create("sqlite", database=str(Path(data_dir) / DEFAULT_FILE_NAME))
    dialect = parsed.get_backend_name()
    if dialect not in _SUPPORTED:
        raise ConfigurationError(f"FHIR_BRIDGE_DATABASE_URL: unsupported database {dialect!r}; "
                                 "use sqlite:///<file> or postgresql://...")
    if dialect == "sqlite":
        in_memory = not parsed.database or parsed.database == ":memory:"
        writers = WriterLock(None if in_memory else parsed.database)
        return Database(_sqlite_engine(parsed), dialect,
                        None if in_memory else WalCheckpointer(parsed.database, writers=writers), writers)
    # psycopg prepares a statement after five runs, and PostgreSQL then keeps the generic plan it
    # made while the tables were small: the bulk path's id lookup became a sequential scan, and
    # create_many fell from ~10,000 to ~1,700 resources/s as the table grew past 12,000 rows.
    # Planning each statement with its values costs far less than that.
    return Database(create_engine(parsed, connect_args={"prepare_threshold": None}), dialect)


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"FHIR_BRIDGE_DATABASE_URL is not a database URL: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # Autocommit at the driver: pysqlite's own implicit BEGIN comes late (at the first write)
        # and cannot be IMMEDIATE, so transactions are begun explicitly in `_begin` below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "synchronous=NORMAL", "foreign_keys=ON",
                       f"wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}"):
            cursor.execute(f"PRAGMA {pragma}")
        _use_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        # on the driver's cursor: SQLAlchemy's execution path cost ~15 us a transaction, two a session
        run_driver_sql(connection, "BEGIN IMMEDIATE" if write else "BEGIN", ())

    return engine


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (a persistent setting, so normally a no-op). Two processes opening a
    new file at once may both try to switch it; SQLite then refuses one at once, without waiting
    on the busy timeout (it would be a deadlock), so that one retries until the other has done it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
