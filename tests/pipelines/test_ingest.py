"""The ingest pipeline on a real store, with a tiny mapper standing in for a source adapter:
every record stored or quarantined, counts that add up, re-runs that change nothing, reviews."""
from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field

import orjson
import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.errors import InputError
from fhir_bridge.fhir.outcome import Issue
from fhir_bridge.pipelines.identity import NHS_SYSTEM
from fhir_bridge.pipelines.ingest import Ingest, SourceRecord, resolve_review
from fhir_bridge.pipelines.resources import Caller
from tests.conftest import EXAMPLES

QR = orjson.loads((EXAMPLES / "dialog-questionnaire-response" / "valid-prom-assessment-complete.json").read_bytes())
VCSE = Caller("X1A2B", "Mind in Tower Hamlets")
NS = uuid.UUID("00000000-0000-0000-0000-000000000001")


@dataclass
class Mapped:
    resources: list[dict]
    problems: list[Issue] = field(default_factory=list)


def mapper(record: SourceRecord) -> Mapped:
    """A stand-in source adapter: one CSV-like row -> Patient + DIALOG QuestionnaireResponse."""
    row = record.data
    if row.get("explode"):
        raise InputError("column 'Date' is not a date")
    pid = str(uuid.uuid5(NS, f"patient|{record.source}|{row['client']}"))
    patient = {"resourceType": "Patient", "id": pid,
               "name": [{"family": row["family"], "given": [row["given"]]}], "birthDate": row["born"],
               "address": [{"postalCode": row["postcode"]}],
               "identifier": [{"system": "https://vcse.example.org/client", "value": row["client"]}]}
    if row.get("nhs"):
        patient["identifier"].append({"system": NHS_SYSTEM, "value": row["nhs"]})
    if row.get("gender"):
        patient["gender"] = row["gender"]
    if row.get("no_ids"):  # an export with no id for the person at all (the DIALOG+ app's)
        del patient["identifier"]
    qr = copy.deepcopy(QR)
    qr["id"] = str(uuid.uuid5(NS, f"qr|{record.source}|{row['client']}|{row['when']}"))
    qr["subject"] = {"reference": f"Patient/{pid}"}
    qr["authored"] = row["when"]
    qr["item"][0]["answer"][0]["valueCoding"]["code"] = row.get("mental", "4")
    return Mapped([patient, qr])


def rec(n: int, **row) -> SourceRecord:
    base = {"client": f"C{n}", "family": "Okafor", "given": "Ada", "born": "1980-04-02", "postcode": "E1 4NS",
            "when": f"2025-0{n % 9 + 1}-01T10:00:00Z"}
    base.update(row)
    return SourceRecord("vcse", f"clients.csv:{n + 1}", orjson.dumps(base), base, base["client"])


@pytest.fixture()
def bridge(tmp_path, validator):
    b = Bridge(Settings(data_dir=tmp_path), validator=validator)
    yield b
    b.close()


def ingest(bridge, tmp_path=None, source="vcse") -> Ingest:
    return Ingest(bridge, source, mapper, VCSE, quarantine_dir=tmp_path)


def subjects(bridge) -> set[str]:
    from fhir_bridge.store.search import parse_search

    found = bridge.repository.search(parse_search("QuestionnaireResponse", [], bridge.registry, strict=False, base_url=""))
    return {s.resource["subject"]["reference"] for s in found.matches}


def test_one_patient_per_person_and_counts_add_up(bridge):
    report = ingest(bridge).run([rec(1, nhs="9434765919"), rec(2, nhs="9434765919", client="OTHER-SYSTEM-ID")])
    assert report.balanced and report.records_in == 2
    assert report.counts["created"] == 2 and not report.quarantined
    assert bridge.repository.count("Patient") == 1
    [patient_ref] = subjects(bridge)
    patient = bridge.repository.read("Patient", patient_ref.split("/")[1]).resource
    values = {i["value"] for i in patient["identifier"]}
    assert {"9434765919", "C1", "OTHER-SYSTEM-ID"} <= values  # both sources' local ids kept


def test_a_file_import_writes_in_bulk_and_the_store_is_back_to_normal_after(bridge):
    """Its batches are written with the store in bulk mode (store/database.py `Database.bulk`: a
    bigger SQLite page cache, fewer WAL checkpoints); the MLLP path, a message at a time, is not."""
    seen = []
    put = bridge.resources.put_many_validated
    bridge.resources.put_many_validated = lambda *a, **k: (seen.append(bridge.database.bulk_writes.active), put(*a, **k))[1]
    assert ingest(bridge).run([rec(1, nhs="9434765919"), rec(2)]).balanced
    assert seen == [True] and not bridge.database.bulk_writes.active
    one = []
    store = bridge.resources.put_validated
    bridge.resources.put_validated = lambda *a, **k: (one.append(bridge.database.bulk_writes.active), store(*a, **k))[1]
    assert ingest(bridge).one(rec(3)) == "created"
    assert one and not any(one)


def test_importing_the_same_records_again_changes_nothing(bridge):
    records = [rec(1, nhs="9434765919"), rec(2, family="Brown", born="1990-01-01")]
    ingest(bridge).run(records)
    versions = bridge.repository.history()[0]
    again = ingest(bridge).run(records)
    assert again.counts["unchanged"] == 2 and again.balanced
    assert bridge.repository.history()[0] == versions


def test_bad_records_are_quarantined_with_raw_and_reason_and_the_batch_goes_on(bridge, tmp_path):
    run = ingest(bridge, tmp_path)
    report = run.run([rec(1), rec(2, explode=True), rec(3, mental="0", family="Brown"), rec(4, family="Ng", born="1970")])
    assert report.balanced and report.records_in == 4
    assert report.quarantined == {"mapping": 1, "validation": 1}
    held = {e.reason: e for e in bridge.repository.quarantined()}
    assert orjson.loads(held["mapping"].raw)["explode"] is True
    assert b"not a date" in held["mapping"].outcome
    assert b"code-invalid" in held["validation"].outcome
    lines = [orjson.loads(line) for line in (tmp_path / f"{report.run_id}.jsonl").read_bytes().splitlines()]
    assert {line["reason"] for line in lines} == {"mapping", "validation"}
    assert lines[0]["location"].startswith("clients.csv:")
    [saved] = [r for r in bridge.repository.runs() if r["run_id"] == report.run_id]
    assert orjson.loads(saved["report"])["quarantined"] == 2


def test_a_weaker_match_waits_for_a_person_then_is_stored(bridge):
    ingest(bridge).run([rec(1, nhs="9434765919")])
    report = ingest(bridge).run([rec(2, given="Adaeze")])  # same family and birth date, other given name
    assert report.quarantined == {"identity-review": 1} and report.balanced
    [review] = bridge.repository.reviews()
    assert review.source_key == "C2" and len(review.candidates) == 1
    assert len(subjects(bridge)) == 1  # nothing stored yet, nothing lost either

    status = resolve_review(ingest(bridge), review.review_id, review.candidates[0])
    assert status == "created"
    assert subjects(bridge) == {f"Patient/{review.candidates[0]}"}
    assert bridge.repository.reviews() == [] and bridge.repository.count("Patient") == 1


def test_a_resolved_review_stands_when_the_same_records_come_again(bridge):
    """An export with nothing but demographics matches weakly every time; once a person has said
    who it is, importing the same file again applies that answer: unchanged, no new review."""
    ingest(bridge).run([rec(1)])
    session = rec(2, given="Adaeze", no_ids=True)
    ingest(bridge).run([session])
    [review] = bridge.repository.reviews()
    assert resolve_review(ingest(bridge), review.review_id, review.candidates[0]) == "created"
    again = ingest(bridge).run([session])
    assert again.counts == {"unchanged": 1} and again.quarantined == {} and bridge.repository.reviews() == []
    assert bridge.repository.review(review.review_id).state == "linked"


def test_a_review_can_be_resolved_as_a_new_person(bridge):
    ingest(bridge).run([rec(1)])
    ingest(bridge).run([rec(2, given="Adaeze")])
    [review] = bridge.repository.reviews()
    assert resolve_review(ingest(bridge), review.review_id, None) == "created"
    assert bridge.repository.count("Patient") == 2 and bridge.repository.reviews() == []


def test_the_people_of_a_run_are_looked_up_by_identifier_together(bridge, monkeypatch):
    """Linking asks the store about each Patient's identifiers: a run reads a few hundred records
    ahead and asks once for all of them (Ingest._identities_read_ahead), and still finds a person
    stored before, by a later batch's record too."""
    ingest(bridge).run([rec(7, nhs="9434765919", family="Stored", born="1961-01-01")])
    repository = bridge.repository
    single, together = [], []
    monkeypatch.setattr(repository, "patients_with_identifier",
                        lambda *key, f=repository.patients_with_identifier: single.append(key) or f(*key))
    monkeypatch.setattr(repository, "patients_with_identifiers",
                        lambda pairs, f=repository.patients_with_identifiers: together.append(pairs) or f(pairs))
    records = [rec(n, family=f"F{n}", born=f"19{50 + n % 40}-01-0{1 + n % 9}") for n in range(30, 60)]
    records.append(rec(99, nhs="9434765919", client="C-OTHER", family="Stored", born="1961-01-01"))
    run = ingest(bridge)
    run.batch_size = 7
    report = run.run(records)
    assert report.balanced and report.counts["created"] == 31 and not report.quarantined
    assert single == [] and len(together) == 1 and len(together[0]) == 32  # 31 clients and one NHS number
    assert bridge.repository.count("Patient") == 31  # the last record is the person stored before


def test_a_crash_loses_nothing_stored_and_a_rerun_completes(bridge):
    records = [rec(n, family=f"F{n}", born=f"19{50 + n}-01-01") for n in range(1, 6)]

    def crashing():
        for r in records[:3]:
            yield r
        raise KeyboardInterrupt  # the process killed mid-run

    run = ingest(bridge)
    run.batch_size = 2  # records are committed two at a time: the crash comes mid-batch
    with pytest.raises(KeyboardInterrupt):
        run.run(crashing())
    assert len(subjects(bridge)) == 2  # the committed batch; the third record was never counted
    assert sum(run.report.counts.values()) == 2
    report = ingest(bridge).run(records)
    assert (report.counts["unchanged"], report.counts["created"]) == (2, 3) and report.balanced


def test_demographic_disagreement_is_reported_and_trust_decides(bridge):
    ingest(bridge, source="rio").run([rec(1, nhs="9434765919", gender="female")])
    report = ingest(bridge, source="vcse").run([rec(2, nhs="9434765919", gender="male"),
                                                 rec(3, nhs="9434765919", gender="male")])
    [d] = report.disagreements  # told once a run, not once a record
    assert (d["element"], d["kept"], d["keptFrom"], d["other"]) == ("gender", "female", "rio", "male")


def test_two_waiting_sessions_of_one_person_are_two_reviews_and_stay_two(bridge):
    ingest(bridge).run([rec(1)])
    sessions = [rec(2, given="Adaeze", client="C2", when="2025-01-01T10:00:00Z"),
                rec(3, given="Adaeze", client="C2", when="2025-02-01T10:00:00Z")]
    ingest(bridge).run(sessions)
    ingest(bridge).run(sessions)  # the same export again
    reviews = bridge.repository.reviews()
    assert len(reviews) == 2 and {r.source_key for r in reviews} == {"C2"}
    held = {orjson.loads(r.waiting)["resources"][1]["authored"] for r in reviews}
    assert held == {"2025-01-01T10:00:00Z", "2025-02-01T10:00:00Z"}  # neither session lost


# -- batches -----------------------------------------------------------------------------------------
def test_one_new_person_twice_in_one_batch_is_one_patient(bridge):
    """The second record of a person (another client id, so another incoming Patient id) is linked
    before the first is stored: matching must see the batch's pending Patients."""
    report = ingest(bridge).run([rec(1, nhs="9434765919"), rec(2, client="C9"),
                                 rec(3, client="C7", family="Mensah", born="1991-02-03"),
                                 rec(4, client="C8", family="Mensah", born="1991-02-03", nhs="9434765927")])
    assert report.counts == {"created": 4} and report.balanced  # each record's response is new
    assert bridge.repository.count("Patient") == 2
    assert len(subjects(bridge)) == 2 and bridge.repository.count("QuestionnaireResponse") == 4
    [patient] = [s.resource for s in bridge.find("Patient", [("identifier", f"{NHS_SYSTEM}|9434765919")])]
    assert {i["value"] for i in patient["identifier"]} == {"C1", "C9", "9434765919"}


def test_a_batch_is_one_provenance_per_activity(bridge):
    ingest(bridge).run([rec(n, family=f"F{n}", born=f"19{50 + n}-01-01") for n in range(1, 6)])
    [provenance] = [s.resource for s in bridge.repository.history("Provenance")[1]]
    assert len(provenance["target"]) == 10  # five Patients and five responses, each at its version
    assert provenance["activity"]["coding"][0]["code"] == "CREATE"
    assert provenance["agent"][0]["who"]["identifier"]["value"] == VCSE.partner


def test_a_failed_batch_is_stored_record_by_record(bridge, monkeypatch):
    """A batch the store refuses (a concurrent writer took an id) is retried a record at a time, so
    one record's fault quarantines that record alone."""
    from fhir_bridge.errors import Conflict

    service = bridge.resources
    real_put = service.put_validated

    def refuse_batch(resources, caller, *, uow, precomputed=None):
        raise Conflict("a resource in this batch was created concurrently by another writer")

    def refuse_c3(resource, caller, *, uow):
        if resource.get("resourceType") == "Patient" and resource["identifier"][0]["value"] == "C3":
            raise Conflict("Patient created concurrently")
        return real_put(resource, caller, uow=uow)

    monkeypatch.setattr(service, "put_many_validated", refuse_batch)
    monkeypatch.setattr(service, "put_validated", refuse_c3)
    report = ingest(bridge).run([rec(n, family=f"F{n}", born=f"19{50 + n}-01-01") for n in range(1, 5)])
    assert report.counts["created"] == 3 and report.quarantined == {"store": 1} and report.balanced
    assert bridge.repository.count("Patient") == 3
