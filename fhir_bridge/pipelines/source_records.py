"""What every source adapter shares: the mapped result, and records that could not be read.

Unreadable input (an empty file, binary garbage, a ragged row, a broken JSON file) becomes a record
that fails to map with the reader's reason, so the pipeline quarantines it with its location and
raw bytes: never dropped, never a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from fhir_bridge.errors import BridgeError, InputError
from fhir_bridge.fhir.outcome import Issue
from fhir_bridge.formats.csv_reader import CsvRow, read_csv
from fhir_bridge.pipelines.ingest import SourceRecord


@dataclass
class Mapped:
    resources: list[dict]
    problems: list[Issue] = field(default_factory=list)


@dataclass(frozen=True)
class Unreadable:
    """Stands in for a record the reader could not produce; mapping it raises the reader's error."""

    error: BridgeError


def unreadable(source: str, location: str, error: BridgeError, raw: bytes) -> SourceRecord:
    return SourceRecord(source, location, raw, Unreadable(error))


def raise_if_unreadable(record: SourceRecord) -> None:
    if isinstance(record.data, Unreadable):
        raise record.data.error


def csv_records(source: str, label: str, data: bytes,
                make: Callable[[CsvRow, str, bytes], SourceRecord]) -> Iterator[SourceRecord]:
    """The rows of one CSV file as records (`make` builds a good row's record); a ragged row, and
    the rest of a file that cannot be read, become unreadable records at their lines."""
    try:
        for row in read_csv(data):
            location = f"{label}:{row.line}"
            raw = row.raw.encode("utf-8")
            if row.problem:
                yield unreadable(source, location, InputError(row.problem, location=location), raw)
            else:
                yield make(row, location, raw)
    except BridgeError as exc:
        line = str(exc.location or "1").rsplit(":", 1)[-1]  # the reader names bytes, not our file
        yield unreadable(source, f"{label}:{line}", exc, data[:4096])
