"""ADT^A40 merges on a real store (SQLite, and PostgreSQL when configured: the merge finds what
refers to the merged Patient through the reference index), message by message as the MLLP
listener stores them: references move to the survivor, links both ways, nothing doubled on a
resend, bad merges quarantined with their reason; and a file import, which stores in batches."""
from __future__ import annotations

import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.errors import Conflict
from fhir_bridge.fhir.codec import loads_json
from fhir_bridge.formats.hl7v2 import parse_message, split_batch
from fhir_bridge.formats.mllp import frame
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines.identity import NHS_SYSTEM
from fhir_bridge.pipelines.ingest import Ingest
from fhir_bridge.pipelines.patient_merge import surviving_patient
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.pipelines.hl7_feed import MllpFeed
from fhir_bridge.pipelines.source_hl7 import Hl7Source, hl7_record
from fhir_bridge.store.search import parse_search
from fhir_bridge.synth import generate
from tests.api.test_mllp_listener import Server, acks, msa
from tests.conftest import REPO
from tests.postgres import BACKENDS, throwaway_database_url

ORG = "RAT"
LOCAL = "https://fhir-bridge.example.org/Id/hl7-local/RAT"
SURVIVOR_PID = "PID|1||9434765919^^^NHS^NH~1000042^^^RAT^MR||Okafor^Ada||19800402|F|||^^^^E1 4NS"
# A duplicate registration: no NHS number, a double-barrelled name and an old address, so identity
# linking kept it apart (no exact or weaker demographic match).
DUPLICATE_PID = "PID|1||8000042^^^RAT^MR||Okafor-Smith^Ada||19800402|F|||^^^^N1 1AA"


def msh(kind: str, control: str) -> str:
    return f"MSH|^~\\&|RIO|RAT|FHIR-BRIDGE|RAT|20250305120000||{kind}|{control}|P|2.4|||AL|NE"


def adt(control: str, pid: str) -> str:
    return "\r".join([msh("ADT^A28^ADT_A05", control), "EVN|A28|20250305120000", pid, "PV1|1|N"])


def a40(control: str, pid: str = SURVIVOR_PID, mrg: str | None = "MRG|8000042^^^RAT^MR") -> str:
    return "\r".join([msh("ADT^A40^ADT_A39", control), "EVN|A40|20250306090000", pid, *([mrg] if mrg else [])])


def oru(control: str, pid: str, when: str, rating: str = "4") -> str:
    return "\r".join([
        msh("ORU^R01^ORU_R01", control), pid,
        f"OBR|1|{control}^RIO||DIALOG^DIALOG^L|||{when}",
        f"OBX|1|CE|DIALOG-PURPOSE^DIALOG purpose^L||PROM^^L||||||F|||{when}",
        f"OBX|2|CE|DIALOG-TIMEPOINT^DIALOG timepoint^L||assessment^^L||||||F|||{when}",
        f"OBX|3|NM|1037651000000100^Mental health^SCT||{rating}||||||F|||{when}",
    ])


@pytest.fixture(params=BACKENDS)
def bridge(request, tmp_path, validator):
    for url in throwaway_database_url(request.param, tmp_path / "merge.db"):
        b = Bridge(Settings(data_dir=tmp_path, database_url=url), validator=validator)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def engine(validator) -> MappingEngine:
    return MappingEngine(load_mappings(REPO / "mappings", validator.terminology), validator.terminology)


@pytest.fixture()
def feed(bridge, engine):
    """send(text) -> the message's status, stored alone as the MLLP listener stores it."""
    source = Hl7Source(engine, ORG, bridge)
    ingest = Ingest(bridge, source.name, source.map, Caller(ORG, ORG))

    def send(text: str) -> str:
        record = source.record(f"mllp:{text.split('|', 10)[9]}", text)
        ingest.report.records_in += 1
        return ingest.one(record)

    send.ingest = ingest
    return send


def holder(bridge, system: str, value: str) -> list[str]:
    return [s.resource_id for s in bridge.find("Patient", [("identifier", f"{system}|{value}")])]


def search(bridge, resource_type: str, params: list[tuple[str, str]]) -> list[dict]:
    """Every match, as GET [base]/Type?params answers (bridge.find stops at two)."""
    request = parse_search(resource_type, [*params, ("_count", "100")], bridge.registry, strict=True,
                           base_url="")
    return [s.resource for s in bridge.repository.search(request).matches]


def responses_of(bridge, patient_id: str) -> list[dict]:
    return search(bridge, "QuestionnaireResponse", [("subject", f"Patient/{patient_id}")])


def two_records_of_one_person(bridge, feed) -> tuple[str, str]:
    assert feed(adt("A1", SURVIVOR_PID)) == "created"
    assert feed(adt("A2", DUPLICATE_PID)) == "created"
    assert feed(oru("R1", SURVIVOR_PID, "20250101100000")) == "created"
    assert feed(oru("R2", SURVIVOR_PID, "20250201100000", "5")) == "created"
    assert feed(oru("R3", DUPLICATE_PID, "20250301100000", "6")) == "created"
    [survivor] = holder(bridge, NHS_SYSTEM, "9434765919")
    [merged] = holder(bridge, LOCAL, "8000042")
    assert survivor != merged and len(responses_of(bridge, merged)) == 1
    return survivor, merged


def test_a40_moves_every_reference_to_the_survivor_and_links_both_ways(bridge, feed):
    survivor_id, merged_id = two_records_of_one_person(bridge, feed)
    [moved_id] = [r["id"] for r in responses_of(bridge, merged_id)]

    assert feed(a40("M1")) == "updated"

    merged = bridge.repository.read("Patient", merged_id).resource
    survivor = bridge.repository.read("Patient", survivor_id).resource
    assert merged["active"] is False
    assert merged["link"] == [{"other": {"reference": f"Patient/{survivor_id}"}, "type": "replaced-by"}]
    assert survivor["link"] == [{"other": {"reference": f"Patient/{merged_id}"}, "type": "replaces"}]
    assert survivor.get("active") is not False
    # The retired id stays findable on the survivor, marked old; one NHS number, the survivor's
    assert {"system": LOCAL, "value": "8000042", "use": "old", "assigner": {"display": "RAT"}} in survivor["identifier"]
    assert [i["value"] for i in survivor["identifier"] if i["system"] == NHS_SYSTEM] == ["9434765919"]
    # Every response is the survivor's, and the search index says so too
    assert len(responses_of(bridge, survivor_id)) == 3 and responses_of(bridge, merged_id) == []
    assert surviving_patient(bridge.repository, merged_id) == survivor_id
    # History tells the story: the moved response's first version was the duplicate's
    moved = bridge.repository.read("QuestionnaireResponse", moved_id)
    assert moved.version_id == 2 and moved.resource["subject"] == {"reference": f"Patient/{survivor_id}"}
    assert moved.resource["source"] == {"reference": f"Patient/{survivor_id}"}
    first = bridge.repository.vread("QuestionnaireResponse", moved_id, 1).resource
    assert first["subject"] == {"reference": f"Patient/{merged_id}"}
    # One Provenance for the merge, naming the sender, every version it wrote and the merged record
    [provenance] = [p for p in search(bridge, "Provenance", [("target", f"QuestionnaireResponse/{moved_id}")])
                    if any(c.get("code") == "merge" for c in p["activity"]["coding"])]
    assert {t["reference"] for t in provenance["target"]} == {
        f"Patient/{survivor_id}/_history/2", f"Patient/{merged_id}/_history/2",
        f"QuestionnaireResponse/{moved_id}/_history/2"}
    assert provenance["entity"] == [{"role": "source", "what": {"reference": f"Patient/{merged_id}/_history/1"}}]
    assert provenance["agent"][0]["who"]["identifier"]["value"] == ORG
    assert {c["code"] for c in provenance["activity"]["coding"]} == {"UPDATE", "merge"}


def test_the_same_a40_again_changes_nothing(bridge, feed):
    survivor_id, merged_id = two_records_of_one_person(bridge, feed)
    assert feed(a40("M1")) == "updated"
    versions = {p: bridge.repository.read("Patient", p).version_id for p in (survivor_id, merged_id)}
    assert feed(a40("M1")) == "unchanged"
    assert feed(a40("M2")) == "unchanged"  # resent under another control id
    assert {p: bridge.repository.read("Patient", p).version_id for p in versions} == versions
    assert feed.ingest.report.balanced and feed.ingest.report.counts["unchanged"] == 2


def test_after_the_merge_the_old_id_and_a_resent_dialog_find_the_survivor(bridge, feed):
    survivor_id, merged_id = two_records_of_one_person(bridge, feed)
    assert feed(a40("M1")) == "updated"
    # The duplicate's DIALOG resent: the same response, now the survivor's (both Patients hold the
    # old id: one person, not a review)
    assert feed(oru("R3", DUPLICATE_PID, "20250301100000", "6")) in ("updated", "unchanged")
    # A late DIALOG under the old id
    assert feed(oru("R4", DUPLICATE_PID, "20250401100000", "3")) == "created"
    assert len(responses_of(bridge, survivor_id)) == 4 and responses_of(bridge, merged_id) == []
    assert bridge.repository.reviews() == []


def test_a_differing_nhs_number_of_the_merged_record_is_reported_never_copied(bridge, feed):
    duplicate = DUPLICATE_PID.replace("8000042^^^RAT^MR", "9434765870^^^NHS^NH~8000042^^^RAT^MR")
    assert feed(adt("A1", SURVIVOR_PID)) == "created"
    assert feed(adt("A2", duplicate)) == "created"
    assert feed(a40("M1", mrg="MRG|8000042^^^RAT^MR~9434765870^^^NHS^NH")) == "updated"
    [survivor_id] = holder(bridge, NHS_SYSTEM, "9434765919")
    survivor = bridge.repository.read("Patient", survivor_id).resource
    assert [i["value"] for i in survivor["identifier"] if i["system"] == NHS_SYSTEM] == ["9434765919"]
    [reported] = [d for d in feed.ingest.report.disagreements if "NHS number" in d["element"]]
    assert (reported["kept"], reported["other"]) == ("9434765919", "9434765870")


def test_a_merged_person_the_store_never_held_updates_the_survivor(bridge, feed):
    assert feed(adt("A1", SURVIVOR_PID)) == "created"
    assert feed(a40("M1")) == "updated"
    [survivor_id] = holder(bridge, NHS_SYSTEM, "9434765919")
    survivor = bridge.repository.read("Patient", survivor_id).resource
    assert {"system": LOCAL, "value": "8000042", "use": "old", "assigner": {"display": "RAT"}} in survivor["identifier"]
    assert "link" not in survivor
    assert feed(a40("M1")) == "unchanged"
    # An A40 for a survivor not seen before creates them
    other = "PID|1||9449305552^^^NHS^NH~1000077^^^RAT^MR||Bello^Tunde||19751111|M|||^^^^E2 0AA"
    assert feed(a40("M2", other, "MRG|8000077^^^RAT^MR")) == "created"


def test_records_identity_linking_had_joined_already_just_retire_the_old_id(bridge, feed):
    # The duplicate registration has the survivor's exact details: linked to the same Patient on arrival
    assert feed(adt("A1", SURVIVOR_PID)) == "created"
    assert feed(adt("A2", "PID|1||8000042^^^RAT^MR||Okafor^Ada||19800402|F|||^^^^E1 4NS")) == "updated"
    assert feed(a40("M1")) == "updated"
    [survivor_id] = holder(bridge, NHS_SYSTEM, "9434765919")
    survivor = bridge.repository.read("Patient", survivor_id).resource
    assert [i.get("use") for i in survivor["identifier"] if i.get("value") == "8000042"] == ["old"]
    assert "link" not in survivor
    assert feed(a40("M1")) == "unchanged"


@pytest.mark.parametrize("message, reason", [
    (a40("B1", mrg=None), "MRG-1"),                                                     # no MRG segment
    (a40("B2", mrg="MRG|1000042^^^RAT^MR"), "is the surviving person's own"),            # merged into itself
    (a40("B3", mrg="MRG|8000042^^^ELSEWHERE^MR"), "none the store can be searched by"),  # no identifier system
])
def test_a_bad_a40_is_quarantined_with_its_reason(bridge, feed, message, reason):
    assert feed(adt("A1", SURVIVOR_PID)) == "created"
    status = feed(message)
    assert status.startswith("quarantined:")
    [entry] = bridge.repository.quarantined(source="hl7")
    assert reason in loads_json(entry.outcome)["issue"][0]["diagnostics"]
    assert feed.ingest.report.balanced


def test_a_record_merged_into_someone_else_already_is_refused(bridge, feed):
    survivor_id, merged_id = two_records_of_one_person(bridge, feed)
    assert feed(a40("M1")) == "updated"
    other = "PID|1||9449305552^^^NHS^NH~1000077^^^RAT^MR||Bello^Tunde||19751111|M|||^^^^E2 0AA"
    assert feed(adt("A3", other)) == "created"
    assert feed(a40("M2", other)) == "quarantined:merge"
    [entry] = bridge.repository.quarantined(source="hl7")
    reason = loads_json(entry.outcome)["issue"][0]["diagnostics"]
    assert f"Patient/{merged_id}, named by the merged person's identifiers (MRG-1)" in reason
    assert f"was merged into Patient/{survivor_id} already" in reason
    assert len(responses_of(bridge, survivor_id)) == 3


def test_surviving_patient_follows_a_chain_and_refuses_a_loop(bridge):
    with bridge.repository.unit_of_work() as uow:
        for pid, target in (("a", "b"), ("b", "c"), ("c", None), ("x", "y"), ("y", "x")):
            link = [{"other": {"reference": f"Patient/{target}"}, "type": "replaced-by"}] if target else []
            uow.create({"resourceType": "Patient", "id": pid, "link": link} if link else
                       {"resourceType": "Patient", "id": pid})
    assert surviving_patient(bridge.repository, "a") == "c" and surviving_patient(bridge.repository, "c") == "c"
    with pytest.raises(Conflict, match="loop"):
        surviving_patient(bridge.repository, "x")


def test_mllp_answers_aa_for_a_merge_and_ae_with_the_reason_for_a_bad_one(bridge, engine):
    source = Hl7Source(engine, ORG, bridge)
    server = Server(MllpFeed(Ingest(bridge, source.name, source.map, Caller(ORG, ORG)), source), idle_timeout=2)
    try:
        with server.connect() as sock:
            for text in (adt("A1", SURVIVOR_PID), adt("A2", DUPLICATE_PID), a40("M1"),
                         a40("M2", mrg="MRG|1000042^^^RAT^MR")):
                sock.sendall(frame(text.encode()))
            replies = acks(sock, 4)
    finally:
        server.close()
    assert [msa(a) for a in replies[:3]] == [("AA", "A1"), ("AA", "A2"), ("AA", "M1")]
    assert msa(replies[3]) == ("AE", "M2") and "surviving person's own" in replies[3]


def test_the_synthetic_feed_merges_its_duplicate_registrations(tmp_path, bridge, feed):
    generate("hl7", tmp_path / "synth", count=30, seed=4)  # a seed with two merges
    messages = [text for _, text in split_batch((tmp_path / "synth" / "feed.hl7").read_bytes())
                if not text.startswith(("FHS", "BHS", "BTS", "FTS"))]
    merges = [hl7_record(parse_message(m)) for m in messages if "|ADT^A40^" in m.split("\r", 1)[0]]
    assert merges  # synth writes some: a duplicate registration, merged by ADT^A40
    statuses = [feed(m) for m in messages]
    assert not [s for s in statuses if s.startswith("quarantined:") and s != "quarantined:identity-review"]
    for merge in merges:
        [local_id] = [i["PID-3.1"] for i in merge["PID-3~"] if i["PID-3.4"] == "RAT"]
        [survivor_id] = holder(bridge, LOCAL, local_id)
        survivor = bridge.repository.read("Patient", survivor_id).resource
        assert {"system": LOCAL, "value": merge["MRG-1.1"], "use": "old",
                "assigner": {"display": "RAT"}} in survivor["identifier"]
    assert {feed(m) for m in messages} <= {"unchanged", "updated", "quarantined:identity-review"}


def test_a_survivor_whose_nhs_number_is_a_third_persons_is_refused(bridge, feed):
    # The survivor's local id names one Patient, its NHS number another: not a merge to guess about
    assert feed(adt("A1", "PID|1||1000042^^^RAT^MR||Okafor^Ada||19800402|F|||^^^^E1 4NS")) == "created"
    assert feed(adt("A2", "PID|1||9434765919^^^NHS^NH||Bello^Tunde||19751111|M|||^^^^E2 0AA")) == "created"
    assert feed(adt("A3", DUPLICATE_PID)) == "created"
    assert feed(a40("M1")) == "quarantined:merge"
    [entry] = bridge.repository.quarantined(source="hl7")
    assert "NHS number 9434765919 (PID-3) is held by Patient/" in loads_json(entry.outcome)["issue"][0]["diagnostics"]


def test_a_file_import_applies_a_merge_in_message_order(tmp_path, bridge, engine):
    # Batched import: the records before the A40 are stored before it merges, those after it see it
    messages = [adt("A1", SURVIVOR_PID), adt("A2", DUPLICATE_PID), oru("R1", SURVIVOR_PID, "20250101100000"),
                oru("R3", DUPLICATE_PID, "20250301100000", "6"), a40("M1"), oru("R4", DUPLICATE_PID, "20250401100000")]
    (tmp_path / "feed.hl7").write_text("\r".join(messages) + "\r")
    source = Hl7Source(engine, ORG, bridge)

    def run():
        return Ingest(bridge, source.name, source.map, Caller(ORG, ORG)).run(source.records([tmp_path / "feed.hl7"]))

    report = run()
    assert report.balanced and not report.quarantined, report.to_json()
    [survivor_id] = holder(bridge, NHS_SYSTEM, "9434765919")
    [merged_id] = [p for p in holder(bridge, LOCAL, "8000042") if p != survivor_id]
    assert bridge.repository.read("Patient", merged_id).resource["link"][0]["type"] == "replaced-by"
    assert len(responses_of(bridge, survivor_id)) == 3 and responses_of(bridge, merged_id) == []
    again = run()
    assert again.counts["created"] == 0 and not again.quarantined and again.balanced
    assert len(responses_of(bridge, survivor_id)) == 3


def test_after_a40_the_persons_prom_close_after_another_is_a_possible_duplicate(bridge, feed):
    """Two records' PROMs are one person's once merged: the moved one, 9 days after the survivor's
    own, is tagged possible-duplicate (each was the first of its record before)."""
    flag = "https://fhir-bridge.example.org/CodeSystem/dialog-entry-flag"
    assert feed(adt("A1", SURVIVOR_PID)) == "created" and feed(adt("A2", DUPLICATE_PID)) == "created"
    assert feed(oru("R1", SURVIVOR_PID, "20250201100000")) == "created"
    assert feed(oru("R2", DUPLICATE_PID, "20250210100000")) == "created"
    [merged_id] = holder(bridge, LOCAL, "8000042")
    [moved] = responses_of(bridge, merged_id)
    assert not moved.get("meta", {}).get("tag")
    assert feed(a40("M1")) == "updated"
    now = bridge.repository.read("QuestionnaireResponse", moved["id"]).resource
    assert any(t["system"] == flag and t["code"] == "possible-duplicate" for t in now["meta"].get("tag", []))
