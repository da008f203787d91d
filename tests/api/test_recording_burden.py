"""The recording-burden guard on every write path: a PROM DIALOG within 28 days of another for the
same person is stored tagged possible-duplicate with a warning (or refused with 422 when the
setting says reject); care-planning DIALOGs never count. REST create and update, transactions, the
DIALOG+ session and the import pipeline."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.pipelines.ingest import Ingest, SourceRecord
from fhir_bridge.pipelines.care_access import operator_caller
from fhir_bridge.pipelines.source_records import Mapped
from tests.api.helpers import expect, issue_codes
from tests.careplan.sessions import key_worker, session

FLAG = "https://fhir-bridge.example.org/CodeSystem/dialog-entry-flag"
RETURN_OUTCOME = {"Prefer": "return=OperationOutcome"}


def flagged(resource: dict) -> bool:
    return any(t["system"] == FLAG and t["code"] == "possible-duplicate" for t in resource.get("meta", {}).get("tag", []))


@pytest.fixture
def rosa(create, make_patient) -> str:
    return create(make_patient(1))["id"]


def test_a_prom_soon_after_another_is_stored_tagged_with_a_warning(client, auth, rosa, make_response):
    first = expect(client.post("/fhir/QuestionnaireResponse", json=make_response(f"Patient/{rosa}"), headers=auth), 201)
    assert not flagged(first)
    again = make_response(f"Patient/{rosa}", authored="2024-02-16T10:00:00+00:00", timepoint="review")
    response = client.post("/fhir/QuestionnaireResponse", json=again, headers={**auth, **RETURN_OUTCOME})
    outcome = expect(response, 201)
    [warning] = [i for i in outcome["issue"] if i["severity"] == "warning" and i["code"] == "business-rule"]
    assert first["id"] in warning["diagnostics"] and "28 days before" in warning["diagnostics"]
    stored = expect(client.get(response.headers["Location"].split("/fhir/")[1].join(["/fhir/", ""]), headers=auth), 200)
    assert flagged(stored)
    tagged = expect(client.get("/fhir/QuestionnaireResponse", params={"_tag": f"{FLAG}|possible-duplicate"},
                               headers=auth), 200)
    assert tagged["total"] == 1
    later = make_response(f"Patient/{rosa}", authored="2024-03-20T10:00:00+00:00", timepoint="review")
    assert not flagged(expect(client.post("/fhir/QuestionnaireResponse", json=later, headers=auth), 201))
    other = make_response("Patient/someone-else", authored="2024-02-16T10:00:00+00:00")
    assert not flagged(expect(client.post("/fhir/QuestionnaireResponse", json=other, headers=auth), 201))


def test_an_update_that_is_no_longer_close_loses_the_tag(client, auth, rosa, make_response):
    expect(client.post("/fhir/QuestionnaireResponse", json=make_response(f"Patient/{rosa}"), headers=auth), 201)
    second = expect(client.post("/fhir/QuestionnaireResponse", json=make_response(
        f"Patient/{rosa}", authored="2024-02-20T10:00:00+00:00"), headers=auth), 201)
    assert flagged(second)
    moved = {**second, "authored": "2024-01-01T10:00:00+00:00"}  # now the earlier of the two
    assert not flagged(expect(client.put(f"/fhir/QuestionnaireResponse/{second['id']}", json=moved, headers=auth), 200))
    back = {**moved, "authored": "2024-02-21T10:00:00+00:00"}
    assert flagged(expect(client.put(f"/fhir/QuestionnaireResponse/{second['id']}", json=back, headers=auth), 200))


def test_care_planning_dialogs_neither_count_nor_are_counted(client, auth, rosa, make_response, care_planning_response):
    me = {"reference": f"Patient/{rosa}"}
    planning = {**care_planning_response, "subject": me, "source": me, "authored": "2024-02-07T10:00:00+00:00"}
    assert not flagged(expect(client.post("/fhir/QuestionnaireResponse", json=planning, headers=auth), 201))
    expect(client.post("/fhir/QuestionnaireResponse", json=make_response(f"Patient/{rosa}"), headers=auth), 201)
    sam = expect(client.post("/fhir/Practitioner", json={"resourceType": "Practitioner", "name": [{"family": "Adeyemi"}]},
                             headers=auth), 201)
    ratings = {**planning, "authored": "2024-02-08T10:00:00+00:00"}
    plan = expect(client.post(f"/fhir/Patient/{rosa}/$dialog-plus-session", json=session(
        key_worker({"reference": f"Practitioner/{sam['id']}"}), response=ratings), headers=auth), 200)
    stored = expect(client.get(f"/fhir/{plan['supportingInfo'][0]['reference']}", headers=auth), 200)
    assert not flagged(stored)


def test_a_transaction_compares_its_own_entries_and_says_so_in_the_entry(client, auth, rosa, make_response):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": make_response(f"Patient/{rosa}", authored=day), "request": {"method": "POST",
                                                                                 "url": "QuestionnaireResponse"}}
        for day in ("2024-02-06T10:00:00+00:00", "2024-02-10T10:00:00+00:00")]}
    answer = expect(client.post("/fhir", json=bundle, headers=auth), 200)
    first, second = answer["entry"]
    assert not flagged(first["resource"]) and flagged(second["resource"])
    assert "business-rule" in issue_codes(second["response"]["outcome"])


@pytest.fixture
def rejecting(bridge, monkeypatch):
    """The same server with Settings.prom_duplicates = reject."""
    strict = Bridge(replace(bridge.settings, prom_duplicates="reject"), validator=bridge.validator)
    yield strict
    strict.close()


def test_the_setting_makes_it_a_rejection_on_every_path(rejecting, tokens, auth, make_patient, make_response):
    from fhir_bridge.api.app import create_app
    from tests.api.helpers import OutcomeCheckingClient

    with OutcomeCheckingClient(create_app(rejecting, tokens=tokens)) as client:
        rosa = expect(client.post("/fhir/Patient", json=make_patient(1), headers=auth), 201)["id"]
        expect(client.post("/fhir/QuestionnaireResponse", json=make_response(f"Patient/{rosa}"), headers=auth), 201)
        close = make_response(f"Patient/{rosa}", authored="2024-02-20T10:00:00+00:00")
        outcome = expect(client.post("/fhir/QuestionnaireResponse", json=close, headers=auth), 422)
        assert outcome["issue"][0]["expression"] == ["QuestionnaireResponse.authored"]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": close, "request": {"method": "POST", "url": "QuestionnaireResponse"}}]}
        expect(client.post("/fhir", json=bundle, headers=auth), 422)
        assert expect(client.get("/fhir/QuestionnaireResponse", headers=auth), 200)["total"] == 1


# -- the import pipeline (put_many_validated / put_validated) ---------------------------------------------------
def records(patient_id: str, make_response, *days: str) -> list[SourceRecord]:
    out = []
    for n, day in enumerate(days):
        response = {**make_response(f"Patient/{patient_id}", authored=day), "id": f"imported-{n}"}
        out.append(SourceRecord("vcse", f"export.csv:{n + 2}", day.encode(), response))
    return out


def mapper(record: SourceRecord) -> Mapped:
    return Mapped([copy.deepcopy(record.data)])


def test_an_import_tags_a_second_prom_in_the_same_batch_and_against_the_store(bridge, make_patient, make_response):
    with bridge.repository.unit_of_work() as uow:
        uow.create({**make_patient(1), "id": "rosa"})
    caller = operator_caller("X9V2K")  # the guard, not access, is tested here: an operator's import
    report = Ingest(bridge, "vcse", mapper, caller).run(records("rosa", make_response, "2024-02-06T10:00:00+00:00",
                                                                "2024-02-12T10:00:00+00:00"))
    assert report.counts["created"] == 2 and report.balanced
    assert [flagged(bridge.repository.read("QuestionnaireResponse", f"imported-{n}").resource) for n in (0, 1)] == \
        [False, True]
    again = Ingest(bridge, "vcse", mapper, caller).run(records("rosa", make_response, "2024-02-06T10:00:00+00:00",
                                                               "2024-02-12T10:00:00+00:00"))
    assert again.counts["unchanged"] == 2  # re-importing changes nothing, tag included


def test_an_import_tags_the_later_prom_whatever_the_order_of_the_file(bridge, make_patient, make_response):
    """The later of two close PROMs is the possible duplicate when it comes first in the file too,
    so importing the file again changes nothing (it was left untagged, then tagged by the re-import)."""
    with bridge.repository.unit_of_work() as uow:
        uow.create({**make_patient(1), "id": "rosa"})
    caller = operator_caller("X9V2K")
    days = ("2024-02-12T10:00:00+00:00", "2024-02-06T10:00:00+00:00", "2024-02-06T10:00:00+00:00")
    report = Ingest(bridge, "vcse", mapper, caller).run(records("rosa", make_response, *days))
    assert report.counts["created"] == 3 and report.balanced
    # the later one, and of two at one moment the one with the greater id
    assert [flagged(bridge.repository.read("QuestionnaireResponse", f"imported-{n}").resource) for n in (0, 1, 2)] == \
        [True, False, True]
    again = Ingest(bridge, "vcse", mapper, caller).run(records("rosa", make_response, *days))
    assert again.counts["unchanged"] == 3


def test_a_later_prom_stored_before_the_earlier_one_came_is_tagged_when_it_comes(bridge, make_patient, make_response):
    """In another batch (or import) than the earlier PROM, the later one was stored untagged: the
    batch that brings the earlier one tags it, so importing everything again changes nothing."""
    with bridge.repository.unit_of_work() as uow:
        uow.create({**make_patient(1), "id": "rosa"})
    caller = operator_caller("X9V2K")
    days = ("2024-02-12T10:00:00+00:00", "2024-02-06T10:00:00+00:00", "2024-04-01T10:00:00+00:00")
    report = Ingest(bridge, "vcse", mapper, caller, batch_size=1).run(records("rosa", make_response, *days))
    assert report.counts["created"] == 3 and report.balanced
    later = bridge.repository.read("QuestionnaireResponse", "imported-0")
    assert flagged(later.resource) and later.version_id == 2
    assert [flagged(bridge.repository.read("QuestionnaireResponse", f"imported-{n}").resource) for n in (1, 2)] == \
        [False, False]
    again = Ingest(bridge, "vcse", mapper, caller, batch_size=1).run(records("rosa", make_response, *days))
    assert again.counts["unchanged"] == 3


def test_prom_by_prom_imports_tag_the_later_one_too(bridge, make_patient, make_response):
    """A message at a time (the MLLP listener's Ingest.one), later PROM first."""
    with bridge.repository.unit_of_work() as uow:
        uow.create({**make_patient(1), "id": "rosa"})
    ingest = Ingest(bridge, "hl7", mapper, operator_caller("X9V2K"))
    for record in records("rosa", make_response, "2024-02-12T10:00:00+00:00", "2024-02-06T10:00:00+00:00"):
        assert ingest.one(record) == "created"
    assert [flagged(bridge.repository.read("QuestionnaireResponse", f"imported-{n}").resource) for n in (0, 1)] == \
        [True, False]
    for record in records("rosa", make_response, "2024-02-12T10:00:00+00:00", "2024-02-06T10:00:00+00:00"):
        assert ingest.one(record) == "unchanged"


@pytest.mark.parametrize("whole", [True, False])
def test_an_import_correcting_a_proms_date_judges_both_again_at_once(bridge, make_patient, make_response, whole):
    """The earlier PROM's date corrected in the source: the later one is no possible duplicate any
    more, at once (its old date must not count beside its new one), whether the corrected export
    holds both PROMs or the corrected one alone; importing again then changes nothing."""
    with bridge.repository.unit_of_work() as uow:
        uow.create({**make_patient(1), "id": "rosa"})
    caller = operator_caller("X9V2K")
    Ingest(bridge, "vcse", mapper, caller).run(records("rosa", make_response, "2024-02-01T10:00:00+00:00",
                                                       "2024-02-21T10:00:00+00:00"))
    assert flagged(bridge.repository.read("QuestionnaireResponse", "imported-1").resource)
    corrected = records("rosa", make_response, "2024-01-01T10:00:00+00:00", "2024-02-21T10:00:00+00:00")
    corrected = corrected if whole else corrected[:1]
    Ingest(bridge, "vcse", mapper, caller).run(corrected)
    assert not flagged(bridge.repository.read("QuestionnaireResponse", "imported-1").resource)
    assert Ingest(bridge, "vcse", mapper, caller).run(corrected).counts["unchanged"] == len(corrected)


def test_a_transaction_writing_an_earlier_prom_and_the_later_one_meets_no_version_it_never_saw(
        client, auth, rosa, make_response):
    later = expect(client.post("/fhir/QuestionnaireResponse", json=make_response(
        f"Patient/{rosa}", authored="2024-02-12T10:00:00+00:00"), headers=auth), 201)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": make_response(f"Patient/{rosa}"), "request": {"method": "POST", "url": "QuestionnaireResponse"}},
        {"resource": {**later, "status": "amended"},
         "request": {"method": "PUT", "url": f"QuestionnaireResponse/{later['id']}", "ifMatch": 'W/"1"'}}]}
    expect(client.post("/fhir", json=bundle, headers=auth), 200)
    assert flagged(expect(client.get(f"/fhir/QuestionnaireResponse/{later['id']}", headers=auth), 200))


def test_a_client_writing_an_earlier_prom_tags_the_later_one_stored(client, auth, rosa, make_response):
    later = expect(client.post("/fhir/QuestionnaireResponse", json=make_response(
        f"Patient/{rosa}", authored="2024-02-12T10:00:00+00:00"), headers=auth), 201)
    assert not flagged(later)
    earlier = expect(client.post("/fhir/QuestionnaireResponse", json=make_response(f"Patient/{rosa}"), headers=auth), 201)
    assert not flagged(earlier)
    now = expect(client.get(f"/fhir/QuestionnaireResponse/{later['id']}", headers=auth), 200)
    assert flagged(now) and now["meta"]["versionId"] == "2"
    provenance = expect(client.get("/fhir/Provenance", params={"target": f"QuestionnaireResponse/{later['id']}"},
                                   headers=auth), 200)
    assert provenance["total"] == 2  # its creation, and the write that tagged it


@pytest.mark.parametrize("undo", ["entered-in-error", "moved", "deleted"])
def test_the_earlier_prom_undone_untags_the_later_one(client, auth, rosa, make_response, undo):
    """Marked entered in error (recorded for the wrong person), moved to another date or deleted,
    the earlier PROM no longer makes the later one a possible duplicate: it counts in outcomes again."""
    earlier = expect(client.post("/fhir/QuestionnaireResponse", json=make_response(f"Patient/{rosa}"), headers=auth), 201)
    later = expect(client.post("/fhir/QuestionnaireResponse", json=make_response(
        f"Patient/{rosa}", authored="2024-02-12T10:00:00+00:00"), headers=auth), 201)
    assert flagged(later)
    url = f"/fhir/QuestionnaireResponse/{earlier['id']}"
    if undo == "deleted":
        expect(client.delete(url, headers=auth), 200)
    else:
        changed = {**earlier, "status": "entered-in-error"} if undo == "entered-in-error" else \
            {**earlier, "authored": "2023-06-01T10:00:00+00:00"}
        expect(client.put(url, json=changed, headers=auth), 200)
    now = expect(client.get(f"/fhir/QuestionnaireResponse/{later['id']}", headers=auth), 200)
    assert not flagged(now) and now["meta"]["versionId"] == "2"


def test_a_prom_moved_a_few_days_is_not_its_own_duplicate(client, auth, rosa, make_response):
    first = expect(client.post("/fhir/QuestionnaireResponse", json=make_response(f"Patient/{rosa}"), headers=auth), 201)
    moved = {**first, "authored": "2024-02-09T10:00:00+00:00"}  # its stored version is 3 days before
    assert not flagged(expect(client.put(f"/fhir/QuestionnaireResponse/{first['id']}", json=moved, headers=auth), 200))


def test_an_import_batch_compares_each_person_only_with_their_own_proms(bridge, make_patient, make_response):
    with bridge.repository.unit_of_work() as uow:
        uow.create({**make_patient(1), "id": "rosa"})
        uow.create({**make_patient(2), "id": "sam"})
    batch = [*records("rosa", make_response, "2024-02-06T10:00:00+00:00"),
             *records("sam", make_response, "2024-02-07T10:00:00+00:00", "2024-04-07T10:00:00+00:00"),
             *records("rosa", make_response, "2024-03-20T10:00:00+00:00", "2024-03-21T10:00:00+00:00")]
    batch = [SourceRecord(r.source, f"export.csv:{n + 2}", r.raw, {**r.data, "id": f"batch-{n}"})
             for n, r in enumerate(batch)]
    report = Ingest(bridge, "vcse", mapper, operator_caller("X9V2K")).run(batch)
    assert report.counts["created"] == 5 and report.balanced
    assert [flagged(bridge.repository.read("QuestionnaireResponse", f"batch-{n}").resource) for n in range(5)] == \
        [False, False, False, False, True]


def test_an_import_under_reject_quarantines_the_duplicate(rejecting, make_patient, make_response):
    with rejecting.repository.unit_of_work() as uow:
        uow.create({**make_patient(1), "id": "rosa"})
    report = Ingest(rejecting, "vcse", mapper, operator_caller("X9V2K")).run(
        records("rosa", make_response, "2024-02-06T10:00:00+00:00", "2024-02-12T10:00:00+00:00"))
    assert report.counts["created"] == 1 and sum(report.quarantined.values()) == 1 and report.balanced
    [entry] = rejecting.repository.quarantined()
    assert b"possible duplicate" in entry.outcome
