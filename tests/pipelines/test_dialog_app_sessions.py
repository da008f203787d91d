"""DIALOG+ app sessions (`<Domain> Discussed`, `<Domain> Action Items`) go into the person's one plan
through the same session code as `$dialog-plus-session`. The app's rows never name a person safely,
so they wait in identity review with their session; resolving the review records it in the plan of
the person decided, re-importing changes nothing, and a session the plan refuses is quarantined
with reason `session` and the refusal, never lost."""
from __future__ import annotations

import csv
import io
from dataclasses import replace

import orjson
import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.fhir.codec import dumps_json
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines.careplan_views import open_main_plans
from fhir_bridge.pipelines.ingest import Ingest, SessionRecord, SourceRecord, resolve_review
from fhir_bridge.pipelines.ingest_sessions import held_session
from fhir_bridge.pipelines.quarantine_retry import RESOLVED, retry_entries
from fhir_bridge.pipelines.resources import SYSTEM_CALLER, Caller
from fhir_bridge.pipelines.source_dialog_app import DialogAppSource
from fhir_bridge.store.search import parse_search
from fhir_bridge.synth.dialog_app import HEADERS
from fhir_bridge.terminology import Terminology
from tests.careplan.sessions import action, domain, key_worker, organisation, session
from tests.conftest import REPO

TRUST = Caller("RV3", "East London NHS FT")
PROMISE = "Call crisis line if needed"


@pytest.fixture(scope="module")
def engine() -> MappingEngine:
    terminology = Terminology.load(REPO / "terminology")
    return MappingEngine(load_mappings(REPO / "mappings", terminology), terminology)


@pytest.fixture()
def source(engine) -> DialogAppSource:
    return DialogAppSource(engine, TRUST.partner)


@pytest.fixture()
def bridge(tmp_path, validator):
    b = Bridge(Settings(data_dir=tmp_path), validator=validator)
    yield b
    b.close()


def app_row(**changes: str) -> dict[str, str]:
    """Rosa's session: every domain rated, nothing discussed; `changes` by column name."""
    row = {h: "" for h in HEADERS} | {"Client Name": "Pemberton, Rosa", "Date Start": "06/02/2024",
                                     "Date End": "06/02/2024"}
    for header in HEADERS:
        if header.endswith(" Rank"):
            row[header] = "4"
        elif header.endswith(" Additional Help"):
            row[header] = "1"
        elif header.endswith(" Discussed"):
            row[header] = "0"
    return row | changes


def export(tmp_path, *rows: dict[str, str], headers: list[str] = HEADERS) -> list:
    out = io.StringIO()
    writer = csv.DictWriter(out, headers + [c for c in rows[0] if c not in headers], lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "dialog-plus-export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    return [path]


def run(bridge, source, paths):
    return Ingest(bridge, source.name, source.map, TRUST).run(source.records(paths))


def resolve(bridge, review_id: str, patient_id: str | None) -> str:
    """As `fhir-bridge identity link` does it: as the system, mapping nothing again."""
    return resolve_review(Ingest(bridge, "dialog-app", None, SYSTEM_CALLER), review_id, patient_id)


def mapped_session(source, row: dict[str, str]):
    return source.map(SourceRecord("dialog-app", "export.csv:2", b"", row, row.get("Client Name")))


def chosen(parameters: dict) -> dict[str, list[str]]:
    """domain code -> its actions' descriptions, in the Parameters' order."""
    return {p["part"][0]["valueCode"]: [a["part"][0]["valueString"] for a in p["part"][1:]]
            for p in parameters["parameter"] if p["name"] == "domain"}


def search(bridge, resource_type: str, params: list[tuple[str, str]]) -> list[dict]:
    request = parse_search(resource_type, [*params, ("_count", "100")], bridge.registry, strict=True, base_url="")
    return [s.resource for s in bridge.repository.search(request).matches]


def plan_of(bridge, patient_id: str) -> dict:
    [plan] = open_main_plans(bridge.repository, patient_id)
    return plan.resource


def rosa_with_a_plan(bridge) -> str:
    """Rosa, registered by the trust, whose key worker Sam made her plan with her."""
    with bridge.repository.unit_of_work() as uow:
        uow.create({"resourceType": "Practitioner", "id": "sam", "name": [{"given": ["Sam"], "family": "Adeyemi"}]})
        uow.create({"resourceType": "Patient", "id": "rosa", "name": [{"family": "Pemberton", "given": ["Rosa"]}],
                    "birthDate": "1988-09-30", "managingOrganization": organisation("RV3", "East London NHS FT")})
    me = {"reference": "Patient/rosa"}
    bridge.careplans.record("rosa", session(domain("physical-health", action("Book a GP appointment", me)),
                                            key_worker({"reference": "Practitioner/sam"}),
                                            date="2024-01-10T10:00:00Z"), TRUST)
    return "rosa"


HOUSING_AND_WORK = {"Mental Health Discussed": "1", "Mental Health Action Items": f"{PROMISE}; Keep mood diary",
                    "Job Situation Discussed": "1", "Job Situation Action Items": "Meet employment adviser"}


# -- the row -> the session's Parameters ----------------------------------------------------------------
def test_discussed_domains_and_their_action_items_become_the_session(source):
    result = mapped_session(source, app_row(**HOUSING_AND_WORK, **{"Leisure Activitie Discussed": "1"}))
    assert not result.problems
    patient = next(r for r in result.resources if r["resourceType"] == "Patient")
    assert chosen(result.session) == {"mental-health": [PROMISE, "Keep mood diary"],
                                      "job-situation": ["Meet employment adviser"], "leisure-activities": []}
    actions = [a for p in result.session["parameter"] for a in p["part"] if a["name"] == "action"]
    # The person owns what they agreed; the export gives no owner and no due date
    assert all([part["name"] for part in a["part"]] == ["description", "owner"] for a in actions)
    assert {orjson.dumps(a["part"][1]["valueReference"]) for a in actions} == {
        orjson.dumps({"reference": f"Patient/{patient['id']}"})}
    # No worker named: no key worker offered; the ratings are the mapped response, not a parameter
    assert {p["name"] for p in result.session["parameter"]} == {"domain"}


@pytest.mark.parametrize("header", ["Leisure Activitie Discussed", "Leisure Activities Discussed"])
def test_leisure_discussed_reads_under_either_spelling(source, header):
    # The native export's header, or a fixed one: the row has only the one spelling
    row = {h: v for h, v in app_row().items() if h != "Leisure Activitie Discussed"} | {header: "1"}
    result = mapped_session(source, row)
    assert not result.problems and chosen(result.session) == {"leisure-activities": []}


def test_action_items_are_kept_by_domain_never_by_position(source):
    # The app lists Partner / Family (its item 6) before Friendships (7); the Questionnaire the other way round.
    result = mapped_session(source, app_row(**{"Partner / Family Discussed": "1",
                                               "Partner / Family Action Items": "Ring my sister on Sundays",
                                               "Friendships Discussed": "1",
                                               "Friendships Action Items": "Go to the Thursday art group"}))
    assert chosen(result.session) == {"friendships": ["Go to the Thursday art group"],
                                      "partner-family": ["Ring my sister on Sundays"]}


def test_action_items_without_discussed_still_choose_their_domain(source):
    result = mapped_session(source, app_row(**{"Accommodation Discussed": "",
                                               "Accommodation Action Items": "Call the housing officer;\n  ;"
                                                                             "Apply for a hardship\ngrant; "
                                                                             "call the HOUSING officer"}))
    # Blank items dropped, an item broken over lines joined, a repeated item given once
    assert chosen(result.session) == {"accommodation": ["Call the housing officer", "Apply for a hardship grant"]}


def test_nothing_discussed_and_no_actions_is_no_session(source):
    for row in (app_row(), {h: v for h, v in app_row().items() if not h.endswith((" Discussed", " Action Items"))}):
        result = mapped_session(source, row)
        assert not result.problems and result.session is None and len(result.resources) == 2


@pytest.mark.parametrize("changes, message", [
    ({"Mental Health Discussed": "yes"}, "column 'Mental Health Discussed' is 'yes', expected 1"),
    ({"Leisure Activitie Discussed": "1", "Leisure Activities Discussed": "0"}, "disagree"),
    ({"Housing Action Items": "Find a flat"}, "column 'Housing Action Items' is not a DIALOG domain"),
    ({"Housing Discussed": "1"}, "column 'Housing Discussed' is not a DIALOG domain"),
])
def test_a_row_whose_session_cannot_be_read_is_quarantined_with_the_column(bridge, source, tmp_path, changes, message):
    report = run(bridge, source, export(tmp_path, app_row(**{**HOUSING_AND_WORK, **changes})))
    assert report.quarantined == {"mapping": 1} and report.balanced
    [entry] = bridge.repository.quarantined()
    assert message.encode() in entry.outcome and b"dialog-plus-export.csv:2" in entry.outcome
    assert bridge.repository.reviews() == []


def test_an_unknown_domain_column_left_blank_or_0_loses_nothing_and_passes(source):
    result = mapped_session(source, app_row(**{"Housing Discussed": "0", "Housing Action Items": " "}))
    assert not result.problems and result.session is None


# -- waiting in identity review, then into the plan -----------------------------------------------------------
def test_the_review_holds_the_session_and_resolving_it_lands_the_actions_in_the_plan(bridge, source, tmp_path):
    rosa = rosa_with_a_plan(bridge)
    paths = export(tmp_path, app_row(**HOUSING_AND_WORK))
    report = run(bridge, source, paths)
    assert report.quarantined == {"identity-review": 1} and report.balanced
    [review] = bridge.repository.reviews()
    waiting = orjson.loads(review.waiting)
    assert chosen(waiting["session"]) == {"mental-health": [PROMISE, "Keep mood diary"],
                                          "job-situation": ["Meet employment adviser"]}
    assert waiting["caller"]["partner"] == "RV3" and waiting["raw"].startswith('"Pemberton, Rosa",06/02/2024')
    assert len(plan_of(bridge, rosa)["activity"]) == 1  # nothing in the plan until a person says who this is

    assert resolve(bridge, review.review_id, rosa) == "created"
    plan = plan_of(bridge, rosa)
    by_domain = {a["detail"]["description"]: a["extension"][0]["valueCoding"]["code"] for a in plan["activity"]}
    assert by_domain == {"Book a GP appointment": "physical-health", PROMISE: "mental-health",
                         "Keep mood diary": "mental-health", "Meet employment adviser": "job-situation"}
    added = [a["detail"] for a in plan["activity"] if a["detail"]["description"] != "Book a GP appointment"]
    assert all(d["performer"] == [{"reference": "Patient/rosa"}] and d["scheduledPeriod"] == {"start": "2024-02-06"}
               for d in added)  # agreed that day; the app says by when for none
    assert plan["author"]["display"] == "Sam Adeyemi"  # the plan keeps the key worker the trust named
    # The app's ratings are the session's response, for care planning, about Rosa
    response_ids = {r["reference"] for r in plan["supportingInfo"]}
    [response] = [r for r in search(bridge, "QuestionnaireResponse", [("subject", "Patient/rosa")])
                  if f"QuestionnaireResponse/{r['id']}" in response_ids and r["authored"] == "2024-02-06"]
    purpose = next(e for e in response["extension"] if e["url"].endswith("dialog-collection-purpose"))
    assert purpose["valueCoding"]["code"] == "care-planning"
    assert response["id"] == next(r["id"] for r in waiting["resources"] if r["resourceType"] == "QuestionnaireResponse")
    # Recorded as the trust whose app export it is, not as the operator's command
    current = bridge.repository.read("CarePlan", plan["id"])
    [provenance] = [p for p in search(bridge, "Provenance", [("target", f"CarePlan/{plan['id']}")])
                    if {"reference": f"CarePlan/{plan['id']}/_history/{current.version_id}"} in p["target"]]
    assert provenance["agent"][0]["who"]["identifier"]["value"] == "RV3"
    assert bridge.repository.reviews() == [] and bridge.repository.review(review.review_id).state == "linked"

    versions = bridge.repository.history()[0]
    again = run(bridge, source, paths)
    assert again.counts == {"unchanged": 1} and again.quarantined == {} and bridge.repository.reviews() == []
    assert bridge.repository.history()[0] == versions


def test_discussed_without_actions_updates_the_plans_goals(bridge, source, tmp_path):
    rosa = rosa_with_a_plan(bridge)
    run(bridge, source, export(tmp_path, app_row(**{"Friendships Discussed": "1"})))
    [review] = bridge.repository.reviews()
    assert resolve(bridge, review.review_id, rosa) == "created"
    plan = plan_of(bridge, rosa)
    assert len(plan["activity"]) == 1  # no action agreed
    goals = [bridge.repository.read(*g["reference"].split("/")).resource for g in plan["goal"]]
    assert sorted(g["category"][0]["coding"][0]["code"] for g in goals) == ["friendships", "physical-health"]


def test_a_row_with_nothing_discussed_waits_and_is_stored_as_before(bridge, source, tmp_path):
    rosa = rosa_with_a_plan(bridge)
    run(bridge, source, export(tmp_path, app_row()))
    [review] = bridge.repository.reviews()
    assert set(orjson.loads(review.waiting)) == {"location", "resources", "caller"}  # no session
    assert resolve(bridge, review.review_id, rosa) == "created"
    assert len(plan_of(bridge, rosa)["activity"]) == 1 and "supportingInfo" not in plan_of(bridge, rosa)
    [response] = search(bridge, "QuestionnaireResponse", [("subject", "Patient/rosa")])
    assert response["authored"] == "2024-02-06"  # the app's ratings, stored as before, outside the plan


def test_a_person_with_no_plan_quarantines_the_session_with_the_reason_and_loses_nothing(bridge, source, tmp_path):
    paths = export(tmp_path, app_row(**HOUSING_AND_WORK))
    run(bridge, source, paths)
    [review] = bridge.repository.reviews()
    status = resolve(bridge, review.review_id, None)  # a new person: no plan, and the app names no key worker

    assert status == "quarantined:session"
    [entry] = bridge.repository.quarantined()
    assert entry.reason == "session" and entry.source == "dialog-app"
    assert entry.location.endswith("dialog-plus-export.csv:2")
    outcome = orjson.loads(entry.outcome)
    assert "the DIALOG+ session was refused" in outcome["issue"][0]["diagnostics"]
    assert "key worker" in outcome["issue"][0]["diagnostics"]
    assert "names no key worker" in outcome["issue"][-1]["diagnostics"]
    # Nothing lost: the row as exported (with its header, for a retry) and the review's records
    assert entry.raw == paths[0].read_bytes().split(b"\r\n")[1] and "header" in orjson.loads(entry.context)
    # refused as the importer (a caller with no access/all-people scope), so retried as it: limited
    assert orjson.loads(entry.context)["limited"] is True
    assert "session" in orjson.loads(bridge.repository.review(review.review_id).waiting)
    # The person decided is stored and the decision stands; the ratings wait with the session
    [patient] = search(bridge, "Patient", [])
    assert bridge.repository.review(review.review_id).state == "new"
    assert review.review_id not in {r.review_id for r in bridge.repository.reviews()}
    assert search(bridge, "QuestionnaireResponse", []) == [] and search(bridge, "CarePlan", []) == []

    again = run(bridge, source, paths)  # importing it again: the decision stands, the plan still refuses
    assert again.quarantined == {"session": 1} and len(bridge.repository.quarantined()) == 1

    # Once a partner has started the person's plan, a retry lands the app's session in it
    with bridge.repository.unit_of_work() as uow:
        uow.create({"resourceType": "Practitioner", "id": "sam", "name": [{"given": ["Sam"], "family": "Adeyemi"}]})
    bridge.careplans.record(patient["id"], session(key_worker({"reference": "Practitioner/sam"}),
                                                   date="2024-01-10T10:00:00Z"), TRUST)
    results, _ = retry_entries(bridge, bridge.repository.quarantined())
    assert [r.outcome for r in results] == [RESOLVED]
    plan = plan_of(bridge, patient["id"])
    assert {a["detail"]["description"] for a in plan["activity"]} == {PROMISE, "Keep mood diary",
                                                                      "Meet employment adviser"}
    assert bridge.repository.quarantined() == []


def test_a_partner_with_no_care_relationship_is_refused_at_resolution(bridge, source, tmp_path):
    rosa = rosa_with_a_plan(bridge)
    other = DialogAppSource(source.engine, "X9V2K")
    Ingest(bridge, other.name, other.map, Caller("X9V2K", "Example Community Wellbeing")).run(
        other.records(export(tmp_path, app_row(**HOUSING_AND_WORK))))
    [review] = bridge.repository.reviews()
    assert resolve(bridge, review.review_id, rosa) == "quarantined:access"
    [entry] = bridge.repository.quarantined()
    assert b"X9V2K has no care relationship with Patient/rosa" in entry.outcome
    assert len(plan_of(bridge, rosa)["activity"]) == 1


def test_more_domains_than_a_session_takes_is_quarantined_with_the_reason(bridge, source, tmp_path):
    rosa = rosa_with_a_plan(bridge)
    four = {f"{d} Discussed": "1" for d in ("Mental Health", "Job Situation", "Accommodation", "Medication")}
    run(bridge, source, export(tmp_path, app_row(**four)))
    [review] = bridge.repository.reviews()
    assert resolve(bridge, review.review_id, rosa) == "quarantined:session"
    [entry] = bridge.repository.quarantined()
    assert b"discusses at most 3 domains; 4 were given" in entry.outcome
    assert len(plan_of(bridge, rosa)["goal"]) == 1


def test_a_held_record_that_is_not_utf8_is_kept_byte_for_byte(bridge, source, tmp_path):
    raw = '"Pemberton, Rosa",06/02/2024,Apply for £150 grant'.encode("cp1252")
    held = held_session(SessionRecord("dialog-app", "x.csv:2", raw, {}, "Pemberton, Rosa", session={"p": 1}))
    assert "raw" not in held and held["context"] is None
    # Resolving a review holding such a record quarantines exactly those bytes when the plan refuses it
    run(bridge, source, export(tmp_path, app_row(**HOUSING_AND_WORK)))
    [review] = bridge.repository.reviews()
    waiting = orjson.loads(review.waiting)
    del waiting["raw"]
    waiting["rawBase64"] = held["rawBase64"]
    bridge.repository.add_review(replace(review, waiting=dumps_json(waiting)))  # an open review: refreshed
    assert resolve(bridge, review.review_id, None) == "quarantined:session"
    assert bridge.repository.quarantined()[0].raw == raw
