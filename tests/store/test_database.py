"""Opening databases: the default SQLite file and its settings, URLs, write transactions."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from fhir_bridge.config import REPO_ROOT, Settings
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.store.database import Database, open_database
from fhir_bridge.store import wal_checkpoint
from fhir_bridge.store.repository import Repository
from fhir_bridge.store.wal_checkpoint import WRITER_CHECKPOINT_PAGES, WalCheckpointer
from fhir_bridge.store.writer_lock import WriterLock
from tests.postgres import BACKENDS, POSTGRES_ENV, throwaway_database_url


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
                assert pragma("wal_autocheckpoint") == WRITER_CHECKPOINT_PAGES  # the background thread checkpoints
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


# -- WAL checkpoints in the background (store/wal_checkpoint.py) -----------------------------------------
def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_commits_are_checkpointed_into_the_database_file_by_the_background_thread(tmp_path: Path):
    """The writer never checkpoints these small transactions itself (its threshold is raised), so
    the database file grows only because the background thread copies the WAL's pages into it."""
    path = tmp_path / "x.db"
    database = open_database(f"sqlite:///{path}", tmp_path)
    try:
        with database.connect(write=True) as connection, connection.begin():
            connection.exec_driver_sql("CREATE TABLE t (x BLOB)")
        database.written()
        assert _wait_for(lambda: path.stat().st_size > 0)
        before = path.stat().st_size
        for _ in range(20):
            with database.connect(write=True) as connection, connection.begin():
                connection.exec_driver_sql("INSERT INTO t VALUES (randomblob(20000))")
            database.written()
        assert _wait_for(lambda: path.stat().st_size > before + 20 * 15000)
        with database.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 20
    finally:
        database.dispose()
    assert database.checkpointer._thread is None  # closed with the store


def _wal_file_never_checkpointed_by_its_writer(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("CREATE TABLE t (x)")
    return connection


def test_the_checkpoint_thread_ends_when_idle_and_starts_again_when_needed(tmp_path: Path):
    path = tmp_path / "x.db"
    connection = _wal_file_never_checkpointed_by_its_writer(path)
    checkpointer = WalCheckpointer(str(path), idle_seconds=0.05)
    try:
        checkpointer.poke()
        assert _wait_for(lambda: checkpointer._thread is None)  # idle: gone
        before = path.stat().st_size
        connection.execute("INSERT INTO t VALUES (randomblob(50000))")
        assert path.stat().st_size == before  # in the WAL only: this connection never checkpoints
        checkpointer.poke()  # a thread again
        assert _wait_for(lambda: path.stat().st_size > before + 40000)
        assert _wait_for(lambda: checkpointer._thread is None)
    finally:
        checkpointer.close()
        connection.close()


class _Counting(WalCheckpointer):
    """Counts its checkpoints."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.runs = 0

    def _checkpoint(self, conn) -> None:
        super()._checkpoint(conn)
        self.runs += 1  # after: the file has its pages once the count moves


def test_commits_within_the_interval_share_one_checkpoint(tmp_path: Path):
    path = tmp_path / "x.db"
    connection = _wal_file_never_checkpointed_by_its_writer(path)
    checkpointer = _Counting(str(path), idle_seconds=5, interval_seconds=2)
    try:
        checkpointer.poke()
        assert _wait_for(lambda: checkpointer.runs == 1)
        before = path.stat().st_size
        for _ in range(20):  # all within the interval after the first checkpoint
            connection.execute("INSERT INTO t VALUES (randomblob(5000))")
            checkpointer.poke()
        assert checkpointer.runs == 1 and path.stat().st_size == before
        assert _wait_for(lambda: path.stat().st_size > before + 20 * 4000)  # then one checkpoint takes them all
        time.sleep(0.1)
        assert checkpointer.runs == 2
    finally:
        checkpointer.close()
        connection.close()


def test_checkpoints_are_spaced_while_a_block_asks(tmp_path: Path):
    """`spaced` (a file import writing in bulk): passes at least that far apart while any block
    asks, then back to the interval. Overlapping blocks (two imports) each keep it."""
    path = tmp_path / "x.db"
    connection = _wal_file_never_checkpointed_by_its_writer(path)
    checkpointer = _Counting(str(path), idle_seconds=5, interval_seconds=0.01)
    try:
        with checkpointer.spaced(1.0):
            with checkpointer.spaced(2.0):
                assert checkpointer.pause() == 2.0
                checkpointer.poke()
                assert _wait_for(lambda: checkpointer.runs == 1)
                before = path.stat().st_size
                connection.execute("INSERT INTO t VALUES (randomblob(5000))")
                checkpointer.poke()
                time.sleep(0.5)  # 50 intervals: spaced, the commit waits for the pass 2 s after the last
                assert checkpointer.runs == 1 and path.stat().st_size == before
            assert checkpointer.pause() == 1.0  # the other block still asks
        assert checkpointer.pause() == 0.01
        assert _wait_for(lambda: checkpointer.runs == 2)
    finally:
        checkpointer.close()
        connection.close()


def test_bulk_write_transactions_get_a_bigger_page_cache_and_give_it_back(tmp_path: Path):
    """SQLite's 2 MB page cache is for API writes; a file import's (`Database.bulk`) get 64 MB, and
    checkpoint themselves only past 100,000 WAL pages (the background thread's passes are 2 s apart);
    the pooled connection gets both back at its next write outside bulk. Reads keep theirs."""
    database = open_database(None, tmp_path)

    def settings(write: bool) -> tuple[int, int]:
        with database.connect(write=write) as connection, connection.begin():
            return (connection.exec_driver_sql("PRAGMA cache_size").scalar(),
                    connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar())

    try:
        assert settings(write=True) == (-2000, WRITER_CHECKPOINT_PAGES)
        with database.bulk():
            assert database.bulk_writes.active and database.checkpointer.pause() == 2.0
            assert settings(write=True) == (-65536, 100_000)
            assert settings(write=True) == (-65536, 100_000)
        assert not database.bulk_writes.active and database.checkpointer.pause() < 2.0
        assert settings(write=True) == (-2000, WRITER_CHECKPOINT_PAGES)
        with database.bulk():
            assert settings(write=False) == (-2000, WRITER_CHECKPOINT_PAGES)
            # another thread of the process (a server's request beside an `$ingest`) is not in bulk
            beside: list = []
            thread = threading.Thread(target=lambda: beside.append((database.bulk_writes.active, settings(write=True))))
            thread.start()
            thread.join()
            assert beside == [(False, (-2000, WRITER_CHECKPOINT_PAGES))]
            assert settings(write=True) == (-65536, 100_000)
    finally:
        database.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_sqlite_writes_in_bulk(tmp_path: Path, backend: str):
    """PostgreSQL has its own page cache and checkpoints: `bulk` changes nothing there."""
    urls = throwaway_database_url(backend, tmp_path / "store.db")
    database = open_database(next(urls), tmp_path)
    try:
        with database.bulk():
            assert database.bulk_writes.active == (backend == "sqlite")
            with database.connect(write=True) as connection, connection.begin():
                assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        database.dispose()
        next(urls, None)  # drops the schema


class _CommitDuringEveryPass(WalCheckpointer):
    """As under steady writes: another writer commits while each unlocked pass copies."""

    def __init__(self, path: Path, writer: sqlite3.Connection, writers: WriterLock | None):
        super().__init__(str(path), writers=writers, restart_frames=1)
        self.writer = writer

    def _pass(self, connection) -> int:
        frames = super()._pass(connection)
        if self.writers is None or not self.writers._threads.locked():
            self.writer.execute("INSERT INTO t VALUES (randomblob(20000))")
        return frames


@pytest.mark.parametrize("locked_pass", [True, False])
def test_a_long_wal_starts_again_from_the_top_though_commits_land_during_each_pass(tmp_path: Path,
                                                                                    locked_pass: bool):
    """The last pass holds the writer lock, so nothing is left uncopied when the next writer begins
    and it writes from the WAL's start; without it the WAL only grows (till a writer checkpoints)."""
    path = tmp_path / "x.db"
    writer = _wal_file_never_checkpointed_by_its_writer(path)
    writers = WriterLock(str(path))
    checkpointer = _CommitDuringEveryPass(path, writer, writers if locked_pass else None)
    own = sqlite3.connect(path, isolation_level=None)
    try:
        for _ in range(3):
            writer.execute("INSERT INTO t VALUES (randomblob(20000))")
        checkpointer._checkpoint(own)
        writer.execute("INSERT INTO t VALUES (1)")  # a page or two
        frames = own.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        # the last commit's frames alone; else the blob committed during the last pass is still there
        assert (frames <= 3) if locked_pass else (frames > 3)
        assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == (6 if locked_pass else 5)
    finally:
        own.close()
        writer.close()
        writers.close()


def test_the_locked_pass_waits_for_a_reader_of_an_older_snapshot_so_the_wal_starts_again(tmp_path: Path,
                                                                                         monkeypatch):
    """A reader of another process still in a snapshot of the WAL kept the next writer from starting
    it again, and the WAL grew; the locked pass now waits (a little) for such readers to finish."""
    monkeypatch.setattr(wal_checkpoint, "RESTART_WAIT_MS", 5000)  # here the reader takes 0.2 s
    path = tmp_path / "x.db"
    writer = _wal_file_never_checkpointed_by_its_writer(path)
    writers = WriterLock(str(path))
    for _ in range(3):
        writer.execute("INSERT INTO t VALUES (randomblob(20000))")
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # a snapshot that ends in the WAL
    ends = threading.Timer(0.2, reader.execute, ("COMMIT",))
    checkpointer = WalCheckpointer(str(path), writers=writers, restart_frames=1)
    own = sqlite3.connect(path, isolation_level=None)
    try:
        ends.start()
        checkpointer._checkpoint(own)
        writer.execute("INSERT INTO t VALUES (1)")  # a page or two, from the WAL's start
        assert own.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] <= 3
    finally:
        ends.join()
        for each in (own, reader, writer):
            each.close()
        writers.close()


def test_one_process_checkpoints_at_a_time_and_the_others_take_their_turn_after(tmp_path: Path):
    """Workers of one server share the file: their threads copied the same WAL at once, each slowing
    the other. A thread whose turn it is not (another holds the checkpoint lock) copies nothing,
    and copies its commits once the turn is free, without another poke."""
    path = tmp_path / "x.db"
    connection = _wal_file_never_checkpointed_by_its_writer(path)
    other = os.open(f"{path}.checkpoint-lock", os.O_RDWR | os.O_CREAT)  # another process's thread, copying
    fcntl.flock(other, fcntl.LOCK_EX)
    checkpointer = WalCheckpointer(str(path), idle_seconds=5, interval_seconds=0.01)
    try:
        before = path.stat().st_size
        connection.execute("INSERT INTO t VALUES (randomblob(50000))")
        checkpointer.poke()
        time.sleep(0.3)
        assert path.stat().st_size == before
        fcntl.flock(other, fcntl.LOCK_UN)
        assert _wait_for(lambda: path.stat().st_size > before + 40000)
    finally:
        checkpointer.close()
        connection.close()
        os.close(other)


def test_the_stores_checkpoint_thread_queues_on_its_writer_lock(tmp_path: Path):
    database = open_database(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    try:
        assert database.checkpointer.writers is database.writers
    finally:
        database.dispose()


def test_in_memory_stores_have_no_checkpoint_thread(tmp_path: Path):
    database = open_database("sqlite://", tmp_path)
    try:
        assert database.checkpointer is None
        database.written()
    finally:
        database.dispose()


# -- the writer lock (store/writer_lock.py) ------------------------------------------------------------
class _NoIndex:
    def rows(self, resource: dict) -> dict:
        return {}


def _other_process_can_lock(lock_path: str) -> bool:
    """Whether a separate process gets the lock file's exclusive flock at once."""
    probe = ("import fcntl, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(1)\n")
    return subprocess.run([sys.executable, "-c", probe, lock_path]).returncode == 0


def test_a_write_transaction_holds_the_writer_lock_file_against_other_processes(tmp_path: Path):
    database = open_database(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    repository = Repository(database, _NoIndex())
    try:
        with repository.unit_of_work():
            assert _other_process_can_lock(database.writers.path) is False
        assert _other_process_can_lock(database.writers.path) is True
    finally:
        database.dispose()


def test_a_forked_process_takes_the_writer_lock_on_its_own_descriptor(tmp_path: Path):
    """A descriptor inherited across fork shares its lock with the parent: the child must open its own."""
    lock = WriterLock(str(tmp_path / "x.db"))
    with lock:
        pass  # the parent has opened its descriptor
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child holds the lock until the parent has probed it
        try:
            with lock:
                os.write(write, b"1")
                time.sleep(1.0)
        finally:
            os._exit(0)
    os.read(read, 1)
    try:
        assert _other_process_can_lock(lock.path) is False
    finally:
        os.waitpid(child, 0)
        lock.close()
