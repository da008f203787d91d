"""The repository's ingestion tables: import runs, quarantined records, identity reviews, and the
demographic lookups identity linking needs. A mixin of `Repository`, which stays the only code
that touches a database connection.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import Connection, and_, bindparam, insert, select, update

from fhir_bridge.errors import NotFound
from fhir_bridge.store import schema
from fhir_bridge.store.driver_statements import DriverStatement, IN_CHUNK

_runs, _quarantine, _reviews = schema.import_runs, schema.quarantine, schema.identity_reviews
_res, _strings, _dates = schema.resources, schema.string_index, schema.date_index


@dataclass(frozen=True)
class QuarantineEntry:
    entry_id: str
    run_id: str
    source: str
    location: str
    reason: str
    raw: bytes
    outcome: bytes  # OperationOutcome JSON
    created: int
    state: str = "open"           # open | resolved (stored, or its file read again) | closed (by a person)
    context: str | None = None    # JSON from the source adapter: what rebuilds the record for a retry
    resolved_run: str | None = None


@dataclass(frozen=True)
class Review:
    review_id: str
    source: str
    source_key: str
    reason: str
    candidates: tuple[str, ...]
    waiting: bytes  # the mapped resources, JSON, held until a person resolves the review
    created: int
    state: str = "open"
    patient_id: str | None = None


@dataclass(frozen=True)
class Demographics:
    """What identity matching compares, already normalised like the string index."""

    family: str
    given: str
    birth_date: str          # FHIR date, exact
    postcode: str            # upper case, no spaces


class IngestMixin:
    if TYPE_CHECKING:
        def _reading(self) -> AbstractContextManager[Connection]: ...
        def _writing(self) -> AbstractContextManager[Connection]: ...

    # -- runs --------------------------------------------------------------------------------------
    def start_run(self, run_id: str, source: str, started: int) -> None:
        with self._writing() as connection:
            connection.execute(insert(_runs), {"run_id": run_id, "source": source, "started": started})

    def finish_run(self, run_id: str, finished: int, report: bytes) -> None:
        with self._writing() as connection:
            connection.execute(update(_runs).where(_runs.c.run_id == run_id).values(finished=finished, report=report))

    def run_report(self, run_id: str | None) -> dict | None:
        """A run's saved report (JSON), None if there is no such run or it has none (yet)."""
        with self._reading() as connection:
            report = connection.scalar(select(_runs.c.report).where(_runs.c.run_id == run_id))
        return orjson.loads(report) if report else None

    def runs(self, limit: int = 20) -> list[dict]:
        with self._reading() as connection:
            rows = connection.execute(select(_runs).order_by(_runs.c.started.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    # -- quarantine --------------------------------------------------------------------------------
    def quarantine_record(self, entry: QuarantineEntry) -> None:
        """Idempotent: the same bad record quarantined again refreshes its entry (latest run,
        latest reason) instead of adding a second one."""
        values = entry.__dict__
        with self._writing() as connection:
            changed = connection.execute(update(_quarantine).where(_quarantine.c.entry_id == entry.entry_id)
                                         .values({k: v for k, v in values.items() if k != "entry_id"})).rowcount
            if not changed:
                connection.execute(insert(_quarantine), values)

    def quarantined(self, *, state: str | None = "open", source: str | None = None,
                    limit: int | None = 1000) -> list[QuarantineEntry]:
        conditions = [c for c in (_quarantine.c.state == state if state else None,
                                  _quarantine.c.source == source if source else None) if c is not None]
        query = select(_quarantine).where(and_(True, *conditions)).order_by(_quarantine.c.created).limit(limit)
        with self._reading() as connection:
            return [QuarantineEntry(**r) for r in connection.execute(query).mappings()]

    def quarantine_entry(self, entry_id: str) -> QuarantineEntry | None:
        with self._reading() as connection:
            row = connection.execute(select(_quarantine).where(_quarantine.c.entry_id == entry_id)).mappings().first()
        return QuarantineEntry(**row) if row else None

    def open_quarantine_contexts(self, source: str) -> list[tuple[str, str]]:
        """(entry id, context) of the open entries of `source` that have a context: narrow, no raw."""
        query = select(_quarantine.c.entry_id, _quarantine.c.context).where(
            _quarantine.c.state == "open", _quarantine.c.source == source, _quarantine.c.context.is_not(None))
        with self._reading() as connection:
            return [tuple(row) for row in connection.execute(query)]

    def resolve_quarantined(self, entry_id: str, run_id: str) -> None:
        """The record is stored now (a retry), or its file was read by a later import: `run_id` did it."""
        with self._writing() as connection:
            connection.execute(update(_quarantine).where(_quarantine.c.entry_id == entry_id)
                               .values(state="resolved", resolved_run=run_id))

    def close_quarantined(self, entry_ids: list[str], run_id: str, now: int, why: dict) -> dict[str, str]:
        """A person decided these open entries are not to be stored (a test record, one sent twice
        by mistake, an entry no import will resolve): in one transaction, a run of source
        `quarantine-close` whose report is `why` plus the ids it closed, and the open entries closed
        by it. Each id's state before, in the order given; NotFound (nothing changed) if one is unknown."""
        wanted = list(dict.fromkeys(entry_ids))
        with self._writing() as connection:
            states = dict(connection.execute(select(_quarantine.c.entry_id, _quarantine.c.state)
                                             .where(_quarantine.c.entry_id.in_(wanted))).all())
            if missing := [i for i in wanted if i not in states]:
                raise NotFound(f"no quarantined record {', '.join(missing)}")
            closed = [i for i in wanted if states[i] == "open"]
            if closed:
                connection.execute(update(_quarantine).where(_quarantine.c.entry_id.in_(closed))
                                   .values(state="closed", resolved_run=run_id))
            connection.execute(insert(_runs), {"run_id": run_id, "source": "quarantine-close", "started": now,
                                               "finished": now, "report": orjson.dumps({**why, "closed": closed})})
        return {i: states[i] for i in wanted}

    # -- identity reviews ---------------------------------------------------------------------------
    def add_review(self, review: Review) -> None:
        """Idempotent: the same records held again refresh their open review; a resolved one stays
        resolved (a person decided it: the records are stored)."""
        values = {**review.__dict__, "candidates": ",".join(review.candidates)}
        with self._writing() as connection:
            state = connection.scalar(select(_reviews.c.state).where(_reviews.c.review_id == review.review_id))
            if state is None:
                connection.execute(insert(_reviews), values)
            elif state == "open":
                connection.execute(update(_reviews).where(_reviews.c.review_id == review.review_id)
                                   .values({k: v for k, v in values.items() if k != "review_id"}))

    def reviews(self, *, state: str | None = "open") -> list[Review]:
        query = select(_reviews).order_by(_reviews.c.created)
        if state:
            query = query.where(_reviews.c.state == state)
        with self._reading() as connection:
            return [_review(r) for r in connection.execute(query).mappings()]

    def review(self, review_id: str) -> Review | None:
        with self._reading() as connection:
            row = connection.execute(select(_reviews).where(_reviews.c.review_id == review_id)).mappings().first()
        return _review(row) if row else None

    def resolve_review(self, review_id: str, state: str, patient_id: str) -> None:
        with self._writing() as connection:
            connection.execute(update(_reviews).where(_reviews.c.review_id == review_id)
                               .values(state=state, patient_id=patient_id))

    # -- demographics ----------------------------------------------------------------------------------
    def patients_with_identifier(self, system: str, value: str) -> list[str]:
        """Live Patients holding the identifier system|value: identity linking asks this for every
        record, so it is one indexed query rather than a search request."""
        with self._reading() as connection:
            return sorted({row[0] for row in _WITH_IDENTIFIER.rows(connection, {"system": system, "code": value})})

    def patients_with_identifiers(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
        """patients_with_identifier for many identifiers in one read: (system, value) -> the live
        Patients holding it (empty for none), a query per system and few hundred values."""
        found: dict[tuple[str, str], set[str]] = {pair: set() for pair in pairs}
        by_system: dict[str, list[str]] = {}
        for system, value in found:
            by_system.setdefault(system, []).append(value)
        with self._reading() as connection:
            for system, values in by_system.items():
                for start in range(0, len(values), IN_CHUNK):
                    chunk = {"system": system, "codes": values[start:start + IN_CHUNK]}
                    for row in _WITH_IDENTIFIERS.rows(connection, chunk):
                        found[system, row.code].add(row.resource_id)
        return found

    def patients_matching(self, who: Demographics, birth_range: tuple[int, int]) -> tuple[list[str], list[str]]:
        """(exact, weaker): live Patients whose family, given, birth date and postcode all equal
        `who`'s; and those sharing only family name and birth date, or given name, birth date and
        postcode, which a person must look at. Two indexed queries: the Patients born that day,
        then their names and postcodes (few people share a birth date, so this stays small)."""
        with self._reading() as connection:
            born = sorted({row[0] for row in _BORN_ON.rows(connection, {"low": birth_range[0], "high": birth_range[1]})})
            if not born:
                return [], []
            held: dict[str, dict[str, set[str]]] = {}
            for start in range(0, len(born), 500):
                for row in _MATCHING_STRINGS.rows(connection, {"ids": born[start:start + 500]}):
                    if row.param not in _MATCHED_PARAMS:
                        continue
                    value = row.normalized.replace(" ", "").upper() if row.param == "address-postalcode" else row.normalized
                    held.setdefault(row.resource_id, {}).setdefault(row.param, set()).add(value)
        exact, weaker = [], []
        for patient_id in born:
            strings = held.get(patient_id, {})
            family = who.family in strings.get("family", ())
            given = who.given in strings.get("given", ())
            postcode = who.postcode in strings.get("address-postalcode", ())
            if family and given and postcode:
                exact.append(patient_id)
            elif family or (given and postcode):
                weaker.append(patient_id)
        return exact, weaker


# No DISTINCT / ORDER BY in these two: either makes SQLite walk the owner index (rows in
# resource_id order) over every Patient instead of the lookup index; duplicates are dropped in Python.
# Identity linking asks these for every record of an import: on the driver's cursor (driver_statements.py).
_BORN_ON = DriverStatement(
    select(_dates.c.resource_id)
    .join(_res, and_(_res.c.resource_type == _dates.c.resource_type, _res.c.resource_id == _dates.c.resource_id))
    .where(_dates.c.resource_type == "Patient", _dates.c.param == "birthdate",
           _dates.c.low == bindparam("low"), _dates.c.high == bindparam("high"), _res.c.deleted.is_(False)))
# The parameters are picked in Python, not SQL: with `param IN (...)` beside two or more ids SQLite
# (no statistics) reads every Patient's names through the lookup index instead of these Patients'
# rows through the owner index; at 37,000 Patients a lookup took 110 ms instead of 0.03 ms.
_MATCHING_STRINGS = DriverStatement(select(_strings.c.resource_id, _strings.c.param, _strings.c.normalized).where(
    _strings.c.resource_type == "Patient", _strings.c.resource_id.in_(bindparam("ids", expanding=True))))
_MATCHED_PARAMS = frozenset({"family", "given", "address-postalcode"})
_tokens = schema.token_index
_WITH_IDENTIFIERS = DriverStatement(
    select(_tokens.c.resource_id, _tokens.c.code)
    .join(_res, and_(_res.c.resource_type == _tokens.c.resource_type, _res.c.resource_id == _tokens.c.resource_id))
    .where(_tokens.c.resource_type == "Patient", _tokens.c.param == "identifier",
           _tokens.c.code.in_(bindparam("codes", expanding=True)), _tokens.c.system == bindparam("system"),
           _res.c.deleted.is_(False)))
_WITH_IDENTIFIER = DriverStatement(
    select(_tokens.c.resource_id)
    .join(_res, and_(_res.c.resource_type == _tokens.c.resource_type, _res.c.resource_id == _tokens.c.resource_id))
    .where(_tokens.c.resource_type == "Patient", _tokens.c.param == "identifier",
           _tokens.c.code == bindparam("code"), _tokens.c.system == bindparam("system"), _res.c.deleted.is_(False)))


def _owner(index):
    return and_(index.c.resource_type == _res.c.resource_type, index.c.resource_id == _res.c.resource_id)


def _review(row) -> Review:
    return Review(**{**row, "candidates": tuple(c for c in row["candidates"].split(",") if c)})
