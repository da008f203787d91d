"""The VCSE export adapter (mappings/vcse/): CSV rows and JSON records -> one session each.

Both encodings become the same dict - the CSV row's column -> text - so one mapping serves both and
the same session gives the same resources (and ids) whichever form it came in. Unreadable input (an
empty file, binary garbage, a ragged row, JSON that does not parse or is not a list of objects)
becomes a record that fails to map, so it is quarantined with its reason and location, never dropped.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path


from fhir_bridge.errors import BridgeError, InputError
from fhir_bridge.fhir.outcome import Issue
from fhir_bridge.formats.csv_reader import read_csv_folder_or_zip
from fhir_bridge.mapping import MappingEngine
from fhir_bridge.pipelines.source_record import SourceRecord
from fhir_bridge.pipelines.source_records import (Mapped, NotRetryable, csv_records, csv_row_from_entry,
                                                   raise_if_unreadable, record_context, retry_context, unreadable)
from fhir_bridge.pipelines.vcse_sessions import session_parameters

CLIENT_ID_SYSTEM = "https://fhir-bridge.example.org/Id/vcse-client/"  # + the row's OrganisationODS
# JSON field -> CSV column (mappings/vcse/README.md)
CLIENT_FIELDS = {"ref": "ClientRef", "nhsNumber": "NHSNumber", "surname": "Surname", "forename": "Forename",
                 "dateOfBirth": "DateOfBirth", "postcode": "Postcode"}
SESSION_FIELDS = {"id": "SessionID", "date": "SessionDate", "worker": "WorkerName",
                  "organisationOds": "OrganisationODS", "type": "SessionType"}
# Spreadsheets export a date column as a midnight date-time ("16/02/1973 00:00"). That midnight is
# not a time anyone recorded: a birth date has none (the mapping's `date` would make it a dateTime,
# which Patient.birthDate refuses), and a session's authored would claim a time nobody knows.
_MIDNIGHT = re.compile(r"[ T]00:00(:00)?$")
_DATE_COLUMNS = ("DateOfBirth", "SessionDate")
_JSON_SPACE = re.compile(r"[ \t\r\n]*")
_DOMAIN_COLUMN = re.compile(r" (rating|help)$")


class VcseSource:
    """A VCSE case-management export: `.csv` (one row per session) and `.json` (a list of sessions),
    as files, folders or zips. Each row names its own organisation, so mapping needs no run
    parameter; `organization` (whom the import runs as) is kept with the records for a retry."""

    name = "vcse"

    def __init__(self, engine: MappingEngine, organization: str | None = None):
        self.engine = engine
        self.organization = organization
        self._json_context = record_context(organization=organization, format="json")

    def records(self, paths: list[Path]) -> Iterator[SourceRecord]:
        for path in paths:
            try:
                files = list(read_csv_folder_or_zip(path, suffixes=(".csv", ".json")))
            except BridgeError as exc:
                yield unreadable(self.name, str(path), exc, b"", file=str(path))
                continue
            single = path.is_file() and path.suffix.lower() != ".zip"
            for name, data in files:
                label = str(path) if single else f"{path}/{name}"
                reader = self._json if name.lower().endswith(".json") else self._csv
                yield from reader(label, data)

    def _csv(self, label: str, data: bytes) -> Iterator[SourceRecord]:
        return csv_records(self.name, label, data,
                           lambda row, location, raw, context: self._session(location, raw, row.values, context),
                           organization=self.organization)

    def _json(self, label: str, data: bytes) -> Iterator[SourceRecord]:
        try:
            elements = json_elements(data)
        except InputError as exc:  # the whole file is refused: nothing half-imported
            yield unreadable(self.name, f"{label}:{exc.location or 1}", exc, data[:4096], file=label)
            return
        for line, text, value in elements:
            location, raw = f"{label}:{line}", text.encode("utf-8")
            try:
                row = self._answered(flatten(value))
            except InputError as exc:
                yield unreadable(self.name, location, exc, raw)
                continue
            yield self._session(location, raw, row, self._json_context)

    def _answered(self, row: dict[str, str]) -> dict[str, str]:
        """A JSON record leaves out the domains it has no answer for: blank, as in the CSV, whose
        columns the mapping requires (a CSV without one would lose every row's answer quietly)."""
        return self._blank_answers | row

    def _session(self, location: str, raw: bytes, row: dict[str, str], context: str) -> SourceRecord:
        row = {**row, **{c: _MIDNIGHT.sub("", row[c]) for c in _DATE_COLUMNS if c in row}}
        # One key per session, not per person: a review holds one record's resources, so two sessions
        # of one unmatched person under one key would leave only the later one waiting.
        key = f"{_ods(row)}/{row.get('ClientRef', '')}/{row.get('SessionID', '')}"
        return SourceRecord(self.name, location, raw, row, key, context, self.engine.mappings[self.name].key_of(row))

    def record_from_entry(self, entry) -> SourceRecord:
        """A quarantined session, rebuilt alone for a retry: a CSV row from its header line and raw
        text, a JSON record from its raw text (NotRetryable when it could not be read)."""
        context = retry_context(entry)
        if "header" in context:
            return self._session(entry.location, entry.raw, csv_row_from_entry(entry, context).values, entry.context)
        try:
            row = self._answered(flatten(json.loads(entry.raw)))
        except (ValueError, InputError) as exc:  # it was read once: only a changed reader gets here
            raise NotRetryable(f"the kept JSON record cannot be read again: {exc}") from exc
        return self._session(entry.location, entry.raw, row, entry.context)

    def map(self, record: SourceRecord) -> Mapped:
        raise_if_unreadable(record)
        row: dict[str, str] = record.data  # type: ignore[assignment] - records() only makes these two
        result = self.engine.map(self.name, row, record.location, {"client-id-system": CLIENT_ID_SYSTEM + _ods(row)})
        problems = [p.to_issue() for p in result.problems]
        # A rating or help column the mapping does not know (a renamed or misspelt domain) must not
        # be dropped quietly: a person's answer would be lost, so the record waits in quarantine.
        problems += [Issue("error", "structure", f"{record.location}: column {column!r} is not a DIALOG domain "
                                                 "of the VCSE format (mappings/vcse/README.md)")
                     for column in result.unmapped if _DOMAIN_COLUMN.search(column)]
        # A DIALOG+ session that agreed actions goes into the person's plan (pipelines/ingest_sessions.py).
        patient = next((r for r in result.resources if r.get("resourceType") == "Patient"), None)
        session = session_parameters(row, self._domain_names, patient["id"]) if patient and not problems else None
        return Mapped(result.resources, problems, session=session)

    @cached_property
    def _domain_names(self) -> dict[str, str]:
        """VCSE domain name (lower case) -> dialog-domain code, from the mapping file's `dialog-domains`
        list (the names its rating columns use)."""
        return {" ".join(str(i["column"]).lower().split()): str(i["domain"]) for i in self._domain_list}

    @cached_property
    def _blank_answers(self) -> dict[str, str]:
        """Every domain's rating and help column, blank (not answered)."""
        return {f"{i['column']} {kind}": "" for i in self._domain_list for kind in ("rating", "help")}

    @property
    def _domain_list(self):
        return self.engine.mappings[self.name].lists.get("dialog-domains", ())


def json_elements(data: bytes) -> list[tuple[int, str, object]]:
    """The elements of a JSON list as (line where it starts, its text, its value); InputError,
    located by line, when the file is not a JSON list. The text is what quarantine keeps."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError("not a text file: JSON must be UTF-8", location=str(line)) from exc
    if not text.strip():
        raise InputError("empty file", location="1")
    try:
        document = json.loads(text)  # the whole file first: a broken file is refused as a whole
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg} (column {exc.colno})", location=str(exc.lineno)) from exc
    if not isinstance(document, list):
        raise InputError(f"expected a JSON list of session records, found {type(document).__name__}", location="1")
    # Walk the (now known valid) list again for each element's own text and line.
    decoder, elements = json.JSONDecoder(), []
    position = _JSON_SPACE.match(text, text.index("[") + 1).end()
    line, counted = 1, 0  # lines are counted once, up to `counted`
    for _ in document:
        value, end = decoder.raw_decode(text, position)
        line, counted = line + text.count("\n", counted, position), position
        elements.append((line, text[position:end], value))
        comma = _JSON_SPACE.match(text, end).end()  # the "," after it (or the closing "]")
        position = _JSON_SPACE.match(text, comma + 1).end()
    return elements


def flatten(record: object) -> dict[str, str]:
    """One JSON session record -> the dict its CSV row gives (mappings/vcse/README.md)."""
    if not isinstance(record, dict):
        raise InputError(f"a session record is a JSON object, not {type(record).__name__}")
    client, session = record.get("client"), record.get("session")
    if not isinstance(client, dict) or not isinstance(session, dict):
        raise InputError("a session record needs a `client` and a `session` object")
    ratings = record.get("ratings") or {}
    if not isinstance(ratings, dict) or not all(isinstance(a, dict) for a in ratings.values()):
        raise InputError("`ratings` maps domain names to {rating, help} objects")
    row = {column: _text(client.get(key)) for key, column in CLIENT_FIELDS.items()}
    row |= {column: _text(session.get(key)) for key, column in SESSION_FIELDS.items()}
    for domain, answer in ratings.items():
        row[f"{domain} rating"] = _text(answer.get("rating"))
        row[f"{domain} help"] = _help(answer.get("help"))
    row["ChosenDomains"] = ";".join(_text(d) for d in _as_list(session.get("chosenDomains")))
    row["AgreedActions"] = "; ".join(_action(a) for a in _as_list(record.get("actions")))
    return row


def _ods(row: dict[str, str]) -> str:
    # As the mapping writes it (`transform: upper`), so ids, identifier systems and keys agree.
    return row.get("OrganisationODS", "").strip().upper()


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _help(value: object) -> str:
    # true/false as the CSV writes them; anything else goes on as text for the mapping to judge.
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return _text(value)


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _action(action: object) -> str:
    """The CSV cell's form, `domain: action (who, by when)`; kept whole when it is not an object."""
    if not isinstance(action, dict):
        return _text(action)
    return f"{_text(action.get('domain'))}: {_text(action.get('action'))} ({_text(action.get('who'))}, " \
           f"{_text(action.get('due'))})"
