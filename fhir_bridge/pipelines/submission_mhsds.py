"""`fhir-bridge submission mhsds`: one provider's MHSDS-style file for one reporting month.

store -> (period streams, merged person by person) -> rows (mappings/mhsds-out/) -> CSV per table
-> XML -> validated against the XSD -> renamed into place -> data quality report -> recorded.

Everything is written under a temporary folder in the output folder and moved into place only once
the XML has validated: an invalid file is never left as the output (it would be a bug in the
mapping or the checks, since bad data is left out record by record before it is written; the
command then fails naming the schema error). Every run is recorded in the store (file hash, the
hash of its content without the creation time, counts, who ran it), so a month submitted again
is visible, and whether its data changed.
"""
from __future__ import annotations

import getpass
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson

from fhir_bridge.errors import BridgeError, ConfigurationError, InputError
from fhir_bridge.measures import DialogDefinition
from fhir_bridge.store.submission_records import SCORE_COLUMNS, PeriodReader, SubmissionRecord
from fhir_bridge.submission import (Assembler, DialogPolicy, PersonRecords, Quality, RowMaker, StoredDialog,
                                    SubmissionMapping, TableFiles, load_submission_mapping, validate_xml, write_xml)
from fhir_bridge.submission.files import file_sha256
from fhir_bridge.submission.values import UK, CheckContext, Period

__all__ = ["MhsdsSubmission", "SubmissionResult", "MAPPING_FILE", "describe_submissions", "for_bridge",
           "policy_from", "people"]

MAPPING_FILE = Path("mhsds-out") / "mhsds-dialog.yaml"   # under FHIR_BRIDGE_MAPPINGS_DIR
_DAY_US = 86_400_000_000
_CREATED = ("MHS000Header", "DateTimeDatSetCreate")


@dataclass(frozen=True)
class SubmissionResult:
    record: SubmissionRecord
    xml: Path
    csv_folder: Path
    report_json: Path
    report_html: Path
    rows: dict[str, int]
    left_out: int
    measures: dict[str, int]
    earlier: list[SubmissionRecord]    # earlier submissions of the same provider and month
    schema: Path                       # the XSD it was validated against


class MhsdsSubmission:
    def __init__(self, repository, mapping: SubmissionMapping, definition: DialogDefinition, policy: DialogPolicy, *,
                 clock: Callable[[], int] | None = None, new_id: Callable[[], str] | None = None):
        self.repository = repository
        self.mapping = mapping
        self.definition = definition
        self.policy = policy
        self.clock = clock or (lambda: time.time_ns() // 1000)
        self.new_id = new_id or (lambda: str(uuid.uuid4()))

    def run(self, period: Period, provider: str, out_dir: Path, *, submitter: str | None = None,
            created_by: str | None = None) -> SubmissionResult:
        created = self.clock()
        created_local = datetime.fromtimestamp(created / 1e6, tz=timezone.utc).astimezone(UK)
        stamp = datetime.fromtimestamp(created / 1e6, tz=timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        stem = f"mhsds-{provider}-{period.month}-{stamp}"
        parameters = {"provider": provider, "submitter": submitter or provider,
                      "period-start": period.start.isoformat(), "period-end": period.end.isoformat(),
                      "created": created_local.strftime("%Y-%m-%dT%H:%M:%S")}
        maker = RowMaker(self.mapping, parameters, CheckContext(period, self.policy.not_answered_code))
        header = self.mapping.tables[0]
        header_row = maker.build(header.name, {}, {}, {})
        if isinstance(header_row, str):
            raise InputError(f"the submission cannot be made: {header.name} {header_row} "
                             "(a provider or submitter is an ODS code: 3 to 5 capital letters and digits)")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            work = out_dir / f".{stem}.partial"
            work.mkdir()
        except OSError as exc:
            raise InputError(f"cannot write to {out_dir}: {exc.strerror}") from exc
        try:
            return self._write(period, provider, out_dir, work, stem, maker, header_row, created,
                               created_by or _user(), parameters)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _write(self, period: Period, provider: str, out_dir: Path, work: Path, stem: str, maker: RowMaker, header_row,
               created: int, created_by: str, parameters: dict) -> SubmissionResult:
        schema = self.mapping.schema
        tables, quality = self._tables(period, provider, work, maker, header_row)
        xml = work / f"{stem}.xml"
        write_xml(schema, tables, xml)
        problem = validate_xml(schema, xml)
        if problem is not None:
            raise ConfigurationError(f"the file made does not validate against {schema.path} ({problem}); nothing was "
                                     f"written: {self.mapping.file} and its checks let through what the schema refuses")
        content = tables.content_sha256({_CREATED[0]: _CREATED[1]})
        earlier = self.repository.submissions(provider=provider, period=period.month)
        measures = quality.summary()["processMeasures"]
        record = SubmissionRecord(self.new_id(), "mhsds", provider, period.month, created, created_by, f"{stem}.xml",
                                  file_sha256(xml), content,
                                  orjson.dumps({"rows": tables.counts, "leftOut": quality.left_out_total,
                                                "measures": measures}).decode(),
                                  orjson.dumps(self.policy.describe()).decode())
        described = {"provider": provider, "period": period.month, "file": f"{stem}.xml", "schema": schema.path.name,
                     "valid": True, "created": parameters["created"], "createdBy": created_by,
                     "submissionId": record.submission_id, "sha256": record.file_sha256, "contentSha256": content,
                     "resubmissionOf": [e.submission_id for e in earlier], "settings": self.policy.describe()}
        quality.write_json(work / "quality.json", described)
        quality.write_html(work / "quality.html", described)
        final = {"xml": out_dir / f"{stem}.xml", "csv": out_dir / f"{stem}-csv",
                 "json": out_dir / f"{stem}-quality.json", "html": out_dir / f"{stem}-quality.html"}
        try:
            os.replace(work / "quality.json", final["json"])
            os.replace(work / "quality.html", final["html"])
            os.replace(tables.folder, final["csv"])
            os.replace(xml, final["xml"])   # last: the file exists only when everything with it does
        except OSError as exc:
            raise BridgeError(f"cannot move the submission into {out_dir}: {exc.strerror}") from exc
        self.repository.record_submission(record)
        return SubmissionResult(record, final["xml"], final["csv"], final["json"], final["html"], dict(tables.counts),
                                quality.left_out_total, measures, earlier, schema.path)

    def _tables(self, period: Period, provider: str, work: Path, maker: RowMaker, header_row
                ) -> tuple[TableFiles, Quality]:
        """Every row of the month, person by person, into the CSV tables and the quality report."""
        header = self.mapping.tables[0].name
        tables = TableFiles(self.mapping.schema, work / "csv")
        quality = Quality(self.mapping.schema, work / "left-out.jsonl")
        try:
            tables.write(header, [header_row])
            quality.add_rows(header, [header_row])
            assembler = Assembler(self.mapping, maker, self.definition, period, provider, self.policy)
            with self.repository.period_reader() as reader:
                for records in people(reader, self.mapping, period, self.policy):
                    person = assembler.person(records)
                    for table, rows in person.rows.items():
                        tables.write(table, rows)
                    quality.add_person(person)
        finally:
            tables.close()
            quality.close()
        return tables, quality


def policy_from(settings) -> DialogPolicy:
    """The DIALOG selection settings (FHIR_BRIDGE_MHSDS_*) as a policy."""
    if settings.mhsds_duplicate_days < 0:
        raise ConfigurationError("FHIR_BRIDGE_MHSDS_DUPLICATE_DAYS is a number of days (0 turns the check off)")
    return DialogPolicy(tuple(settings.mhsds_dialog_purposes), settings.mhsds_dialog_recorders,
                        settings.mhsds_duplicate_days, settings.mhsds_not_answered_code)


def for_bridge(bridge, **kwargs) -> MhsdsSubmission:
    """The submission with the bridge's store, mapping (checked against its search parameters) and settings."""
    registry = bridge.registry

    def search_parameter(resource_type: str, code: str) -> str | None:
        found = registry.get(resource_type, code)
        return found.type if found else None

    mapping = load_submission_mapping(bridge.settings.mappings_dir / MAPPING_FILE, search_parameters=search_parameter)
    return MhsdsSubmission(bridge.repository, mapping, bridge.dialog, policy_from(bridge.settings), **kwargs)


def people(reader: PeriodReader, mapping: SubmissionMapping, period: Period, policy: DialogPolicy
           ) -> Iterator[PersonRecords]:
    """The month's candidates, person by person (Patient id order), merged from one ordered stream
    per kind of record; a person's DIALOGs from the `duplicate_days` before the month come too."""
    sources = mapping.sources

    def stream(name: str) -> Iterator[tuple[str, tuple[str, dict]]]:
        spec = sources[name]
        during = (spec.during, period.low, period.high) if spec.during else None
        changed = (period.low, period.high) if spec.changed else None
        for patient_id, resource_id, body in reader.about_people(spec.type, spec.patient, during=during, changed=changed):
            yield patient_id, (resource_id, orjson.loads(body))

    def dialogs() -> Iterator[tuple[str, StoredDialog]]:
        for row, body in reader.dialogs(period.low - policy.duplicate_days * _DAY_US, period.high):
            yield row[_SUBJECT], _stored_dialog(row, body)

    groups = {"referrals": _Groups(stream("referral")), "contacts": _Groups(stream("contact")),
              "care_teams": _Groups(stream("care-team")), "care_plans": _Groups(stream("care-plan")),
              "dialogs": _Groups(dialogs())}
    patients = reader.patients()
    patient_id, patient_body = next(patients, (None, None))
    while True:
        heads = [g.head for g in groups.values() if g.head is not None]
        if not heads:
            return
        person = min(heads)
        records = PersonRecords(person)
        for name, group in groups.items():
            if group.head == person:
                setattr(records, name, group.take())
        while patient_id is not None and patient_id < person:
            patient_id, patient_body = next(patients, (None, None))
        if patient_id == person:
            records.patient = orjson.loads(patient_body)
        yield records


class _Groups:
    """A stream of (person, item) in person order, taken one person's items at a time."""

    def __init__(self, items: Iterator[tuple[str, object]]):
        self._items = items
        self._next = next(items, None)

    @property
    def head(self) -> str | None:
        return None if self._next is None else self._next[0]

    def take(self) -> list:
        person, taken = self.head, []
        while self._next is not None and self._next[0] == person:
            taken.append(self._next[1])
            self._next = next(self._items, None)
        return taken


_SUBJECT = SCORE_COLUMNS.index("subject_id")
_RATINGS = [(n, c.removeprefix("rating_").replace("_", "-")) for n, c in enumerate(SCORE_COLUMNS) if c.startswith("rating_")]


def _stored_dialog(row: tuple, body: bytes) -> StoredDialog:
    (response_id, subject_id, authored, authored_text, status, purpose, timepoint, recorder,
     not_applicable) = row[:9]
    return StoredDialog(response_id, subject_id, authored, authored_text, status, purpose, timepoint, recorder,
                        {domain: row[n] for n, domain in _RATINGS},
                        frozenset(filter(None, (not_applicable or "").split(","))), body)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):   # no login name (a container without a passwd entry)
        return f"uid {os.getuid()}"


def describe_submissions(records: list[SubmissionRecord]) -> list[dict]:
    """The submissions made, each with its place among the submissions of its month: the first, or
    a resubmission, and whether its data differs from the one before."""
    by_month: dict[tuple[str, str], list[SubmissionRecord]] = {}
    described = []
    for record in sorted(records, key=lambda r: r.created):
        before = by_month.setdefault((record.provider, record.period), [])
        counts = orjson.loads(record.counts)
        described.append({
            "record": record, "number": len(before) + 1, "rows": counts.get("rows", {}),
            "leftOut": counts.get("leftOut", 0),
            "sameDataAs": next((b.submission_id for b in reversed(before) if b.content_sha256 == record.content_sha256), None)
            if before else None,
            "changedSince": before[-1].submission_id if before and before[-1].content_sha256 != record.content_sha256 else None,
        })
        before.append(record)
    return described
