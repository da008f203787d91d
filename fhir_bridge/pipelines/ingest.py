"""Ingest: source records -> mapped FHIR resources -> validated -> one Patient per person -> stored.

Every record leaves a trace: stored (created, updated or unchanged) or quarantined with a reason,
and the run report's counts always add up (in = created + updated + unchanged + quarantined).
A file import stores its records in batches, each one unit of work, and counts a record only once
its batch is committed, so a crash or kill loses nothing already counted as stored; ids are
deterministic, so running the same input again completes it without doubling. The MLLP listener
stores each message alone (`one`), since its ACK must follow the commit.

A source adapter (RiO CSV, HL7 v2, VCSE, DIALOG+ app: one per source, built on formats/ and the
mapping engine) yields `SourceRecord`s and maps one to resources; this module knows none of them.
Mapping and validation need nothing but the record (pipelines/prepare.py), so a large file import
runs them in worker processes (`pool`); an adapter whose records must be pointed at what the run
has stored (RiO) does that in `place`, here, in input order.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import orjson

from fhir_bridge.errors import BridgeError, Forbidden
from fhir_bridge.fhir.codec import dumps_json, loads_json
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.pipelines.bulk_gc import fewer_collections
from fhir_bridge.pipelines.care_access import limited
from fhir_bridge.pipelines.identity import NO_PENDING, SOURCE_BASE, Disagreement, PendingPatients
from fhir_bridge.pipelines.ingest_sessions import (SESSION_REFUSED, held_caller, held_session, importer,
                                                   record_held_session, record_session)
from fhir_bridge.pipelines.patient_links import repointed
from fhir_bridge.pipelines.patient_merge import merge_patients
from fhir_bridge.pipelines.prepare import Prepared, PreparePool, prepare
from fhir_bridge.pipelines.progress import Progress
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.pipelines.source_record import SourceRecord
from fhir_bridge.store.ingest_records import QuarantineEntry, Review
from fhir_bridge.store.types import Precomputed

QUARANTINE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir-bridge.example.org/quarantine")
STATUSES = ("created", "updated", "unchanged")
# Records per unit of work in a file import. A commit writes every page the batch changed, and a
# batch's index rows land on pages all over their B-trees, most of which the next batch changes
# again: fewer, larger commits write each page fewer times (a 68,990-record RiO import: 500 a
# batch 1.32 M page writes, 3.3 s of commits; 1,000: 0.99 M, 2.6 s; 2,000: 0.75 M, 2.0 s). But a
# batch holds the store's write lock while it is stored (at 1,000 a median 0.29 s, at most 0.68 s,
# on a slow day of this 2-core VM), and an API or MLLP write meanwhile waits: 1,000 is the compromise.
BATCH_SIZE = 1_000
# Records an import with a pool maps in its own process while its worker processes start (they
# take about a second to build their engine and validator); the rest go to the workers. A chunk's
# worth: after that, while a worker is not ready, the importing process shares its chunks
# (PreparePool share=) rather than waiting, so mapping more here first only took work off the
# workers (HL7 replay of 7,741 messages, 2,000 -> 250: 557, 494 -> 569, 547 messages/s).
PARALLEL_AFTER = 250
READ_AHEAD = 250  # prepared records whose Patients' identifiers are looked up together


class Mapped(Protocol):
    resources: list[dict]
    problems: list[Issue]


Mapper = Callable[[SourceRecord], Mapped]
# Points a record mapped without errors at what the run has stored; adds error problems if it cannot.
Placer = Callable[[SourceRecord, Mapped], None]


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
    resolved: list[str] = field(default_factory=list)  # quarantine entries this run closed
    _told: set[str] = field(default_factory=set, repr=False, compare=False)  # disagreements reported

    @property
    def balanced(self) -> bool:
        return self.records_in == sum(self.counts[s] for s in STATUSES) + sum(self.quarantined.values())

    def add_disagreements(self, patient_id: str, found: list) -> None:
        """Each disagreement once a run, however many of the person's records met it."""
        for d in found:
            entry = _disagreement(patient_id, d)
            key = repr(sorted(entry.items()))
            if key not in self._told:
                self._told.add(key)
                self.disagreements.append(entry)

    def to_json(self) -> dict:
        return {"run": self.run_id, "source": self.source, "started": self.started, "finished": self.finished,
                "in": self.records_in, **{s: self.counts[s] for s in STATUSES},
                "quarantined": sum(self.quarantined.values()), "quarantinedByReason": dict(self.quarantined),
                "disagreements": self.disagreements, "resolvedQuarantine": self.resolved,
                "balanced": self.balanced}


class Ingest:
    def __init__(self, bridge, source: str, mapper: Mapper, caller: Caller, *, run_id: str | None = None,
                 clock: Callable[[], int] = lambda: time.time_ns() // 1000, quarantine_dir: Path | None = None,
                 batch_size: int = BATCH_SIZE, place: Placer | None = None, pool: PreparePool | None = None,
                 parallel_after: int = PARALLEL_AFTER):
        self.bridge = bridge
        self.source = source
        self.mapper = mapper    # record -> Mapped; runs in a worker process when there is a pool
        self.place = place
        self.pool = pool
        self.parallel_after = parallel_after
        self.caller = caller
        self.clock = clock
        self.report = RunReport(run_id or str(uuid.uuid4()), source, clock())
        self.quarantine_file = (quarantine_dir / f"{self.report.run_id}.jsonl") if quarantine_dir else None
        self.batch_size = batch_size
        self.pending = PendingPatients()  # linked in the batch in hand, not yet stored
        # what the workers computed from the batch's resources as mapped, by key (UnitOfWork.put_many)
        self._precomputed: dict[tuple[str, str], Precomputed] = {}
        self._fixable: dict[str, list[str]] = {}  # record key -> open quarantine entries of earlier runs

    def run(self, records: Iterable[SourceRecord], progress: Progress | None = None) -> RunReport:
        """Import `records` in batches: each record is mapped, validated and linked as it comes, and
        every `batch_size` linked records are stored in one unit of work (a commit and a few bulk
        statements per batch rather than per record). Records are counted only once committed."""
        repo = self.bridge.repository
        try:
            repo.start_run(self.report.run_id, self.source, self.report.started)
            self._fixable = _open_entries_by_key(repo, self.source)
            with fewer_collections(), self.bridge.database.bulk():
                self._run(records, progress)
        finally:
            if self.pool is not None:
                self.pool.close()  # started, but the input ended before it had records for it (or failed)
        self.report.finished = self.clock()
        repo.finish_run(self.report.run_id, self.report.finished, orjson.dumps(self.report.to_json()))
        return self.report

    def _run(self, records: Iterable[SourceRecord], progress: Progress | None) -> None:
        batch: list[tuple[SourceRecord, list[dict]]] = []
        for record, prepared in self._identities_read_ahead(self._prepared(records)):
            self.report.records_in += 1
            mapped = self._judged(record, prepared)
            if isinstance(mapped, str):
                pass
            elif getattr(mapped, "merge", None) is not None:
                self._flush(batch)  # a merge reads the store: what came before it must be stored
                self._merge(record, mapped.merge)
            elif getattr(mapped, "session", None) is not None:
                self._flush(batch)  # a DIALOG+ session reads the person's plan: the same
                record_session(self, record, mapped)
            else:
                linked = self._link(record, mapped.resources, None, self.pending)
                if not isinstance(linked, str):
                    batch.append((record, linked))
                    for done in getattr(mapped, "precomputed", None) or ():
                        self._precomputed[done.resource["resourceType"], done.resource["id"]] = done
                    if len(batch) >= self.batch_size:
                        self._flush(batch)
            if progress is not None:
                progress.advance(len(record.raw))
        self._flush(batch)
        if progress is not None:
            progress.finish()

    def _identities_read_ahead(self, prepared: Iterator[tuple[SourceRecord, Prepared]]
                               ) -> Iterator[tuple[SourceRecord, Prepared]]:
        """The prepared records as they come, taken READ_AHEAD at a time, the holders of the
        identifiers of the Patients among them read in one query first (IdentityResolver.look_up):
        linking a RiO client or an HL7 ADT person otherwise asked the store once per identifier."""
        while True:
            chunk: list[tuple[SourceRecord, Prepared]] = []
            try:
                chunk.extend(islice(prepared, READ_AHEAD))
            except BaseException:
                yield from chunk  # the input failed (or the run was stopped): what came before is stored
                raise
            if not chunk:
                return
            patients = [resource for _, p in chunk if p.mapped is not None and not p.mapping_errors and not p.invalid
                        for resource in getattr(p.mapped, "resources", None) or ()
                        if type(resource) is dict and resource.get("resourceType") == "Patient"]
            if patients:
                self.bridge.identity.look_up(patients, self.pending)
            yield from chunk

    def one(self, record: SourceRecord) -> str:
        """Map, validate, link and store one record in its own unit of work (the MLLP listener:
        a message is acknowledged only once committed); returns its status or `quarantined:<reason>`."""
        mapped = self._judged(record, prepare(record, self.mapper, self.bridge.validator))
        if isinstance(mapped, str):
            return mapped
        if getattr(mapped, "merge", None) is not None:
            return self._merge(record, mapped.merge)
        if getattr(mapped, "session", None) is not None:
            return record_session(self, record, mapped)
        return self.store(record, mapped.resources)

    def patients_with_identifier(self, system: str, value: str) -> list[str]:
        """Patients holding an identifier, as this run sees them (its unstored batch included):
        for adapters that point records at a person stored by an earlier record (RiO assessments)."""
        return sorted(self.bridge.identity.holders(system, value, self.pending))

    def _prepared(self, records: Iterable[SourceRecord]) -> Iterator[tuple[SourceRecord, Prepared]]:
        """Each record with its `prepare` result, in input order: here, or - with a pool, for the
        records after the first `parallel_after` - in worker processes, which start at once and
        get ready while this process works through the first records."""
        def here(record: SourceRecord) -> tuple[SourceRecord, Prepared]:
            return record, prepare(record, self.mapper, self.bridge.validator)

        if self.pool is None:
            return map(here, records)
        pool, records = self.pool, iter(records)
        pool.start()

        def rest() -> Iterator[tuple[SourceRecord, Prepared]]:
            first = next(records, None)
            if first is not None:
                yield from pool.prepared(chain([first], records), fallback=lambda record: here(record)[1])

        return chain(map(here, islice(records, self.parallel_after)), rest())

    def _judged(self, record: SourceRecord, prepared: Prepared) -> Mapped | str:
        """The record mapped, validated and placed, or the status of its quarantine. Mapping
        problems (the adapter's or `place`'s) come before validation's, as one reason."""
        if prepared.mapping_errors:
            return self._quarantine(record, "mapping", prepared.mapping_errors)
        mapped = prepared.mapped
        if self.place is not None:
            try:
                self.place(record, mapped)
            except BridgeError as exc:
                return self._quarantine(record, "mapping", [Issue("error", exc.code, exc.message, exc.expression)])
            if errors := [i for i in mapped.problems if i.is_error]:
                return self._quarantine(record, "mapping", errors)
        if prepared.invalid:
            return self._quarantine(record, "validation", prepared.invalid)
        return mapped

    def _flush(self, batch: list[tuple[SourceRecord, list[dict]]]) -> None:
        """Store a batch in one unit of work; if that fails, record by record, so that a record the
        store refuses is quarantined alone and the others are stored."""
        if not batch:
            return
        try:
            with self.bridge.repository.unit_of_work() as uow:
                results = self.bridge.resources.put_many_validated([r for _, linked in batch for r in linked],
                                                                   self.caller, uow=uow,
                                                                   precomputed=self._precomputed)
        except BridgeError:
            for record, linked in batch:
                self._store_linked(record, linked)
        else:
            position = 0
            for record, linked in batch:
                self.counted(record, _status(results[position:position + len(linked)]))
                position += len(linked)
        batch.clear()
        self.pending.clear()
        self._precomputed.clear()

    def store(self, record: SourceRecord, resources: list[dict], *, decision: tuple[str, str] | None = None,
              caller: Caller | None = None) -> str:
        """Link the person (or hold the record for review) and store everything in one unit of work.
        `decision` is a person's answer to a review, applied without matching again:
        ("link", patient id) or ("new", id for the new Patient). `caller`: whom to store as, if not
        the run's (a held record's importer)."""
        linked = self._link(record, resources, decision)
        return linked if isinstance(linked, str) else self._store_linked(record, linked, caller)

    def _store_linked(self, record: SourceRecord, linked: list[dict], caller: Caller | None = None) -> str:
        caller = caller or self.caller
        try:
            with self.bridge.repository.unit_of_work() as uow:
                results = [self.bridge.resources.put_validated(resource, caller, uow=uow) for resource in linked]
        except BridgeError as exc:  # refused by the care-access policy (a partner's upload), or by the store
            reason = "access" if isinstance(exc, Forbidden) else "store"
            return self._quarantine(record, reason, [Issue("error", exc.code, exc.message, exc.expression)],
                                    caller=caller)
        return self.counted(record, _status(results))

    def _link(self, record: SourceRecord, resources: list[dict], decision: tuple[str, str] | None,
              pending: PendingPatients = NO_PENDING) -> list[dict] | str:
        """The resources pointing at the person's one Patient (merged with what this record says of
        them), or the status of a record held for an identity review or quarantined."""
        patients = [r for r in resources if r.get("resourceType") == "Patient"]
        if not patients:
            return resources
        incoming = patients[0]
        try:
            if decision:
                action, patient_id = decision
            else:
                link = self.bridge.identity.resolve(incoming, pending)
                action, patient_id = link.action, link.patient_id
                if link.action == "review":
                    decided = self._decided(record, resources)
                    if decided is None:
                        self._hold_for_review(record, resources, link.reason, link.candidates)
                        self.report.quarantined["identity-review"] += 1
                        return "quarantined:identity-review"
                    action, patient_id = decided
            linked = self._linked_patient(incoming, action, patient_id, pending)
        except BridgeError as exc:
            return self._quarantine(record, "store", [Issue("error", exc.code, exc.message, exc.expression)])
        if pending is not NO_PENDING:
            pending.add(linked)
        old, new = incoming.get("id"), linked["id"]
        return [linked if r is incoming else repointed(r, old, new) if old and old != new else r for r in resources]

    def _linked_patient(self, incoming: dict, action: str, patient_id: str, pending: PendingPatients) -> dict:
        if action == "new":
            meta = {**incoming.get("meta", {}), "source": SOURCE_BASE + self.source}
            return {**incoming, "id": patient_id or incoming["id"], "meta": meta}
        existing = self.bridge.identity.patient(patient_id, pending)
        merge = self.bridge.identity.merge(existing, incoming, self.source)
        self.report.add_disagreements(patient_id, merge.disagreements)
        return merge.patient

    def _decided(self, record: SourceRecord, resources: list[dict]) -> tuple[str, str] | None:
        """A person's earlier answer to the review of these very records: importing the same file
        again applies it (all unchanged) rather than asking again."""
        review = self.bridge.repository.review(_review_id(record, resources))
        if review is None or review.state == "open" or not review.patient_id:
            return None
        return ("new" if review.state == "new" else "link"), review.patient_id

    def _hold_for_review(self, record: SourceRecord, resources: list[dict], reason: str, candidates) -> None:
        """The record waits for a person to say whose it is; a DIALOG+ session it carries
        (SessionRecord) waits with it, for `resolve_review` to record (pipelines/ingest_sessions.py)."""
        key = record.source_key or record.location
        waiting = {"location": record.location, "resources": resources, "caller": held_caller(self.caller),
                   **held_session(record)}
        self.bridge.repository.add_review(Review(_review_id(record, resources), record.source, key, reason, tuple(candidates),
                                                 dumps_json(waiting), self.clock()))

    def _quarantine(self, record: SourceRecord, reason: str, issues: list[Issue], *,
                    caller: Caller | None = None) -> str:
        """Keep the record with why it was not stored. `caller`: whom it was being stored as, if not
        the run's (a held record's importer): what a retry writes as."""
        entry = QuarantineEntry(quarantine_entry_id(record),
                                self.report.run_id, record.source, record.location[:512], reason, record.raw,
                                dumps_json(operation_outcome(issues)), self.clock(),
                                context=self._retry_context(record, caller or self.caller))
        self.bridge.repository.quarantine_record(entry)
        if self.quarantine_file is not None:
            self.quarantine_file.parent.mkdir(parents=True, exist_ok=True)
            with self.quarantine_file.open("ab") as out:
                out.write(orjson.dumps({"entry": entry.entry_id, "location": record.location, "reason": reason,
                                        "raw": record.raw.decode("utf-8", "replace"),
                                        "outcome": loads_json(entry.outcome)}) + b"\n")
        self.report.quarantined[reason] += 1
        return f"quarantined:{reason}"

    @staticmethod
    def _retry_context(record: SourceRecord, caller: Caller) -> str | None:
        """The record's context for `quarantine retry`; a partner's upload's says so (`limited`): its
        retry writes as that partner, as limited by care relationships (pipelines/care_access.py).
        With the record's key: a later import that stores the fixed record closes the entry."""
        extra = {**({"limited": True} if limited(caller) else {}),
                 **({"key": record.record_key} if record.record_key else {})}
        if record.context is None or not extra:
            return record.context
        return json.dumps({**json.loads(record.context), **extra}, ensure_ascii=False, sort_keys=True)

    def counted(self, record: SourceRecord, status: str) -> str:
        """Count a stored record; the entries it left in quarantine in earlier runs (found by its
        key) are resolved by this run: the record was fixed at its source and is stored now."""
        self.report.counts[status] += 1
        for entry_id in self._fixable.pop(record.record_key, ()) if record.record_key else ():
            self.bridge.repository.resolve_quarantined(entry_id, self.report.run_id)
            self.report.resolved.append(entry_id)
        return status

    def _merge(self, record: SourceRecord, request) -> str:
        """Two people merged into one (HL7 ADT^A40), in a unit of work of its own: see
        pipelines/patient_merge.py. It reads the store, so whatever came before it must be stored."""
        try:
            merge = merge_patients(self.bridge, request, self.caller, self.source)
        except BridgeError as exc:
            reason = "access" if isinstance(exc, Forbidden) else "merge"
            return self._quarantine(record, reason, [Issue("error", exc.code, exc.message, exc.expression)])
        self.pending = PendingPatients()  # the holders it remembered: the survivor now holds the old ids too
        self.report.add_disagreements(merge.survivor_id, merge.disagreements)
        self.report.counts[merge.status] += 1
        return merge.status


@dataclass(frozen=True)
class SessionRecord(SourceRecord):
    """A record carrying a DIALOG+ session (its `$dialog-plus-session` Parameters, recorded by
    pipelines/ingest_sessions.py): held for an identity review, the session waits with it."""
    session: dict | None = None


def resolve_review(ingest: Ingest, review_id: str, patient_id: str | None) -> str:
    """A person's decision on a review: these records are `patient_id`'s (or, with None, a new
    person's), stored as whoever imported them, and the review is closed. A partner's upload is
    stored only within its care relationships: refused for access, it is quarantined and the review
    stays open. A DIALOG+ session waiting with them is recorded into that person's plan
    (pipelines/ingest_sessions.py); if the plan refuses it, the record is quarantined with reason
    `session` and the decision stands all the same."""
    repo = ingest.bridge.repository
    review = repo.review(review_id)
    if review is None or review.state != "open":
        raise BridgeError(f"no open identity review {review_id}")
    held = loads_json(review.waiting)
    if patient_id is None:
        incoming = next(r for r in held["resources"] if r.get("resourceType") == "Patient")
        state, linked = "new", incoming["id"]
    else:
        repo.read("Patient", patient_id)  # NotFound / Gone before anything is written
        state, linked = "linked", patient_id
    decision = ("new" if state == "new" else "link", linked)
    if held.get("session") is not None:
        status = record_held_session(ingest, review, held, decision)
    else:
        record = SourceRecord(review.source, held["location"], review.waiting, None, review.source_key)
        status = ingest.store(record, held["resources"], decision=decision, caller=importer(held.get("caller") or {}))
    if not status.startswith("quarantined") or status == SESSION_REFUSED:
        repo.resolve_review(review_id, state, linked)
    return status


def quarantine_entry_id(record: SourceRecord) -> str:
    """The quarantine entry of a record: by source, location and the raw bytes' digest, so the same
    bad record quarantined again is the same entry."""
    digest = hashlib.sha256(record.raw).hexdigest()
    return str(uuid.uuid5(QUARANTINE_NAMESPACE, f"{record.source}|{record.location}|{digest}"))


def _review_id(record: SourceRecord, resources: list[dict]) -> str:
    # One review per set of records, not per person: two waiting sessions of one person are two
    # reviews (keyed by person, the second would overwrite the first's records). Deterministic
    # ids keep it one review however often the same session is imported.
    held = ",".join(sorted(f"{r.get('resourceType')}/{r.get('id')}" for r in resources))
    return str(uuid.uuid5(QUARANTINE_NAMESPACE, f"review|{record.source}|{held}"))


def _status(results) -> str:
    """A record's status from its resources' writes: created if any was, else updated if any was."""
    if any(r.created and not r.unchanged for r in results):
        return "created"
    return "unchanged" if all(r.unchanged for r in results) else "updated"


def _open_entries_by_key(repository, source: str) -> dict[str, list[str]]:
    """The open quarantine entries of `source` that name their record's key, by key."""
    found: dict[str, list[str]] = {}
    for entry_id, context in repository.open_quarantine_contexts(source):
        key = json.loads(context).get("key")
        if key:
            found.setdefault(key, []).append(entry_id)
    return found


def _disagreement(patient_id: str, d: Disagreement) -> dict:
    return {"patient": patient_id, "element": d.element, "kept": d.kept, "keptFrom": d.kept_from,
            "other": d.other, "otherFrom": d.other_from}
