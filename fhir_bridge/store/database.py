"""Opening the database: the embedded SQLite file by default, any SQLAlchemy URL when configured.

SQLite and PostgreSQL share one code path; what differs is settled here, once per connection:
SQLite gets WAL (readers never wait for the writer), a 10 s busy timeout (a second writer waits
instead of failing), synchronous=NORMAL (safe under WAL, far fewer fsyncs), foreign keys, and WAL
checkpoints in a background thread rather than inside commits (store/wal_checkpoint.py).

A file import writes in bulk (`Database.bulk`): its write transactions get a 64 MB page cache
rather than SQLite's 2 MB, which a batch's index pages overflowed, so every batch read them again
(system time), and the WAL is checkpointed at most every 2 s (wal_checkpoint.py), its writer
checkpointing itself only past 100,000 pages rather than 20,000 (so the WAL file may reach
~400 MB). A RiO import of 69,185 records, 3 runs each beside a run without (both at once, on 2
cores): records/s +1.5%, +2.1%, +1.4%; the importing process's CPU 0.7-2.4 s less (system time
3.2-3.9 s less, user 1.5-2.6 s more), disk writes 7.4M -> 5.8-6.0M blocks; peak RSS 120-126 ->
193-200 MB. The writers' own threshold then took commits from 6.9-7.7 to 5.6-6.1 s a run.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
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
BULK_CACHE_KIB = 65_536          # SQLite page cache of a write transaction in bulk
_DEFAULT_CACHE = -2000           # SQLite's own page cache: 2,000 KiB
BULK_CHECKPOINT_SECONDS = 2.0    # WAL checkpoints at most this often while writing in bulk
# A writer in bulk checkpoints itself only past this (~400 MB of WAL): 2 s of an import's batches
# passed the usual 20,000 pages, and the commit that did paid for a checkpoint of them all.
BULK_WRITER_CHECKPOINT_PAGES = 100_000
_BULK_INFO = "fhir_bridge_bulk"  # whether a DBAPI connection has the bulk settings now


class BulkWrites:
    """Whether the running thread writes in bulk now (inside `Database.bulk`): an import's writes
    do; a server's requests, on other threads of the same process (`$ingest` runs beside them), keep
    SQLite's usual settings."""

    def __init__(self) -> None:
        self._depth: ContextVar[int] = ContextVar(f"fhir_bridge_bulk_{id(self)}", default=0)

    @property
    def active(self) -> bool:
        return self._depth.get() > 0

    @contextmanager
    def running(self) -> Iterator[None]:
        token = self._depth.set(self._depth.get() + 1)
        try:
            yield
        finally:
            self._depth.reset(token)


@dataclass(frozen=True)
class Database:
    engine: Engine
    dialect: str  # "sqlite" | "postgresql"
    checkpointer: WalCheckpointer | None = None  # an SQLite file's background WAL checkpoints
    writers: WriterLock | None = None            # SQLite: held around every write transaction
    bulk_writes: BulkWrites = field(default_factory=BulkWrites)

    def connect(self, *, write: bool = False) -> Connection:
        """A connection whose transactions, with write=True, take SQLite's write lock at BEGIN
        (BEGIN IMMEDIATE): a read-then-write transaction is never overtaken by another writer
        between its read and its write, and waits on the busy timeout instead of failing."""
        connection = self.engine.connect()
        return connection.execution_options(**{_WRITE_OPTION: True}) if write else connection

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Around a long run of large write transactions (a file import). SQLite: a bigger page cache
        for them and fewer WAL checkpoints (module docstring); a connection that wrote in bulk keeps
        those settings until its next write transaction outside bulk. PostgreSQL: nothing changes."""
        if self.dialect != "sqlite":
            yield
            return
        spaced = self.checkpointer.spaced(BULK_CHECKPOINT_SECONDS) if self.checkpointer else nullcontext()
        with self.bulk_writes.running(), spaced:
            yield

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
        writers, bulk = WriterLock(None if in_memory else parsed.database), BulkWrites()
        return Database(_sqlite_engine(parsed, bulk), dialect,
                        None if in_memory else WalCheckpointer(parsed.database, writers=writers), writers, bulk)
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


def _sqlite_engine(url: URL, bulk: BulkWrites) -> Engine:
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
        if write:
            _bulk_settings(connection, bulk.active)
        # on the driver's cursor: SQLAlchemy's execution path cost ~15 us a transaction, two a session
        run_driver_sql(connection, "BEGIN IMMEDIATE" if write else "BEGIN", ())

    return engine


def _bulk_settings(connection: Connection, bulk: bool) -> None:
    """A write transaction's page cache and own checkpoint threshold, in bulk or not; pragmas
    only when that changes (the pool's record of the DBAPI connection keeps which it has)."""
    info = connection.connection.info
    if info.get(_BULK_INFO, False) != bulk:
        cache, pages = (-BULK_CACHE_KIB, BULK_WRITER_CHECKPOINT_PAGES) if bulk else (_DEFAULT_CACHE, WRITER_CHECKPOINT_PAGES)
        run_driver_sql(connection, f"PRAGMA cache_size={cache}", ())
        run_driver_sql(connection, f"PRAGMA wal_autocheckpoint={pages}", ())
        info[_BULK_INFO] = bulk


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
