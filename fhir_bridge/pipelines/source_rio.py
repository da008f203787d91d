"""The RiO-like EPR export (mappings/rio/README.md): a folder or zip of five CSV extracts.

Clients (-> Patient), referrals (-> ServiceRequest), care contacts (-> Encounter), key workers
(-> CareTeam) and DIALOG assessments (-> QuestionnaireResponse), in that order: a client's Patient
and a referral are met before what refers to them. Referrals, contacts and key workers feed the
MHSDS submission; exports made before they existed hold only clients and assessments, so those
three files may be absent (present but unreadable, they are quarantined like the others).

An assessment's mapping refers to the client's Patient by its deterministic id, but identity
linking may have stored that client under another Patient (the same person from another source).
`place()` therefore resolves the client by the RiO client identifier, which the pipeline keeps on the
linked Patient, and points the response at whichever Patient that is. It asks the import run
(`patients_with_identifier`), which also sees clients linked in the batch not yet stored.
"""
from __future__ import annotations

import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fhir_bridge.errors import BridgeError, InputError
from fhir_bridge.fhir.outcome import Issue
from fhir_bridge.formats.csv_reader import read_csv_folder_or_zip
from fhir_bridge.mapping import MappingEngine
from fhir_bridge.pipelines.source_record import SourceRecord
from fhir_bridge.pipelines.source_records import (Mapped, csv_records, csv_row_from_entry, raise_if_unreadable,
                                                   retry_context, unreadable)

CLIENTS = "clients.csv"
REFERRALS = "referrals.csv"
CONTACTS = "care_contacts.csv"
KEY_WORKERS = "key_workers.csv"
ASSESSMENTS = "dialog_assessments.csv"
# File -> the mapping its rows go through, in the order the files are imported.
MAPPINGS = {CLIENTS: "rio-client", REFERRALS: "rio-referral", CONTACTS: "rio-care-contact",
            KEY_WORKERS: "rio-key-worker", ASSESSMENTS: "rio-dialog-assessment"}
OPTIONAL = (REFERRALS, CONTACTS, KEY_WORKERS)
# Mappings whose resources name the client: their subject is pointed at the Patient it was stored as.
_ABOUT_A_CLIENT = {MAPPINGS[REFERRALS], MAPPINGS[KEY_WORKERS], MAPPINGS[ASSESSMENTS]}
# Referrals remembered for their contacts; beyond that the oldest, long stored, are looked up in
# the store instead, so memory stays flat however large the export (~200 bytes a referral).
REMEMBERED_REFERRALS = 100_000
CLIENT_SYSTEM = "https://fhir-bridge.example.org/Id/rio-client/"  # + ODS code, as mappings/rio/client.yaml
REFERRAL_SYSTEM = "https://fhir-bridge.example.org/Id/rio-referral/"  # + ODS code, as mappings/rio/referral.yaml


@dataclass(frozen=True)
class RioRow:
    mapping: str            # which mapping file reads it
    values: dict[str, str]  # column -> value


class RioSource:
    """RiO clients, referrals, contacts, key workers and DIALOG assessments; `bridge` resolves the
    Patient each record's client (a contact's: its referral's client) was stored as."""

    name = "rio"

    def __init__(self, engine: MappingEngine, organization: str, bridge) -> None:
        self.engine = engine
        self.parameters = {"organization": organization}
        self.bridge = bridge
        # set by ingest_for to the run's own lookup (it sees the batch not yet stored, and
        # remembers: a client's many assessments cost one query); the store's outside a run.
        # No bridge: an import's worker process, which only maps (`map`), never places.
        self.patients_with_identifier = bridge.identity.holders if bridge is not None else None
        self.client_system = CLIENT_SYSTEM + organization
        # referral id -> client id of the referrals mapped in this run: a contact names only its
        # referral, which may still be in the batch not yet stored
        self._referral_clients: OrderedDict[str, str] = OrderedDict()

    def records(self, paths: list[Path]) -> Iterator[SourceRecord]:
        """Each folder or zip is one export, which must hold the clients and the assessments.
        Extract files named one by one (`clients.csv dialog_assessments.csv`) are one export
        together, read in import order whatever the order given, and only what is named is read
        (assessments alone find clients stored before); a file name met again starts the next."""
        for export in _exports(paths):
            if isinstance(export, SourceRecord):  # a path that could not be read, or no extract
                yield export
                continue
            where, files, whole = export
            for file_name, mapping in MAPPINGS.items():
                if file_name in files:
                    location, data = files[file_name]
                    yield from self._rows(location, mapping, data)
                elif whole and file_name not in OPTIONAL:
                    missing = f"{where}/{file_name}"
                    yield unreadable(self.name, missing, InputError(
                        f"{file_name} is missing from the RiO export {where}", location=missing), b"", file=missing)

    def _rows(self, label: str, mapping: str, data: bytes | Path) -> Iterator[SourceRecord]:
        keyed = self.engine.mappings[mapping].key_of

        def make(row, location: str, raw: bytes, context: str) -> SourceRecord:
            return SourceRecord(self.name, location, raw, RioRow(mapping, row.values), row.values.get("ClientID"),
                                context, keyed(row.values, self.parameters))

        return csv_records(self.name, label, data, make, organization=self.parameters["organization"], mapping=mapping)

    def record_from_entry(self, entry) -> SourceRecord:
        """A quarantined row, rebuilt alone for a retry (NotRetryable when it could not be read).
        An assessment needs its client stored by then: retried after the clients (`retry_order`)."""
        context = retry_context(entry)
        row = csv_row_from_entry(entry, context)
        return SourceRecord(self.name, entry.location, entry.raw, RioRow(context["mapping"], row.values),
                            row.values.get("ClientID"), entry.context)

    @staticmethod
    def retry_order(record: SourceRecord) -> int:
        """Retry in import order: clients, referrals, contacts, key workers, assessments."""
        return list(MAPPINGS.values()).index(record.data.mapping)  # type: ignore[attr-defined]

    def map(self, record: SourceRecord) -> Mapped:
        """The row mapped by its mapping alone: needs no store and no run (an import's worker
        processes run it); `place` then points it at the person."""
        raise_if_unreadable(record)
        row: RioRow = record.data  # type: ignore[assignment]
        values = _with_contact_time(row.values) if row.mapping == MAPPINGS[CONTACTS] else row.values
        result = self.engine.map(row.mapping, values, record.location, self.parameters)
        return Mapped(result.resources, [p.to_issue() for p in result.problems])

    def place(self, record: SourceRecord, mapped: Mapped) -> None:
        """Point a mapped row's resources at the Patient its client was stored as (a contact's:
        its referral's client), as this run sees it; a client it cannot find is an error problem.
        Called in the importing process, in input order, for rows that mapped without errors."""
        row: RioRow = record.data  # type: ignore[assignment]
        values = row.values
        if row.mapping in _ABOUT_A_CLIENT:
            self._point_at_stored_client(mapped, values["ClientID"].strip(), record.location)
        if row.mapping == MAPPINGS[REFERRALS]:
            self._referral_clients[values["ReferralID"].strip()] = values["ClientID"].strip()
            if len(self._referral_clients) > REMEMBERED_REFERRALS:
                self._referral_clients.popitem(last=False)
        elif row.mapping == MAPPINGS[CONTACTS]:
            self._point_at_referral_client(mapped, values["ReferralID"].strip(), record.location)

    def _point_at_referral_client(self, mapped: Mapped, referral_id: str, location: str) -> None:
        """A contact's subject: its referral's Patient (mapped in this run, else as stored)."""
        client_id = self._referral_clients.get(referral_id)
        if client_id is not None:
            self._point_at_stored_client(mapped, client_id, location)
            return
        stored = self.bridge.repository.search(self.bridge.search_request(
            "ServiceRequest", [("identifier", f"{REFERRAL_SYSTEM}{self.parameters['organization']}|{referral_id}")]))
        subject = stored.matches[0].resource.get("subject") if len(stored.matches) == 1 else None
        if not subject:
            mapped.problems.append(Issue("error", "not-found", f"{location}: referral {referral_id} is not stored "
                                         "(quarantined, or not in this export or an earlier one)", "Encounter.subject"))
            return
        _point(mapped, subject)

    def _point_at_stored_client(self, mapped: Mapped, client_id: str, location: str) -> None:
        found = sorted(self.patients_with_identifier(self.client_system, client_id))
        patient_id = found[0] if len(found) == 1 else None
        if patient_id is None:
            # None: the client row was quarantined or waits for review. Several cannot happen
            # while identifiers are united on linking; if it does, guessing would misfile a DIALOG.
            why = "is not stored (quarantined or waiting for identity review)" if not found else \
                f"is held by {len(found)} Patients"
            mapped.problems.append(Issue("error", "not-found", f"{location}: client {client_id} {why}",
                                         f"{mapped.resources[0].get('resourceType')}.subject"))
            return
        _point(mapped, {"reference": f"Patient/{patient_id}"})


def _point(mapped: Mapped, subject: dict) -> None:
    """The mapped resources about `subject`: new dicts where it changes, never changed in place
    (what a worker process mapped is the record's, as a mapping gave it)."""
    mapped.resources = [r if r.get("subject") == subject else {**r, "subject": subject} for r in mapped.resources]


def _with_contact_time(values: dict[str, str]) -> dict[str, str]:
    """ContactDate's day and ContactTime as one value (ContactDateTime) for the mapping's `date`
    transform, which reads one field: a contact's time is local, and needs its day for the offset."""
    day, time = (values.get("ContactDate") or "").strip(), (values.get("ContactTime") or "").strip()
    if not day or not time:
        return values
    return {**values, "ContactDateTime": f"{day.replace('T', ' ').split(' ')[0]} {time}"}


# An export as read: where it is (for the faults it has), its extracts by file name, each as
# (the location its rows name, its bytes or its path), and whether it is a whole export (a folder
# or zip: it must hold the required extracts) or files named one by one.
Export = tuple[str, dict[str, tuple[str, bytes | Path]], bool]


def _exports(paths: list[Path]) -> Iterator[Export | SourceRecord]:
    """The exports among `paths` (see RioSource.records), or for a path that cannot be one, the
    unreadable record saying why. Extract files named one by one are gathered across the whole
    list (a folder or a missing path between them does not split them), in the place of the first."""
    plan: list[Path | dict | SourceRecord] = []
    loose: dict[str, tuple[str, Path]] | None = None
    for path in paths:
        if not (path.is_file() and not zipfile.is_zipfile(path)):
            plan.append(path)  # a folder or zip (or what is neither: read_csv_folder_or_zip says so)
            continue
        name = path.name.lower()
        if name not in MAPPINGS:
            where = str(path)
            plan.append(unreadable(RioSource.name, where, InputError(
                f"{path.name} is not a RiO extract: the files are {', '.join(MAPPINGS)}, named so, in a "
                "folder or a zip (on standard input: a zip)", location=where), b"", file=where))
            continue
        if loose is None or name in loose:
            loose = {}
            plan.append(loose)
        loose[name] = (str(path), path)
    for item in plan:
        if isinstance(item, dict):
            yield _loose_export(item)
        elif isinstance(item, SourceRecord):
            yield item
        else:
            try:
                yield str(item), _by_file_name(item, read_csv_folder_or_zip(item, lazy=True)), True
            except BridgeError as exc:
                yield unreadable(RioSource.name, str(item), exc, b"", file=str(item))


def _loose_export(files: dict[str, tuple[str, Path]]) -> Export:
    """Extract files given one by one: the export is where the first of them is."""
    first = next(iter(files.values()))[1]
    return str(first.parent), files, False


def _by_file_name(path: Path, files: Iterator[tuple[str, bytes | Path]]) -> dict[str, tuple[str, bytes | Path]]:
    """A folder's or zip's extracts by name, wherever they are in it (a zip often holds one
    sub-folder), matched case-insensitively; the member path is kept for locations. The other
    files are dropped here, so their bytes are not held."""
    by_name = ((PurePosixPath(member).name.lower(), member, data) for member, data in files)
    return {name: (f"{path}/{member}", data) for name, member, data in by_name if name in MAPPINGS}
