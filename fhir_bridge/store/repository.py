"""The repository: the only code that talks to the database.

Reads (read, vread, history, count) run in short read transactions. Every write goes through a
UnitOfWork, one database transaction that may hold many writes: each write updates the current row,
appends a history row, rewrites the resource's search index rows and its DIALOG score row, all or
nothing. Version ids count every change of a resource, deletions included: 1, 2, 3 ...

Concurrent writers of one resource are serialized per resource: the current row is read with
SELECT ... FOR UPDATE on PostgreSQL (a concurrent writer waits for the commit, then sees the new
version); SQLite has a single writer and a write transaction takes its lock at BEGIN (IMMEDIATE).
So a version check and the write that follows always see the same version.
"""
from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

import orjson
from sqlalchemy import Connection, Row, Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from fhir_bridge.errors import Conflict, Gone, InputError, NotFound, PreconditionFailed
from fhir_bridge.fhir.codec import dumps_json, json_default, loads_json
from fhir_bridge.store import schema
from fhir_bridge.store.bulk_insert import BulkInsert
from fhir_bridge.store.care_access import AccessRowWriter, AccessScope, people_of_keys, related_people, visible
from fhir_bridge.store.database import Database
from fhir_bridge.store.driver_statements import DriverStatement, IN_CHUNK
from fhir_bridge.store.dialog_history import dialogs_of, dialogs_of_people
from fhir_bridge.store.ingest_records import IngestMixin
from fhir_bridge.store.outcome_fields import person_row
from fhir_bridge.store.outcome_queries import OutcomeMixin
from fhir_bridge.store.outbound_records import OutboundMixin
from fhir_bridge.store.search import SearchRequest, build_search
from fhir_bridge.store.search_execution import SearchMixin
from fhir_bridge.store.submission_records import SubmissionMixin
from fhir_bridge.store.types import Precomputed, Stored, WriteResult, instant

__all__ = ["Repository", "UnitOfWork", "read_if_live", "same_content", "Indexer", "ScoreRows", "Clock",
           "IncreasingClock", "ABSENT"]

Clock = Callable[[], int]                      # microseconds since the epoch
# a DIALOG response -> its dialog_scores row; with (response as scored earlier, its scores) after it
# when put_many is given them (pipelines/score_rows.py ScoreRows)
ScoreRows = Callable[..., dict | None]


class Indexer(Protocol):
    def rows(self, resource: dict, given: tuple[dict, list] | None = None) -> dict[str, list[dict]]:
        """Index rows per schema.INDEX_TABLES key, without resource_type/resource_id; `given`: a
        worker's rows of the resource as it was (Precomputed.index_rows), reused where they hold."""

    def rows_of(self, resource_type: str, code: str) -> tuple[str, str | None]:
        """(param of the rows holding a reference parameter's values, target type they are
        restricted to or None): see search_parameters.py SearchParam.stored_as."""


_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_RESOURCE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")     # FHIR id datatype
_SERVER_META = ("versionId", "lastUpdated")
_SCORED_TYPE = "QuestionnaireResponse"
_PERSON_TYPE = "Patient"   # gets a person_attributes row (outcome report subgroups)
ABSENT = 0        # put_many's if_match for a resource that must not exist yet
_resources, _history, _scores = schema.resources, schema.history, schema.dialog_scores
_people = schema.person_attributes


def _owner_is(table: Table):
    return and_(table.c.resource_type == bindparam("owner_type"), table.c.resource_id == bindparam("owner_id"))


# Statements of the single-resource paths, built once: building a statement and computing its
# cache key on every call costs several times what SQLite takes to run it.
# The hottest ones (a session's and an import batch's) run on the driver's cursor (driver_statements.py).
_CURRENT = DriverStatement(select(_resources).where(_owner_is(_resources)))
_CURRENT_FOR_UPDATE = DriverStatement(_CURRENT.statement.with_for_update())
_VERSION = select(_history).where(_owner_is(_history), _history.c.version_id == bindparam("version"))
_LAST_TWO_VERSIONS = select(_history).where(_owner_is(_history)).order_by(_history.c.version_id.desc()).limit(2)
_SET_CURRENT = DriverStatement(update(_resources).where(_owner_is(_resources)).values(
    version_id=bindparam("new_version"), last_updated=bindparam("new_updated"),
    deleted=bindparam("new_deleted"), body=bindparam("new_body")))
_DELETE_INDEX_ROWS = {name: delete(table).where(_owner_is(table)) for name, table in schema.INDEX_TABLES.items()}
_DELETE_SCORES = delete(_scores).where(_scores.c.response_id == bindparam("owner_id"))
_DELETE_PERSON = delete(_people).where(_people.c.patient_id == bindparam("owner_id"))
_KEYS_OF_TYPE = select(_resources.c.resource_type, _resources.c.resource_id).where(
    _resources.c.resource_type == bindparam("owner_type"), _resources.c.resource_id.in_(bindparam("ids", expanding=True)))
ACCESS_ROWS = "access"   # in a kept-rows set: the resource's care-access rows are unchanged
_TYPES_A_QUERY = 6  # a write of several types (a DIALOG+ session: 4) reads them in one statement
# Current rows of 1.._TYPES_A_QUERY types' ids: (type = t0 AND id IN ids0) OR ...; SQLite reads each
# term by the primary key (MULTI-INDEX OR).
_OF_TYPES = {n: or_(*[
    and_(_resources.c.resource_type == bindparam(f"t{i}"), _resources.c.resource_id.in_(bindparam(f"ids{i}", expanding=True)))
    for i in range(n)]) for n in range(1, _TYPES_A_QUERY + 1)}
_ROWS_OF_TYPES_FOR_UPDATE = {n: DriverStatement(select(_resources).where(_OF_TYPES[n]).with_for_update())
                             for n in _OF_TYPES}
_LIVE_OF_TYPES = {n: DriverStatement(select(_resources).where(_OF_TYPES[n], _resources.c.deleted.is_(False)))
                  for n in _OF_TYPES}
_ref = schema.reference_index
# Who refers to a resource, by the search index's reference rows (ix_reference_target): what a
# Patient merge moves to the survivor.
_REFERRERS = (select(_ref.c.resource_type, _ref.c.resource_id).distinct()
              .where(_ref.c.target_type == bindparam("target_type"), _ref.c.target_id == bindparam("target_id"))
              .order_by(_ref.c.resource_type, _ref.c.resource_id))


# Live resources of one type referring to one target by one reference parameter, by the index's
# lookup rows: what a rule inside a write reads (a person's care plans) without a whole search.
_LIVE_REFERRING = DriverStatement(select(_resources).where(
    _resources.c.resource_type == bindparam("owner_type"), _resources.c.deleted.is_(False),
    _resources.c.resource_id.in_(select(_ref.c.resource_id).where(
        _ref.c.resource_type == bindparam("owner_type"), _ref.c.param == bindparam("param"),
        _ref.c.target_type == bindparam("target_type"), _ref.c.target_id == bindparam("target_id")))))


class IncreasingClock:
    """Wall-clock microseconds, strictly increasing within the process: no two writes share one."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(time.time_ns() // 1000, self._last + 1)
            return self._last


class Repository(SearchMixin, IngestMixin, OutboundMixin, OutcomeMixin, SubmissionMixin):
    def __init__(self, database: Database, indexer: Indexer, *, clock: Clock | None = None,
                 score_rows: ScoreRows | None = None) -> None:
        self._database = database
        self._indexer = indexer
        # Whom each version is about and the care relationships it records: always kept, like the index.
        self._bulk_insert = BulkInsert(database.dialect, (_resources, _history, _scores, _people,
                                                           *schema.INDEX_TABLES.values(), *schema.ACCESS_TABLES))
        self._access_rows = AccessRowWriter(getattr(indexer, "base_url", None), self._bulk_insert)
        self._clock = clock or IncreasingClock()
        self._score_rows = score_rows
        # PostgreSQL takes row locks itself; SQLite's single writer is queued (store/writer_lock.py).
        self._writer_lock = database.writers or contextlib.nullcontext()
        dialect_insert = postgresql_insert if database.dialect == "postgresql" else sqlite_insert
        # Insert-if-absent: a concurrent creator of the same id makes it return no row.
        self._claim_statement = (dialect_insert(_resources)
                                 .on_conflict_do_nothing(index_elements=["resource_type", "resource_id"])
                                 .returning(_resources.c.version_id))

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """One transaction: committed when the block ends, rolled back if it raises.

        SQLite has one writer at a time: threads and processes queue on the store's writer lock
        (store/writer_lock.py) instead of polling the database's busy timeout."""
        with self._writing() as connection:
            uow = UnitOfWork(self, connection)
            yield uow
            uow.finish()

    @contextmanager
    def snapshot(self) -> Iterator[UnitOfWork]:
        """A read transaction with a unit of work's read methods (read, referring, search ...): one
        consistent state to prepare a write from without holding the writer lock. Writing through it
        is refused; the write goes in a unit of work that checks the versions read (put_many's if_match)."""
        with self._reading() as connection:
            yield UnitOfWork(self, connection, read_only=True)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction (SQLite: queued on the writer lock, then BEGIN IMMEDIATE)."""
        with self._writer_lock, self._database.connect(write=True) as connection:
            with connection.begin():
                yield connection
        self._database.written()

    def read(self, resource_type: str, resource_id: str) -> Stored:
        """The current version; NotFound if it never existed, Gone if it is deleted."""
        with self._reading() as connection:
            return _read_current(connection, resource_type, resource_id)

    def referring(self, resource_type: str, param: str, target_type: str, target_id: str) -> list[Stored]:
        """As UnitOfWork.referring, in a read transaction of its own."""
        with self.snapshot() as view:
            return view.referring(resource_type, param, target_type, target_id)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> Stored:
        """One version; NotFound if there is no such version, Gone if that version is a deletion."""
        with self._reading() as connection:
            row = connection.execute(_VERSION, {**_owner(resource_type, resource_id), "version": version_id}).first()
        if row is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}")
        if row.deleted:
            raise Gone(f"version {version_id} of {resource_type}/{resource_id} is its deletion")
        return _stored_from_history(row)

    def history(self, resource_type: str | None = None, resource_id: str | None = None, *,
                since: int | None = None, count: int = 50, offset: int = 0,
                visible_to: AccessScope | None = None) -> tuple[int, list[Stored]]:
        """(total, one page) of versions newest first, deletions included: of one resource, of one
        type, or of everything. `since` (microseconds) keeps versions written at or after it;
        `visible_to` keeps what that partner may see (fhir_bridge.store.care_access)."""
        conditions = []
        if visible_to is not None:
            conditions.append(visible(_history.c.resource_type, _history.c.resource_id, visible_to))
        if resource_type is not None:
            conditions.append(_history.c.resource_type == resource_type)
        if resource_id is not None:
            conditions.append(_history.c.resource_id == resource_id)
        if since is not None:
            conditions.append(_history.c.last_updated >= since)
        page = (select(_history).where(*conditions)
                .order_by(_history.c.last_updated.desc(), _history.c.resource_type, _history.c.resource_id,
                          _history.c.version_id.desc())
                .limit(count).offset(offset))
        with self._reading() as connection:
            total = connection.scalar(select(func.count()).select_from(_history).where(*conditions))
            rows = connection.execute(page).all() if count > 0 else []
        return total, [_stored_from_history(row) for row in rows]

    def count(self, resource_type: str | None = None) -> int:
        """How many resources exist now (deleted ones not counted)."""
        query = select(func.count()).select_from(_resources).where(_resources.c.deleted.is_(False))
        if resource_type is not None:
            query = query.where(_resources.c.resource_type == resource_type)
        with self._reading() as connection:
            return connection.scalar(query)

    def people_of(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
        """The Patients each resource is about, deleted ones included (absent: about nobody)."""
        with self._reading() as connection:
            return people_of_keys(connection, keys)

    def related_people(self, scope: AccessScope, patient_ids: Iterable[str]) -> set[str]:
        """Those of `patient_ids` the scope's partner has a current care relationship with."""
        with self._reading() as connection:
            return related_people(connection, scope, patient_ids)

    def dialogs_of(self, patient_id: str, **window) -> list[dict]:
        """The person's DIALOG score rows, oldest first (fhir_bridge.store.dialog_history)."""
        with self._reading() as connection:
            return dialogs_of(connection, patient_id, **window)

    # -- what search_execution.SearchMixin builds on ----------------------------------------------------
    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A read transaction: several queries see one consistent state (SQLite: one snapshot)."""
        with self._database.connect() as connection, connection.begin():
            yield connection

    def _fetch_stored(self, keys: list[tuple[str, str]], connection: Connection | None = None) -> list[Stored]:
        """Current versions of `keys`, in the order given; deleted and unknown keys are left out.
        Pass a unit of work's or a read transaction's connection to read in that transaction."""
        if connection is None:
            with self._reading() as own:
                return self._fetch_stored(keys, own)
        found: dict[tuple[str, str], Stored] = {}
        for group in _grouped(_ids_by_type(keys)):
            for row in _LIVE_OF_TYPES[len(group)].rows(connection, _group_parameters(group)):
                found[row.resource_type, row.resource_id] = _stored_from_current(row)
        return [found[key] for key in keys if key in found]


class UnitOfWork:
    """The writes of one transaction; get one from Repository.unit_of_work()."""

    def __init__(self, repository: Repository, connection: Connection, *, read_only: bool = False) -> None:
        self._repo = repository
        self._connection = connection
        self._read_only = read_only
        self._people_written: dict[tuple[str, str], set[str]] = {}  # whom this transaction's writes are about
        self.notes: dict[str, object] = {}  # what the work's own code keeps for its end (before_commit hooks)
        self._before_commit: list[Callable[[UnitOfWork], None]] = []

    def before_commit(self, hook: Callable[["UnitOfWork"], None]) -> None:
        """Run `hook(uow)` once the work is done, before it commits (in the order given; a hook may
        add more): what depends on all of a transaction's writes, whatever their order."""
        self._before_commit.append(hook)

    def finish(self) -> None:
        while self._before_commit:
            self._before_commit.pop(0)(self)

    def read(self, resource_type: str, resource_id: str) -> Stored:
        """As Repository.read, inside this transaction: sees its own writes."""
        return _read_current(self._connection, resource_type, resource_id)

    def before_last(self, resource_type: str, resource_id: str) -> Stored | None:
        """The version before the latest (written in this transaction, perhaps a deletion); None if
        there is none or it was a deletion: what the latest write changed."""
        rows = self._connection.execute(_LAST_TWO_VERSIONS, _owner(resource_type, resource_id)).fetchall()
        return _stored_from_history(rows[1]) if len(rows) == 2 and not rows[1].deleted else None

    def lock(self, resource_type: str, resource_id: str) -> Stored:
        """As read, and holds the row until this transaction ends: on PostgreSQL other transactions
        that lock or write it wait, so a check-then-write on something it owns (a person's one care
        plan) cannot interleave. SQLite's writer already holds the whole database."""
        row = self._locked_current(resource_type, resource_id)
        if row is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        if row.deleted:
            raise Gone(f"{resource_type}/{resource_id} was deleted (version {row.version_id})")
        return _stored_from_current(row)

    def search(self, request: SearchRequest) -> list[Stored]:
        """The matches of one page of a search, read in this transaction (so they include its own
        writes): for rules checked inside the write that depends on them."""
        ids_statement, _ = build_search(request)
        keys = [(row.resource_type, row.resource_id) for row in self._connection.execute(ids_statement)]
        return self._repo._fetch_stored(keys, self._connection)

    def read_live(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """The current versions of those of `keys` that are live, in this transaction, in one statement
        for a few types and ids."""
        return {(s.resource_type, s.resource_id): s for s in self._repo._fetch_stored(keys, self._connection)}

    def referring(self, resource_type: str, param: str, target_type: str, target_id: str) -> list[Stored]:
        """Live `resource_type` resources whose reference search parameter `param` points at
        target_type/target_id, in this transaction, by id: the search `param=target_type/target_id`
        without building one."""
        row_param, row_target = self._repo._indexer.rows_of(resource_type, param)
        if row_target not in (None, target_type):
            return []
        rows = _LIVE_REFERRING.rows(self._connection, {"owner_type": resource_type, "param": row_param,
                                                          "target_type": target_type, "target_id": target_id})
        return sorted((_stored_from_current(row) for row in rows), key=lambda stored: stored.resource_id)

    def people_of(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
        """As Repository.people_of, in this transaction."""
        return people_of_keys(self._connection, keys)

    def related_people(self, scope: AccessScope, patient_ids: Iterable[str]) -> set[str]:
        """As Repository.related_people, in this transaction (it sees relationships just written)."""
        return related_people(self._connection, scope, patient_ids)

    def dialogs_of(self, patient_id: str, **window) -> list[dict]:
        """As Repository.dialogs_of, in this transaction."""
        return dialogs_of(self._connection, patient_id, **window)

    def dialogs_of_people(self, patient_ids: Iterable[str], **window) -> dict[str, list[dict]]:
        """dialogs_of for many people in one query, in this transaction: patient id -> rows."""
        return dialogs_of_people(self._connection, list(patient_ids), **window)

    def referring_to(self, target_type: str, target_id: str) -> list[Stored]:
        """Current resources with a reference to target_type/target_id in any search parameter
        (relative, versioned or to this server's base), in this transaction, ordered by type and id."""
        rows = self._connection.execute(_REFERRERS, {"target_type": target_type, "target_id": target_id})
        return self._repo._fetch_stored([(row.resource_type, row.resource_id) for row in rows], self._connection)

    def create(self, resource: dict) -> WriteResult:
        """A new resource with the id the caller assigned; Conflict if that id is live. A deleted
        id comes back as its next version."""
        return self._write(resource, "POST", if_match=None, allow_create=True, must_be_new=True)

    def update(self, resource: dict, *, if_match: int | None = None, allow_create: bool = True,
               method: str = "PUT") -> WriteResult:
        """The next version. PreconditionFailed when if_match is not the current version; NotFound
        when absent and not allow_create. Content equal to the current version (meta.versionId and
        meta.lastUpdated aside) writes nothing and returns it with unchanged=True."""
        return self._write(resource, method, if_match=if_match, allow_create=allow_create, must_be_new=False)

    def delete(self, resource_type: str, resource_id: str, *, if_match: int | None = None) -> Stored | None:
        """Records a deletion version. None when the resource never existed; an already deleted one
        is left as is and its deletion version returned."""
        self._writable()
        current = self._locked_current(resource_type, resource_id)
        if current is None:
            return None
        _check_if_match(resource_type, resource_id, current.version_id, if_match)
        if current.deleted:
            return _stored_from_current(current)
        stored = Stored(resource_type, resource_id, current.version_id + 1,
                        self._next_time(current.last_updated), True, None, "DELETE")
        self._set_current(stored, None)
        self._insert(_history, [_history_row(stored, None)])
        self._remove_derived_rows([(resource_type, resource_id)], keep_people=True)
        return stored

    def create_many(self, resources: list[dict]) -> list[WriteResult]:
        """Bulk create: one executemany per table for ids not seen before (the fast path); an id
        that exists already is handled by create() (Conflict if live, next version if deleted)."""
        self._writable()
        keys = [_key_of(resource) for resource in resources]
        _check_unique(keys)
        existing = self._existing(keys)
        results: list[WriteResult | None] = [None] * len(resources)
        fresh: list[tuple[int, Stored, bytes]] = []
        for position, (resource, key) in enumerate(zip(resources, keys)):
            if key in existing:
                results[position] = self.create(resource)
            else:
                fresh.append((position, *self._new_version(resource, key, 1, "POST", 0)))
        if fresh:
            self._insert_new([(stored, body) for _, stored, body in fresh])
            for position, stored, _ in fresh:
                results[position] = WriteResult(stored, created=True)
        return results

    def put_many(self, resources: list[dict], if_match: list[int | None] | None = None, *,
                 then: Callable[[list[WriteResult]], list[dict]] | None = None,
                 precomputed: dict[tuple[str, str], Precomputed] | None = None) -> list[WriteResult]:
        """Bulk create-or-update by id, as update() one after another would do it (the same id may
        come twice: the second is compared with the first), but with one locked read of the current
        rows and one executemany per table. For imports, which write hundreds of resources a unit of
        work, and for a piece of work such as a DIALOG+ session: per resource, the statements cost
        several times the work. `if_match`: per resource, the version it must still be at (None: any;
        ABSENT: it must not exist, or be deleted); PreconditionFailed otherwise, before anything is written.
        `then(results)`: new resources about this write (its Provenances, with server-made ids), created
        in the same statements; they are not among the results. `precomputed`: by key, what an
        import's worker computed from the resource as it mapped it (its scores, reused for the
        score row if the response written has the same answers: pipelines/score_rows.py; its index
        rows, reused for each element still as it was: indexer.py)."""
        self._writable()
        keys = [_key_of(resource) for resource in resources]
        current = self._locked_many(keys)
        stored_bodies: dict[tuple[str, str], dict] = {}  # the current bodies read: what index rows to replace
        latest: dict[tuple[str, str], tuple[int, int, bool, dict | None]] = {}  # version, updated, deleted, body
        finals: dict[tuple[str, str], tuple[Stored, bytes]] = {}
        versions: list[tuple[Stored, bytes]] = []
        results: list[WriteResult] = []
        for position, (resource, key) in enumerate(zip(resources, keys)):
            state = latest.get(key)
            if state is None:
                row = current.get(key)
                state = (row.version_id, row.last_updated, bool(row.deleted), None if row.deleted else loads_json(row.body)) \
                    if row is not None else (0, 0, True, None)
                if state[3] is not None:
                    stored_bodies[key] = state[3]
            version_id, updated, deleted, previous = state
            if if_match is not None:
                if if_match[position] == ABSENT:
                    if not deleted:
                        raise PreconditionFailed(f"{'/'.join(key)} was created meanwhile (version {version_id})",
                                                 current_version=version_id)
                else:
                    _check_if_match(*key, version_id or None, if_match[position])
            if not deleted and same_content(resource, previous):
                results.append(WriteResult(_stored_version(*key, version_id, updated, previous), created=False,
                                           unchanged=True))
                continue
            stored, body = self._new_version(resource, key, version_id + 1, "PUT", updated)
            latest[key] = (stored.version_id, stored.last_updated, False, stored.resource)
            finals[key] = (stored, body)
            versions.append((stored, body))
            results.append(WriteResult(stored, created=deleted))
        for resource in then(results) if then is not None else ():
            key = _key_of(resource)
            if key in finals or key in current:
                raise Conflict(f"{'/'.join(key)} is written twice in one batch")
            stored, body = self._new_version(resource, key, 1, "POST", 0)
            finals[key] = (stored, body)
            versions.append((stored, body))
        if versions:
            fresh = [finals[key] for key in finals if key not in current]
            if fresh:
                try:
                    self._insert(_resources, [_current_row(s, b) for s, b in fresh])
                except IntegrityError as exc:  # PostgreSQL: created concurrently between our read and insert
                    raise Conflict("a resource in this batch was created concurrently by another writer") from exc
            replaced = [finals[key] for key in finals if key in current]
            index_rows = self._index_rows(finals, precomputed)
            kept = self._kept_rows(stored_bodies, {key: stored.resource for key, (stored, _) in finals.items()}, index_rows)
            if replaced:
                _SET_CURRENT.execute_many(self._connection, [{
                    **_owner(s.resource_type, s.resource_id), "new_version": s.version_id,
                    "new_updated": s.last_updated, "new_deleted": False, "new_body": b} for s, b in replaced])
                self._remove_derived_rows([(s.resource_type, s.resource_id) for s, _ in replaced], kept=kept)
            self._insert(_history, [_history_row(s, b) for s, b in versions])
            self._derive(list(finals.values()), index_rows=index_rows, kept=kept, precomputed=precomputed)
        return results

    # -- internals -------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self._read_only:
            raise RuntimeError("a write through a snapshot: write in a unit of work")

    def _locked_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        found: dict[tuple[str, str], Row] = {}
        for group in _grouped(_ids_by_type(dict.fromkeys(keys))):
            for row in _ROWS_OF_TYPES_FOR_UPDATE[len(group)].rows(self._connection, _group_parameters(group)):
                found[row.resource_type, row.resource_id] = row
        return found

    def _write(self, resource: dict, method: str, *, if_match: int | None, allow_create: bool,
               must_be_new: bool) -> WriteResult:
        self._writable()
        key = _key_of(resource)
        current = self._locked_current(*key)
        if current is None:
            if not allow_create:
                raise NotFound(f"{'/'.join(key)} does not exist, and this update may not create it")
            _check_if_match(*key, None, if_match)
            stored, body = self._new_version(resource, key, 1, method, 0)
            if self._claim(stored, body):
                self._record([(stored, body)])
                return WriteResult(stored, created=True)
            # A concurrent transaction created this id between our read and our insert, and has
            # committed (PostgreSQL made the insert wait for it): carry on from its version.
            current = self._locked_current(*key)
        _check_if_match(*key, current.version_id, if_match)
        if not current.deleted:
            if must_be_new:
                raise Conflict(f"{'/'.join(key)} already exists (version {current.version_id}): "
                               "update it instead of creating it")
            previous = loads_json(current.body)
            if same_content(resource, previous):
                return WriteResult(_stored(*key, current, previous), created=False, unchanged=True)
        stored, body = self._new_version(resource, key, current.version_id + 1, method, current.last_updated)
        self._set_current(stored, body)
        index_rows = {key: self._repo._indexer.rows(stored.resource)}
        kept = self._kept_rows({} if current.deleted else {key: previous}, {key: stored.resource}, index_rows)
        self._remove_derived_rows([key], kept=kept)
        self._insert(_history, [_history_row(stored, body)])
        self._derive([(stored, body)], index_rows=index_rows, kept=kept)
        return WriteResult(stored, created=current.deleted)

    def _locked_current(self, resource_type: str, resource_id: str) -> Row | None:
        # FOR UPDATE holds concurrent PostgreSQL writers of this resource until we commit;
        # SQLite compiles it away (the transaction already holds the database's write lock).
        return _CURRENT_FOR_UPDATE.first(self._connection, _owner(resource_type, resource_id))

    def _set_current(self, stored: Stored, body: bytes | None) -> None:
        _SET_CURRENT.execute_many(self._connection, [{
            **_owner(stored.resource_type, stored.resource_id), "new_version": stored.version_id,
            "new_updated": stored.last_updated, "new_deleted": stored.deleted, "new_body": body}])

    def _claim(self, stored: Stored, body: bytes) -> bool:
        """Insert the current row of a new resource; False if another transaction got there first."""
        return self._connection.execute(self._repo._claim_statement, _current_row(stored, body)).first() is not None

    def _insert_new(self, versions: list[tuple[Stored, bytes]]) -> None:
        try:
            self._insert(_resources, [_current_row(stored, body) for stored, body in versions])
        except IntegrityError as exc:   # PostgreSQL: a concurrent transaction created one of these ids
            raise Conflict("a resource in this bulk create was created concurrently by another writer") from exc
        self._record(versions)

    def _record(self, versions: list[tuple[Stored, bytes]]) -> None:
        """History rows, index rows and score rows of new resources."""
        self._insert(_history, [_history_row(stored, body) for stored, body in versions])
        self._derive(versions)

    def _kept_rows(self, previous: dict[tuple[str, str], dict], new: dict[tuple[str, str], dict],
                   index_rows: dict[tuple[str, str], dict[str, list[dict]]]) -> dict[tuple[str, str], set[str]]:
        """Per replaced resource, the index tables where its new version has the same rows as the old
        one, and ACCESS_ROWS if its care-access rows are the same too: they are neither deleted nor
        inserted again. A DIALOG+ session changes a plan's activities and narrative, rarely what is
        searched on or who it is about. (The rows stored are the indexer's of the old body: a change
        of search parameters has to reindex what is stored in any case.)"""
        kept: dict[tuple[str, str], set[str]] = {}
        for key, old_body in previous.items():
            new_rows = index_rows.get(key)
            if new_rows is None:
                continue
            old_rows = self._repo._indexer.rows(old_body)
            same = {name for name in schema.INDEX_TABLES if _same_rows(old_rows.get(name, []), new_rows.get(name, []))}
            if self._repo._access_rows.same(self._connection, old_body, new[key]):
                same.add(ACCESS_ROWS)
            if same:
                kept[key] = same
        return kept

    def _index_rows(self, finals: dict[tuple[str, str], tuple[Stored, bytes]],
                    precomputed: dict[tuple[str, str], Precomputed] | None) -> dict[tuple[str, str], dict[str, list[dict]]]:
        rows, index = {}, self._repo._indexer.rows
        for key, (stored, _) in finals.items():
            done = precomputed.get(key) if precomputed else None
            rows[key] = index(stored.resource, (done.resource, done.index_rows)) \
                if done is not None and done.index_rows is not None else index(stored.resource)
        return rows

    def _derive(self, versions: list[tuple[Stored, bytes]], *,
                index_rows: dict[tuple[str, str], dict[str, list[dict]]] | None = None,
                kept: dict[tuple[str, str], set[str]] | None = None,
                precomputed: dict[tuple[str, str], Precomputed] | None = None) -> None:
        """Index rows and score rows of current versions (their old rows removed already, except the
        index tables `kept` as they were). `index_rows`: the versions' index rows if computed already;
        `precomputed`: as put_many's."""
        index_rows_by_table: dict[str, list[tuple[str, str, list[dict]]]] = {name: [] for name in schema.INDEX_TABLES}
        score_rows: list[dict] = []
        person_rows: list[dict] = []
        for stored, _ in versions:
            key = (stored.resource_type, stored.resource_id)
            rows_of = index_rows[key] if index_rows is not None and key in index_rows \
                else self._repo._indexer.rows(stored.resource)
            unchanged = kept.get(key, ()) if kept else ()
            for name, rows in rows_of.items():
                if rows and name not in unchanged:
                    index_rows_by_table[name].append((*key, rows))
            if stored.resource_type == _SCORED_TYPE and self._repo._score_rows is not None:
                done = precomputed.get(key) if precomputed else None
                row = self._repo._score_rows(stored.resource, done.resource, done.scores) \
                    if done is not None and done.scores is not None else self._repo._score_rows(stored.resource)
                if row is not None:
                    score_rows.append({**row, "response_id": stored.resource_id})
            elif stored.resource_type == _PERSON_TYPE:
                person_rows.append({**person_row(stored.resource), "patient_id": stored.resource_id})
        for name, owned in index_rows_by_table.items():
            if owned:
                self._repo._bulk_insert.owned(self._connection, schema.INDEX_TABLES[name], owned)
        self._insert(_scores, score_rows)
        self._repo._access_rows.write(self._connection, [stored.resource for stored, _ in versions],
                                      self._people_written,
                                      kept={key for key, names in (kept or {}).items() if ACCESS_ROWS in names})
        self._insert(_people, person_rows)

    def _insert(self, table: Table, rows: list[dict]) -> None:
        self._repo._bulk_insert(self._connection, table, rows)

    def _remove_derived_rows(self, keys: list[tuple[str, str]], *, keep_people: bool = False,
                             kept: dict[tuple[str, str], set[str]] | None = None) -> None:
        owners = [_owner(*key) for key in keys]
        for name, statement in _DELETE_INDEX_ROWS.items():
            changed = [owner for key, owner in zip(keys, owners) if not kept or name not in kept.get(key, ())]
            if changed:
                self._connection.execute(statement, changed)
        changed = [owner for key, owner in zip(keys, owners) if not kept or ACCESS_ROWS not in kept.get(key, ())]
        if changed:
            self._repo._access_rows.remove(self._connection, changed, keep_people=keep_people)
        scored = [owner for owner in owners if owner["owner_type"] == _SCORED_TYPE]
        if scored:
            self._connection.execute(_DELETE_SCORES, scored)
        people = [owner for owner in owners if owner["owner_type"] == _PERSON_TYPE]
        if people:
            self._connection.execute(_DELETE_PERSON, people)

    def _existing(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for parameters in _ids_by_type(keys):
            found.update((t, i) for t, i in self._connection.execute(_KEYS_OF_TYPE, parameters))
        return found

    def _new_version(self, resource: dict, key: tuple[str, str], version_id: int, method: str,
                     previous_updated: int) -> tuple[Stored, bytes]:
        last_updated = self._next_time(previous_updated)
        body = _with_server_meta(resource, version_id, last_updated)
        return Stored(*key, version_id, last_updated, False, body, method), dumps_json(body)

    def _next_time(self, previous_updated: int) -> int:
        # Never before the version it follows, even if another process's clock runs behind.
        return max(self._repo._clock(), previous_updated + 1)


def read_if_live(reader, resource_type: str | None, resource_id: str | None) -> Stored | None:
    """`reader.read` (a Repository or a UnitOfWork), or None when there is no such live resource
    (or no type or id to look for): for code that follows references that may dangle."""
    if not resource_type or not resource_id:
        return None
    try:
        return reader.read(resource_type, resource_id)
    except (NotFound, Gone):
        return None


# -- rows and values ---------------------------------------------------------------------------------
def _key_of(resource: dict) -> tuple[str, str]:
    resource_type, resource_id = resource.get("resourceType"), resource.get("id")
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.fullmatch(resource_type):
        raise InputError("a stored resource needs a resourceType", expression="resourceType")
    if not isinstance(resource_id, str) or not _RESOURCE_ID.fullmatch(resource_id):
        raise InputError(f"{resource_type}.id must be 1-64 letters, digits, '-' or '.', got {resource_id!r}",
                         expression=f"{resource_type}.id")
    return resource_type, resource_id


def _check_unique(keys: list[tuple[str, str]]) -> None:
    seen: set[tuple[str, str]] = set()
    for key in keys:
        if key in seen:
            raise Conflict(f"{'/'.join(key)} appears more than once in one bulk create")
        seen.add(key)


def _with_server_meta(resource: dict, version_id: int, last_updated: int) -> dict:
    """A copy with meta.versionId and meta.lastUpdated set (other meta kept), meta after id."""
    kept = {k: v for k, v in (resource.get("meta") or {}).items() if k not in _SERVER_META}
    # the three keys placed first; the resource's own values (its meta too) fill them and follow
    body = {"resourceType": None, "id": None, "meta": None, **resource}
    body["meta"] = {"versionId": str(version_id), "lastUpdated": instant(last_updated), **kept}
    return body


def same_content(resource: dict, stored: dict) -> bool:
    """Whether writing `resource` over `stored` would change nothing (server meta aside): as an
    update judges it, so such a write keeps the stored version."""
    return _content(resource) == _content(stored)


def _content(resource: dict) -> bytes:
    """What an update compares: the resource without server meta, keys sorted, decimals as written."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in _SERVER_META}
    content = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        content["meta"] = meta
    return orjson.dumps(content, default=json_default, option=orjson.OPT_SORT_KEYS)


def _check_if_match(resource_type: str, resource_id: str, current: int | None, if_match: int | None) -> None:
    if if_match is not None and if_match != current:
        now = f"is at version {current}" if current is not None else "does not exist"
        raise PreconditionFailed(f"If-Match version {if_match} is stale: {resource_type}/{resource_id} {now}",
                                 current_version=current)


def _current_row(stored: Stored, body: bytes) -> dict:
    return {"resource_type": stored.resource_type, "resource_id": stored.resource_id,
            "version_id": stored.version_id, "last_updated": stored.last_updated, "deleted": False, "body": body}


def _history_row(stored: Stored, body: bytes | None) -> dict:
    return {"resource_type": stored.resource_type, "resource_id": stored.resource_id,
            "version_id": stored.version_id, "last_updated": stored.last_updated,
            "deleted": stored.deleted, "method": stored.method, "body": body}


def _read_current(connection: Connection, resource_type: str, resource_id: str) -> Stored:
    row = _CURRENT.first(connection, _owner(resource_type, resource_id))
    if row is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    if row.deleted:
        raise Gone(f"{resource_type}/{resource_id} was deleted (version {row.version_id})")
    return _stored_from_current(row)


def _stored(resource_type: str, resource_id: str, row: Row, resource: dict | None, method: str = "PUT") -> Stored:
    return Stored(resource_type, resource_id, row.version_id, row.last_updated, bool(row.deleted), resource, method)


def _stored_version(resource_type: str, resource_id: str, version_id: int, last_updated: int,
                    resource: dict | None) -> Stored:
    return Stored(resource_type, resource_id, version_id, last_updated, False, resource, "PUT")


def _stored_from_current(row: Row) -> Stored:
    method = "DELETE" if row.deleted else "PUT"
    return _stored(row.resource_type, row.resource_id, row, _body(row.body), method)


def _stored_from_history(row: Row) -> Stored:
    return _stored(row.resource_type, row.resource_id, row, _body(row.body), row.method)


def _body(data: bytes | None) -> dict | None:
    return None if data is None else loads_json(data)


def _same_rows(old: list[dict], new: list[dict]) -> bool:
    """Two versions' index rows are the same, whatever their order (equal content indexes in the
    same order: the multiset comparison is only for the rare rest)."""
    if old == new:
        return True
    return len(old) == len(new) and Counter(tuple(r.items()) for r in old) == Counter(tuple(r.items()) for r in new)


def _owner(resource_type: str, resource_id: str) -> dict[str, str]:
    return {"owner_type": resource_type, "owner_id": resource_id}


def _grouped(parts: Iterable[dict]) -> Iterator[list[dict]]:
    """_ids_by_type's parts in groups for one statement: up to _TYPES_A_QUERY types and IN_CHUNK ids."""
    group: list[dict] = []
    size = 0
    for part in parts:
        if group and (len(group) == _TYPES_A_QUERY or size + len(part["ids"]) > IN_CHUNK):
            yield group
            group, size = [], 0
        group.append(part)
        size += len(part["ids"])
    if group:
        yield group


def _group_parameters(group: list[dict]) -> dict:
    """The parameters of _OF_TYPES[len(group)] for one group of _grouped."""
    parameters = {}
    for i, part in enumerate(group):
        parameters[f"t{i}"], parameters[f"ids{i}"] = part["owner_type"], part["ids"]
    return parameters


def _ids_by_type(keys: Iterable[tuple[str, str]]) -> Iterator[dict]:
    """Per type, IN lists of bounded length covering `keys` ({"owner_type", "ids"}: _KEYS_OF_TYPE's parameters)."""
    by_type: dict[str, list[str]] = {}
    for resource_type, resource_id in keys:
        by_type.setdefault(resource_type, []).append(resource_id)
    for resource_type, ids in by_type.items():
        for start in range(0, len(ids), IN_CHUNK):
            yield {"owner_type": resource_type, "ids": ids[start:start + IN_CHUNK]}
