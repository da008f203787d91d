"""Benchmark: the synthetic export generator (`fhir_bridge.synth`).

Generates each source with COUNT main-file records (clean, then dirty) into a temporary folder and
reports records/s (main-file records; all rows written in brackets), bytes written and peak RSS.
Each source runs in its own child process so every peak RSS figure is that source's alone: memory
must stay flat however large COUNT is (the generators stream; nothing is held per record).

    python bench/synth.py [COUNT] [SOURCE ...]      (defaults 100000 and every source)
"""
from __future__ import annotations

import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

from fhir_bridge.synth import SOURCES, generate


def _run(source: str, count: int, dirty: bool, results: multiprocessing.Queue) -> None:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        manifest = generate(source, folder, count=count, seed=1, dirty=dirty)
        seconds = time.perf_counter() - started
        size = sum((Path(folder) / f.path).stat().st_size for f in manifest.files)
    rows = sum(f.records for f in manifest.files)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    results.put((source, dirty, count, rows, seconds, size, peak_mb))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    sources = sys.argv[2:] or list(SOURCES)
    results: multiprocessing.Queue = multiprocessing.Queue()
    print(f"{'source':<11} {'mode':<6} {'records/s':>10} {'(all rows/s)':>13} {'MB written':>11} {'peak RSS MB':>12}")
    for source in sources:
        for dirty in (False, True):
            child = multiprocessing.Process(target=_run, args=(source, count, dirty, results))
            child.start()
            name, _, n, rows, seconds, size, peak_mb = results.get()
            child.join()
            print(f"{name:<11} {'dirty' if dirty else 'clean':<6} {n / seconds:>10,.0f} {rows / seconds:>13,.0f} "
                  f"{size / 1e6:>11.1f} {peak_mb:>12.1f}")


if __name__ == "__main__":
    main()
