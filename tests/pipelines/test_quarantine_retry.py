"""`quarantine retry` on a real store, one source at a time: a record quarantined by a mapping gap
(a code the source sends that the mapping did not know yet) is stored once the mapping file is
fixed, one quarantined for missing data (its client) once the data is there, and one that is
still wrong stays open with its new reason. Unreadable input is not retried; importing the fixed
file closes its entry."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.pipelines.ingest import Ingest, resolve_review
from fhir_bridge.pipelines.quarantine_retry import ALREADY, CANNOT, RESOLVED, REVIEW, STILL, retry_entries
from fhir_bridge.pipelines.resources import SYSTEM_CALLER, Caller
from fhir_bridge.pipelines.sources import run_import
from fhir_bridge.store.search import parse_search
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden"
SOURCES = ("dialog-app", "hl7", "rio", "vcse")


@pytest.fixture()
def mappings(tmp_path) -> Path:
    """A copy of the importers' mapping files, for a test to fix."""
    copy = tmp_path / "mappings"
    for source in SOURCES:
        shutil.copytree(REPO / "mappings" / source, copy / source)
    return copy


@pytest.fixture()
def bridge(tmp_path, validator, mappings):
    b = Bridge(Settings(data_dir=tmp_path / "store", mappings_dir=mappings), validator=validator)
    yield b
    b.close()


def fix(mappings: Path, name: str, old: str, new: str) -> None:
    path = mappings / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} in {name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def imported(bridge, source: str, *paths: Path, organization: str):
    return run_import(bridge, source, list(paths), organization=organization, caller=Caller(organization, organization),
                      quarantine_dir=bridge.settings.data_dir / "quarantine")


def retry(bridge, entries=None):
    entries = bridge.repository.quarantined() if entries is None else entries
    return retry_entries(bridge, entries, quarantine_dir=bridge.settings.data_dir / "quarantine")


def by_location(results) -> dict[str, tuple[str, str]]:
    return {r.entry.location.rsplit("/", 1)[-1]: (r.outcome, r.detail) for r in results}


def stored(bridge, resource_type: str) -> list[dict]:
    request = parse_search(resource_type, [("_count", "100")], bridge.registry, strict=False, base_url="")
    return [s.resource for s in bridge.repository.search(request).matches]


def open_reasons(bridge) -> dict[str, str]:
    return {e.location.rsplit("/", 1)[-1]: e.reason for e in bridge.repository.quarantined()}


# -- RiO: a mapping fix, then data: the assessment whose client was quarantined ----------------------
def rio_export(folder: Path) -> Path:
    folder.mkdir()
    clients = (GOLDEN / "rio-client" / "verified-nhs-number" / "input.csv").read_text(encoding="utf-8").rstrip("\n")
    # Gender 0 ("not known" in older MHSDS code lists): the mapping knows 1, 2, 9 and X
    (folder / "clients.csv").write_text(clients + "\n1000048,9434765919,01,Okafor,Ben,01/02/1990,0,A,E1 4NS,F84017\n")
    header, first, second = (GOLDEN / "rio-dialog-assessment" / "prom-complete" / "input.csv").read_text(
        encoding="utf-8").splitlines()[:3]
    rest = ",5000001,2024-02-06 10:15,STF0012,PROM,{timepoint},{rating},4,2,5,4,6,3,5,4,5,6,Y,N,N,N,N,N,N,N,N,N,N"
    (folder / "dialog_assessments.csv").write_text("\n".join([
        header, first, second,
        "3000003,1000048" + rest.format(timepoint="Follow-up", rating="3"),  # Ben's: no client, a new timepoint
        "3000004,1000047" + rest.format(timepoint="Review", rating="9"),     # a rating of 9: the data is wrong
    ]) + "\n", encoding="utf-8")
    return folder


def test_rio_entries_resolve_as_the_mappings_are_fixed_clients_first(bridge, mappings, tmp_path):
    report = imported(bridge, "rio", rio_export(tmp_path / "rio"), organization="RV3")
    assert report.to_json()["quarantined"] == 3
    assert open_reasons(bridge) == {"clients.csv:3": "mapping", "dialog_assessments.csv:4": "mapping",
                                    "dialog_assessments.csv:5": "mapping"}

    # The client's gender code is mapped now; its assessment then fails on its own timepoint
    fix(mappings, "rio/client.yaml", 'map: {"1": male,', 'map: {"0": unknown, "1": male,')
    results, [run] = retry(bridge, list(reversed(bridge.repository.quarantined())))  # clients go first anyway
    outcomes = by_location(results)
    assert outcomes["clients.csv:3"] == (RESOLVED, "created")
    assert outcomes["dialog_assessments.csv:4"][0] == STILL
    assert "validation" in outcomes["dialog_assessments.csv:4"][1] and "dialog-timepoint" in outcomes["dialog_assessments.csv:4"][1]
    assert "'9' is not a DIALOG rating" in outcomes["dialog_assessments.csv:5"][1]
    assert run.to_json()["in"] == 3 and run.to_json()["created"] == 1 and run.to_json()["quarantined"] == 2
    ben = next(p for p in stored(bridge, "Patient") if p["name"][0]["family"] == "Okafor")
    assert ben["gender"] == "unknown"

    # Still failing: the same entry, open, with the new reason and the retry's run
    held = {e.location.rsplit("/", 1)[-1]: e for e in bridge.repository.quarantined()}
    assert held["dialog_assessments.csv:4"].reason == "validation" and held["dialog_assessments.csv:4"].run_id == run.run_id
    assert len(bridge.repository.quarantined(state=None)) == 3
    # The retry run's JSON lines file lists what it left in quarantine, with the new outcome
    saved = bridge.settings.data_dir / "quarantine" / f"{run.run_id}.jsonl"
    lines = [orjson.loads(line) for line in saved.read_bytes().splitlines()]
    assert sorted(line["location"].rsplit("/", 1)[-1] for line in lines) == ["dialog_assessments.csv:4", "dialog_assessments.csv:5"]

    fix(mappings, "rio/dialog-assessment.yaml", '      "review": {code: review, display: Review}\n',
        '      "review": {code: review, display: Review}\n      "follow-up": {code: review, display: Review}\n')
    results, [run] = retry(bridge)
    assert by_location(results)["dialog_assessments.csv:4"] == (RESOLVED, "created")
    assert by_location(results)["dialog_assessments.csv:5"][0] == STILL
    assert run.to_json()["in"] == 2 and run.resolved == [held["dialog_assessments.csv:4"].entry_id]
    entry = bridge.repository.quarantine_entry(held["dialog_assessments.csv:4"].entry_id)
    assert (entry.state, entry.resolved_run) == ("resolved", run.run_id)
    response = next(r for r in stored(bridge, "QuestionnaireResponse") if r["subject"]["reference"] == f"Patient/{ben['id']}")
    assert response["authored"].startswith("2024-02-06")
    assert open_reasons(bridge) == {"dialog_assessments.csv:5": "mapping"}

    # Idempotent: a resolved entry is not mapped again
    results, runs = retry(bridge, [bridge.repository.quarantine_entry(entry.entry_id)])
    assert [(r.outcome, r.run_id) for r in results] == [(ALREADY, run.run_id)] and runs == []


# -- VCSE: CSV and JSON, the same fix --------------------------------------------------------------
def test_vcse_csv_row_and_json_record_store_once_the_session_type_is_mapped(bridge, mappings, tmp_path):
    row = (GOLDEN / "vcse" / "complete-session" / "input.csv").read_text(encoding="utf-8-sig")
    (tmp_path / "sessions.csv").write_text(row.replace(",8ZX01,DIALOG+,", ",8ZX01,DIALOG Plus,"), encoding="utf-8")
    session = {"client": {"ref": "8ZX01-0000043", "nhsNumber": "9434765919", "surname": "Okafor", "forename": "Ben",
                          "dateOfBirth": "1990-02-01", "postcode": "E1 4NS"},
               "session": {"id": "S00000102", "date": "2024-03-01", "worker": "Farah Walsh", "organisationOds": "8ZX01",
                           "type": "DIALOG Plus", "chosenDomains": ["Mental health"]},
               "ratings": {"Mental health": {"rating": 4, "help": True}, "Friendships": {"rating": 6, "help": False}},
               "actions": [{"domain": "Mental health", "action": "Walk daily", "who": "client", "due": "2024-03-15"}]}
    (tmp_path / "sessions.json").write_text(json.dumps([session], indent=1), encoding="utf-8")
    report = imported(bridge, "vcse", tmp_path / "sessions.csv", tmp_path / "sessions.json", organization="8ZX01")
    assert report.to_json()["quarantined"] == 2 and set(open_reasons(bridge).values()) == {"validation"}

    results, _ = retry(bridge)  # nothing changed yet: both still fail, for the same reason
    assert {r.outcome for r in results} == {STILL}

    fix(mappings, "vcse/session.yaml", '      "DIALOG+": {code: care-planning, display: DIALOG+ care-planning session}\n',
        '      "DIALOG+": {code: care-planning, display: DIALOG+ care-planning session}\n'
        '      "DIALOG Plus": {code: care-planning, display: DIALOG+ care-planning session}\n')
    results, [run] = retry(bridge)
    assert {r.outcome for r in results} == {RESOLVED} and run.to_json()["created"] == 2
    assert bridge.repository.quarantined() == []
    purposes = {r["id"]: r["extension"] for r in stored(bridge, "QuestionnaireResponse")}
    assert len(purposes) == 2 and all("care-planning" in json.dumps(e) for e in purposes.values())


# -- DIALOG+ app: a mapping fix, then the person's identity (data) ---------------------------------------
def test_dialog_app_row_goes_to_identity_review_once_mapped_and_is_stored_from_there(bridge, mappings, tmp_path):
    header, row = (GOLDEN / "dialog-app" / "complete-session" / "input.csv").read_text(encoding="utf-8-sig").splitlines()[:2]
    # A newer app version writes true/false for "more help"
    (tmp_path / "app.csv").write_text(f"{header}\n{row.replace(',3,2,1,', ',3,true,1,', 1)}\n", encoding="utf-8")
    imported(bridge, "dialog-app", tmp_path / "app.csv", organization="RV3")
    [entry] = bridge.repository.quarantined()
    assert "'true' is not a yes/no answer" in orjson.loads(entry.outcome)["issue"][0]["diagnostics"]

    fix(mappings, "dialog-app/questionnaire-response.yaml", '"yes": ["2", "Y", "Yes"], "no": ["1", "N", "No"]',
        '"yes": ["2", "Y", "Yes", "true"], "no": ["1", "N", "No", "false"]')
    [result], [run] = retry(bridge)
    # Mapped now, but the app sends no NHS number: it waits for a person in identity review, not here
    assert result.outcome == REVIEW and run.to_json()["quarantinedByReason"] == {"identity-review": 1}
    handed = bridge.repository.quarantine_entry(entry.entry_id)
    assert (handed.state, handed.reason, handed.resolved_run) == ("resolved", "identity-review", run.run_id)
    [review] = bridge.repository.reviews()
    # Rosa's session agreed actions: a new person has no plan, and the app names no key worker to start one
    assert resolve_review(Ingest(bridge, "dialog-app", None, SYSTEM_CALLER), review.review_id, None) == \
        "quarantined:session"
    [refused] = bridge.repository.quarantined()
    assert refused.reason == "session" and b"key worker" in refused.outcome and stored(bridge, "QuestionnaireResponse") == []

    # The data: the trust starts her plan (with a key worker); the session is stored from quarantine
    [patient] = stored(bridge, "Patient")
    with bridge.repository.unit_of_work() as uow:
        uow.create({"resourceType": "Practitioner", "id": "sam", "name": [{"given": ["Sam"], "family": "Adeyemi"}]})
    bridge.careplans.record(patient["id"], {"resourceType": "Parameters", "parameter": [
        {"name": "date", "valueDateTime": "2024-01-10T10:00:00Z"},
        {"name": "keyWorker", "part": [{"name": "member", "valueReference": {"reference": "Practitioner/sam"}}]}]},
        Caller("RV3", "RV3"))
    [result], [run] = retry(bridge)
    assert result.outcome == RESOLVED and run.to_json()["created"] == 1
    assert len(stored(bridge, "QuestionnaireResponse")) == 1


# -- HL7 ------------------------------------------------------------------------------------------------
def test_hl7_message_is_parsed_again_and_stored_once_its_purpose_is_mapped(bridge, mappings, tmp_path):
    message = (GOLDEN / "hl7-oru-dialog" / "snomed-items" / "input.hl7").read_text(encoding="utf-8")
    (tmp_path / "feed.hl7").write_text(message.replace("PROM^^L", "Care Planning^^L"), encoding="utf-8")
    imported(bridge, "hl7", tmp_path / "feed.hl7", organization="RAT")
    assert open_reasons(bridge) == {"feed.hl7:1": "validation"}

    fix(mappings, "hl7/oru-dialog.yaml", '      "care-planning": DIALOG+ care-planning session\n',
        '      "care-planning": DIALOG+ care-planning session\n'
        '      "Care Planning": {code: care-planning, display: DIALOG+ care-planning session}\n')
    [result], [run] = retry(bridge)
    assert result.outcome == RESOLVED and run.source == "hl7" and run.to_json()["in"] == 1
    [response] = stored(bridge, "QuestionnaireResponse")
    assert "care-planning" in json.dumps(response["extension"])


# -- unreadable input -------------------------------------------------------------------------------------
def test_unreadable_input_is_not_retried_and_importing_the_fixed_file_resolves_a_file_fault(bridge, tmp_path):
    good = (GOLDEN / "vcse" / "complete-session" / "input.csv").read_text(encoding="utf-8-sig")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "ragged.csv").write_text(good + "too,few\n", encoding="utf-8")
    imported(bridge, "vcse", tmp_path / "empty.csv", tmp_path / "ragged.csv", organization="8ZX01")
    assert set(open_reasons(bridge)) == {"empty.csv:1", "ragged.csv:3"}

    results, runs = retry(bridge)
    outcomes = by_location(results)
    assert runs == [] and {o for o, _ in outcomes.values()} == {CANNOT}
    assert "could not be read as a whole" in outcomes["empty.csv:1"][1] and "import it again" in outcomes["empty.csv:1"][1]
    assert "the record itself could not be read" in outcomes["ragged.csv:3"][1]

    (tmp_path / "empty.csv").write_text(good, encoding="utf-8")  # the partner sends the file again, fixed
    report = imported(bridge, "vcse", tmp_path / "empty.csv", tmp_path / "ragged.csv", organization="8ZX01")
    # The file fault is closed by the import that read the file; the bad row stays until a person sees it
    assert open_reasons(bridge) == {"ragged.csv:3": "mapping"}
    [closed] = report.resolved
    assert bridge.repository.quarantine_entry(closed).resolved_run == report.run_id
    assert report.to_json()["resolvedQuarantine"] == [closed]


def test_a_file_that_still_cannot_be_read_keeps_its_entry_open(bridge, tmp_path):
    (tmp_path / "feed.hl7").write_bytes(b"")
    imported(bridge, "hl7", tmp_path / "feed.hl7", organization="RAT")
    report = imported(bridge, "hl7", tmp_path / "feed.hl7", organization="RAT")
    assert report.resolved == [] and open_reasons(bridge) == {"feed.hl7:1": "mapping"}
