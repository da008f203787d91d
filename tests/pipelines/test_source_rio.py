"""The RiO importer end to end on a real store: synthetic exports (clean and dirty) through
RioSource and Ingest - every record stored or quarantined, Patients linked, DIALOGs pointed at
the Patient their client was stored as, re-imports unchanged, every injected fault quarantined."""
from __future__ import annotations

import zipfile
from pathlib import Path

import orjson
import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.formats.csv_reader import read_csv
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines.ingest import RunReport
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.pipelines import source_rio
from fhir_bridge.pipelines.source_rio import RioSource
from fhir_bridge.pipelines.sources import ingest_for
from fhir_bridge.store.search import parse_search
from fhir_bridge.synth import SynthManifest, generate
from fhir_bridge.terminology import Terminology
from tests.conftest import EXAMPLES, REPO

TRUST = Caller("RV3", "Example Mental Health NHS Foundation Trust")
IMPORTED = ("clients.csv", "referrals.csv", "care_contacts.csv", "key_workers.csv", "dialog_assessments.csv")
HEADER_CLIENTS = "ClientID,NHSNumber,NHSNumberStatus,Surname,Forename,DateOfBirth,Gender,EthnicCategory,Postcode,GPPracticeCode\n"
DIALOG_COLUMNS = ["01_MentalHealth", "02_PhysicalHealth", "03_JobSituation", "04_Accommodation", "05_LeisureActivities",
                  "06_Friendships", "07_PartnerFamily", "08_PersonalSafety", "09_Medication", "10_PracticalHelp",
                  "11_Meetings"]
HEADER_DIALOG = ",".join(["AssessmentID,ClientID,CompletedDateTime,Purpose,Timepoint",
                          *(f"Item{c},Help{c}" for c in DIALOG_COLUMNS)]) + "\n"
BLANK_ITEMS = "," * (2 * len(DIALOG_COLUMNS) - 1)  # after the first rating: the other items and helps blank


@pytest.fixture(scope="module")
def engine() -> MappingEngine:
    terminology = Terminology.load(REPO / "terminology")
    return MappingEngine(load_mappings(REPO / "mappings", terminology), terminology)


@pytest.fixture()
def bridge(tmp_path, validator):
    b = Bridge(Settings(data_dir=tmp_path / "store"), validator=validator)
    yield b
    b.close()


def run(bridge, engine, *paths: Path) -> RunReport:
    source = RioSource(engine, "RV3", bridge)
    return ingest_for(bridge, source, TRUST).run(source.records(list(paths)))


def all_of(bridge, resource_type: str) -> list[dict]:
    request = parse_search(resource_type, [("_count", "1000")], bridge.registry, strict=False, base_url="")
    return [s.resource for s in bridge.repository.search(request).matches]


def _csv(path: Path) -> list[dict[str, str]]:
    return [row.values for row in read_csv(path)]


def rows(manifest: SynthManifest) -> int:
    # an empty file (a failed extract job) has no rows, and is one quarantined record
    empty = sum(1 for i in manifest.faults() if i.file in IMPORTED and i.kind == "empty-file")
    return sum(manifest.records(name) for name in IMPORTED) + empty


def test_a_clean_export_imports_whole_and_again_unchanged(bridge, engine, tmp_path):
    manifest = generate("rio", tmp_path / "export", count=50, seed=11)
    report = run(bridge, engine, tmp_path / "export")
    assert report.balanced and not report.quarantined
    assert report.records_in == rows(manifest) and report.counts["created"] == report.records_in
    patients = {p["id"] for p in all_of(bridge, "Patient")}
    responses = all_of(bridge, "QuestionnaireResponse")
    assert len(patients) == manifest.records("clients.csv")
    assert len(responses) == manifest.records("dialog_assessments.csv") == 50
    assert {r["subject"]["reference"].split("/")[1] for r in responses} <= patients

    again = run(bridge, engine, tmp_path / "export")
    assert again.balanced and again.counts["unchanged"] == again.records_in == report.records_in


def test_a_client_known_from_another_source_is_linked_by_nhs_number(bridge, engine, tmp_path):
    generate("rio", tmp_path / "export", count=50, seed=11)
    client = next(r for r in _csv(tmp_path / "export" / "clients.csv") if r["NHSNumber"])
    known = orjson.loads((EXAMPLES / "bridge-patient" / "valid-patient-nhs-number-verified.json").read_bytes())
    known["identifier"][0]["value"] = client["NHSNumber"].replace(" ", "")
    with bridge.repository.unit_of_work() as uow:
        bridge.resources.put_validated(known, TRUST, uow=uow)

    assert run(bridge, engine, tmp_path / "export").balanced
    linked = bridge.repository.read("Patient", known["id"]).resource
    assert f"https://fhir-bridge.example.org/Id/rio-client/RV3|{client['ClientID']}" in {
        f"{i['system']}|{i['value']}" for i in linked["identifier"]}
    theirs = [r for r in all_of(bridge, "QuestionnaireResponse") if r["subject"]["reference"] == f"Patient/{known['id']}"]
    assert theirs, "the client's DIALOGs must point at the Patient the client was linked to"
    assert len(all_of(bridge, "Patient")) == len(_csv(tmp_path / "export" / "clients.csv"))


def test_a_dirty_export_quarantines_every_fault_and_imports_every_quirk(bridge, engine, tmp_path):
    manifest = generate("rio", tmp_path / "export", count=50, seed=3, dirty=True)
    report = run(bridge, engine, tmp_path / "export")  # never raises
    assert report.balanced and report.records_in == rows(manifest)
    held = {e.location.rsplit("/", 1)[-1] for e in bridge.repository.quarantined(source="rio")}
    faults = {f"{i.file}:{i.line}" for i in manifest.faults() if i.file in IMPORTED}
    quirks = {f"{i.file}:{i.line}" for i in manifest.injections
              if i.expect == "import" and i.file in IMPORTED and i.record}
    assert faults and quirks
    assert held == faults  # every fault, and nothing else
    assert not quirks & held
    assert sum(report.quarantined.values()) == len(faults)


def test_a_zip_with_a_sub_folder_imports_like_the_folder(bridge, engine, tmp_path):
    manifest = generate("rio", tmp_path / "export", count=5, seed=1)
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as archive:
        for file in (tmp_path / "export").glob("*.csv"):
            archive.write(file, f"rio-extract/{file.name}")
    report = run(bridge, engine, tmp_path / "export.zip")
    assert report.balanced and not report.quarantined and report.records_in == rows(manifest)


def test_a_missing_file_is_one_quarantined_record_naming_it(bridge, engine, tmp_path):
    generate("rio", tmp_path / "export", count=5, seed=1)
    (tmp_path / "export" / "dialog_assessments.csv").unlink()
    report = run(bridge, engine, tmp_path / "export")
    assert report.balanced and report.quarantined == {"mapping": 1}
    [entry] = bridge.repository.quarantined(source="rio")
    assert entry.location.endswith("dialog_assessments.csv")
    assert b"dialog_assessments.csv is missing" in entry.outcome


def test_extract_files_named_one_by_one_are_one_export_read_in_import_order(bridge, engine, tmp_path):
    """`import rio dialog_assessments.csv clients.csv`: one export (the assessments find their
    clients though named first), no "missing" faults for the files named beside, and each row
    located by its own file; a second export's files named after the first's are their own export."""
    first = generate("rio", tmp_path / "a", count=6, seed=1)
    generate("rio", tmp_path / "b", count=6, seed=1)  # the same export again, from another folder
    named = [tmp_path / "a" / "dialog_assessments.csv", tmp_path / "a" / "clients.csv",
             tmp_path / "b" / "clients.csv", tmp_path / "b" / "dialog_assessments.csv"]
    report = run(bridge, engine, *named)
    assert report.balanced and not report.quarantined, report.to_json()
    each = first.records("clients.csv") + first.records("dialog_assessments.csv")
    assert report.records_in == 2 * each and report.counts["created"] == each
    assert len(all_of(bridge, "QuestionnaireResponse")) == 6

    again = run(bridge, engine, tmp_path / "a")  # the folder: the same records, and its optional files
    assert again.balanced and not again.quarantined
    assert again.counts["unchanged"] == first.records("clients.csv") + first.records("dialog_assessments.csv")


def test_extract_files_named_with_a_folder_between_them_are_still_one_export(bridge, engine, tmp_path):
    """`import rio a/dialog_assessments.csv b a/clients.csv`: a's files are one export (its
    assessments find its clients), b its own; a missing path between them is one fault."""
    a = generate("rio", tmp_path / "a", count=4, seed=1)
    generate("rio", tmp_path / "b", count=4, seed=1)  # the same people again: all unchanged
    report = run(bridge, engine, tmp_path / "a" / "dialog_assessments.csv", tmp_path / "b", tmp_path / "nowhere",
                 tmp_path / "a" / "clients.csv")
    assert report.balanced and report.quarantined == {"mapping": 1}, report.to_json()
    named = a.records("clients.csv") + a.records("dialog_assessments.csv")
    assert report.counts["unchanged"] == named  # b's clients and assessments: a's again, stored already
    assert report.counts["created"] == rows(a)  # a's two files, and b's other three (the same export's)
    [fault] = bridge.repository.quarantined(source="rio")
    assert fault.location == str(tmp_path / "nowhere")


def test_a_file_named_alone_that_is_no_rio_extract_is_one_fault_naming_the_extracts(bridge, engine, tmp_path):
    generate("rio", tmp_path / "export", count=3, seed=1)
    odd = tmp_path / "export" / "assessments-2026.csv"
    odd.write_bytes((tmp_path / "export" / "dialog_assessments.csv").read_bytes())
    report = run(bridge, engine, tmp_path / "export" / "clients.csv", odd)
    assert report.balanced and report.quarantined == {"mapping": 1}
    [entry] = bridge.repository.quarantined(source="rio")
    assert entry.location == str(odd)
    assert b"assessments-2026.csv is not a RiO extract" in entry.outcome and b"dialog_assessments.csv" in entry.outcome
    assert report.counts["created"] == len(_csv(tmp_path / "export" / "clients.csv"))


def test_a_file_named_alone_is_located_by_its_own_path(bridge, engine, tmp_path):
    generate("rio", tmp_path / "export", count=3, seed=1)
    clients = tmp_path / "export" / "clients.csv"
    clients.write_bytes(clients.read_bytes() + b"C999,not-a-number,01,X,Y,1980-01-01,9,A,E1 4NS,F84001\n")
    run(bridge, engine, clients)
    [entry] = bridge.repository.quarantined(source="rio")
    assert entry.location.rpartition(":")[0] == str(clients)


def test_a_renamed_or_missing_rating_column_quarantines_the_rows_naming_it(bridge, engine, tmp_path):
    """Item06_Friends for Item06_Friendships: every DIALOG would be stored without its friendships
    rating, without a word. The rows are quarantined saying which column is missing; renamed back,
    a retry would store them."""
    generate("rio", tmp_path / "export", count=6, seed=2)
    extract = tmp_path / "export" / "dialog_assessments.csv"
    extract.write_text(extract.read_text(encoding="utf-8-sig").replace("Item06_Friendships", "Item06_Friends"))
    report = run(bridge, engine, tmp_path / "export")
    assessments = len(_csv(extract))
    assert report.balanced and report.quarantined == {"mapping": assessments}
    assert not all_of(bridge, "QuestionnaireResponse")
    [first, *_] = bridge.repository.quarantined(source="rio")
    assert b"no field 'Item06_Friendships'" in first.outcome and b"renamed or missing" in first.outcome


def test_a_dialog_with_every_rating_blank_is_quarantined_not_stored_empty(bridge, engine, tmp_path):
    import csv

    generate("rio", tmp_path / "export", count=3, seed=3)
    extract = tmp_path / "export" / "dialog_assessments.csv"
    rows = list(csv.DictReader(extract.open(encoding="utf-8-sig", newline="")))
    rows[0].update({k: "" for k in rows[0] if k.startswith(("Item", "Help"))})
    with extract.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = run(bridge, engine, tmp_path / "export")
    assert report.balanced and sum(report.quarantined.values()) == 1
    assert len(all_of(bridge, "QuestionnaireResponse")) == len(rows) - 1
    [entry] = bridge.repository.quarantined(source="rio")
    assert entry.location.endswith("dialog_assessments.csv:2") and b"dlg-qr-4" in entry.outcome


def test_a_dialog_of_a_quarantined_client_is_quarantined_with_the_reason(bridge, engine, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "clients.csv").write_text(HEADER_CLIENTS + "42,9990000019,01,Okafor,Ada,02/04/1980,2,N,E1 4NS,\n")
    (folder / "dialog_assessments.csv").write_text(HEADER_DIALOG + f"7,42,2024-05-01 10:00,PROM,Assessment,4{BLANK_ITEMS}\n")
    report = run(bridge, engine, folder)
    assert report.balanced and report.quarantined == {"mapping": 2}
    reasons = {e.location.rsplit("/", 1)[-1]: e.outcome for e in bridge.repository.quarantined(source="rio")}
    assert b"not a valid NHS number" in reasons["clients.csv:2"]
    assert b"client 42 is not stored (quarantined or waiting for identity review)" in reasons["dialog_assessments.csv:2"]

    # Fixed at the source and exported again: both import, the DIALOG pointing at the client.
    (folder / "clients.csv").write_text(HEADER_CLIENTS + "42,9990000018,01,Okafor,Ada,02/04/1980,2,N,E1 4NS,\n")
    assert run(bridge, engine, folder).counts["created"] == 2
    [patient] = all_of(bridge, "Patient")
    [response] = all_of(bridge, "QuestionnaireResponse")
    assert response["subject"] == {"reference": f"Patient/{patient['id']}"}


def test_an_export_without_referrals_contacts_and_key_workers_imports_the_rest(bridge, engine, tmp_path):
    # Exports made before those extracts existed: absent is fine; present but unreadable is a fault.
    manifest = generate("rio", tmp_path / "export", count=5, seed=1)
    for name in ("referrals.csv", "care_contacts.csv", "key_workers.csv"):
        (tmp_path / "export" / name).unlink()
    report = run(bridge, engine, tmp_path / "export")
    assert report.balanced and not report.quarantined
    assert report.records_in == manifest.records("clients.csv") + manifest.records("dialog_assessments.csv")
    (tmp_path / "export" / "key_workers.csv").write_bytes(b"\x00garbage")
    assert run(bridge, engine, tmp_path / "export").quarantined == {"mapping": 1}


def test_referrals_contacts_and_key_workers_point_at_the_client_patient(bridge, engine, tmp_path):
    generate("rio", tmp_path / "export", count=20, seed=5)
    assert run(bridge, engine, tmp_path / "export").balanced
    patients = {p["id"]: p for p in all_of(bridge, "Patient")}
    referrals = {r["id"]: r for r in all_of(bridge, "ServiceRequest")}
    contacts, teams = all_of(bridge, "Encounter"), all_of(bridge, "CareTeam")
    assert len(referrals) == len(_csv(tmp_path / "export" / "referrals.csv"))
    assert len(contacts) == len(_csv(tmp_path / "export" / "care_contacts.csv"))
    assert len(teams) == len(_csv(tmp_path / "export" / "key_workers.csv"))
    for resource in [*referrals.values(), *teams]:
        assert resource["subject"]["reference"].removeprefix("Patient/") in patients
    for contact in contacts:  # a contact names only its referral: it is about the referral's person
        referral = referrals[contact["basedOn"][0]["reference"].removeprefix("ServiceRequest/")]
        assert contact["subject"] == referral["subject"]
    timed = next(c for c in contacts if "T" in c["period"]["start"])
    assert timed["period"]["start"].endswith(("+00:00", "+01:00"))  # ContactDate + ContactTime, UK local
    for response in all_of(bridge, "QuestionnaireResponse"):
        assert response["basedOn"][0]["reference"].removeprefix("ServiceRequest/") in referrals


def test_contacts_find_referrals_the_run_no_longer_remembers_in_the_store(bridge, engine, tmp_path, monkeypatch):
    """Memory stays flat however large the export: past REMEMBERED_REFERRALS the run forgets the
    oldest referrals, which are stored by then, and looks them up instead."""
    monkeypatch.setattr(source_rio, "REMEMBERED_REFERRALS", 3)
    generate("rio", tmp_path / "export", count=20, seed=5)
    source = RioSource(engine, "RV3", bridge)
    ingest = ingest_for(bridge, source, TRUST)
    ingest.batch_size = 2  # fewer than it remembers, as 500 a batch are to 100,000 referrals
    report = ingest.run(source.records([tmp_path / "export"]))
    assert report.balanced and not report.quarantined
    assert len(source._referral_clients) == 3
    referrals = {r["id"]: r for r in all_of(bridge, "ServiceRequest")}
    contacts = all_of(bridge, "Encounter")
    assert len(referrals) > 3 and len(contacts) == len(_csv(tmp_path / "export" / "care_contacts.csv"))
    for contact in contacts:
        assert contact["subject"] == referrals[contact["basedOn"][0]["reference"].removeprefix("ServiceRequest/")]["subject"]


def test_a_contact_whose_referral_is_not_stored_is_quarantined_with_the_reason(bridge, engine, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "clients.csv").write_text(HEADER_CLIENTS + "42,9990000018,01,Okafor,Ada,02/04/1980,2,N,E1 4NS,\n")
    (folder / "dialog_assessments.csv").write_text(HEADER_DIALOG)
    (folder / "care_contacts.csv").write_text("ContactID,ReferralID,ContactDate\n77,5999,2024-05-01\n")
    report = run(bridge, engine, folder)
    assert report.quarantined == {"mapping": 1}
    [entry] = bridge.repository.quarantined(source="rio")
    assert b"referral 5999 is not stored" in entry.outcome
    # The referral arrives in a later export: the contact then finds its person through the store.
    (folder / "referrals.csv").write_text("ReferralID,ClientID,ReferralReceivedDate,TeamCode,TeamTypeCode\n"
                                          "5999,42,2024-04-01,CMHT-X,A06\n")
    run(bridge, engine, folder)
    (folder / "referrals.csv").unlink()
    assert not run(bridge, engine, folder).quarantined
    [contact] = all_of(bridge, "Encounter")
    [patient] = all_of(bridge, "Patient")
    assert contact["subject"] == {"reference": f"Patient/{patient['id']}"}


def test_items_go_by_domain_and_blank_or_8_is_never_a_rating(engine):
    # RiO numbers 06 friendships, 07 partner/family (MHSDS); the DIALOG+ app the other way round.
    case = REPO / "tests" / "golden" / "rio-dialog-assessment" / "items-6-7-blank-and-8"
    [row] = _csv(case / "input.csv")
    [response] = engine.map("rio-dialog-assessment", row, "dialog_assessments.csv:2", {"organization": "RV3"}).resources
    answers = {i["linkId"]: i["answer"][0]["valueCoding"]["code"] for i in response["item"]}
    assert answers["friendships"] == "6" and answers["partner-family"] == "2"
    assert answers["partner-family.more-help"] == "Y"
    assert "physical-health" not in answers and "leisure-activities" not in answers  # blank: no item
    assert answers["accommodation"] == answers["medication"] == "8"  # kept as not applicable
    linked = [i["linkId"] for i in response["item"]]
    assert linked.index("friendships") < linked.index("partner-family")  # the Questionnaire's order


def test_an_assessment_fixed_in_rio_resolves_its_entry_and_only_this_trusts(bridge, engine, tmp_path):
    """By AssessmentID within the trust's export: another trust's assessment of the same local id is
    another record, and leaves the entry open."""
    import csv

    generate("rio", tmp_path / "export", count=3, seed=4)
    extract = tmp_path / "export" / "dialog_assessments.csv"
    good = extract.read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(good.splitlines()))
    item = next(k for k in rows[0] if k.startswith("Item"))
    rows[0][item] = "9"
    with extract.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert sum(run(bridge, engine, tmp_path / "export").quarantined.values()) == 1
    [entry] = bridge.repository.quarantined(source="rio")
    extract.write_text(good, encoding="utf-8")
    other_trust = RioSource(engine, "RAT", bridge)
    elsewhere = ingest_for(bridge, other_trust, Caller("RAT", "Another trust")).run(
        other_trust.records([tmp_path / "export"]))
    assert elsewhere.resolved == [] and bridge.repository.quarantine_entry(entry.entry_id).state == "open"
    fixed = run(bridge, engine, tmp_path / "export")
    assert fixed.resolved == [entry.entry_id] and bridge.repository.quarantine_entry(entry.entry_id).state == "resolved"
