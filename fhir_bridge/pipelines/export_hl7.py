"""`fhir-bridge export hl7`: DIALOG responses that partners recorded -> ORU^R01 messages for the EPR.

Which: current DIALOG responses (completed or amended) whose recording organisation is not the
receiving EPR's own (it has them already: sending them back would double them), optionally changed
since a time or of one Patient. Per peer, each version is sent until the peer takes it (AA) or it
is written to a file; re-running sends only new versions and those not yet taken. Every attempt is
recorded (store table outbound_messages): a message whose ACK never came stays `pending` and is
resent next time with the same control id, its attempt count showing the resend.

Each message is built from the declarative outbound mapping and validated with hl7apy before it
leaves; one that cannot be built or is invalid is recorded `invalid` with the reason, never sent.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from fhir_bridge.errors import BridgeError, PeerUnavailable, Unprocessable
from fhir_bridge.outputs import RECORD, dialog_oru_record, load_outbound_mapping, recorder_of
from fhir_bridge.outputs.dialog_oru import ODS_SYSTEM
from fhir_bridge.outputs.mllp_sender import MllpSender
from fhir_bridge.store.outbound_records import OutboundMessage
from fhir_bridge.store.types import Stored

__all__ = ["ExportReport", "Hl7Export", "control_id", "file_peer", "mllp_peer"]

OUTBOUND_MAPPING = Path("hl7-out") / "oru-dialog.yaml"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ACK_STATES = {"AA": "accepted", "AE": "error", "AR": "rejected"}
NOT_TAKEN = ("error", "rejected", "invalid")


def control_id(resource_id: str, version_id: int) -> str:
    """MSH-10 (ST, at most 20 characters): a digest of the response id, then the version, so every
    send of one version carries the same id and the EPR can recognise a resend."""
    suffix = f".{version_id}"
    return hashlib.sha256(resource_id.encode("utf-8")).hexdigest()[:20 - len(suffix)] + suffix


def mllp_peer(host: str, port: int) -> str:
    return f"mllp:{host}:{port}"


def file_peer(organization: str) -> str:
    """Files are one peer per receiving organisation: whatever folder the EPR collects them from."""
    return f"file:{organization}"


@dataclass
class ExportReport:
    peer: str
    counts: Counter = field(default_factory=Counter)  # accepted | written | error | rejected | invalid
    resent: int = 0                                   # versions sent again: an earlier attempt got no AA
    problems: list[str] = field(default_factory=list)  # one line per message not taken
    stopped: str | None = None                        # why sending stopped before the end

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> bool:
        return bool(self.stopped) or any(self.counts[s] for s in NOT_TAKEN)


@dataclass(frozen=True)
class Built:
    stored: Stored
    control_id: str
    text: str


class Hl7Export:
    def __init__(self, bridge, receiving_organization: str, *, receiving_application: str = "",
                 receiving_facility: str | None = None, clock: Callable[[], datetime] | None = None):
        self.bridge = bridge
        self.repository = bridge.repository
        self.organization = receiving_organization.strip().upper()
        if not self.organization:
            raise BridgeError("the receiving organisation's ODS code is needed (--receiving-organization)")
        self.mapping = load_outbound_mapping(bridge.settings.mappings_dir / OUTBOUND_MAPPING, RECORD)
        self.parameters = {"receiving-application": receiving_application,
                           "receiving-facility": receiving_facility or self.organization}
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._recorders: dict[str, str | None] = {}  # Organization reference -> its ODS code

    # -- which responses ----------------------------------------------------------------------------
    def select(self, peer: str, *, since: int | None = None, patient_id: str | None = None,
               include_done: bool = False) -> Iterator[Stored]:
        """The responses to send to `peer`: recorded by anyone but the receiving organisation."""
        candidates = self.repository.dialog_responses_to_send(
            peer, exclude_recorder=f"{ODS_SYSTEM}|{self.organization}", since=since, subject_id=patient_id,
            include_done=include_done)
        for stored in candidates:
            # The store filtered recorders named by ODS code; one named by reference is resolved here
            if self.recorder(stored.resource) != self.organization:
                yield stored

    def recorder(self, response: dict) -> str | None:
        """The recording organisation's ODS code; for a reference, the referenced Organization's."""
        ods, reference = recorder_of(response)
        if ods or not reference:
            return ods
        if reference not in self._recorders:
            self._recorders[reference] = self._ods_of(reference)
        return self._recorders[reference]

    def _ods_of(self, reference: str) -> str | None:
        kind, _, ident = reference.rpartition("/")
        if not kind.endswith("Organization"):
            return None
        try:
            organization = self.repository.read("Organization", ident).resource
        except BridgeError:  # not in the store (or deleted): nothing says it is the EPR's
            return None
        for identifier in organization.get("identifier", ()):
            if isinstance(identifier, dict) and identifier.get("system") == ODS_SYSTEM and identifier.get("value"):
                return str(identifier["value"]).upper()
        return None

    # -- one message --------------------------------------------------------------------------------
    def build(self, stored: Stored, peer: str) -> Built:
        """The ORU^R01 of one response version; Unprocessable (with the reason) when it cannot be sent."""
        response = stored.resource or {}
        what = f"QuestionnaireResponse/{stored.resource_id} version {stored.version_id}"
        patient = self._patient(response, what)
        control = control_id(stored.resource_id, stored.version_id)
        corrected = self.repository.taken_earlier_version(peer, stored.resource_type, stored.resource_id,
                                                          stored.version_id)
        record = dialog_oru_record(response, patient, self.bridge.dialog, receiving_organization=self.organization,
                                   recorder=self.recorder(response), control_id=control,
                                   message_time=self.clock(), corrected=corrected)
        return Built(stored, control, self.mapping.build(record, self.parameters, what=what))

    def _patient(self, response: dict, what: str) -> dict:
        reference = (response.get("subject") or {}).get("reference") or ""
        kind, _, ident = reference.rpartition("/")
        if kind != "Patient":
            raise Unprocessable(f"{what}: its subject {reference!r} is not a Patient reference")
        try:
            return self.repository.read("Patient", ident).resource
        except BridgeError as exc:
            raise Unprocessable(f"{what}: its subject {reference} cannot be read: {exc.message}") from exc

    # -- destinations ---------------------------------------------------------------------------------
    def write(self, selection: Iterable[Stored], out: BinaryIO, peer: str) -> ExportReport:
        """One message after another (segments and messages ended by CR, no MLLP framing); each
        recorded `written` once it is flushed."""
        report = ExportReport(peer)
        for stored in selection:
            built = self._built_or_recorded(stored, peer, report)
            if built is None:
                continue
            out.write(built.text.encode("utf-8") + b"\r")
            out.flush()
            now = self._now()
            previous = self._record(built, peer, "written", sent=now, now=now)
            report.resent += previous is not None and previous.state != "invalid"
            report.counts["written"] += 1
        return report

    def send(self, selection: Iterable[Stored], host: str, port: int, peer: str, *, timeout: float = 30.0) -> ExportReport:
        """Over MLLP, one at a time, each waiting for its ACK. AA marks it accepted; AE/AR are
        recorded and reported and the next message goes; a refused, lost or silent connection stops
        the run with the message left `pending`. Connects only once there is something to send."""
        report = ExportReport(peer)
        try:
            with ExitStack() as connection:
                sender: MllpSender | None = None
                for stored in selection:
                    built = self._built_or_recorded(stored, peer, report)
                    if built is None:
                        continue
                    if sender is None:
                        sender = connection.enter_context(MllpSender(host, port, timeout=timeout))
                    self._send_one(sender, built, peer, report)
        except PeerUnavailable as exc:
            report.stopped = exc.message
        return report

    def _send_one(self, sender: MllpSender, built: Built, peer: str, report: ExportReport) -> None:
        previous = self._record(built, peer, "pending", now=self._now())
        report.resent += previous is not None and previous.state != "invalid"
        try:
            ack = sender.send(built.text, built.control_id)
        except PeerUnavailable as exc:  # its fate unknown: stays pending, sent again next run
            self._record(built, peer, "pending", detail=exc.message, now=self._now(), again=True)
            raise
        state, now = _ACK_STATES[ack.code], self._now()
        self._record(built, peer, state, ack_code=ack.code, detail=ack.text or None,
                     sent=now if state == "accepted" else None, now=now, again=True)
        report.counts[state] += 1
        if state != "accepted":
            report.problems.append(f"{_label(built.stored)} (message {built.control_id}): "
                                   f"{ack.code} {ack.text or '(no reason given)'}")

    def _built_or_recorded(self, stored: Stored, peer: str, report: ExportReport) -> Built | None:
        try:
            return self.build(stored, peer)
        except Unprocessable as exc:
            built = Built(stored, control_id(stored.resource_id, stored.version_id), "")
            self._record(built, peer, "invalid", detail=exc.message, now=self._now())
            report.counts["invalid"] += 1
            report.problems.append(f"{_label(stored)}: not sent: {exc.message}")
            return None

    def _record(self, built: Built, peer: str, state: str, *, now: int, ack_code: str | None = None,
                detail: str | None = None, sent: int | None = None, again: bool = False) -> OutboundMessage | None:
        """Write this version's row; returns the row it replaced. `again`: the same attempt's outcome
        (not a new attempt)."""
        stored = built.stored
        previous = self.repository.outbound_message(peer, stored.resource_type, stored.resource_id, stored.version_id)
        attempts = (previous.attempts if previous else 0) + (0 if again else 1)
        self.repository.record_outbound(OutboundMessage(
            peer, stored.resource_type, stored.resource_id, stored.version_id, built.control_id, state,
            max(attempts, 1), now, sent, ack_code, detail))
        return previous

    def _now(self) -> int:
        return (self.clock() - _EPOCH) // timedelta(microseconds=1)


def _label(stored: Stored) -> str:
    return f"QuestionnaireResponse/{stored.resource_id} version {stored.version_id}"
