"""The progress line: drawn on terminals with rate and ETA, silent elsewhere."""
from __future__ import annotations

import io

from fhir_bridge.pipelines.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_draws_rate_percent_and_eta_on_a_terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    ticks = iter([0.0, 1.0, 2.0, 2.0])
    out = Tty()
    progress = Progress(1000, stream=out, clock=lambda: next(ticks))
    progress.advance(250)   # t=1: 25% of the bytes after 1 s -> 3 s to go
    progress.finish()       # t=2
    first, last = out.getvalue().split("\r")[1:]
    assert "25%" in first and "1 records" in first and "ETA 3 s" in first
    assert last.endswith("\n")


def test_silent_in_ci_and_into_pipes(monkeypatch):
    pipe = io.StringIO()
    Progress(10, stream=pipe).advance(5)
    assert pipe.getvalue() == ""
    monkeypatch.setenv("CI", "true")
    tty = Tty()
    progress = Progress(10, stream=tty)
    progress.advance(5)
    progress.finish()
    assert tty.getvalue() == ""
