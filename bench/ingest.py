"""Benchmark: importing RiO exports end to end, next to the floor measured in the same run.

1. `synth rio` writes an export with N DIALOG assessments (and their clients).
2. The floor: the same two CSV files read with the csv module, each row dumped with orjson and
   inserted into a fresh SQLite table with executemany (no mapping, validation, linking, indexing).
3. The real import (`run_import`: read, map, validate, link identities, store with history, index
   rows, score rows and Provenance) into a fresh SQLite store.
Prints records/s for both, their ratio, and the peak RSS of each phase (each runs in its own
process so one's memory does not hide the other's).

Targets (issue 4, this 2-core machine): >= 5,000 RiO records/s end to end; 1,000,000 records in one
file with peak RSS under 500 MB.

    python bench/ingest.py [N]          (default 20000 assessments)
"""
from __future__ import annotations

import csv
import multiprocessing
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import orjson

FILES = ("clients.csv", "dialog_assessments.csv")


def floor(export: Path, out) -> None:
    db = sqlite3.connect(Path(tempfile.mkdtemp()) / "floor.db")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
    start, count = time.perf_counter(), 0
    for name in FILES:
        with (export / name).open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            batch = []
            for row in reader:
                batch.append((orjson.dumps(row),))
                if len(batch) == 1000:
                    db.executemany("INSERT INTO rows (body) VALUES (?)", batch)
                    count += len(batch)
                    batch = []
            db.executemany("INSERT INTO rows (body) VALUES (?)", batch)
            count += len(batch)
    db.commit()
    out.put(("floor", count, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def real(export: Path, out) -> None:
    from fhir_bridge.bridge import Bridge
    from fhir_bridge.config import Settings
    from fhir_bridge.pipelines.resources import Caller
    from fhir_bridge.pipelines.sources import run_import

    bridge = Bridge(Settings(data_dir=Path(tempfile.mkdtemp())))
    start = time.perf_counter()
    report = run_import(bridge, "rio", [export], organization="RV3", caller=Caller("RV3"), quarantine_dir=None)
    seconds = time.perf_counter() - start
    bridge.close()
    assert report.balanced, report.to_json()
    out.put(("fhir-bridge import", report.records_in, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def measure(target, export: Path) -> tuple:
    queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=target, args=(export, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    from fhir_bridge.synth import generate

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    export = Path(tempfile.mkdtemp(prefix="fhir-bridge-ingest-")) / "rio"
    t = time.perf_counter()
    generate("rio", export, count=n, seed=1)
    print(f"synth rio: {n:,} assessments written in {time.perf_counter() - t:.1f} s")
    results = [measure(floor, export), measure(real, export)]
    print(f"{'phase':<20} {'records':>9} {'seconds':>8} {'records/s':>10} {'peak RSS':>9}")
    for label, count, seconds, rss_kb in results:
        print(f"{label:<20} {count:>9,} {seconds:>8.1f} {count / seconds:>10,.0f} {rss_kb / 1024:>7.0f} MB")
    ratio = (results[1][1] / results[1][2]) / (results[0][1] / results[0][2])
    rate = results[1][1] / results[1][2]
    print(f"end to end / floor: {ratio:.3f}x;  target >= 5,000 records/s: {'met' if rate >= 5000 else 'NOT met'}")


if __name__ == "__main__":
    main()
