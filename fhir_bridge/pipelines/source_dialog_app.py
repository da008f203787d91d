"""The QMUL DIALOG+ app CSV export adapter (mappings/dialog-app/, format in domain.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from fhir_bridge.errors import BridgeError
from fhir_bridge.formats.csv_reader import read_csv_folder_or_zip
from fhir_bridge.mapping import MappingEngine
from fhir_bridge.pipelines.dialog_app_sessions import session_parameters
from fhir_bridge.pipelines.source_record import SourceRecord
from fhir_bridge.pipelines.source_records import (Mapped, csv_records, csv_row_from_entry, raise_if_unreadable,
                                                   retry_context, unreadable)

__all__ = ["DialogAppSource"]


class DialogAppSource:
    """The QMUL DIALOG+ app CSV export (mappings/dialog-app/): one row, one session. A session that
    discussed domains or agreed actions goes into the person's plan (pipelines/dialog_app_sessions.py)."""

    name = "dialog-app"

    def __init__(self, engine: MappingEngine, organization: str):
        self.engine = engine
        self.parameters = {"organization": organization}
        self._domains: list[tuple[str, str]] | None = None

    def records(self, paths: list[Path]) -> Iterator[SourceRecord]:
        for path in paths:
            try:
                files = list(read_csv_folder_or_zip(path, lazy=True))
            except BridgeError as exc:
                yield unreadable(self.name, str(path), exc, b"", file=str(path))
                continue
            single = path.is_file() and path.suffix.lower() != ".zip"
            for name, data in files:
                yield from csv_records(self.name, str(path) if single else f"{path}/{name}", data, self._record,
                                       organization=self.parameters["organization"])

    def _record(self, row, location: str, raw: bytes, context: str) -> SourceRecord:
        return SourceRecord(self.name, location, raw, row.values, row.values.get("Client Name"), context,
                            self.engine.mappings[self.name].key_of(row.values, self.parameters))

    def record_from_entry(self, entry) -> SourceRecord:
        """A quarantined row, rebuilt alone for a retry (NotRetryable when it could not be read)."""
        context = retry_context(entry)
        return self._record(csv_row_from_entry(entry, context), entry.location, entry.raw, entry.context)

    def map(self, record: SourceRecord) -> Mapped:
        raise_if_unreadable(record)
        row: dict[str, str] = record.data  # type: ignore[assignment] - records() makes a CSV row's dict
        result = self.engine.map(self.name, row, record.location, self.parameters)
        problems = [p.to_issue() for p in result.problems]
        patient = next((r for r in result.resources if r.get("resourceType") == "Patient"), None)
        session, session_problems = session_parameters(row, self.domains(), patient["id"] if patient else "",
                                                       record.location)
        problems += session_problems
        usable = patient is not None and not any(p.is_error for p in problems)
        return Mapped(result.resources, problems, session=session if usable else None)

    def domains(self) -> list[tuple[str, str]]:
        """(dialog-domain code, column prefix) from the mapping file's `dialog-domains` list, the one
        place the format pairs each domain with its columns; built once."""
        if self._domains is None:
            items = self.engine.mappings[self.name].lists.get("dialog-domains", ())
            self._domains = [(str(i["domain"]), str(i["column"])) for i in items]
        return self._domains
