"""The HL7 v2 source end to end on a real store: synthetic feeds through Ingest (clean and dirty),
the record shape, the mapping codes against the ConceptMaps, and the MLLP handler over real TCP."""
from __future__ import annotations

import asyncio
import re
import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.errors import InputError
from fhir_bridge.formats.hl7v2 import parse_message, split_batch
from fhir_bridge.formats.mllp import frame
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.fhir.codec import loads_json
from fhir_bridge.pipelines.identity import NHS_SYSTEM, nhs_number_of
from fhir_bridge.pipelines.ingest import Ingest
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.pipelines.hl7_feed import MllpFeed, serve_mllp
from fhir_bridge.pipelines.source_hl7 import Hl7Source, hl7_record
from fhir_bridge.pipelines.source_records import Unreadable
from fhir_bridge.synth import generate
from tests.api.test_mllp_listener import Server, acks, msa
from tests.conftest import REPO

ORG = "RAT"
GOOD_ORU = "\r".join([
    "MSH|^~\\&|RIO|RAT|FHIR-BRIDGE|RAT|20250305120000||ORU^R01^ORU_R01|{control}|P|2.4",
    "PID|1||9434765919^^^NHS^NH~R12345^^^RAT^MR||Okafor^Ada||19800402|F|||^^^^E1 4NS",
    "OBR|1|R12345-1^RIO||DIALOG^DIALOG^L|||20250305110000",
    "OBX|1|CE|DIALOG-PURPOSE^DIALOG purpose^L||PROM^^L||||||F|||20250305110000",
    "OBX|2|CE|DIALOG-TIMEPOINT^DIALOG timepoint^L||assessment^^L||||||F|||20250305110000",
    "OBX|3|NM|1037651000000100^Mental health^SCT||{rating}||||||F|||20250305110000",
])


@pytest.fixture()
def bridge(tmp_path, validator):
    b = Bridge(Settings(data_dir=tmp_path / "store"), validator=validator)
    yield b
    b.close()


@pytest.fixture(scope="module")
def engine(validator) -> MappingEngine:
    return MappingEngine(load_mappings(REPO / "mappings", validator.terminology), validator.terminology)


def ingest(bridge, source: Hl7Source) -> Ingest:
    return Ingest(bridge, source.name, source.map, Caller(ORG, ORG))


def message_types(feed: Path) -> dict[int, str]:
    """Message number -> MSH-9.1^MSH-9.2, as the importer numbers messages."""
    types = {}
    for number, text in split_batch(feed.read_bytes()):
        match = re.match(r"MSH\|[^|]*(?:\|[^|]*){6}\|([A-Z0-9]+\^[A-Z0-9]+)", text)
        types[number] = match.group(1) if match else "?"
    return types


def test_record_shape(engine):
    record = hl7_record(parse_message(GOOD_ORU.format(control="M1", rating="4")))
    assert record["MSH-9.1"] == "ORU" and record["PID-5.2"] == "Ada" and record["PID-7"] == "1980-04-02"
    assert [r["PID-3.4"] for r in record["PID-3~"]] == ["NHS", "RAT"]
    assert record["OBR-7"] == "2025-03-05 11:00:00"  # HL7 TS, rewritten for the date transform
    assert [o["OBX-3.1"] for o in record["OBX"]][2] == "1037651000000100"
    assert record["OBX-by-code"]["DIALOG-PURPOSE"][0]["OBX-5.1"] == "PROM"


def test_clean_feed_imports_end_to_end(tmp_path, bridge, engine):
    generate("hl7", tmp_path / "synth", count=30, seed=7)
    feed = tmp_path / "synth" / "feed.hl7"
    types = message_types(feed)
    assert "ADT^A40" in types.values()  # merges are stored like any record (tests/pipelines/test_patient_merge.py)
    source = Hl7Source(engine, ORG, bridge)
    report = ingest(bridge, source).run(source.records([feed]))

    assert report.balanced and report.records_in == len(types)
    assert report.quarantined["mapping"] == 0
    # A person with no NHS number whose postcode changed waits for a person to review the link (the
    # identity rules: demographics that differ are never linked automatically), nobody else does.
    reviews = report.quarantined["identity-review"]
    assert set(report.quarantined) <= {"mapping", "identity-review"}
    for review in bridge.repository.reviews():
        held = loads_json(review.waiting)["resources"]
        patient = next(r for r in held if r["resourceType"] == "Patient")
        assert not nhs_number_of(patient), review.source_key
    assert sum(report.counts.values()) == len(types) - reviews
    assert report.counts["created"] > 0
    # One Patient per NHS number, however many ADT and ORU messages named the person, and every
    # DIALOG stored points at it
    holders: dict[str, list] = {}
    responses: list[str] = []
    for record in source.records([feed]):
        if record.data["MSH-9.1"] != "ORU" or record.data.get("PID-3.4") != "NHS":
            continue
        nhs = record.data["PID-3.1"]
        holders.setdefault(nhs, bridge.find("Patient", [("identifier", f"{NHS_SYSTEM}|{nhs}")]))
        assert len(holders[nhs]) == 1, nhs
        response = bridge.repository.read("QuestionnaireResponse", source.map(record).resources[1]["id"]).resource
        assert response["subject"] == {"reference": f"Patient/{holders[nhs][0].resource_id}"}
        responses.append(response["id"])
    assert holders

    again = ingest(bridge, source).run(source.records([feed]))
    assert again.quarantined == report.quarantined and again.counts["created"] == 0
    # Nothing is doubled and no DIALOG changes. Only Patients may: after an A31/A08 (a new postcode)
    # the feed's later ORUs still carry the old one, so the person's address follows the message order.
    assert all(bridge.repository.read("QuestionnaireResponse", i).version_id == 1 for i in responses)
    moves = sum(1 for t in types.values() if t in ("ADT^A31", "ADT^A08"))
    assert again.counts["updated"] <= 2 * moves
    assert again.counts["unchanged"] + again.counts["updated"] == len(types) - reviews


def test_dirty_feed_quarantines_every_fault_and_imports_the_quirks(tmp_path, bridge, engine):
    manifest = generate("hl7", tmp_path / "synth", count=200, seed=3, dirty=True)
    paths = [manifest.out_dir / f.path for f in manifest.files]
    source = Hl7Source(engine, ORG, bridge)
    report = ingest(bridge, source).run(source.records(paths))
    assert report.balanced

    quarantined = {e.location for e in bridge.repository.quarantined(source="hl7", limit=10_000)}
    faults = {f"{manifest.out_dir / i.file}:{i.record or 1}": i.kind for i in manifest.faults()}
    assert {k for k in ("missing-pid", "rating-9", "impossible-date", "unparseable-date", "binary-garbage",
                        "invalid-nhs-number", "empty-file")} <= set(faults.values())
    assert set(faults) - quarantined == set(), "faults that were imported"
    # Nothing else is quarantined (an A40 merge neither): every quirk imported. Records waiting for an
    # identity review (no NHS number, see above) are not quarantine entries.
    assert quarantined - set(faults) == set()
    assert report.quarantined["mapping"] + report.quarantined["validation"] == len(faults)


def test_dialog_codes_in_the_mapping_agree_with_the_conceptmaps(validator):
    terminology = validator.terminology
    domains = yaml.safe_load((REPO / "mappings/hl7/oru-dialog.yaml").read_text())["lists"]["dialog-domains"]
    assert len(domains) == 11
    for d in domains:
        [local] = terminology.translate("https://fhir-bridge.example.org/ConceptMap/hl7-local-dialog-item",
                                        "https://fhir-bridge.example.org/CodeSystem/hl7-local-dialog-item", d["local"])
        [snomed] = terminology.translate("https://fhir-bridge.example.org/ConceptMap/dialog-domain-to-snomed",
                                         "https://fhir-bridge.example.org/CodeSystem/dialog-domain", d["domain"])
        assert (local.code, snomed.code, d["help"]) == (d["domain"], d["snomed"], "DIALOG-HELP-" + d["local"][-2:])


def test_a_message_type_not_imported_is_a_mapping_problem(engine):
    source = Hl7Source(engine, ORG)
    record = source.record("feed.hl7:1", "MSH|^~\\&|RIO|RAT|||20250101||ADT^A34^ADT_A30|X1|P|2.4\rPID|1||1^^^RAT^MR")
    with pytest.raises(InputError, match=r"message type ADT\^A34 is not imported"):
        source.map(record)


# -- MLLP -------------------------------------------------------------------------------------------
def test_mllp_aa_after_storing_ae_with_the_reason_ar_for_garbage(bridge, engine):
    source = Hl7Source(engine, ORG, bridge)
    server = Server(MllpFeed(ingest(bridge, source), source), idle_timeout=2)
    try:
        with server.connect() as sock:
            sock.sendall(frame(GOOD_ORU.format(control="M1", rating="4").encode()))
            [good] = acks(sock, 1)
            assert msa(good) == ("AA", "M1")
            holders = bridge.find("Patient", [("identifier", f"{NHS_SYSTEM}|9434765919")])
            [response] = bridge.find("QuestionnaireResponse", [("subject", f"Patient/{holders[0].resource_id}")])
            assert response.resource["item"][0]["answer"][0]["valueCoding"]["code"] == "4"

            sock.sendall(frame(GOOD_ORU.format(control="M2", rating="9").encode()))
            [bad] = acks(sock, 1)
            assert msa(bad) == ("AE", "M2") and "mapping" in bad and "not a DIALOG rating" in bad

            sock.sendall(frame(b"\x00\x01garbage, not HL7"))
            [garbage] = acks(sock, 1)
            assert msa(garbage)[0] == "AR"

            sock.sendall(frame(GOOD_ORU.format(control="M3", rating="4").encode()))  # a resend: unchanged
            [resent] = acks(sock, 1)
            assert msa(resent) == ("AA", "M3")

            unknown = GOOD_ORU.format(control="M4", rating="4").replace("9434765919^^^NHS^NH~R12345", "R99999")
            sock.sendall(frame(unknown.replace("Okafor^Ada", "Okafor^Adaeze").encode()))  # no NHS number, a near match
            [held] = acks(sock, 1)
            assert msa(held) == ("AE", "M4") and "identity review" in held and "nothing lost" in held
    finally:
        server.close()


def test_serve_mllp_listens_until_cancelled(bridge):
    bound: list[tuple[str, int]] = []
    ready = threading.Event()
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task]] = []

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        running.append((asyncio.get_running_loop(), task))
        await serve_mllp(bridge, "127.0.0.1", 0, ORG, ready=lambda address: (bound.append(address), ready.set()))

    def run() -> None:
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(main())  # cancels and awaits what is left (open connections) on the way out

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    with socket.create_connection(bound[0], timeout=10) as sock:
        sock.sendall(frame(GOOD_ORU.format(control="S1", rating="5").encode()))
        [ack] = acks(sock, 1)
        sock.sendall(frame(b"\x00\x01 not HL7 at all"))  # answered AR, and kept: nothing lost
        [rejected] = acks(sock, 1)
    assert msa(ack) == ("AA", "S1") and msa(rejected)[0] == "AR"
    [kept] = bridge.repository.quarantined(source="hl7")
    assert kept.raw == b"\x00\x01 not HL7 at all" and kept.location == "mllp"
    loop, task = running[0]
    loop.call_soon_threadsafe(task.cancel)
    thread.join(10)
    assert not thread.is_alive()
    [run_row] = bridge.repository.runs()
    assert run_row["source"] == "hl7" and run_row["finished"] is not None  # closed on the way out


@pytest.mark.parametrize("sent, decoded", [
    ("20250306", "2025-03-06"), ("202503061015", "2025-03-06 10:15:00"), ("20250306101530", "2025-03-06 10:15:30"),
    ("20250306101530+0100", "2025-03-06T10:15:30+01:00"), ("199911", "1999-11"), ("1999", "1999"),
    ("2025030", "2025030"),  # fits no TS: left as sent, so the date transform reports it
])
def test_hl7_timestamps_keep_their_precision(sent, decoded):
    from fhir_bridge.pipelines.source_hl7 import _timestamp

    assert _timestamp(sent) == decoded


def test_decoding_the_text_gives_what_decoding_the_parsed_tree_gives():
    """Files are decoded straight from the text; the MLLP listener's parsed messages went through
    python-hl7's tree. Both must give the mappings the same record (escapes, repetitions, subcomponents)."""
    from fhir_bridge.pipelines.source_hl7 import decode_text

    text = ("MSH|^~\\&|RIO|RV3|BRIDGE|X|20250306101530+0100||ORU^R01^ORU_R01|C1|P|2.4\r"
            "PID|1||123^^^RV3^MR~9434765919^^^NHS^NH||O\\S\\Brien^Ann&Marie^^^Ms||19800402|F\r"
            "OBX|1|NM|DIALOG-01^Mental health^L||4||||||F|||20250306101530\r"
            "OBX|2|ST|NOTE^Note^L||a\\F\\b \\E\\ c\\T\\d||||||F")
    record = decode_text(text)
    assert record == hl7_record(parse_message(text))
    assert record["PID-5.1"] == "O^Brien" and record["PID-5.2.2"] == "Marie" and record["OBX"][1]["OBX-5"] == "a|b \\ c&d"
    assert [r["PID-3.5"] for r in record["PID-3~"]] == ["MR", "NH"]
    with pytest.raises(InputError, match="no MSH"):
        decode_text("PID|1||123")


def test_a_message_read_from_a_file_is_decoded_where_it_is_mapped(engine):
    """Reading a feed splits a message and checks its header; its fields are decoded when it is
    mapped, in an import's worker process: what crosses to the worker is the segments, not the
    decoded fields, and the person's key for an identity review is read from the PID alone."""
    import pickle

    from fhir_bridge.pipelines.source_hl7 import Hl7Message, decode_text

    text = GOOD_ORU.format(control="M7", rating="5")
    source = Hl7Source(engine, ORG)
    record = source.record("feed.hl7:1", text)
    assert isinstance(record.data, Hl7Message) and record.data._fields is None   # nothing decoded yet
    assert record.source_key == "9434765919@NHS"
    sent = pickle.dumps(record.data)
    assert len(sent) < 2 * len(text)
    arrived = pickle.loads(sent)
    assert arrived.fields() == decode_text(text) == dict(record.data)
    mapped = source.map(replace(record, data=arrived))
    assert [r["resourceType"] for r in mapped.resources] == ["Patient", "QuestionnaireResponse"]
    broken = source.record("feed.hl7:2", "PID|1||123")   # still refused as it is read
    assert isinstance(broken.data, Unreadable) and "no MSH" in broken.data.error.message


def test_a_feed_folder_counts_every_file_it_holds(tmp_path):
    """HL7 feeds land as files with any extension, or none: a folder's size, which decides whether
    an import maps in worker processes, counts them all."""
    from fhir_bridge.pipelines.sources import PARALLEL_BYTES, _size

    (tmp_path / "feed").mkdir()
    (tmp_path / "feed" / "batch.hl7").write_bytes(b"x" * PARALLEL_BYTES)
    (tmp_path / "feed" / "0001").write_bytes(b"y" * 10)
    assert _size([tmp_path / "feed"]) == PARALLEL_BYTES + 10


def test_a_blank_feed_file_is_refused_as_empty_however_long(tmp_path, engine):
    """Feeds are read a chunk at a time; an empty or blank file, or batch wrappers with no message,
    is still one record refused as empty, and blank lines before the first message cost nothing."""
    source = Hl7Source(engine, ORG)
    message = GOOD_ORU.format(control="B1", rating="4").encode()
    long = 3 << 20  # longer than a chunk
    for name, data in [("empty", b""), ("blank", b"\r\n \n"), ("long", b"\r\n" * long),
                       ("wrappers", b"FHS|^~\\&|RIO\rBHS|^~\\&|RIO\rBTS|0\rFTS|1\r"),
                       ("late", b"\n" * (long + 3) + message)]:
        (tmp_path / name).write_bytes(data)
        records = list(source.records([tmp_path / name]))
        if name == "late":
            [record] = records
            assert record.location == f"{tmp_path / name}:1" and dict(record.data)["MSH-10"] == "B1"
        else:
            [record] = records
            assert isinstance(record.data, Unreadable) and record.data.error.message == "empty HL7 file", name


def test_an_oru_cut_off_before_its_ratings_is_quarantined_not_stored_empty(tmp_path, bridge, engine):
    """A batch file truncated mid-message leaves an ORU with its header and no OBX: it was stored
    as a completed DIALOG with no item."""
    cut = "\r".join(GOOD_ORU.format(control="C1", rating="4").split("\r")[:3])  # MSH, PID, OBR
    (tmp_path / "feed.hl7").write_text(cut + "\r" + GOOD_ORU.format(control="C2", rating="5"))
    source = Hl7Source(engine, ORG, bridge)
    report = ingest(bridge, source).run(source.records([tmp_path / "feed.hl7"]))
    assert report.balanced and sum(report.quarantined.values()) == 1
    [entry] = bridge.repository.quarantined(source="hl7")
    assert entry.location.endswith("feed.hl7:1") and b"dlg-qr-4" in entry.outcome
