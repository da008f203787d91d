"""`export hl7` on a real store: which responses, what is recorded per peer, re-runs, corrections, and
MLLP over real TCP - our own listener on a second store as the EPR, and a scripted peer that
answers AE, drops the connection or stays silent."""
from __future__ import annotations

import asyncio
import copy
import io
import json
import socket
import threading
from datetime import datetime, timezone

import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.formats.hl7v2 import build_ack, control_id as msh_10, field, parse_message, split_batch
from fhir_bridge.formats.mllp import MllpDecoder, frame
from fhir_bridge.measures import score_dialog
from fhir_bridge.pipelines.export_hl7 import Hl7Export, control_id, file_peer, mllp_peer
from fhir_bridge.pipelines.identity import NHS_SYSTEM
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.pipelines.hl7_feed import serve_mllp
from tests.conftest import REPO

CASE = REPO / "tests/golden/hl7-out-oru-dialog/prom-nhs-and-local-id"
NOW = datetime(2025, 3, 5, 12, 0, tzinfo=timezone.utc)
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
RECORDING_ORG = "https://fhir-bridge.example.org/StructureDefinition/recording-organization"
EPR = "RAT"


def response(ident: str, recorder: dict, authored: str, patient: str) -> dict:
    qr = json.loads((CASE / "response.json").read_text())
    qr.pop("meta")
    qr["id"], qr["authored"] = ident, authored
    qr["subject"] = qr["source"] = {"reference": f"Patient/{patient}"}
    qr["extension"] = [e if e["url"] != RECORDING_ORG else {"url": RECORDING_ORG, "valueReference": recorder}
                       for e in qr["extension"]]
    return qr


def by_ods(code: str) -> dict:
    return {"identifier": {"system": ODS, "value": code}}


@pytest.fixture()
def bridge(tmp_path, validator):
    b = Bridge(Settings(data_dir=tmp_path / "store"), validator=validator)
    yield b
    b.close()


@pytest.fixture()
def stored(bridge):
    """Responses recorded by a VCSE (sent), by the EPR itself (not sent: by ODS code, and by reference
    to its Organization), by an Organization the store does not hold (sent), and one for a person the
    EPR cannot match (invalid)."""
    patient = json.loads((CASE / "patient.json").read_text())
    patient.pop("meta")
    unmatched = {**copy.deepcopy(patient), "id": "p-vcse-only",
                 "identifier": [i for i in patient["identifier"] if "vcse-client" in i["system"]]}
    epr_org = {"resourceType": "Organization", "id": "epr-org", "identifier": [{"system": ODS, "value": EPR}]}
    resources = [patient, unmatched, epr_org,
                 response("qr-vcse", by_ods("NQX01"), "2025-03-01T10:00:00+00:00", patient["id"]),
                 response("qr-epr", by_ods("rat"), "2025-03-02T10:00:00+00:00", patient["id"]),
                 response("qr-epr-ref", {"reference": "Organization/epr-org"}, "2025-03-03T10:00:00+00:00", patient["id"]),
                 response("qr-other-ref", {"reference": "Organization/unknown"}, "2025-03-04T10:00:00+00:00", patient["id"]),
                 response("qr-unmatched", by_ods("NQX01"), "2025-03-05T10:00:00+00:00", "p-vcse-only")]
    for resource in resources:
        assert bridge.validator.validate(resource).valid, resource["id"]
        with bridge.repository.unit_of_work() as uow:
            bridge.resources.put_validated(resource, Caller("NQX01"), uow=uow)
    return {r["id"]: r for r in resources}


def export(bridge) -> Hl7Export:
    return Hl7Export(bridge, "rat", receiving_application="RIO", clock=lambda: NOW)


def write(bridge, **options):
    out, peer = io.BytesIO(), file_peer(EPR)
    hl7 = export(bridge)
    report = hl7.write(hl7.select(peer, **options), out, peer)
    return report, [text for _, text in split_batch(out.getvalue())]


def test_only_partners_responses_are_written_and_each_version_once(bridge, stored):
    report, messages = write(bridge)
    assert (report.counts["written"], report.counts["invalid"]) == (2, 1) and report.failed
    assert [msh_10(parse_message(m)) for m in messages] == [control_id("qr-vcse", 1), control_id("qr-other-ref", 1)]
    assert [field(parse_message(m), "MSH-4") for m in messages] == ["NQX01", ""]  # the recorder, when known
    assert "p-vcse-only has neither a valid NHS number nor an identifier of RAT" in report.problems[0]
    rows = {r.resource_id: r for r in bridge.repository.outbound_messages(file_peer(EPR))}
    assert {k: (r.state, r.attempts) for k, r in rows.items()} == {
        "qr-vcse": ("written", 1), "qr-other-ref": ("written", 1), "qr-unmatched": ("invalid", 1)}
    assert "could not match the person" in rows["qr-unmatched"].detail

    again, messages = write(bridge)  # nothing new: only the invalid one is tried again
    assert (again.counts["written"], again.counts["invalid"], messages) == (0, 1, [])
    assert bridge.repository.outbound_message(file_peer(EPR), "QuestionnaireResponse", "qr-unmatched", 1).attempts == 2

    everything, messages = write(bridge, include_done=True)
    assert everything.counts["written"] == 2 and everything.resent == 2


def test_a_changed_response_is_sent_again_as_a_correction(bridge, stored):
    write(bridge)
    changed = copy.deepcopy(stored["qr-vcse"])
    changed["item"][0]["answer"][0]["valueCoding"].update(code="6", display="Very satisfied")
    with bridge.repository.unit_of_work() as uow:
        bridge.resources.put_validated(changed, Caller("NQX01"), uow=uow)
    report, [message] = write(bridge)
    parsed = parse_message(message)
    assert msh_10(parsed) == control_id("qr-vcse", 2) != control_id("qr-vcse", 1)
    assert field(parsed, "OBR-25") == "C" and field(parsed, "OBX-11") == "C"
    assert field(parsed, "OBR-3.1") == "qr-vcse"  # the same DIALOG, corrected


def test_since_and_patient_narrow_the_selection(bridge, stored):
    later = bridge.repository.read("QuestionnaireResponse", "qr-other-ref").last_updated
    assert [s.resource_id for s in export(bridge).select(file_peer(EPR), since=later)] == ["qr-other-ref", "qr-unmatched"]
    assert [s.resource_id for s in export(bridge).select(file_peer(EPR), patient_id="p-vcse-only")] == ["qr-unmatched"]


# -- MLLP ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScriptedPeer:
    """A TCP peer answering each message as scripted: AA / AE / AR, `drop` (close without an ACK)
    or `silent` (never answer)."""

    def __init__(self, script: list[str]):
        self.script = list(script)
        self.received: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                self._talk(connection)

    def _talk(self, connection: socket.socket) -> None:
        decoder = MllpDecoder()
        while data := connection.recv(65536):
            for message in decoder.feed(data):
                self.received.append(message.decode())
                action = self.script.pop(0) if self.script else "AA"
                if action == "drop":
                    return
                if action != "silent":
                    reason = "patient not known to the EPR" if action != "AA" else ""
                    connection.sendall(frame(build_ack(message.decode(), action, reason, now=NOW).encode()))

    def close(self) -> None:
        self.server.close()


def send(bridge, port: int, timeout: float = 5.0):
    peer = mllp_peer("127.0.0.1", port)
    hl7 = export(bridge)
    return hl7.send(hl7.select(peer), "127.0.0.1", port, peer, timeout=timeout), peer


def test_our_own_listener_as_the_epr_takes_the_messages_with_the_same_answers(bridge, stored, tmp_path, validator):
    epr = Bridge(Settings(data_dir=tmp_path / "epr"), validator=validator)
    bound, ready, running = [], threading.Event(), []

    async def main() -> None:
        running.append((asyncio.get_running_loop(), asyncio.current_task()))
        await serve_mllp(epr, "127.0.0.1", 0, "FHIRBRIDGE", ready=lambda a: (bound.append(a), ready.set()))

    thread = threading.Thread(target=_run_until_cancelled, args=(main,), daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        report, peer = send(bridge, bound[0][1])
        assert (report.counts["accepted"], report.counts["invalid"], report.stopped) == (2, 1, None)
        rows = {r.resource_id: r for r in bridge.repository.outbound_messages(peer)}
        assert (rows["qr-vcse"].state, rows["qr-vcse"].ack_code, rows["qr-vcse"].sent) == ("accepted", "AA",
                                                                                            rows["qr-vcse"].last_attempt)
        # What the EPR stored: the same answers for the same person (found by NHS number)
        [person] = epr.find("Patient", [("identifier", f"{NHS_SYSTEM}|9434765919")])
        received = {s.resource["authored"][:10]: s.resource
                    for s in epr.find("QuestionnaireResponse", [("subject", f"Patient/{person.resource_id}")])}
        original = stored["qr-vcse"]
        got = score_dialog(received["2025-03-01"], bridge.dialog)
        want = score_dialog(original, bridge.dialog)
        assert (got.ratings, got.more_help) == (want.ratings, want.more_help)

        again, _ = send(bridge, bound[0][1])  # taken already: only the invalid one is tried again
        assert (again.counts["accepted"], again.counts["invalid"]) == (0, 1)
    finally:
        loop, task = running[0]
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)
        epr.close()


def _run_until_cancelled(main) -> None:
    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass


def test_ae_is_recorded_and_reported_and_sent_again_next_run(bridge, stored):
    peer_server = ScriptedPeer(["AE", "AA", "AA", "AA"])
    try:
        report, peer = send(bridge, peer_server.port)
        assert (report.counts["error"], report.counts["accepted"]) == (1, 1) and report.failed
        assert "AE patient not known to the EPR" in report.problems[0]
        row = bridge.repository.outbound_message(peer, "QuestionnaireResponse", "qr-vcse", 1)
        assert (row.state, row.ack_code, row.detail, row.sent) == ("error", "AE", "patient not known to the EPR", None)

        again, _ = send(bridge, peer_server.port)
        assert (again.counts["accepted"], again.resent) == (1, 1)
        row = bridge.repository.outbound_message(peer, "QuestionnaireResponse", "qr-vcse", 1)
        assert (row.state, row.attempts) == ("accepted", 2)
    finally:
        peer_server.close()


def test_a_lost_ack_leaves_the_message_pending_and_the_resend_is_visible(bridge, stored):
    peer_server = ScriptedPeer(["drop"])
    try:
        report, peer = send(bridge, peer_server.port)
        assert report.stopped and "closed the connection before acknowledging" in report.stopped
        assert report.counts["accepted"] == 0
        row = bridge.repository.outbound_message(peer, "QuestionnaireResponse", "qr-vcse", 1)
        assert (row.state, row.attempts, row.sent) == ("pending", 1, None)

        again, _ = send(bridge, peer_server.port)  # the peer answers AA from now on
        assert (again.counts["accepted"], again.resent, again.stopped) == (2, 1, None)
        row = bridge.repository.outbound_message(peer, "QuestionnaireResponse", "qr-vcse", 1)
        assert (row.state, row.attempts) == ("accepted", 2)
        first, resent = peer_server.received[0], peer_server.received[1]
        assert msh_10(parse_message(first)) == msh_10(parse_message(resent)) == row.control_id  # recognisable
    finally:
        peer_server.close()


def test_a_silent_peer_times_out_and_nothing_is_marked_sent(bridge, stored):
    peer_server = ScriptedPeer(["silent"])
    try:
        report, peer = send(bridge, peer_server.port, timeout=0.5)
        assert report.stopped and "no ACK from 127.0.0.1" in report.stopped and "within 0.5 s" in report.stopped
        assert [r.state for r in bridge.repository.outbound_messages(peer) if r.state != "invalid"] == ["pending"]
    finally:
        peer_server.close()


def test_connection_refused_is_reported_and_nothing_is_recorded(bridge, stored):
    report, peer = send(bridge, free_port())
    assert report.stopped and "refused the connection" in report.stopped
    assert bridge.repository.outbound_messages(peer) == []  # it stopped at the first message
