"""A one-line progress display for long imports: records, records/s and, when the input's size is
known, percent and ETA. Drawn only on a terminal, never in CI or into a pipe or log file."""
from __future__ import annotations

import os
import sys
import time
from typing import TextIO

REDRAW_EVERY = 0.2  # seconds: the display must not cost the import anything measurable


class Progress:
    def __init__(self, total_bytes: int | None = None, *, stream: TextIO | None = None, enabled: bool | None = None,
                 clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.enabled = enabled if enabled is not None else (self.stream.isatty() and not os.environ.get("CI"))
        self.total = total_bytes or None
        self.clock = clock
        self.started = clock()
        self.records = 0
        self.done_bytes = 0
        self._drawn = 0.0

    def advance(self, raw_bytes: int) -> None:
        self.records += 1
        self.done_bytes += raw_bytes
        if self.enabled:
            now = self.clock()
            if now - self._drawn >= REDRAW_EVERY:
                self._drawn = now
                self.stream.write("\r" + self.line(now))
                self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line(self.clock()) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.records / elapsed
        text = f"{self.records:,} records  {rate:,.0f}/s  {elapsed:,.0f} s"
        if self.total:
            share = min(self.done_bytes / self.total, 1.0)
            remaining = elapsed * (1 - share) / share if share > 0 else float("inf")
            bar = "#" * int(share * 30)
            eta = f"ETA {remaining:,.0f} s" if remaining != float("inf") else "ETA -"
            text = f"[{bar:<30}] {share:4.0%}  " + text + f"  {eta}"
        return text
