"""Benchmark for a store design question: index rows keyed by UUID owners (the schema today) against
rows keyed by an increasing integer (the resources rowid), inserted as an import does.

Today every index table names its owner by (resource_type, resource_id) and reference rows their
target by (target_type, target_id), with ids UUIDs: each B-tree keyed by them (owner, target,
lookup) takes each row at a random place, so every commit rewrites a page per row, and the WAL and
its checkpoints carry several times the store's size (an import of 69,185 RiO records wrote 4.3 GB
for a 580 MB store). With integer keys the owner index is only ever appended to. Same rows, same
four indexes (the URL index partial, as most references have none), commits of 2,000 rows in WAL
mode with a checkpoint every 20 commits, as bench/ingest.py's import does; both kinds run twice,
interleaved, in this process.

    python bench/index_keys.py [ROWS]     (default 300000)
"""
from __future__ import annotations

import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

from machine import describe  # bench/machine.py: this script's folder is on the path

PER_RESOURCE = 4  # reference rows a resource has (an Encounter: subject, patient, based-on, ...)
BATCH = 2000
PEOPLE = 5000

SCHEMAS = {
    "uuid": ["CREATE TABLE r (resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, param TEXT NOT NULL, "
             "target_type TEXT, target_id TEXT, url TEXT)",
             "CREATE INDEX lookup ON r (resource_type, param, target_type, target_id)",
             "CREATE INDEX target ON r (target_type, target_id)",
             "CREATE INDEX owner ON r (resource_type, resource_id)",
             "CREATE INDEX url ON r (resource_type, param, url)"],
    "int": ["CREATE TABLE r (owner INTEGER NOT NULL, param TEXT NOT NULL, target_type TEXT, target_key INTEGER, "
            "url TEXT)",
            "CREATE INDEX lookup ON r (param, target_type, target_key)",
            "CREATE INDEX target ON r (target_key)",
            "CREATE INDEX owner ON r (owner)",
            "CREATE INDEX url ON r (param, url) WHERE url IS NOT NULL"],
}


def rows_of(kind: str, count: int) -> list[tuple]:
    rnd = random.Random(1)
    people = [str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(PEOPLE)]
    rows = []
    for number in range(count // PER_RESOURCE):
        resource_id, person = str(uuid.UUID(int=rnd.getrandbits(128))), rnd.randrange(PEOPLE)
        for param in ("subject", "patient", "based-on", "encounter")[:PER_RESOURCE]:
            rows.append(("Encounter", resource_id, param, "Patient", people[person], None) if kind == "uuid"
                        else (number, param, "Patient", person, None))
    return rows


def run(kind: str, count: int, folder: Path) -> tuple[float, float, int]:
    path = folder / f"{kind}.db"
    for old in folder.glob(f"{kind}.db*"):
        old.unlink()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for statement in SCHEMAS[kind]:
        db.execute(statement)
    rows = rows_of(kind, count)
    sql = f"INSERT INTO r VALUES ({', '.join('?' * len(rows[0]))})"
    start, cpu = time.perf_counter(), time.process_time()
    for number, first in enumerate(range(0, len(rows), BATCH), 1):
        db.execute("BEGIN")
        db.executemany(sql, rows[first:first + BATCH])
        db.execute("COMMIT")
        if number % 20 == 0:
            db.execute("PRAGMA wal_checkpoint(RESTART)")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - start, time.process_time() - cpu, os.path.getsize(path)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    with tempfile.TemporaryDirectory(prefix="fhir-bridge-index-keys-") as folder:
        print(describe(Path(folder)))
        results: dict[str, list[tuple[float, float, int]]] = {"uuid": [], "int": []}
        for kind in ("uuid", "int", "uuid", "int"):
            results[kind].append(run(kind, count, Path(folder)))
        for kind, runs in results.items():
            for wall, cpu, size in runs:
                print(f"{kind:>4} keys: {count:,} rows in {wall:5.2f} s ({1e6 * wall / count:5.1f} us a row, "
                      f"{cpu:5.2f} s CPU), {size / 1e6:4.0f} MB")
        best = {kind: min(wall for wall, _, _ in runs) for kind, runs in results.items()}
        print(f"integer keys / UUID keys: {best['uuid'] / best['int']:.2f}x faster (best of two each)")


if __name__ == "__main__":
    main()
