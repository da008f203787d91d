"""SQLite WAL checkpoints off the writer's path.

Under WAL every commit appends the pages it changed to the -wal file, and a checkpoint copies them
back into the database file (and syncs it). SQLite runs that checkpoint inside whichever commit
takes the WAL past 1,000 pages; an import batch, whose index rows land on pages all over their
B-trees, passes it every time, and the checkpoint was about 60% of the commit. Here a thread with
its own connection checkpoints after writes (PASSIVE: it neither waits for nor blocks readers and
writers) while the writer goes on with its next batch or request. The writers' own threshold is
raised to a safety valve (`WRITER_CHECKPOINT_PAGES`) in case the thread falls behind.

Checkpoints are at least `interval_seconds` apart: the commits in between share one. A checkpoint
after every small commit (an API request's) syncs the database file every time and took about a
fifth of a busy server's samples, on the core the request threads also need. During a file import
(`spaced`, database.py `Database.bulk`) they are 2 s apart: a batch's index rows land on pages all
over their B-trees and the next batches change most of them again, so a copy after every batch
copied each page many times (the thread's CPU in a 69,185-record import: 4.0-4.9 -> 1.9-2.8 s).

A checkpoint copies pages back but does not shorten the WAL: the next writer starts it again from
the top only if, when it begins, every frame has been copied. Under steady writes a commit almost
always lands while the thread copies, so the WAL kept growing until it passed the writers'
threshold, and that writer's commit paid for a checkpoint and its syncs: every ~100 DIALOG+
sessions one commit took ~20 ms, with the 10 requests queued behind it (bench/careplan.py).
Now, once the WAL holds `restart_frames`, the thread copies again what was committed during its
pass (each pass shorter than the one before), then copies the last few frames while holding the
writer lock (~2.5 ms: a few pages and two syncs), so that the next writer restarts the WAL. Ten
clients' sessions: p95 55-59 -> 41-47 ms, the same CPU (bench/careplan.py, 3 interleaved runs).

Several processes on one file (`serve --workers`): each has this thread, and they copied the same
WAL at once, each pass slowing the other's. And the next writer cannot restart the WAL while a
reader of another process is still in a snapshot of it, which at two workers was most of the
time: the WAL grew to the writers' threshold and a session's commit paid for a checkpoint. Now one
process's thread checkpoints at a time (the others skip their turn: an exclusive, non-blocking
flock of `<database>.checkpoint-lock`), and the locked pass is a RESTART: it waits, at most
`RESTART_WAIT_MS`, for readers of older snapshots to finish (a few ms), so the WAL starts again.
Each locked pass still holds the writers for ~5-10 ms, so it comes less often (every 8,000 frames,
after up to 6 shorter catch-up passes). Ten clients' sessions, 3 interleaved runs: p95 on 2
workers 46.9/46.6/55.1 -> 43.7/41.0/47.7 ms, on one process 57.0/52.1/55.1 -> 50.1/49.9/58.1 ms
(with the workers' connections handed out in turn: api/workers.py).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # not POSIX: each process's thread checkpoints on its own
    fcntl = None

__all__ = ["WalCheckpointer", "WRITER_CHECKPOINT_PAGES"]

WRITER_CHECKPOINT_PAGES = 20_000  # ~80 MB of WAL: a writer checkpoints itself only past this
RESTART_FRAMES = 8_000  # ~32 MB of WAL: past this the thread has the next writer start it again
CATCH_UP_PASSES = 6     # unlocked passes at most before the locked one
LOCKED_FRAMES = 100     # ... or fewer, once a pass left no more than this for the locked one
RESTART_WAIT_MS = 10    # the locked pass waits this long at most for readers of older snapshots
_log = logging.getLogger(__name__)


class WalCheckpointer:
    """`poke()` after a commit; a daemon thread checkpoints soon after. The thread starts on the
    first poke and ends after `idle_seconds` without one (or at `close()`), so an idle store
    holds no thread."""

    def __init__(self, path: str, *, idle_seconds: float = 5.0, interval_seconds: float = 0.1,
                 busy_timeout_ms: int = 10_000, writers=None, restart_frames: int = RESTART_FRAMES):
        self.path = path
        self.writers = writers  # the store's WriterLock: no commit between the last copy and the next writer
        self.restart_frames = restart_frames
        self.idle_seconds = idle_seconds
        self.interval_seconds = interval_seconds
        self.busy_timeout_ms = busy_timeout_ms
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._spaced: list[float] = []  # the intervals asked for by `spaced` blocks now running
        self._turn_path = f"{path}.checkpoint-lock" if fcntl is not None else None

    def poke(self) -> None:
        if self._closed:
            return
        self._wake.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
                self._thread.start()

    @contextmanager
    def spaced(self, seconds: float) -> Iterator[None]:
        """Checkpoints at least `seconds` apart while the block runs (and any other spaced block)."""
        with self._lock:
            self._spaced.append(seconds)
        try:
            yield
        finally:
            with self._lock:
                self._spaced.remove(seconds)

    def pause(self) -> float:
        """The time between the end of one checkpoint and the next."""
        with self._lock:
            return max([self.interval_seconds, *self._spaced])

    def close(self) -> None:
        self._closed = True
        self._closing.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def _run(self) -> None:
        connection = None
        turn = None
        try:
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                                         check_same_thread=False)
            turn = self._turn_descriptor()
            while True:
                if not self._wake.wait(self.idle_seconds):
                    with self._lock:  # a poke now would find no thread and start one
                        if not self._wake.is_set():
                            self._thread = None
                            return
                if self._closed:
                    return
                self._wake.clear()
                if self._take_turn(turn):
                    try:
                        self._checkpoint(connection)
                    finally:
                        if turn is not None:
                            with contextlib.suppress(OSError):
                                fcntl.flock(turn, fcntl.LOCK_UN)
                else:  # another process's thread is copying: this one's commits wait for the next turn
                    self._wake.set()
                if self._closing.wait(self.pause()):  # commits meanwhile wait for the next one
                    return
        except sqlite3.Error as exc:  # the store is gone or broken: writers checkpoint themselves again
            _log.warning("background WAL checkpoints stopped: %s", exc)
        finally:
            if connection is not None:
                connection.close()
            if turn is not None:
                os.close(turn)
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        frames = self._pass(connection)
        if frames < self.restart_frames or self.writers is None:
            return
        for _ in range(CATCH_UP_PASSES):  # each copies what was committed during the one before
            more = self._pass(connection) - frames
            frames += more
            if more <= LOCKED_FRAMES:
                break
        with self.writers:  # the rest, with no commit in between: the next writer restarts the WAL
            connection.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
            try:
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                connection.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")

    def _turn_descriptor(self) -> int | None:
        if self._turn_path is None:
            return None
        try:
            return os.open(self._turn_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:  # a read-only folder: every process checkpoints on its own, as before
            return None

    @staticmethod
    def _take_turn(turn: int | None) -> bool:
        if turn is None:
            return True
        try:
            fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:  # no locks on this file system: checkpoint, as each process did before
            return True
        return True

    @staticmethod
    def _pass(connection: sqlite3.Connection) -> int:
        """A PASSIVE checkpoint (neither waits for nor blocks anyone); the frames the WAL holds."""
        return connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
