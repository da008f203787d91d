"""What every source adapter shares: the mapped result, records that could not be read, and the
context that lets a quarantined record be rebuilt alone for `quarantine retry`.

Unreadable input (an empty file, binary garbage, a ragged row, a broken JSON file) becomes a record
that fails to map with the reader's reason, so the pipeline quarantines it with its location and
raw bytes: never dropped, never a traceback. No mapping or data fix can store such a record, so it
carries no retry context; when a whole file could not be read it names the file instead, so that
importing the fixed file closes the entry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from fhir_bridge.errors import BridgeError, InputError
from fhir_bridge.fhir.outcome import Issue
from fhir_bridge.formats.csv_reader import CsvRow, read_csv
from fhir_bridge.pipelines.merge_request import MergeRequest
from fhir_bridge.pipelines.source_record import SourceRecord
from fhir_bridge.store.types import Precomputed


@dataclass
class Mapped:
    resources: list[dict]
    problems: list[Issue] = field(default_factory=list)
    merge: MergeRequest | None = None  # a merge of two people (HL7 ADT^A40): stored by patient_merge.py
    # A DIALOG+ session with agreed actions: $dialog-plus-session Parameters (without the ratings, which
    # are the mapped QuestionnaireResponse), recorded by pipelines/ingest_sessions.py
    session: dict | None = None
    # What an import worker computed from the resources as mapped (their scores and index rows),
    # which the store reuses where linking left them as they were (UnitOfWork.put_many `precomputed`)
    precomputed: list[Precomputed] | None = None


@dataclass(frozen=True)
class Unreadable:
    """Stands in for a record the reader could not produce; mapping it raises the reader's error."""

    error: BridgeError


class NotRetryable(InputError):
    """A quarantine entry no mapping or data fix can store: its input could not be read."""


def unreadable(source: str, location: str, error: BridgeError, raw: bytes, *, file: str | None = None) -> SourceRecord:
    """`file`: the file or folder that could not be read as a whole (not a single bad row)."""
    context = None if file is None else record_context(file=file)
    return SourceRecord(source, location, raw, Unreadable(error), context=context)


def record_context(**values: object) -> str:
    """The JSON a record keeps for a retry: `organization` (whom the import ran as) plus the
    adapter's own keys; built once per file or adapter, not per record."""
    return json.dumps(values, ensure_ascii=False, sort_keys=True)


def retry_context(entry) -> dict:
    """The context of a quarantine entry that can be retried; NotRetryable, saying what to do, if not."""
    context = json.loads(entry.context) if entry.context else {}
    if "file" in context:
        raise NotRetryable(f"{context['file']} could not be read as a whole, so there is no record to retry: "
                           "fix the file and import it again (that import closes this entry)")
    if not context.get("organization"):
        # No context: the record itself could not be read (or was quarantined before contexts were kept)
        raise NotRetryable("the record itself could not be read (see `quarantine show`), so no mapping or data "
                           "fix can store it: fix it at its source and import or send it again")
    return context


def raise_if_unreadable(record: SourceRecord) -> None:
    if isinstance(record.data, Unreadable):
        raise record.data.error


def csv_records(source: str, label: str, data: bytes | Path, make: Callable[[CsvRow, str, bytes, str], SourceRecord],
                **context: object) -> Iterator[SourceRecord]:
    """The rows of one CSV file as records; a ragged row, and the rest of a file that cannot be
    read, become unreadable records at their lines. `make(row, location, raw, context)` builds a
    good row's record; `context` is `**context` plus the file's header line, which with the row's
    raw text is a one-row CSV of the record (`csv_row_from_entry`)."""
    with_header = None
    try:
        for row in read_csv(data):
            location = f"{label}:{row.line}"
            raw = row.raw.encode("utf-8")
            if row.problem:
                yield unreadable(source, location, InputError(row.problem, location=location), raw)
                continue
            if with_header is None:
                with_header = record_context(**context, header=row.header)
            yield make(row, location, raw, with_header)
    except BridgeError as exc:
        line = str(exc.location or "1").rsplit(":", 1)[-1]  # the reader names bytes, not our file
        yield unreadable(source, f"{label}:{line}", exc, _head(data), file=label)


def _head(data: bytes | Path) -> bytes:
    """What a quarantine keeps of a file that could not be read: its first 4 KB."""
    if isinstance(data, Path):
        with data.open("rb") as stream:
            return stream.read(4096)
    return data[:4096]


def csv_row_from_entry(entry, context: dict) -> CsvRow:
    """A quarantined CSV record's row, read again from its file's header line and its raw text
    (UTF-8: the reader decoded the file before the row was kept)."""
    try:
        rows = list(read_csv(context["header"].encode("utf-8") + b"\n" + entry.raw))
    except BridgeError as exc:
        raise NotRetryable(f"the kept row cannot be read again: {exc.message}") from exc
    if len(rows) != 1 or rows[0].problem:  # it was one good row when imported; say so if that changed
        raise NotRetryable(f"the kept row no longer reads as one row under its header ({len(rows)} rows)")
    return rows[0]
