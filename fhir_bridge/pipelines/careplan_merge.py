"""Two records of one person merged (ADT^A40, pipelines/patient_merge.py) when both had a DIALOG+
plan: the person must still end with ONE plan, and its history must say what happened.

What a community mental health team expects (and this does, in the merge's own transaction):
- the surviving person's own plan stays the plan: its key worker, agreement and history go on;
- the other plan's open actions (not done, dropped or stopped) move into it, each with a progress
  note saying where it came from, so nobody's agreed work is lost; its goals come along (a domain
  the plan already has a goal for keeps that goal: the moved actions point to it);
- its DIALOG responses and contributors are added to the plan's, and the plan `replaces` it;
- the other plan becomes `revoked` (it was real, so not entered-in-error) with a note pointing at
  the plan that took it over; its done and dropped actions stay in its own history;
- the other plan's care team members (still active) join the plan's team; that team becomes
  `inactive`. A crisis plan of the other plan is carried the same way (its open items into the
  surviving crisis plan, or it becomes part of the surviving plan when that has none).
If only one record had a plan, the merge's move of references is all it takes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from fhir_bridge.careplan.codes import CRISIS_PLAN, OPEN_STATUSES, ROLE_SYSTEM
from fhir_bridge.careplan.narrative import team_div, with_text
from fhir_bridge.fhir.codec import json_copy
from fhir_bridge.pipelines.careplan_views import local_id, open_main_plans, plan_type, with_narrative
from fhir_bridge.pipelines.dialog_summary import OPEN_ACTION
from fhir_bridge.store.repository import read_if_live

__all__ = ["consolidate_plans"]


def consolidate_plans(uow, search: Callable, survivor_id: str, merged_id: str, moved: set[str],
                      domain_order: Sequence[str], now: datetime | None = None) -> list[dict]:
    """The new versions that leave the survivor with one open plan (empty when it has one already).
    `moved`: Type/id of the resources the merge moved from the merged person."""
    plans = open_main_plans(uow, survivor_id)
    if len(plans) < 2:
        return []
    keep = next((p for p in plans if f"CarePlan/{p.resource_id}" not in moved), plans[0])
    day = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    why = f"Patient/{merged_id} was merged into Patient/{survivor_id}"
    plan, writes = json_copy(keep.resource), []
    team = read_if_live(uow, "CareTeam", local_id((plan.get("careTeam") or [None])[0], "CareTeam"))
    team_body = json_copy(team.resource) if team else None
    crisis_keep = _crisis_of(uow, search, keep.resource_id)
    for other in (p for p in plans if p is not keep):
        _absorb(uow, plan, other.resource, f"Carried over from CarePlan/{other.resource_id} when {why}.", day)
        plan.setdefault("replaces", []).append({"reference": f"CarePlan/{other.resource_id}"})
        writes.append(with_narrative(uow, _revoked(other.resource, f"Taken over by CarePlan/{keep.resource_id} when "
                                                                   f"{why}.", day), domain_order))
        other_team = read_if_live(uow, "CareTeam", local_id((other.resource.get("careTeam") or [None])[0], "CareTeam"))
        if other_team and team_body is not None and other_team.resource_id != team_body["id"]:
            _join_team(team_body, other_team.resource)
            writes.append(with_text({**other_team.resource, "status": "inactive"}, team_div(other_team.resource)))
        for crisis in _crisis_of(uow, search, other.resource_id):
            if crisis_keep:
                target = crisis_keep[0]
                _absorb(uow, target, crisis, f"Carried over from CarePlan/{crisis['id']} when {why}.", day)
                writes.append(with_narrative(uow, _revoked(crisis, f"Taken over by CarePlan/{target['id']} when "
                                                                   f"{why}.", day), domain_order, None, []))
            else:
                crisis_keep = [{**crisis, "partOf": [{"reference": f"CarePlan/{keep.resource_id}"}]}]
    if team_body is not None:
        team_body = with_text(team_body, team_div(team_body))
        writes.append(team_body)
    writes += [with_narrative(uow, c, domain_order, team_body, []) for c in crisis_keep]
    writes.append(with_narrative(uow, plan, domain_order, team_body))
    return writes


def _absorb(uow, plan: dict, other: dict, note: str, day: str) -> None:
    """Open actions, their goals, DIALOG responses and contributors of `other` into `plan`."""
    goals = {_domain(g): ref for ref in plan.get("goal", ())
             if (g := _body(uow, "Goal", local_id(ref, "Goal"))) is not None}
    have = {a.get("id") for a in plan.get("activity", ())}
    for activity in other.get("activity", ()):
        detail = activity.get("detail") or {}
        if detail.get("status") not in OPEN_ACTION or activity.get("id") in have:
            continue
        moved = json_copy(activity)
        moved.setdefault("progress", []).append({"authorString": "fhir-bridge (record merge)", "time": day,
                                                 "text": note})
        for i, ref in enumerate(detail.get("goal", ())):
            goal = _body(uow, "Goal", local_id(ref, "Goal"))
            domain = _domain(goal) if goal else None
            if domain in goals:
                moved["detail"]["goal"][i] = goals[domain]
            elif ref not in plan.setdefault("goal", []):
                plan["goal"].append(ref)
                goals[domain] = ref
        plan.setdefault("activity", []).append(moved)
    for element in ("supportingInfo", "contributor"):
        for ref in other.get(element, ()):
            if ref not in plan.setdefault(element, []):
                plan[element].append(ref)


def _revoked(plan: dict, note: str, day: str) -> dict:
    return {**plan, "status": "revoked",
            "note": [*plan.get("note", ()), {"authorString": "fhir-bridge (record merge)", "time": day, "text": note}]}


def _join_team(team: dict, other: dict) -> None:
    def key(p):
        member = p.get("member") or {}
        identifier = member.get("identifier") or {}
        return (_role(p), member.get("reference") or (identifier.get("system"), identifier.get("value")))

    have = {key(p) for p in team.get("participant", ()) if not (p.get("period") or {}).get("end")}
    for participant in other.get("participant", ()):
        if not (participant.get("period") or {}).get("end") and key(participant) not in have \
                and _role(participant) != "key-worker":  # the surviving plan's key worker stays the one
            team.setdefault("participant", []).append(json_copy(participant))
            have.add(key(participant))


def _crisis_of(uow, search, plan_id: str) -> list[dict]:
    found = uow.search(search("CarePlan", [("part-of", f"CarePlan/{plan_id}"), ("status", ",".join(OPEN_STATUSES))]))
    return [json_copy(s.resource) for s in found if plan_type(s.resource) == CRISIS_PLAN]


def _role(participant: dict) -> str | None:
    for role in participant.get("role", ()):
        for coding in role.get("coding", ()):
            if coding.get("system") == ROLE_SYSTEM:
                return coding.get("code")
    return None


def _domain(goal: dict | None) -> str | None:
    for category in (goal or {}).get("category", ()):
        for coding in category.get("coding", ()):
            return coding.get("code")
    return None


def _body(uow, resource_type: str, resource_id: str | None) -> dict | None:
    found = read_if_live(uow, resource_type, resource_id)
    return found.resource if found else None
