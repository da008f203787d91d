"""The RiO-like EPR export (mappings/rio/README.md): a folder or zip of five CSV extracts.

Clients (-> Patient) and DIALOG assessments (-> QuestionnaireResponse) are imported; referrals,
care contacts and key workers are left for the MHSDS work (issue 6) and not read at all.
Clients come first so that a client's Patient is stored before the DIALOGs that refer to it.

An assessment's mapping refers to the client's Patient by its deterministic id, but identity
linking may have stored that client under another Patient (the same person from another source).
`map()` therefore resolves the client through the store by the RiO client identifier, which the
pipeline keeps on the linked Patient, and points the response at whichever Patient that is.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fhir_bridge.errors import BridgeError, InputError
from fhir_bridge.fhir.outcome import Issue
from fhir_bridge.formats.csv_reader import read_csv_folder_or_zip
from fhir_bridge.mapping import MappingEngine
from fhir_bridge.pipelines.ingest import SourceRecord
from fhir_bridge.pipelines.source_records import Mapped, csv_records, raise_if_unreadable, unreadable

CLIENTS = "clients.csv"
ASSESSMENTS = "dialog_assessments.csv"
# File -> the mapping its rows go through, in the order the files are imported.
MAPPINGS = {CLIENTS: "rio-client", ASSESSMENTS: "rio-dialog-assessment"}
CLIENT_SYSTEM = "https://fhir-bridge.example.org/Id/rio-client/"  # + ODS code, as mappings/rio/client.yaml


@dataclass(frozen=True)
class RioRow:
    mapping: str            # which mapping file reads it
    values: dict[str, str]  # column -> value


class RioSource:
    """RiO clients and DIALOG assessments; `bridge` resolves each assessment's client Patient."""

    name = "rio"

    def __init__(self, engine: MappingEngine, organization: str, bridge) -> None:
        self.engine = engine
        self.parameters = {"organization": organization}
        self.bridge = bridge
        self.client_system = CLIENT_SYSTEM + organization
        # client id -> the Patient it was stored as, found once per run: a client has several
        # assessments, and a search per assessment was a quarter of the import's time
        self._stored_clients: dict[str, str] = {}

    def records(self, paths: list[Path]) -> Iterator[SourceRecord]:
        for path in paths:
            try:
                files = _by_file_name(read_csv_folder_or_zip(path))
            except BridgeError as exc:
                yield unreadable(self.name, str(path), exc, b"")
                continue
            for file_name, mapping in MAPPINGS.items():
                if file_name not in files:
                    where = f"{path}/{file_name}"
                    yield unreadable(self.name, where, InputError(f"{file_name} is missing from the RiO export {path}",
                                                             location=where), b"")
                    continue
                member, data = files[file_name]
                yield from self._rows(f"{path}/{member}", mapping, data)

    def _rows(self, label: str, mapping: str, data: bytes) -> Iterator[SourceRecord]:
        def make(row, location: str, raw: bytes) -> SourceRecord:
            return SourceRecord(self.name, location, raw, RioRow(mapping, row.values), row.values.get("ClientID"))

        return csv_records(self.name, label, data, make)

    def map(self, record: SourceRecord) -> Mapped:
        raise_if_unreadable(record)
        row: RioRow = record.data  # type: ignore[assignment]
        result = self.engine.map(row.mapping, row.values, record.location, self.parameters)
        mapped = Mapped(result.resources, [p.to_issue() for p in result.problems])
        if row.mapping == MAPPINGS[ASSESSMENTS] and result.ok:
            self._point_at_stored_client(mapped, row.values["ClientID"].strip(), record.location)
        return mapped

    def _point_at_stored_client(self, mapped: Mapped, client_id: str, location: str) -> None:
        patient_id = self._stored_clients.get(client_id)
        if patient_id is None:
            found = self.bridge.find("Patient", [("identifier", f"{self.client_system}|{client_id}")])
            if len(found) == 1:
                patient_id = self._stored_clients[client_id] = found[0].resource_id
        if patient_id is None:
            # None: the client row was quarantined or waits for review. Several cannot happen
            # while identifiers are united on linking; if it does, guessing would misfile a DIALOG.
            why = "is not stored (quarantined or waiting for identity review)" if not found else \
                f"is held by {len(found)} Patients"
            mapped.problems.append(Issue("error", "not-found", f"{location}: client {client_id} {why}",
                                         "QuestionnaireResponse.subject"))
            return
        for resource in mapped.resources:
            if resource.get("resourceType") == "QuestionnaireResponse":
                resource["subject"] = {"reference": f"Patient/{patient_id}"}


def _by_file_name(files: Iterator[tuple[str, bytes]]) -> dict[str, tuple[str, bytes]]:
    """The imported files by name, wherever they are in the folder or zip (a zip often holds one
    sub-folder), matched case-insensitively; the member path is kept for locations. The other
    extracts are dropped here, so their bytes are not held."""
    by_name = ((PurePosixPath(member).name.lower(), member, data) for member, data in files)
    return {name: (member, data) for name, member, data in by_name if name in MAPPINGS}
