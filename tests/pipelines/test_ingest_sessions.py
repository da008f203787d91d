"""VCSE DIALOG+ sessions that agreed actions are imported through the same session code as
`$dialog-plus-session`: the actions land in the person's one plan, re-importing changes nothing, an
import never replaces the key worker a partner named, and a session the plan refuses is quarantined
with reason `session` and the refusal."""
from __future__ import annotations

import csv
import io

import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines.careplan_views import open_main_plans
from fhir_bridge.pipelines.ingest import Ingest
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.pipelines.source_vcse import VcseSource
from fhir_bridge.synth.vcse import CSV_COLUMNS
from fhir_bridge.terminology import Terminology
from fhir_bridge.pipelines.identity import NHS_SYSTEM
from tests.api.conftest import nhs_number
from tests.careplan.sessions import action, domain, key_worker, session
from tests.conftest import REPO

VCSE = Caller("8ZX01", "Example Community Wellbeing")


@pytest.fixture(scope="module")
def source() -> VcseSource:
    terminology = Terminology.load(REPO / "terminology")
    return VcseSource(MappingEngine(load_mappings(REPO / "mappings", terminology), terminology))


@pytest.fixture()
def bridge(tmp_path, validator):
    b = Bridge(Settings(data_dir=tmp_path), validator=validator)
    yield b
    b.close()


def export(tmp_path, *rows: dict) -> list:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS)
    writer.writeheader()
    for n, row in enumerate(rows):
        writer.writerow({column: "" for column in CSV_COLUMNS} | {
            "SessionID": f"S{n}", "ClientRef": "C1", "Surname": "Patel", "Forename": "Yusuf",
            "DateOfBirth": "1994-06-12", "Postcode": "E15 5UB", "WorkerName": "Farah Walsh",
            "OrganisationODS": "8ZX01", "SessionType": "DIALOG+", "Mental health rating": "4",
            "Accommodation rating": "2", "Accommodation help": "Yes"} | row)
    path = tmp_path / "sessions.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    return [path]


def run(bridge, source, paths):
    return Ingest(bridge, source.name, source.map, VCSE).run(source.records(paths))


def plan_of(bridge, patient_id: str) -> dict:
    [plan] = open_main_plans(bridge.repository, patient_id)
    return plan.resource


HOUSING = {"SessionDate": "2024-03-12", "ChosenDomains": "Accommodation;Personal safety",
           "AgreedActions": "Accommodation: Call the housing officer about repairs (client and worker, 2024-04-12); "
                            "Personal safety: Agree a safety plan (worker, 12/04/2024)"}


def test_a_session_with_actions_lands_in_the_persons_one_plan(bridge, source, tmp_path):
    report = run(bridge, source, export(tmp_path, HOUSING))
    assert report.counts["created"] == 1 and report.balanced and not report.quarantined
    [patient] = bridge.find("Patient", [])
    plan = plan_of(bridge, patient.resource_id)
    actions = [(a["detail"]["description"], a["detail"].get("scheduledPeriod", {}).get("end")) for a in plan["activity"]]
    assert actions == [("Call the housing officer about repairs (client and worker)", "2024-04-12"),
                       ("Agree a safety plan (worker)", "2024-04-12")]
    owners = [[o.get("reference") or o["identifier"]["value"] for o in a["detail"]["performer"]] for a in plan["activity"]]
    assert owners == [[f"Patient/{patient.resource_id}", "8ZX01"], ["8ZX01"]]
    assert plan["author"]["display"] == "Farah Walsh"  # the person had no plan: the VCSE worker holds it
    [response_ref] = plan["supportingInfo"]
    response = bridge.repository.read(*response_ref["reference"].split("/")).resource
    assert response["id"] == next(r.resource_id for r in bridge.find("QuestionnaireResponse", []))
    purpose = next(e for e in response["extension"] if e["url"].endswith("dialog-collection-purpose"))
    assert purpose["valueCoding"]["code"] == "care-planning"

    versions = bridge.repository.history()[0]
    again = run(bridge, source, export(tmp_path, HOUSING))
    assert again.counts["unchanged"] == 1 and bridge.repository.history()[0] == versions


def test_an_import_adds_to_the_plan_a_partner_made_and_keeps_its_key_worker(bridge, source, tmp_path):
    run(bridge, source, export(tmp_path, {**HOUSING, "AgreedActions": "", "SessionType": "DIALOG"}))
    [patient] = bridge.find("Patient", [])
    with bridge.repository.unit_of_work() as uow:
        uow.create({"resourceType": "Practitioner", "id": "sam", "name": [{"given": ["Sam"], "family": "Adeyemi"}]})
    me = {"reference": f"Patient/{patient.resource_id}"}
    bridge.careplans.record(patient.resource_id, session(domain("mental-health", action("Keep a mood diary", me)),
                                                         key_worker({"reference": "Practitioner/sam"}),
                                                         date="2024-03-01T10:00:00Z"), VCSE)
    report = run(bridge, source, export(tmp_path, HOUSING))
    assert report.counts["created"] == 1 and report.balanced  # its ratings are a new response
    plan = plan_of(bridge, patient.resource_id)
    assert len(plan["activity"]) == 3 and plan["author"]["display"] == "Sam Adeyemi"


@pytest.mark.parametrize("row, reason", [
    ({"ChosenDomains": "Housing", "AgreedActions": "Housing: Find a flat (worker, 2024-04-01)"}, "Unknown DIALOG domain"),
    ({"WorkerName": ""}, "key worker"),
    ({"AgreedActions": "Accommodation: Call the landlord (client, 2024-01-01)"}, "before the session"),
])
def test_a_session_the_plan_refuses_is_quarantined_with_the_reason(bridge, source, tmp_path, row, reason):
    report = run(bridge, source, export(tmp_path, {**HOUSING, **row}))
    assert report.quarantined == {"session": 1} and report.balanced
    [entry] = bridge.repository.quarantined()
    assert entry.reason == "session" and reason.encode() in entry.outcome
    assert bridge.find("CarePlan", []) == [] and bridge.find("QuestionnaireResponse", []) == []


def test_a_partner_with_no_relationship_with_the_person_is_refused(bridge, source, tmp_path):
    # The trust holds Yusuf's record; a VCSE export naming him cannot put actions into his plan.
    nhs = nhs_number(1)
    with bridge.repository.unit_of_work() as uow:
        uow.create({"resourceType": "Patient", "id": "yusuf", "identifier": [{"system": NHS_SYSTEM, "value": nhs}],
                    "name": [{"family": "Patel", "given": ["Yusuf"]}], "birthDate": "1994-06-12",
                    "managingOrganization": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                                            "value": "RV3"}}})
    report = run(bridge, source, export(tmp_path, {**HOUSING, "NHSNumber": nhs}))
    assert report.quarantined == {"access": 1}
    assert b"no care relationship" in bridge.repository.quarantined()[0].outcome
    assert bridge.repository.read("Patient", "yusuf").version_id == 1  # his record unchanged too


def test_a_session_waiting_for_identity_review_is_recorded_once_the_person_is_decided(bridge, source, tmp_path):
    """Before, a session whose person went to review lost its actions: the review held only the resources."""
    from fhir_bridge.pipelines.ingest import resolve_review
    from fhir_bridge.pipelines.resources import SYSTEM_CALLER

    nhs = nhs_number(2)
    run(bridge, source, export(tmp_path, {**HOUSING, "NHSNumber": nhs}))
    [patient] = bridge.find("Patient", [])
    # The next session spells his name another way and gives no NHS number: a person must say who it is
    later = {"SessionID": "S9", "ClientRef": "C2", "SessionDate": "2024-04-09", "Forename": "Yousef",
             "ChosenDomains": "Friendships", "AgreedActions": "Friendships: Go to the Thursday art group (client, )"}
    report = run(bridge, source, export(tmp_path, later))
    assert report.quarantined == {"identity-review": 1}
    [review] = bridge.repository.reviews()
    assert review.candidates == (patient.resource_id,)
    assert resolve_review(Ingest(bridge, "vcse", None, SYSTEM_CALLER), review.review_id, patient.resource_id) == "created"
    plan = plan_of(bridge, patient.resource_id)
    assert [a["detail"]["description"] for a in plan["activity"]][-1] == "Go to the Thursday art group (client)"
    assert len(plan["supportingInfo"]) == 2 and plan["author"]["display"] == "Farah Walsh"
    assert run(bridge, source, export(tmp_path, later)).counts == {"unchanged": 1}
