"""Importing files: `run_import`, the one way files are imported, and the adapter a run reads with.

A source adapter (source_rio.py, source_hl7.py, source_vcse.py, source_dialog_app.py; by name in
source_adapters.py) turns a source's files into `SourceRecord`s and one record into mapped
resources: it reads with formats/ and maps with the generic engine and its mapping file; the
ingest pipeline does the rest. Unreadable input (an empty file, binary garbage, a ragged row)
becomes a record that fails to map, so it is quarantined with its reason, never dropped.
"""
from __future__ import annotations

from pathlib import Path

from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines.ingest import Ingest, RunReport
from fhir_bridge.pipelines.input_files import shown_as, stdin_as_file
from fhir_bridge.pipelines.prepare import PreparePool, Recipe
from fhir_bridge.pipelines.progress import Progress
from fhir_bridge.pipelines.resources import Caller
# the adapters by name, each module loaded when its source is first asked for
from fhir_bridge.pipelines.source_adapters import SOURCE_NAMES, adapter_factory

__all__ = ["SOURCE_NAMES", "PARALLEL_BYTES", "adapter_factory", "build_adapter", "ingest_for", "run_import"]

PARALLEL_BYTES = 1_000_000  # an input this large is mapped in worker processes, when there are any


def run_import(bridge, source: str, paths: list[Path], *, organization: str, caller: Caller,
               quarantine_dir: Path | None, show_progress: bool = False, workers: int = 0,
               shown: dict[Path, str] | None = None) -> RunReport:
    """The one way files are imported, from the command line or from `$ingest` (`-` among `paths`:
    standard input). `workers`: worker processes that map and validate a large input while this
    process links and stores (0: none). `shown`: names to show for temporary paths (an upload's)."""
    from fhir_bridge.pipelines.quarantine_retry import closing_file_faults

    adapter_factory(source)  # an unknown source is refused before standard input is read
    with stdin_as_file(source, paths) as spooled:
        shown = {**(shown or {}), **{path: path.name for path in spooled if path not in paths}}  # stdin's file
        paths = spooled
        size = _size(paths)
        # Workers take a second to start: worth it for a large input (or one whose size is unknown).
        # Started first, so that they import and build their engine and validator while this
        # process builds its own adapter and opens the run.
        worth_workers = workers > 0 and (size is None or size >= PARALLEL_BYTES)
        pool = PreparePool(Recipe(bridge.settings, source, organization), workers) if worth_workers else None
        try:
            if pool is not None:
                pool.start()
            adapter = build_adapter(bridge, source, organization)
            progress = Progress(size) if show_progress else None
            ingest = ingest_for(bridge, adapter, caller, quarantine_dir=quarantine_dir, pool=pool)
            records = shown_as(adapter.records(paths), shown)
        except BaseException:
            if pool is not None:  # Ingest.run closes it once it has it
                pool.close()
            raise
        return ingest.run(closing_file_faults(bridge, ingest.report, records), progress)


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
