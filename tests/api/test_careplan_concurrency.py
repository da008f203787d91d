"""Many partners, one plan, no lost update: 50 DIALOG+ sessions from 50 partners for one person at
the same moment, against the real server over sockets and against the pipeline from threads (which
also runs on PostgreSQL when FHIR_BRIDGE_TEST_POSTGRES_URL is set). Every action lands, the plan
has one version per successful session, nobody gets a 500."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from fhir_bridge.api.auth import token_hash
from fhir_bridge.pipelines.resources import Caller
from tests.api.test_server_process import start_server  # noqa: F401  (the fixture)
from tests.careplan.sessions import action, consent, domain, key_worker, organisation, session

SESSIONS = 50
PLAN_TYPE = "https://fhir-bridge.example.org/CodeSystem/mhsds-care-plan-type|10"


def partner(n: int) -> str:
    return f"P{n:04d}"


def sessions_for(patient_id: str, practitioner_id: str) -> list[dict]:
    """Session n: partner n agrees one action of its own. Every session names the key worker, so
    whichever arrives first makes the plan and the others add to it."""
    me = {"reference": f"Patient/{patient_id}"}
    return [session(domain("leisure-activities", action(f"Activity offered by partner {n}", me)),
                    key_worker({"reference": f"Practitioner/{practitioner_id}"}), date="2024-05-01T10:00:00Z")
            for n in range(SESSIONS)]


def check_plan(plan: dict, history_total: int, successes: int) -> None:
    descriptions = sorted(a["detail"]["description"] for a in plan["activity"])
    assert descriptions == sorted(f"Activity offered by partner {n}" for n in range(SESSIONS))
    assert history_total == successes == int(plan["meta"]["versionId"])


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-worker-processes"])
def test_fifty_partners_at_once_over_the_real_server(start_server, tmp_path, workers):  # noqa: F811
    """With two worker processes the sessions also race across processes: SQLite's writer lock
    file and the plan's version checks must still let every action land exactly once."""
    tokens = [{"sha256": token_hash(f"token-{n}"), "partner": partner(n), "name": f"Partner {n}",
               "scopes": ["system/*.*"]} for n in range(SESSIONS)]
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_bytes(orjson.dumps({"tokens": tokens}))
    server = start_server("--tokens", str(tokens_file), "--workers", str(workers))
    headers = {"Authorization": "Bearer token-0", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=60) as http:
        patient = http.post("/Patient", content=orjson.dumps({"resourceType": "Patient", "name": [
            {"family": "Pemberton", "given": ["Rosa"]}], "birthDate": "1986-09-23"})).json()["id"]
        sam = http.post("/Practitioner", content=orjson.dumps({"resourceType": "Practitioner", "name": [
            {"family": "Adeyemi", "given": ["Sam"]}]})).json()["id"]
        # Partner 0 registered Rosa (it holds her record); her consent lets the 49 others work with her.
        shared = consent(patient, *((partner(n), f"Partner {n}") for n in range(1, SESSIONS)))
        assert http.post("/Consent", content=orjson.dumps(shared)).status_code == 201

    def send(n: int, parameters: dict) -> httpx.Response:
        with httpx.Client(base_url=server.base, timeout=120) as own:
            return own.post(f"/Patient/{patient}/$dialog-plus-session", content=orjson.dumps(parameters),
                            headers={**headers, "Authorization": f"Bearer token-{n}"})

    with ThreadPoolExecutor(SESSIONS) as pool:
        answers = list(pool.map(send, range(SESSIONS), sessions_for(patient, sam)))
    statuses = [a.status_code for a in answers]
    assert 500 not in statuses and all(s == 200 for s in statuses), [a.text[:300] for a in answers if a.status_code != 200]
    with httpx.Client(base_url=server.base, headers=headers, timeout=60) as http:
        plans = http.get("/CarePlan", params={"subject": f"Patient/{patient}", "category": PLAN_TYPE}).json()
        [plan] = [e["resource"] for e in plans["entry"]]
        history = http.get(f"/CarePlan/{plan['id']}/_history", params={"_count": 1}).json()
        provenances = http.get("/Provenance", params={"target": f"CarePlan/{plan['id']}", "_summary": "count"}).json()
    check_plan(plan, history["total"], statuses.count(200))
    assert provenances["total"] == SESSIONS  # one per session that changed the plan
    assert sorted({a.headers["etag"] for a in answers}) == sorted(f'W/"{n}"' for n in range(1, SESSIONS + 1))
    assert server.stop() == 0
    assert "Traceback" not in server.output()


def test_fifty_partners_at_once_through_the_pipeline(bridge, make_patient):
    with bridge.repository.unit_of_work() as uow:  # partner 0 holds Rosa's record; her consent covers the rest
        uow.create({**make_patient(), "id": "rosa", "managingOrganization": organisation(partner(0), "Partner 0")})
        uow.create({**consent("rosa", *((partner(n), f"Partner {n}") for n in range(1, SESSIONS))), "id": "consent"})
        uow.create({"resourceType": "Practitioner", "id": "sam", "name": [{"family": "Adeyemi", "given": ["Sam"]}]})

    def send(n: int, parameters: dict):
        return bridge.careplans.record("rosa", parameters, Caller(partner(n), f"Partner {n}"))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, range(SESSIONS), sessions_for("rosa", "sam")))
    plan = bridge.repository.read("CarePlan", results[0].plan.resource_id).resource
    total, _ = bridge.repository.history("CarePlan", plan["id"])
    check_plan(plan, total, len(results))
    assert sum(r.created for r in results) == 1


def _interrupted_once(bridge, monkeypatch, meanwhile):
    """Makes the next session's first preparation be followed by `meanwhile()` (another partner's
    session committing between the snapshot and the write); counts the preparations."""
    real = bridge.careplans._prepare
    calls: list[bool] = []

    def prepare(*args, **kwargs):
        prepared = real(*args, **kwargs)
        calls.append(True)
        if len(calls) == 1:
            meanwhile()
        return prepared

    monkeypatch.setattr(bridge.careplans, "_prepare", prepare)
    return calls


@pytest.mark.parametrize("plan_first", [True, False], ids=["plan-changed", "plan-created"])
def test_a_session_prepared_before_another_partner_wrote_is_merged_again(bridge, make_patient, monkeypatch,
                                                                        plan_first):
    """Between the snapshot a session is prepared from and its write, another partner's session
    changes the plan (or creates the person's first one): nothing of the stale merge is written, the
    session is merged again under the lock, and the person still has one plan holding both actions."""
    with bridge.repository.unit_of_work() as uow:
        uow.create({**make_patient(), "id": "rosa", "managingOrganization": organisation(partner(0), "Partner 0")})
        uow.create({**consent("rosa", (partner(1), "Partner 1"), (partner(2), "Partner 2")), "id": "consent"})
        uow.create({"resourceType": "Practitioner", "id": "sam", "name": [{"family": "Adeyemi", "given": ["Sam"]}]})
    first, second, third = sessions_for("rosa", "sam")[:3]
    if plan_first:
        bridge.careplans.record("rosa", first, Caller(partner(0), "Partner 0"))
    calls = _interrupted_once(bridge, monkeypatch,
                              lambda: bridge.careplans.record("rosa", second, Caller(partner(1), "Partner 1")))
    result = bridge.careplans.record("rosa", third, Caller(partner(2), "Partner 2"))
    assert len(calls) == 3  # this session's snapshot, the other session's, this one's again under the lock
    plan = bridge.repository.read("CarePlan", result.plan.resource_id).resource
    descriptions = sorted(a["detail"]["description"] for a in plan["activity"])
    expected = [1, 2] if not plan_first else [0, 1, 2]
    assert descriptions == [f"Activity offered by partner {n}" for n in expected]
    assert int(plan["meta"]["versionId"]) == len(expected)
    assert bridge.repository.count("CarePlan") == 1


def test_a_goal_changed_after_the_session_was_prepared_is_read_again(bridge, make_patient, monkeypatch):
    """The plan's narrative is made from every goal, also those the session leaves alone: a change to
    one of them between the snapshot and the write makes the session merge again, with it."""
    with bridge.repository.unit_of_work() as uow:
        uow.create({**make_patient(), "id": "rosa", "managingOrganization": organisation(partner(0), "Partner 0")})
        uow.create({"resourceType": "Practitioner", "id": "sam", "name": [{"family": "Adeyemi", "given": ["Sam"]}]})
    me = {"reference": "Patient/rosa"}
    first = session(domain("leisure-activities", action("Swimming", me), best_case="Swim every week"),
                    key_worker({"reference": "Practitioner/sam"}), date="2024-05-01T10:00:00Z")
    plan = bridge.careplans.record("rosa", first, Caller(partner(0), "Partner 0")).plan.resource
    goal = bridge.repository.read("Goal", plan["goal"][0]["reference"].split("/")[1]).resource

    def change_goal() -> None:
        with bridge.repository.unit_of_work() as uow:
            uow.update({**goal, "description": {"text": "Swim twice a week"}})

    calls = _interrupted_once(bridge, monkeypatch, change_goal)
    later = session(domain("accommodation", action("Phone the landlord", me)), date="2024-05-22T10:00:00Z")
    result = bridge.careplans.record("rosa", later, Caller(partner(0), "Partner 0"))
    assert len(calls) == 2  # prepared from the snapshot, then again under the lock
    narrative = result.plan.resource["text"]["div"]
    assert "Swim twice a week" in narrative and "Swim every week" not in narrative
