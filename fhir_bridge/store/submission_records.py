"""The repository's submission reads and records: a reporting period's candidates, streamed in
person order, and the table of submissions made (schema version 6). A mixin of `Repository`,
which stays the only code that touches a database connection.

Every stream is one ordered SQL query read a chunk at a time (`yield_per`), all in one read
transaction, so a submission sees one consistent state of the store and its memory does not grow
with the store. Streams are ordered by the person's Patient id, then the record's own id or time,
so the caller can merge them person by person. PostgreSQL orders text by its collation, which
may ignore hyphens; ids are compared in Python, so it is told to order them by code point (C).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, and_, insert, select

from fhir_bridge.store import schema

_res, _ref, _date, _hist = schema.resources, schema.reference_index, schema.date_index, schema.history
_scores, _submissions = schema.dialog_scores, schema.submissions
_CHUNK = 1000
SCORE_COLUMNS = ("response_id", "subject_id", "authored", "authored_text", "status", "purpose", "timepoint",
                 "recording_organization", "not_applicable",
                 *(f"rating_{d}" for d in schema.DIALOG_DOMAINS))


@dataclass(frozen=True)
class SubmissionRecord:
    submission_id: str
    dataset: str            # mhsds
    provider: str
    period: str             # YYYY-MM
    created: int            # microseconds since the epoch, UTC
    created_by: str
    file_name: str
    file_sha256: str
    content_sha256: str     # the file without its creation time: equal means the same data was sent
    counts: str             # JSON: rows per table, records left out
    settings: str           # JSON: the selection settings the run used


class PeriodReader:
    """Streams of one read transaction; each yields rows in person order."""

    def __init__(self, connection: Connection, dialect: str, indexer):
        self._connection = connection.execution_options(yield_per=_CHUNK)
        self._dialect = dialect
        self._indexer = indexer  # where a reference parameter's rows are (Indexer.rows_of)

    def _code_point(self, column):
        return column.collate("C") if self._dialect == "postgresql" else column

    def patients(self) -> Iterator[tuple[str, bytes]]:
        """(id, body) of every current Patient, by id."""
        query = (select(_res.c.resource_id, _res.c.body)
                 .where(_res.c.resource_type == "Patient", _res.c.deleted.is_(False))
                 .order_by(self._code_point(_res.c.resource_id)))
        for row in self._connection.execute(query):
            yield row.resource_id, row.body

    def about_people(self, resource_type: str, patient_param: str, *, during: tuple[str, int, int] | None = None,
                     changed: tuple[int, int] | None = None) -> Iterator[tuple[str, str, bytes]]:
        """(patient id, resource id, body) of current resources of a type that name a Patient in
        `patient_param`, by patient and id. `during` (date parameter, low, high): its indexed range
        overlaps [low, high]. `changed` (low, high): a version was written in it, and the body is
        the version current at `high` (so a month submitted again later reads the same plan)."""
        # Non-correlated IN (...) subqueries: the database runs each once over its index. The same
        # test as a correlated EXISTS made SQLite scan the date index per candidate (minutes).
        conditions = [_res.c.resource_type == resource_type, _res.c.deleted.is_(False)]
        if during is not None:
            param, low, high = during
            conditions.append(_res.c.resource_id.in_(
                select(_date.c.resource_id).where(_date.c.resource_type == resource_type, _date.c.param == param,
                                                  _date.c.low <= high, _date.c.high >= low)))
        body = _res.c.body
        if changed is not None:
            # As at the end of the window: the version then current (the last one written in it)
            low, high = changed
            conditions.append(_res.c.resource_id.in_(
                select(_hist.c.resource_id).where(_hist.c.resource_type == resource_type,
                                                  _hist.c.last_updated >= low, _hist.c.last_updated <= high)))
            body = (select(_hist.c.body)
                    .where(_hist.c.resource_type == _res.c.resource_type, _hist.c.resource_id == _res.c.resource_id,
                           _hist.c.last_updated <= high)
                    .order_by(_hist.c.version_id.desc()).limit(1).scalar_subquery())
        patient = _ref.c.target_id
        row_param, row_target = self._indexer.rows_of(resource_type, patient_param)
        if row_target not in (None, "Patient"):
            return
        query = (select(patient.label("patient_id"), _res.c.resource_id, body.label("body"))
                 .join(_ref, and_(_ref.c.resource_type == _res.c.resource_type, _ref.c.resource_id == _res.c.resource_id,
                                  _ref.c.param == row_param, _ref.c.target_type == "Patient",
                                  _ref.c.target_id.is_not(None)))  # not another server's Patient
                 .where(*conditions)
                 .order_by(self._code_point(patient), self._code_point(_res.c.resource_id)))
        for row in self._connection.execute(query):
            if row.body is not None:   # None: deleted as at the end of the window
                yield row.patient_id, row.resource_id, row.body

    def dialogs(self, low: int, high: int) -> Iterator[tuple[tuple, bytes]]:
        """(score row: the values of SCORE_COLUMNS in order, body) of current DIALOG responses about
        a Patient authored in [low, high], by patient, then authored time and id."""
        columns = [_scores.c[name] for name in SCORE_COLUMNS]
        query = (select(*columns, _res.c.body)
                 .join(_res, and_(_res.c.resource_type == "QuestionnaireResponse",
                                  _res.c.resource_id == _scores.c.response_id))
                 .where(_scores.c.subject_type == "Patient", _scores.c.authored >= low, _scores.c.authored <= high,
                        _res.c.deleted.is_(False))
                 .order_by(self._code_point(_scores.c.subject_id), _scores.c.authored,
                           self._code_point(_scores.c.response_id)))
        for row in self._connection.execute(query):
            yield tuple(row[:-1]), row[-1]


class SubmissionMixin:
    if TYPE_CHECKING:
        def _reading(self) -> AbstractContextManager[Connection]: ...
        def _writing(self) -> AbstractContextManager[Connection]: ...
        _database: object

    @contextmanager
    def period_reader(self) -> Iterator[PeriodReader]:
        """Streams for a submission, all reading one consistent state of the store."""
        with self._reading() as connection:
            yield PeriodReader(connection, self._database.dialect,  # type: ignore[attr-defined]
                               self._indexer)  # type: ignore[attr-defined]

    def record_submission(self, record: SubmissionRecord) -> None:
        with self._writing() as connection:
            connection.execute(insert(_submissions), record.__dict__)

    def submissions(self, *, dataset: str = "mhsds", provider: str | None = None, period: str | None = None
                    ) -> list[SubmissionRecord]:
        """Submissions made, oldest first."""
        query = select(_submissions).where(_submissions.c.dataset == dataset).order_by(_submissions.c.created)
        if provider is not None:
            query = query.where(_submissions.c.provider == provider)
        if period is not None:
            query = query.where(_submissions.c.period == period)
        with self._reading() as connection:
            return [SubmissionRecord(**row) for row in connection.execute(query).mappings()]
