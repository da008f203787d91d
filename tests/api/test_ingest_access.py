"""A partner's `$ingest` upload meets the care-access rule of every other write (pipelines/care_access.py):
it registers new people, but a record about a person it has no care relationship with is quarantined
(reason `access`) and changes nothing - not their demographics, not their responses, not their plan, and
a referral naming the uploader cannot be how it gives itself access. The report stays balanced."""
from __future__ import annotations

import base64
import csv
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from fhir_bridge.careplan.codes import ROLE_SYSTEM
from fhir_bridge.pipelines.care_access import operator_caller
from fhir_bridge.pipelines.careplan_views import open_main_plans
from fhir_bridge.pipelines.ingest import Ingest, resolve_review
from fhir_bridge.pipelines.quarantine_retry import RESOLVED, STILL, retry_entries
from fhir_bridge.pipelines.resources import SYSTEM_CALLER
from fhir_bridge.pipelines.sources import run_import
from fhir_bridge.synth.vcse import CSV_COLUMNS
from tests.api.conftest import nhs_number
from tests.api.helpers import expect
from tests.api.test_care_access import VCSE, partners, rosa  # noqa: F401 - the partners and Rosa, shared

GOLDEN_RIO = Path(__file__).parents[1] / "golden/rio-dialog-assessment/items-6-7-blank-and-8/input.csv"
ROSA_NHS = nhs_number(1)  # the `rosa` fixture's: the trust holds her record and her plan


def vcse_csv(**row) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS)
    writer.writeheader()
    writer.writerow({c: "" for c in CSV_COLUMNS} | {
        "SessionID": "S1", "ClientRef": "C1", "Surname": "Impostor", "Forename": "Mallory",
        "DateOfBirth": "1990-01-01", "Postcode": "N1 9GU", "SessionDate": "2024-03-12", "WorkerName": "Farah Walsh",
        "OrganisationODS": VCSE[0], "SessionType": "DIALOG", "Mental health rating": "4",
        "Accommodation rating": "2", "Accommodation help": "Yes"} | row)
    return out.getvalue().encode()


def ingest(client, headers, source: str, data: bytes, title: str) -> dict:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "source", "valueCode": source},
        {"name": "file", "valueAttachment": {"title": title, "data": base64.b64encode(data).decode()}}]}
    result = expect(client.post("/fhir/$ingest", json=body, headers=headers), 200)
    counts = {p["name"]: p["valueInteger"] for p in result["parameter"] if "valueInteger" in p}
    assert counts["in"] == counts["created"] + counts["updated"] + counts["unchanged"] + counts["quarantined"]
    return counts


def snapshot(bridge, person: str) -> tuple:
    """What the store says of a person: their Patient's version, their responses, their plan's version."""
    responses = sorted(s.resource_id for s in bridge.find("QuestionnaireResponse", [("subject", f"Patient/{person}")]))
    plans = [(p.resource_id, p.version_id) for p in open_main_plans(bridge.repository, person)]
    return bridge.repository.read("Patient", person).version_id, responses, plans


def quarantine_reasons(bridge) -> list[str]:
    return [entry.reason for entry in bridge.repository.quarantined()]


@pytest.mark.parametrize("row", [
    {},  # a DIALOG: the response and new demographics
    {"SessionType": "DIALOG+", "ChosenDomains": "Accommodation",  # a session with an action for the plan
     "AgreedActions": "Accommodation: Call the housing officer (client and worker, 2024-04-12)"},
], ids=["dialog", "dialog-plus-session"])
def test_an_upload_about_someone_the_partner_does_not_care_for_is_quarantined(client, bridge, partners, rosa, row):
    before = snapshot(bridge, rosa.id)
    counts = ingest(client, partners.vcse, "vcse", vcse_csv(NHSNumber=ROSA_NHS, **row), "sessions.csv")
    assert counts["quarantined"] == 1 and quarantine_reasons(bridge) == ["access"]
    assert snapshot(bridge, rosa.id) == before  # not her name, not a response, not her plan
    assert bridge.repository.read("Patient", rosa.id).resource["name"][0]["family"] == "Pemberton"


def vcse_joins_the_care_team(client, partners, rosa) -> None:
    """The trust, which holds Rosa's record, adds the VCSE organisation to her care team."""
    team = expect(client.get(f"/fhir/{rosa.plan['careTeam'][0]['reference']}", headers=partners.trust), 200)
    team["participant"].append({"role": [{"coding": [{"system": ROLE_SYSTEM, "code": "vcse-worker"}]}],
                                "member": {"type": "Organization", "display": VCSE[1],
                                           "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                                          "value": VCSE[0]}}})
    expect(client.put(f"/fhir/CareTeam/{team['id']}", json=team, headers=partners.trust), 200)


def test_the_same_upload_from_a_partner_on_the_care_team_is_stored(client, bridge, partners, rosa):
    vcse_joins_the_care_team(client, partners, rosa)
    counts = ingest(client, partners.vcse, "vcse", vcse_csv(NHSNumber=ROSA_NHS), "sessions.csv")
    assert counts["quarantined"] == 0 and len(snapshot(bridge, rosa.id)[1]) == 2


@pytest.mark.parametrize("flagged", [True, False], ids=["entry-says-limited", "older-access-entry"])
def test_an_operators_retry_stores_a_partners_upload_only_once_the_partner_may(client, bridge, partners, rosa,
                                                                                flagged):
    """`quarantine retry` is an operator's command, but what it retries of a partner's upload is
    written as that partner: a routine retry must not store what the partner could not."""
    ingest(client, partners.vcse, "vcse", vcse_csv(NHSNumber=ROSA_NHS), "sessions.csv")
    [entry] = bridge.repository.quarantined()
    assert json.loads(entry.context)["limited"] is True
    if not flagged:  # quarantined before entries said whose limits apply: `access` alone says it
        context = {k: v for k, v in json.loads(entry.context).items() if k != "limited"}
        bridge.repository.quarantine_record(replace(entry, context=json.dumps(context)))
    before = snapshot(bridge, rosa.id)

    [result], _ = retry_entries(bridge, bridge.repository.quarantined())
    assert (result.outcome, result.detail.split(":")[0]) == (STILL, "access")
    assert snapshot(bridge, rosa.id) == before

    vcse_joins_the_care_team(client, partners, rosa)
    [result], _ = retry_entries(bridge, bridge.repository.quarantined())
    assert result.outcome == RESOLVED and len(snapshot(bridge, rosa.id)[1]) == 2


def operator_resolves(bridge, review_id: str, patient_id: str) -> str:
    """`fhir-bridge identity link REVIEW PATIENT`: run by an operator, as the system."""
    def no_mapping(_record):
        raise AssertionError("a review's records are mapped already")

    return resolve_review(Ingest(bridge, "vcse", no_mapping, SYSTEM_CALLER), review_id, patient_id)


def test_resolving_a_review_of_a_partners_upload_stores_it_with_the_partners_limits(client, bridge, partners, rosa):
    """An identity review decides whose records they are, not who may write them: a partner's upload
    about someone it has no relationship with is refused when the operator links it to them, as it
    would have been had it named her NHS number, and stored once the partner is on her care team."""
    row = {"Surname": "Pemberton", "Forename": "Rosa", "DateOfBirth": "1986-09-23"}  # her name, not her NHS number
    counts = ingest(client, partners.vcse, "vcse", vcse_csv(**row), "sessions.csv")
    [review] = bridge.repository.reviews()
    assert counts["quarantined"] == 1 and rosa.id in review.candidates
    before = snapshot(bridge, rosa.id)

    assert operator_resolves(bridge, review.review_id, rosa.id) == "quarantined:access"
    assert snapshot(bridge, rosa.id) == before and [r.state for r in bridge.repository.reviews()] == ["open"]

    vcse_joins_the_care_team(client, partners, rosa)
    assert operator_resolves(bridge, review.review_id, rosa.id) == "created"
    assert len(snapshot(bridge, rosa.id)[1]) == 2

def test_a_retry_of_an_operators_import_is_not_limited(bridge, rosa, tmp_path):
    """The trust's own import, quarantined for its data, is retried as the operator ran it."""
    data = vcse_csv(NHSNumber=ROSA_NHS, **{"Mental health rating": "9"})  # not a rating: quarantined
    (tmp_path / "sessions.csv").write_bytes(data)
    report = run_import(bridge, "vcse", [tmp_path / "sessions.csv"], organization=VCSE[0],
                        caller=operator_caller(VCSE[0]), quarantine_dir=None)
    [entry] = bridge.repository.quarantined()
    assert report.quarantined == {"mapping": 1} and "limited" not in json.loads(entry.context)
    assert entry.raw.count(b",9,") == 1
    bridge.repository.quarantine_record(replace(entry, raw=entry.raw.replace(b",9,", b",4,")))  # the row fixed
    [result], _ = retry_entries(bridge, bridge.repository.quarantined())
    assert result.outcome == RESOLVED, result.detail  # VCSE has no relationship with Rosa: not limited


def test_a_partner_registers_a_new_person_by_upload_and_holds_their_record(client, bridge, partners, rosa):
    counts = ingest(client, partners.vcse, "vcse", vcse_csv(NHSNumber=nhs_number(50), ClientRef="C9"), "sessions.csv")
    assert counts["created"] == 1 and counts["quarantined"] == 0
    [theo] = [p for p in bridge.find("Patient", [("_count", "10")]) if p.resource_id != rosa.id]
    assert theo.resource["managingOrganization"]["identifier"]["value"] == VCSE[0]
    expect(client.get(f"/fhir/Patient/{theo.resource_id}", headers=partners.vcse), 200)


def test_a_referral_in_an_upload_is_not_a_way_in(client, bridge, partners, rosa):
    """A RiO-style export whose client carries Rosa's NHS number and whose referral names the uploader."""
    files = {
        "clients.csv": "ClientID,NHSNumber,NHSNumberStatus,Surname,Forename,DateOfBirth,Gender,EthnicCategory,Postcode,"
                       f"GPPracticeCode\n7000001,{ROSA_NHS},01,Pemberton,Rosa,1986-09-23,2,A,E1 4NS,\n",
        "referrals.csv": "ReferralID,ClientID,ReferralReceivedDate,DischargeDate,TeamCode,TeamTypeCode\n"
                         "9000001,7000001,2024-01-15,,ANY,A06\n",
        "dialog_assessments.csv": GOLDEN_RIO.read_text().splitlines()[0] + "\n",  # the header, no rows
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as export:
        for name, text in files.items():
            export.writestr(name, text)
    before = snapshot(bridge, rosa.id)
    counts = ingest(client, partners.vcse, "rio", buffer.getvalue(), "export.zip")
    assert counts["quarantined"] == 2 and set(quarantine_reasons(bridge)) == {"access"}
    assert snapshot(bridge, rosa.id) == before
    expect(client.get(f"/fhir/Patient/{rosa.id}", headers=partners.vcse), 403)
    expect(client.get(f"/fhir/CarePlan/{rosa.plan['id']}", headers=partners.vcse), 403)


def test_a_merge_of_two_people_the_partner_does_not_care_for_is_quarantined(client, bridge, partners, rosa,
                                                                            make_patient):
    other = expect(client.post("/fhir/Patient", json=make_patient(7, family="Okafor", given="Ada"),
                               headers=partners.trust), 201)
    merge = "\r".join([
        "MSH|^~\\&|CMS|X9V2K|FHIR-BRIDGE|X9V2K|20240305150000||ADT^A40^ADT_A39|MSG1|P|2.4|||AL|NE",
        "EVN|A40|20240305145959",
        f"PID|1||{ROSA_NHS}^^^NHS^NH||Pemberton^Rosa||19860923|F",
        f"MRG|{nhs_number(7)}^^^NHS^NH"]) + "\r"
    before = snapshot(bridge, rosa.id), snapshot(bridge, other["id"])
    counts = ingest(client, partners.vcse, "hl7", merge.encode(), "merge.hl7")
    assert counts["quarantined"] == 1 and quarantine_reasons(bridge) == ["access"]
    assert (snapshot(bridge, rosa.id), snapshot(bridge, other["id"])) == before
    assert bridge.repository.read("Patient", other["id"]).resource.get("link") is None
