"""`quarantine retry`: quarantined records mapped again, after the mapping or the data is fixed.

Each entry is rebuilt alone by its source adapter (`record_from_entry`: the raw record plus the
context kept with it, e.g. a CSV row's header line) and goes through `Ingest.one` like a new
record, with the mapping files and the store as they are now. Stored: the entry is resolved and
names the retry run. Still failing: it stays open, refreshed with the new reason (the same record
quarantined again is the same entry). Held for an identity review (no safe match for the person):
it leaves the quarantine too, resolved as handed over, since the record now waits in `identity
review`, where a person's answer stores it; kept open it would wait in two places, and a resolved
review would not close it.

Input that could not be read (an empty file, binary garbage, a ragged row) holds no record that
a fix could store, so it is not retried: the fixed file must be imported again. An import that
reads a file resolves the open entries of earlier imports saying that file (or folder) could not
be read, or was missing (`closing_file_faults`). Entries of single unreadable rows stay open: a
re-sent file of the same name may be another month's export, so a row at the same place proves
nothing.

A retry is a run like an import, one per source and importing organisation (the adapter maps as
that organisation, the Provenance names it): its report counts the retried records (in = resolved
+ still quarantined) and its JSON lines file lists those still quarantined. Earlier runs' files
are their logs and are not rewritten: the store says what is open now.

A partner's upload (`$ingest`) is retried as that partner (`partner_caller`), limited by its care
relationships as they are now: its entries say so (`limited` in their context; an entry quarantined
for `access` before contexts said so can only be one). What the partner could not store, an
operator's retry does not store either; once the partner is on the person's care team, it does.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from fhir_bridge.errors import InputError
from fhir_bridge.fhir.codec import dumps_json, loads_json
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.pipelines.ingest import STATUSES, RunReport, SourceRecord
from fhir_bridge.pipelines.care_access import operator_caller, partner_caller
from fhir_bridge.pipelines.source_records import NotRetryable, Unreadable, retry_context
from fhir_bridge.store.ingest_records import QuarantineEntry

RESOLVED, REVIEW, ALREADY = "resolved", "handed to identity review", "resolved already"
STILL, CANNOT = "still quarantined", "cannot be retried"
REVIEW_NOTE = "mapped, and waiting for a person to say who it belongs to: see `fhir-bridge identity review`"


@dataclass(frozen=True)
class Retried:
    entry: QuarantineEntry
    outcome: str              # RESOLVED | REVIEW | ALREADY | STILL | CANNOT
    detail: str               # the store status, the new reason, or why it cannot be retried
    run_id: str | None = None


def retry_entries(bridge, entries: Iterable[QuarantineEntry], *,
                  quarantine_dir: Path | None = None) -> tuple[list[Retried], list[RunReport]]:
    """Retry `entries` (in the order given, but a source's own order first: RiO clients before
    their assessments); one run per source and organisation."""
    from fhir_bridge.mapping import MappingEngine, load_mappings
    from fhir_bridge.pipelines.sources import build_adapter, ingest_for  # sources imports this module

    results: list[Retried] = []
    groups: dict[tuple[str, str], list[QuarantineEntry]] = {}
    for entry in entries:
        if entry.state == "resolved":
            results.append(Retried(entry, ALREADY, f"by run {entry.resolved_run}", entry.resolved_run))
            continue
        try:
            context = retry_context(entry)
            as_partner = bool(context.get("limited")) or entry.reason == "access"
            groups.setdefault((entry.source, context["organization"], as_partner), []).append(entry)
        except NotRetryable as exc:
            results.append(Retried(entry, CANNOT, exc.message))
    reports: list[RunReport] = []
    engine = None
    for (source, organization, as_partner), group in groups.items():
        if engine is None:  # loaded once, and only when something is retried
            engine = MappingEngine(load_mappings(bridge.settings.mappings_dir, bridge.terminology), bridge.terminology)
        try:
            adapter = build_adapter(bridge, source, organization, engine)
        except InputError as exc:  # a source this fhir-bridge does not import (any more)
            results += [Retried(entry, CANNOT, exc.message) for entry in group]
            continue
        caller = partner_caller(organization) if as_partner else operator_caller(organization)
        ingest = ingest_for(bridge, adapter, caller, quarantine_dir=quarantine_dir)
        if _retry_group(ingest, adapter, group, results):
            reports.append(ingest.report)
    return results, reports


def _retry_group(ingest, adapter, group: list[QuarantineEntry], results: list[Retried]) -> bool:
    """One run: `group`'s records through `ingest`, one by one; False when none could be rebuilt."""
    rebuilt: list[tuple[QuarantineEntry, SourceRecord]] = []
    for entry in group:
        try:
            rebuilt.append((entry, adapter.record_from_entry(entry)))
        except NotRetryable as exc:
            results.append(Retried(entry, CANNOT, exc.message))
    if not rebuilt:
        return False
    order = getattr(adapter, "retry_order", None)
    if order is not None:
        rebuilt.sort(key=lambda pair: order(pair[1]))  # stable: the given order within each rank
    report, repo = ingest.report, ingest.bridge.repository
    repo.start_run(report.run_id, adapter.name, report.started)
    for entry, record in rebuilt:
        report.records_in += 1
        results.append(_settle(ingest, entry, ingest.one(record)))
    report.finished = ingest.clock()
    repo.finish_run(report.run_id, report.finished,
                    orjson.dumps({**report.to_json(), "retried": [entry.entry_id for entry, _ in rebuilt]}))
    return True


def _settle(ingest, entry: QuarantineEntry, status: str) -> Retried:
    """The entry after its record went through the pipeline again with `status`."""
    repo, run_id = ingest.bridge.repository, ingest.report.run_id
    if status in STATUSES:
        repo.resolve_quarantined(entry.entry_id, run_id)
        ingest.report.resolved.append(entry.entry_id)
        return Retried(entry, RESOLVED, status, run_id)
    reason = status.partition(":")[2]
    if reason == "identity-review":  # handed over (module docstring); the entry says where it went
        outcome = dumps_json(operation_outcome([Issue("information", "informational", REVIEW_NOTE)]))
        repo.quarantine_record(replace(entry, run_id=run_id, reason=reason, outcome=outcome, created=ingest.clock(),
                                       state="resolved", resolved_run=run_id))
        ingest.report.resolved.append(entry.entry_id)
        return Retried(entry, REVIEW, REVIEW_NOTE, run_id)
    refreshed = repo.quarantine_entry(entry.entry_id) or entry  # the pipeline wrote the new outcome
    return Retried(refreshed, STILL, f"{reason}: {first_issue(refreshed)}", run_id)


def first_issue(entry: QuarantineEntry) -> str:
    issues = loads_json(entry.outcome).get("issue") or [{}]
    return issues[0].get("diagnostics", "")


def closing_file_faults(bridge, report: RunReport, records: Iterable[SourceRecord]) -> Iterator[SourceRecord]:
    """`records`, passed on; once the last is read, the open entries of earlier imports saying a
    file (or folder) this run has now read could not be read, or was missing, are resolved by
    this run. A file this run could not read either keeps its entries open."""
    read, failed = set(), set()
    for record in records:
        if isinstance(record.data, Unreadable) and record.context:
            failed.add(_file_key(json.loads(record.context)["file"]))
        else:
            read.add(record.location.rpartition(":")[0])  # file:line (a bad row still means the file was read)
        yield record
    read = {_file_key(label) for label in read}
    for entry_id, context in bridge.repository.open_quarantine_contexts(report.source):
        file = json.loads(context).get("file")
        if file is None:
            continue
        key = _file_key(file)
        if key not in failed and any(label == key or label.startswith(key + "/") for label in read):
            bridge.repository.resolve_quarantined(entry_id, report.run_id)
            report.resolved.append(entry_id)


def _file_key(path: str) -> str:
    # "./x.csv" and "x.csv" are one file; trusts' file shares ignore case ("Clients.CSV").
    return os.path.normpath(path).replace(os.sep, "/").casefold()
