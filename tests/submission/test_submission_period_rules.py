"""Period rules: only what belongs to the month goes, in UK local time. People with a referral open
in it; referrals open in it; contacts and DIALOGs in it; key workers assigned during it; care plans
created or updated in it, read as they were at its end."""
from __future__ import annotations

from tests.submission.builders import (DOMAINS, care_plan, care_team, contact, dialog, key_worker, patient, referral,
                                       staff)
from tests.submission.conftest import reasons, submit, tables

P = "p1"


def person(**kw):
    return patient(P, client="1001", **kw)


def ids(result, table: str, field: str) -> list[str]:
    return [row[field] for row in tables(result)[table]]


def test_referrals_open_in_the_month_and_only_they(store_of, out):
    bridge = store_of([
        person(),
        referral("open", P, received="2026-01-01", local="1"),
        referral("ended-before", P, received="2026-01-01", discharged="2026-09-30", local="2"),
        referral("received-after", P, received="2026-11-01", local="3"),
        referral("ended-in", P, received="2026-01-01", discharged="2026-10-31", local="4"),
        referral("ended-after", P, received="2026-10-31", discharged="2026-11-02", local="5"),
    ])
    result = submit(bridge, out)
    rows = {r["ServiceRequestId"]: r for r in tables(result)["MHS101Referral"]}
    assert sorted(rows) == ["1", "4", "5"]
    assert rows["4"]["ServDischDate"] == "2026-10-31"
    assert rows["5"]["ServDischDate"] == ""   # discharged after the month: open as at its end
    assert not reasons(result)                  # not this month's is not "left out"


def test_a_person_is_submitted_only_with_a_referral_open_in_the_month(store_of, out):
    bridge = store_of([
        person(), referral("r", P, received="2026-01-01", discharged="2026-09-01"),
        dialog("d", P, authored="2026-10-03T10:00:00+01:00", referral_id="r"),
        patient("p2", nhs="9990000026"), dialog("d2", "p2", authored="2026-10-04T10:00:00+01:00"),
    ])
    result = submit(bridge, out)
    assert result.rows["MHS001MPI"] == 0 and result.measures["people"] == 0
    assert reasons(result) == {("QuestionnaireResponse/d", "no referral to RXX open in 2026-10"),
                               ("QuestionnaireResponse/d2", "no referral to RXX open in 2026-10")}


def test_contacts_in_the_month_by_uk_local_time(store_of, out):
    bridge = store_of([
        person(), referral("r", P, received="2026-01-01"),
        contact("bst-start", P, "r", start="2026-09-30T23:30:00+00:00", local="1"),   # 00:30 on 1 October, BST
        contact("gmt-end", P, "r", start="2026-10-31T23:30:00+00:00", local="2"),     # GMT from 25 October
        contact("after", P, "r", start="2026-10-31T23:30:00-01:00", local="3"),       # 00:30 on 1 November
        contact("before", P, "r", start="2026-09-30T22:30:00+00:00", local="4"),      # 23:30 on 30 September
        contact("day-only", P, "r", start="2026-10-15", local="5"),
    ])
    result = submit(bridge, out)
    rows = {r["CareContactId"]: r for r in tables(result)["MHS201CareContact"]}
    assert sorted(rows) == ["1", "2", "5"]
    assert (rows["1"]["CareContDate"], rows["1"]["CareContTime"]) == ("2026-10-01", "00:30:00")
    assert (rows["2"]["CareContDate"], rows["2"]["CareContTime"]) == ("2026-10-31", "23:30:00")
    assert rows["5"]["CareContTime"] == ""   # a day alone: no time is sent, none is made up


def test_a_contact_goes_under_the_referral_it_names_else_the_one_open_on_its_day(store_of, out):
    bridge = store_of([
        person(), referral("old", P, received="2025-01-01", discharged="2026-10-09", local="1"),
        referral("new", P, received="2026-10-10", local="2"),
        contact("names-old", P, "old", start="2026-10-20", local="10"),
        contact("unnamed-early", P, None, start="2026-10-05", local="11"),
        contact("unnamed-late", P, None, start="2026-10-20", local="12"),
        contact("names-unknown", P, "not-stored", start="2026-10-12", local="13"),
    ])
    rows = {r["CareContactId"]: r["ServiceRequestId"] for r in tables(submit(bridge, out))["MHS201CareContact"]}
    assert rows == {"10": "1", "11": "1", "12": "2", "13": "2"}


def test_a_contact_with_no_referral_to_go_under_is_left_out(store_of, out):
    bridge = store_of([person(), referral("r", P, received="2026-10-15"),
                       contact("c", P, None, start="2026-10-03", local="1")])
    result = submit(bridge, out)
    assert result.rows["MHS201CareContact"] == 0
    assert ("Encounter/c", "no referral of this submission that it names or that is open on its day") in reasons(result)


def test_dialogs_in_the_month_by_uk_local_time(store_of, out):
    bridge = store_of([
        person(), referral("r", P, received="2026-01-01"),
        dialog("first-minute", P, authored="2026-09-30T23:00:00Z", timepoint="assessment"),
        dialog("last-minute", P, authored="2026-10-31T23:59:00Z", timepoint="review"),
        dialog("next-month", P, authored="2026-11-01T00:00:00Z", timepoint="discharge"),
        dialog("last-month", P, authored="2026-09-30T22:59:00Z", timepoint="other"),
    ])
    result = submit(bridge, out)
    stamps = sorted({r["AssToolCompTimestamp"] for r in tables(result)["MHS606CodedScoreAssessmentRefer"]})
    assert stamps == ["2026-10-01T00:00:00", "2026-10-31T23:59:00"]
    assert result.measures["dialogsSubmitted"] == 2


def test_care_plans_created_or_updated_in_the_month_as_they_were_at_its_end(store_of, out):
    bridge = store_of([
        person(), referral("r", P, received="2026-01-01"),
        care_plan("made-in-sept", P, created="2026-09-02T10:00:00+01:00", start="2026-09-02", written="2026-09-02T09:00:00Z"),
        care_plan("made-sept-updated-oct", P, created="2026-09-03T10:00:00+01:00", start="2026-09-03",
                  written="2026-09-03T09:00:00Z"),
        care_plan("made-sept-updated-oct", P, created="2026-09-03T10:00:00+01:00", start="2026-09-03",
                  agreed="2026-10-07T15:00:00+01:00", written="2026-10-07T14:00:00Z"),
        care_plan("made-oct-updated-nov", P, plan_type="12", created="2026-10-20T10:00:00+01:00",
                  written="2026-10-20T09:00:00Z"),
        care_plan("made-oct-updated-nov", P, plan_type="12", created="2026-10-20T10:00:00+01:00", title="changed",
                  written="2026-11-02T09:00:00Z"),
    ])
    result = submit(bridge, out)
    plans = {r["CarePlanID"]: r for r in tables(result)["MHS008CarePlanType"]}
    assert sorted(plans) == ["made-oct-updated-nov", "made-sept-updated-oct"]
    assert plans["made-sept-updated-oct"]["CarePlanLastUpdateDate"] == "2026-10-07"
    assert plans["made-oct-updated-nov"]["CarePlanLastUpdateDate"] == "2026-10-20"   # not November's change
    assert ids(result, "MHS009CarePlanAgreement", "CarePlanID") == ["made-sept-updated-oct"] * 2
    assert result.measures["peopleWithAgreedCarePlan"] == 1


def test_key_workers_assigned_during_the_month(store_of, out):
    bridge = store_of([
        person(), referral("r", P, received="2026-01-01"),
        care_team("t", P, [key_worker(staff("ended-before"), "2026-01-01", "2026-09-30"),
                           key_worker(staff("starts-after"), "2026-11-01"),
                           key_worker(staff("ends-in"), "2026-02-01", "2026-10-12"),
                           key_worker(staff("ends-after"), "2026-10-12", "2026-12-01"),
                           {**key_worker(staff("not-a-key-worker"), "2026-01-01"),
                            "role": [{"coding": [{"code": "vcse-worker"}]}]}]),
        care_team("t2", P, [key_worker(staff("ends-after"), "2026-10-12", "2026-12-01")]),   # the same, twice
    ])
    result = submit(bridge, out)
    rows = {(r["CareProfLocalId"], r["EndDateAssCareCoord"]) for r in tables(result)["MHS006MHCareCoord"]}
    assert rows == {("ends-in", "2026-10-12"), ("ends-after", "")}
    assert result.rows["MHS006MHCareCoord"] == 2
    assert result.measures["peopleWithNamedKeyWorker"] == 1


def test_a_duplicate_of_a_dialog_kept_last_month_is_left_out(store_of, out):
    bridge = store_of([
        person(), referral("r", P, received="2026-01-01"),
        dialog("sept", P, authored="2026-09-25T10:00:00+01:00", timepoint="review"),
        dialog("oct", P, authored="2026-10-10T10:00:00+01:00", timepoint="review"),
        dialog("oct-discharge", P, authored="2026-10-12T10:00:00+01:00", timepoint="discharge"),
    ])
    result = submit(bridge, out)
    assert result.measures["dialogsSubmitted"] == 1
    [entry] = [e for e in reasons(result)]
    assert entry[0] == "QuestionnaireResponse/oct" and entry[1].startswith("possible duplicate")


def test_items_go_by_domain(store_of, out):
    ratings = {d: 1 + n % 7 for n, d in enumerate(DOMAINS)}
    bridge = store_of([person(), referral("r", P, received="2026-01-01"),
                       dialog("d", P, authored="2026-10-03T10:00:00+01:00", ratings=dict(reversed(ratings.items())))])
    scores = {r["CodedAssToolType"]: r["PersScore"] for r in tables(submit(bridge, out))["MHS606CodedScoreAssessmentRefer"]}
    assert scores["1037701000000108"] == str(ratings["friendships"])      # MHSDS item 6
    assert scores["1037711000000105"] == str(ratings["partner-family"])   # MHSDS item 7
    assert len(scores) == 11


def test_a_record_about_another_servers_patient_hides_no_one(store_of, out):
    """A referral whose subject is another server's Patient (no local id) names no one here: the
    month's other referrals are submitted all the same (its row sorted first on SQLite, once
    read as a person of None, ended the stream)."""
    remote = referral("remote", "x", received="2026-01-01", local="9")
    remote["subject"] = {"reference": "https://other.example.org/fhir/Patient/zzz"}
    bridge = store_of([person(), referral("open", P, received="2026-01-01", local="1"), remote])
    assert ids(submit(bridge, out), "MHS101Referral", "ServiceRequestId") == ["1"]
    with bridge.repository.period_reader() as reader:  # `patient` reads subject's rows to a Patient
        assert [(p, r) for p, r, _ in reader.about_people("ServiceRequest", "patient")] == [(P, "open")]
        assert [(p, r) for p, r, _ in reader.about_people("ServiceRequest", "subject")] == [(P, "open")]
