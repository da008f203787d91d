"""The machine's speed at the time of a benchmark run, printed next to its figures.

This machine's speed drifts: a shared VM, whose Python speed switches between two levels about
1.7 times apart (seen here: ~95 and ~160 ns a loop step, on both cores, within seconds), and the
disk's sync time more than that. A figure from one run compares with another run's only through
these: the pure-Python speed (a dict-and-str loop, what most of fhir-bridge's work is like),
sampled a few times, and the time a 4 KB append takes to reach the disk (fdatasync, what a WAL
checkpoint and a commit wait on).
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

LOOP = 200_000
SYNCS = 40


def python_ns() -> float:
    """Nanoseconds per step of a dict-and-str loop."""
    started, table = time.perf_counter(), {}
    for i in range(LOOP):
        table[i % 1000] = str(i)
    return (time.perf_counter() - started) / LOOP * 1e9


def sync_ms(folder: Path) -> tuple[float, float]:
    """Median and 90th percentile milliseconds of fdatasync after a 4 KB append, in `folder`."""
    times = []
    with tempfile.NamedTemporaryFile(dir=folder) as probe:
        for _ in range(SYNCS):
            probe.write(os.urandom(4096))
            probe.flush()
            started = time.perf_counter()
            os.fdatasync(probe.fileno())
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


def describe(folder: Path | None = None, samples: int = 6) -> str:
    """One line: the Python speed sampled `samples` times 0.3 s apart, and the sync time."""
    speeds = []
    for _ in range(samples):
        speeds.append(python_ns())
        time.sleep(0.3)
    median, p90 = sync_ms(folder or Path(tempfile.gettempdir()))
    return (f"machine now: Python {min(speeds):.0f}-{max(speeds):.0f} ns a loop step (median "
            f"{statistics.median(speeds):.0f}), fdatasync of 4 KB {median:.2f} ms (p90 {p90:.2f}); "
            "compare runs only at similar figures")


if __name__ == "__main__":
    print(describe())
