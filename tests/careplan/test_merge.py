"""Merging sessions into the plan: additive and idempotent; reviews checked against the version read."""
from __future__ import annotations

import copy

import pytest

from fhir_bridge.careplan import ActionConflict, Current, SessionContext, apply_session
from fhir_bridge.careplan.merge import current_key_worker, find_activity, session_ids
from fhir_bridge.careplan.session import parse_session
from fhir_bridge.errors import Unprocessable
from tests.careplan.sessions import action, agreement, domain, key_worker, organisation, review, session
from tests.careplan.test_session import DOMAINS, ME, SAM

ALEX = {"reference": "Practitioner/alex", "display": "Alex Moran"}
TRUST, VCSE = organisation("RV3", "East London NHS FT"), organisation("X9V2K", "Example Community Wellbeing")


def context(partner: dict = TRUST, date: str = "2024-02-20T10:00:00Z") -> SessionContext:
    key, plan_id, response_id = session_ids("p1", partner["identifier"]["value"], date)
    return SessionContext("p1", "Rosa Pemberton", key, partner, {"authorReference": partner}, DOMAINS, response_id,
                          plan_id, "team-1")


def merge(parameters: dict, current: Current | None = None, partner: dict = TRUST):
    dated = next((p["valueDateTime"] for p in parameters["parameter"] if p["name"] == "date"), None)
    read = parse_session(parameters, patient_id="p1", domains=DOMAINS, max_domains=3,
                         now=dated or "2024-02-20T10:00:00Z")  # recorded as it happens (a later date is refused)
    return apply_session(read, current or Current(), context(partner, read.date))


def then(merged, version: int = 1) -> Current:
    return Current(plan=merged.plan, plan_version=version, team=merged.team,
                   goals={g["category"][0]["coding"][0]["code"]: g for g in merged.goals})


FIRST = session(domain("accommodation", action("Phone the landlord", ME, due="2024-03-01"), best_case="A dry flat"),
                key_worker(SAM), agreement("person", "professional"), date="2024-02-20T10:00:00Z")


def test_a_first_session_makes_the_plan_team_and_goal():
    merged = merge(FIRST)
    plan, team, [goal] = merged.plan, merged.team, merged.goals
    assert plan["category"][0]["coding"][0]["code"] == "10" and plan["status"] == "active"
    assert plan["careTeam"] == [{"reference": "CareTeam/team-1"}] and plan["author"] == SAM
    assert plan["goal"] == [{"reference": f"Goal/{goal['id']}"}]
    [activity] = plan["activity"]
    assert activity["detail"]["performer"] == [ME]
    assert activity["detail"]["scheduledPeriod"] == {"start": "2024-02-20", "end": "2024-03-01"}  # agreed, due
    assert activity["detail"]["status"] == "not-started" and activity["id"].startswith("action-")
    assert current_key_worker(team)["member"] == SAM
    assert goal["description"]["text"] == "A dry flat"
    assert any(e["url"].endswith("careplan-agreement") for e in plan["extension"])


def test_a_first_session_needs_a_key_worker():
    with pytest.raises(Unprocessable) as caught:
        merge(session(domain("accommodation")))
    assert caught.value.outcome["issue"][0]["expression"] == ["Parameters.parameter.where(name = 'keyWorker')"]


def test_the_same_session_again_changes_nothing():
    once = merge(FIRST)
    twice = merge(FIRST, then(once))
    assert (twice.plan, twice.team, twice.goals) == (once.plan, once.team, once.goals)


def test_sessions_of_two_partners_add_up():
    trust = merge(FIRST)
    vcse = merge(session(domain("accommodation", action("Help with a repairs complaint", VCSE),
                                options="Complain to the council"), date="2024-03-12T14:00:00Z"), then(trust), VCSE)
    assert [a["detail"]["description"] for a in vcse.plan["activity"]] == ["Phone the landlord",
                                                                          "Help with a repairs complaint"]
    assert [n["extension"][0]["valueCoding"]["code"] for n in vcse.goals[0]["note"]] == [
        "looking-forward", "agreed-actions", "options", "agreed-actions"]
    partners = [p["member"]["display"] for p in vcse.team["participant"] if p["role"][0]["coding"][0]["code"]
                == "partner-organisation"]
    assert partners == ["East London NHS FT", "Example Community Wellbeing"]


def test_a_new_key_worker_ends_the_old_ones_period():
    first = merge(FIRST)
    changed = merge(session(key_worker(ALEX, "2024-04-01"), date="2024-04-01T09:00:00Z"), then(first))
    sam, alex = [p for p in changed.team["participant"] if p["role"][0]["coding"][0]["code"] == "key-worker"]
    assert sam["period"] == {"start": "2024-02-20", "end": "2024-04-01"} and alex["period"] == {"start": "2024-04-01"}
    assert changed.plan["author"] == ALEX


def test_a_key_worker_cannot_start_before_the_current_one():
    first = merge(FIRST)
    with pytest.raises(Unprocessable) as caught:
        merge(session(key_worker(ALEX, "2024-01-01"), date="2024-04-01T09:00:00Z"), then(first))
    assert caught.value.outcome["issue"][0]["expression"] == ["Parameters.parameter[1].part.where(name = 'start')"]


@pytest.mark.parametrize("before, outcome, after", [
    ("not-started", "done", "completed"), ("not-started", "in-progress", "in-progress"),
    ("not-started", "dropped", "cancelled"), ("in-progress", "dropped", "stopped")])
def test_reviews_set_the_r4_status(before, outcome, after):
    first = merge(FIRST)
    activity_id = first.plan["activity"][0]["id"]
    first.plan["activity"][0]["detail"]["status"] = before
    reviewed = merge(session(review(activity_id, outcome, "Moved in with my sister"), date="2024-04-01T09:00:00Z"),
                     then(first))
    detail = find_activity(reviewed.plan, activity_id)["detail"]
    assert detail["status"] == after
    assert ("statusReason" in detail) == (outcome == "dropped")
    assert find_activity(reviewed.plan, activity_id)["progress"][0]["text"].endswith("Moved in with my sister")


def test_a_review_of_an_action_the_plan_lacks_is_refused():
    with pytest.raises(Unprocessable) as caught:
        merge(session(review("action-000000000000", "done"), date="2024-04-01T09:00:00Z"), then(merge(FIRST)))
    assert caught.value.outcome["issue"][0]["code"] == "not-found"
    assert caught.value.outcome["issue"][0]["expression"] == ["Parameters.parameter[1].part.where(name = 'action')"]


def test_a_review_dated_before_the_action_was_agreed_or_last_reviewed_is_refused():
    """Dates in the wrong order (issue 5): the first session agreed the action on 2024-02-20."""
    first = merge(FIRST)
    activity_id = first.plan["activity"][0]["id"]
    with pytest.raises(Unprocessable) as caught:
        merge(session(review(activity_id, "done"), date="2024-02-01T09:00:00Z"), then(first))
    [issue] = caught.value.outcome["issue"]
    assert issue["code"] == "business-rule" and issue["expression"] == ["Parameters.parameter[1]"]
    assert "(2024-02-01) is dated before the action was agreed (2024-02-20)" in issue["diagnostics"]
    reviewed = merge(session(review(activity_id, "in-progress"), date="2024-04-01T09:00:00Z"), then(first))
    with pytest.raises(Unprocessable, match=r"before its last review \(2024-04-01\)"):
        merge(session(review(activity_id, "done"), date="2024-03-01T09:00:00Z"), then(reviewed, 2))
    on_the_day = merge(session(review(activity_id, "done"), date="2024-02-20T16:00:00Z"), then(first))
    assert find_activity(on_the_day.plan, activity_id)["detail"]["status"] == "completed"
    # a partner who read the plan before that last review: a conflict to read again (412), not its dates
    stale = Current(plan=reviewed.plan, plan_version=2, team=reviewed.team, base_plan=first.plan)
    with pytest.raises(ActionConflict) as caught:
        merge(session(review(activity_id, "done"), date="2024-03-01T09:00:00Z"), stale)
    assert caught.value.current_version == 2


def test_a_review_of_an_action_changed_since_the_version_read_is_a_conflict():
    first = merge(FIRST)
    activity_id = first.plan["activity"][0]["id"]
    now = copy.deepcopy(first.plan)
    find_activity(now, activity_id)["detail"]["status"] = "completed"  # someone else's review, version 3
    current = Current(plan=now, plan_version=3, team=first.team, base_plan=first.plan)
    with pytest.raises(ActionConflict) as caught:
        merge(session(review(activity_id, "dropped"), date="2024-04-01T09:00:00Z"), current)
    assert caught.value.http_status == 412 and caught.value.current_version == 3


def test_a_review_of_an_untouched_action_from_an_older_version_merges():
    first = merge(FIRST)
    activity_id = first.plan["activity"][0]["id"]
    now = merge(session(domain("friendships", action("Call Ola", ME)), date="2024-03-01T09:00:00Z"), then(first))
    current = Current(plan=now.plan, plan_version=2, team=now.team, base_plan=first.plan)
    reviewed = merge(session(review(activity_id, "done"), date="2024-04-01T09:00:00Z"), current)
    assert find_activity(reviewed.plan, activity_id)["detail"]["status"] == "completed"
