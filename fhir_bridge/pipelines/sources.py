"""Source adapters: a source's files -> `SourceRecord`s, and one record -> mapped resources.

Each adapter reads with formats/ and maps with the generic engine and its mapping file; the
ingest pipeline does the rest. Unreadable input (an empty file, binary garbage, a ragged row)
becomes a record that fails to map, so it is quarantined with its reason, never dropped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

from fhir_bridge.errors import BridgeError, InputError
from fhir_bridge.formats.csv_reader import read_csv_folder_or_zip
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines.dialog_app_sessions import session_parameters
from fhir_bridge.pipelines.ingest import Ingest, RunReport, SourceRecord
from fhir_bridge.pipelines.input_files import shown_as, stdin_as_file
from fhir_bridge.pipelines.prepare import PreparePool, Recipe
from fhir_bridge.pipelines.progress import Progress
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.pipelines.source_records import (Mapped, csv_records, csv_row_from_entry, raise_if_unreadable,
                                                   retry_context, unreadable)


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


def _sources() -> dict[str, Callable]:
    """Adapter factories by source name: (mapping engine, organisation ODS code, bridge) -> adapter."""
    from fhir_bridge.pipelines.source_hl7 import Hl7Source
    from fhir_bridge.pipelines.source_rio import RioSource
    from fhir_bridge.pipelines.source_vcse import VcseSource

    return {
        DialogAppSource.name: lambda engine, organization, bridge: DialogAppSource(engine, organization),
        RioSource.name: RioSource,
        Hl7Source.name: Hl7Source,
        VcseSource.name: lambda engine, organization, bridge: VcseSource(engine, organization),
    }


SOURCE_NAMES = ("dialog-app", "hl7", "rio", "vcse")
PARALLEL_BYTES = 1_000_000  # an input this large is mapped in worker processes, when there are any


def run_import(bridge, source: str, paths: list[Path], *, organization: str, caller: Caller,
               quarantine_dir: Path | None, show_progress: bool = False, workers: int = 0,
               shown: dict[Path, str] | None = None) -> RunReport:
    """The one way files are imported, from the command line or from `$ingest` (`-` among `paths`:
    standard input). `workers`: worker processes that map and validate a large input while this
    process links and stores (0: none). `shown`: names to show for temporary paths (an upload's)."""
    from fhir_bridge.pipelines.quarantine_retry import closing_file_faults

    adapter = build_adapter(bridge, source, organization)
    with stdin_as_file(source, paths) as spooled:
        shown = {**(shown or {}), **{path: path.name for path in spooled if path not in paths}}  # stdin's file
        paths = spooled
        size = _size(paths)
        progress = Progress(size) if show_progress else None
        # Workers take a second to start: worth it for a large input (or one whose size is unknown)
        worth_workers = workers > 0 and (size is None or size >= PARALLEL_BYTES)
        pool = PreparePool(Recipe(bridge.settings, source, organization), workers) if worth_workers else None
        ingest = ingest_for(bridge, adapter, caller, quarantine_dir=quarantine_dir, pool=pool)
        records = shown_as(adapter.records(paths), shown)
        return ingest.run(closing_file_faults(bridge, ingest.report, records), progress)


def adapter_factory(source: str) -> Callable:
    """`source`'s adapter factory: (mapping engine, organisation ODS code, bridge or None) -> adapter.
    Without a bridge (an import's worker process) an adapter can only map."""
    factories = _sources()
    if source not in factories:
        raise InputError(f"unknown source {source!r}: one of {', '.join(sorted(factories))}")
    return factories[source]


def build_adapter(bridge, source: str, organization: str, engine: MappingEngine | None = None):
    """`source`'s adapter, mapping as `organization` with the mapping files as they are now."""
    factory = adapter_factory(source)
    if engine is None:
        engine = MappingEngine(load_mappings(bridge.settings.mappings_dir, bridge.terminology), bridge.terminology)
    return factory(engine, organization, bridge)


def ingest_for(bridge, adapter, caller: Caller, *, quarantine_dir: Path | None = None,
               pool: PreparePool | None = None) -> Ingest:
    """An import run for `adapter`. An adapter that points records at people stored by earlier
    records (RiO assessments find their client's Patient: `place`) is given the run's lookup,
    which sees the batch linked but not yet stored."""
    ingest = Ingest(bridge, adapter.name, adapter.map, caller, quarantine_dir=quarantine_dir,
                    place=getattr(adapter, "place", None), pool=pool)
    if hasattr(adapter, "patients_with_identifier"):
        adapter.patients_with_identifier = ingest.patients_with_identifier
    return ingest


def _size(paths: list[Path]) -> int | None:
    """Bytes to read, for the progress ETA and the choice of worker processes (zips and odd paths:
    unknown). A folder counts every file in it: an HL7 feed's files have any extension, or none."""
    total = 0
    for path in paths:
        if path.is_file() and path.suffix.lower() != ".zip":
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        else:
            return None
    return total
