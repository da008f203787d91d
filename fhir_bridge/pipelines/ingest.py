"""Ingest: source records -> mapped FHIR resources -> validated -> one Patient per person -> stored.

Every record leaves a trace: stored (created, updated or unchanged) or quarantined with a reason,
and the run report's counts always add up (in = created + updated + unchanged + quarantined).
Each record is its own unit of work, so a crash or kill loses nothing already counted as stored,
and ids are deterministic, so running the same input again completes it without doubling.

A source adapter (RiO CSV, HL7 v2, VCSE, DIALOG+ app: one per source, built on formats/ and the
mapping engine) yields `SourceRecord`s and maps one to resources; this module knows none of them.
"""
from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import orjson

from fhir_bridge.errors import BridgeError
from fhir_bridge.fhir.codec import dumps_json, loads_json
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.pipelines.identity import SOURCE_BASE, Disagreement
from fhir_bridge.pipelines.progress import Progress
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.store.ingest_records import QuarantineEntry, Review

QUARANTINE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir-bridge.example.org/quarantine")
STATUSES = ("created", "updated", "unchanged")


@dataclass(frozen=True)
class SourceRecord:
    source: str        # rio | hl7 | vcse | dialog-app ...
    location: str      # where it came from: file:line, an MLLP message control id ...
    raw: bytes         # exactly as received: quarantine keeps it, retry maps it again
    data: object       # what the adapter decoded (a CSV row, a parsed message ...)
    source_key: str | None = None  # the source's own id of the person, for identity reviews


class Mapped(Protocol):
    resources: list[dict]
    problems: list[Issue]


Mapper = Callable[[SourceRecord], Mapped]


@dataclass
class RunReport:
    run_id: str
    source: str
    started: int
    finished: int | None = None
    records_in: int = 0
    counts: Counter = field(default_factory=Counter)        # created / updated / unchanged
    quarantined: Counter = field(default_factory=Counter)   # by reason
    disagreements: list[dict] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.records_in == sum(self.counts[s] for s in STATUSES) + sum(self.quarantined.values())

    def to_json(self) -> dict:
        return {"run": self.run_id, "source": self.source, "started": self.started, "finished": self.finished,
                "in": self.records_in, **{s: self.counts[s] for s in STATUSES},
                "quarantined": sum(self.quarantined.values()), "quarantinedByReason": dict(self.quarantined),
                "disagreements": self.disagreements, "balanced": self.balanced}


class Ingest:
    def __init__(self, bridge, source: str, mapper: Mapper, caller: Caller, *, run_id: str | None = None,
                 clock: Callable[[], int] = lambda: time.time_ns() // 1000, quarantine_dir: Path | None = None):
        self.bridge = bridge
        self.source = source
        self.mapper = mapper
        self.caller = caller
        self.clock = clock
        self.report = RunReport(run_id or str(uuid.uuid4()), source, clock())
        self.quarantine_file = (quarantine_dir / f"{self.report.run_id}.jsonl") if quarantine_dir else None

    def run(self, records: Iterable[SourceRecord], progress: Progress | None = None) -> RunReport:
        repo = self.bridge.repository
        repo.start_run(self.report.run_id, self.source, self.report.started)
        for record in records:
            self.report.records_in += 1
            self.one(record)
            if progress is not None:
                progress.advance(len(record.raw))
        if progress is not None:
            progress.finish()
        self.report.finished = self.clock()
        repo.finish_run(self.report.run_id, self.report.finished, orjson.dumps(self.report.to_json()))
        return self.report

    def one(self, record: SourceRecord) -> str:
        """Map, validate, link and store one record; returns its status (or `quarantined:<reason>`)."""
        try:
            mapped = self.mapper(record)
        except BridgeError as exc:
            return self._quarantine(record, "mapping", [Issue("error", exc.code, exc.message, exc.expression)])
        except Exception as exc:  # noqa: BLE001 - a mapping bug must not stop the batch or lose the record
            return self._quarantine(record, "mapping", [Issue("error", "exception", f"mapping failed: {exc!r}")])
        errors = [i for i in mapped.problems if i.is_error]
        if errors or not mapped.resources:
            return self._quarantine(record, "mapping", errors or [Issue("error", "not-found", "the record mapped to nothing")])
        for resource in mapped.resources:
            result = self.bridge.validator.validate(resource)
            if not result.valid:
                where = f"{resource.get('resourceType')}/{resource.get('id')}"
                return self._quarantine(record, "validation", [Issue(i.severity, i.code, f"{where}: {i.message}", i.expression)
                                                                for i in result.errors])
        return self.store(record, mapped.resources)

    def store(self, record: SourceRecord, resources: list[dict], *, decision: tuple[str, str] | None = None) -> str:
        """Link the person (or hold the record for review) and store everything in one unit of work.
        `decision` is a person's answer to a review, applied without matching again:
        ("link", patient id) or ("new", id for the new Patient)."""
        try:
            resources = self._link(record, resources, decision)
            if resources is None:
                self.report.quarantined["identity-review"] += 1
                return "quarantined:identity-review"
            statuses = []
            with self.bridge.repository.unit_of_work() as uow:
                for resource in resources:
                    result = self.bridge.resources.put_validated(resource, self.caller, uow=uow)
                    statuses.append("unchanged" if result.unchanged else "created" if result.created else "updated")
        except BridgeError as exc:
            return self._quarantine(record, "store", [Issue("error", exc.code, exc.message, exc.expression)])
        status = "created" if "created" in statuses else "updated" if "updated" in statuses else "unchanged"
        self.report.counts[status] += 1
        return status

    def _link(self, record: SourceRecord, resources: list[dict], decision: tuple[str, str] | None) -> list[dict] | None:
        patients = [r for r in resources if r.get("resourceType") == "Patient"]
        if not patients:
            return resources
        incoming = patients[0]
        if decision:
            action, patient_id = decision
        else:
            link = self.bridge.identity.resolve(incoming)
            if link.action == "review":
                self._hold_for_review(record, resources, link.reason, link.candidates)
                return None
            action, patient_id = link.action, link.patient_id
        linked = self._linked_patient(incoming, action, patient_id)
        return [linked if r is incoming else _rewrite_references(r, incoming.get("id"), linked["id"]) for r in resources]

    def _linked_patient(self, incoming: dict, action: str, patient_id: str) -> dict:
        if action == "new":
            meta = {**incoming.get("meta", {}), "source": SOURCE_BASE + self.source}
            return {**incoming, "id": patient_id or incoming["id"], "meta": meta}
        existing = self.bridge.repository.read("Patient", patient_id).resource
        merge = self.bridge.identity.merge(existing, incoming, self.source)
        self.report.disagreements += [_disagreement(patient_id, d) for d in merge.disagreements]
        return merge.patient

    def _hold_for_review(self, record: SourceRecord, resources: list[dict], reason: str, candidates) -> None:
        # One review per set of records, not per person: two waiting sessions of one person are two
        # reviews (keyed by person, the second would overwrite the first's records). Deterministic
        # ids keep it one review however often the same session is imported.
        held = ",".join(sorted(f"{r.get('resourceType')}/{r.get('id')}" for r in resources))
        review_id = str(uuid.uuid5(QUARANTINE_NAMESPACE, f"review|{record.source}|{held}"))
        key = record.source_key or record.location
        self.bridge.repository.add_review(Review(review_id, record.source, key, reason, tuple(candidates),
                                                 dumps_json({"location": record.location, "resources": resources}),
                                                 self.clock()))

    def _quarantine(self, record: SourceRecord, reason: str, issues: list[Issue]) -> str:
        digest = hashlib.sha256(record.raw).hexdigest()
        entry = QuarantineEntry(str(uuid.uuid5(QUARANTINE_NAMESPACE, f"{record.source}|{record.location}|{digest}")),
                                self.report.run_id, record.source, record.location[:512], reason, record.raw,
                                dumps_json(operation_outcome(issues)), self.clock())
        self.bridge.repository.quarantine_record(entry)
        if self.quarantine_file is not None:
            self.quarantine_file.parent.mkdir(parents=True, exist_ok=True)
            with self.quarantine_file.open("ab") as out:
                out.write(orjson.dumps({"entry": entry.entry_id, "location": record.location, "reason": reason,
                                        "raw": record.raw.decode("utf-8", "replace"),
                                        "outcome": loads_json(entry.outcome)}) + b"\n")
        self.report.quarantined[reason] += 1
        return f"quarantined:{reason}"


def resolve_review(ingest: Ingest, review_id: str, patient_id: str | None) -> str:
    """A person's decision on a review: these records are `patient_id`'s (or, with None, a new
    person's). The waiting records are stored; the review is closed."""
    repo = ingest.bridge.repository
    review = repo.review(review_id)
    if review is None or review.state != "open":
        raise BridgeError(f"no open identity review {review_id}")
    held = loads_json(review.waiting)
    record = SourceRecord(review.source, held["location"], review.waiting, None, review.source_key)
    if patient_id is None:
        incoming = next(r for r in held["resources"] if r.get("resourceType") == "Patient")
        state, linked = "new", incoming["id"]
    else:
        repo.read("Patient", patient_id)  # NotFound / Gone before anything is written
        state, linked = "linked", patient_id
    status = ingest.store(record, held["resources"], decision=("new" if state == "new" else "link", linked))
    if not status.startswith("quarantined"):
        repo.resolve_review(review_id, state, linked)
    return status


def _rewrite_references(resource: dict, old_id: str | None, new_id: str) -> dict:
    if not old_id or old_id == new_id:
        return resource
    pattern = re.compile(rf'"reference":"Patient/{re.escape(old_id)}"')
    text = dumps_json(resource).decode()
    return loads_json(pattern.sub(f'"reference":"Patient/{new_id}"', text).encode())


def _disagreement(patient_id: str, d: Disagreement) -> dict:
    return {"patient": patient_id, "element": d.element, "kept": d.kept, "keptFrom": d.kept_from,
            "other": d.other, "otherFrom": d.other_from}
