"""The rules a DIALOG+ CarePlan written by a plain interaction (create, update, patch, in a
transaction or not) must meet, run inside the write's transaction (a ResourceService write rule):

- one open main plan per person: a second is refused (409, issue `duplicate`) naming the existing
  plan, since partners must add to the person's one plan, not start their own;
- a crisis plan is `partOf` its person's main plan (else 422), and a main plan has one open crisis
  plan (a second: 409 naming it); a plan's care team is its person's (422 naming the reference);
- an update of an existing shared plan must say which version it replaces (If-Match), else 428:
  without it, one partner's PUT silently overwrites another's actions;
- its actions get stable ids (so later sessions can review them), and its narrative is made
  again from its data, so the text a person reads never disagrees with the plan;
- a plain write of a CareTeam or Goal that open DIALOG+ plans name (a new key worker, a goal
  achieved) makes those plans' narratives again in the same transaction (PlanNarrativeFollower).
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence

from fhir_bridge.careplan.codes import CRISIS_PLAN, MAIN_PLAN, OPEN_STATUSES
from fhir_bridge.errors import Duplicate, Gone, NotFound, PreconditionRequired, Unprocessable
from fhir_bridge.pipelines.careplan_views import (is_dialog_plus, local_id, open_crisis_plans, open_main_plans,
                                                  plan_type, with_narrative)
from fhir_bridge.store.repository import read_if_live

__all__ = ["PlanNarrativeFollower", "SharedCarePlanRule", "refuse_second_plan"]

_ACTION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir-bridge.example.org/dialog-plus/activity")


def refuse_second_plan(uow, patient_id: str, plan_id: str | None) -> list:
    """The person's open main plans (other than `plan_id`), read with the person's row locked so
    that two writers cannot both see none; Duplicate when there is another."""
    _lock_person(uow, patient_id)
    plans = open_main_plans(uow, patient_id)
    others = [p for p in plans if p.resource_id != plan_id]
    if others:
        where = ", ".join(f"CarePlan/{p.resource_id} (version {p.version_id})" for p in others)
        raise Duplicate(f"Patient/{patient_id} already has an open DIALOG+ care plan: {where}. Add to it with "
                        f"POST Patient/{patient_id}/$dialog-plus-session, or update it with If-Match.",
                        expression="CarePlan.subject")
    return plans


class SharedCarePlanRule:
    def __init__(self, domain_order: Sequence[str]):
        self.domain_order = tuple(domain_order)

    def __call__(self, uow, resource: dict, *, method: str, if_match: int | None) -> dict:
        if not is_dialog_plus(resource):
            return resource
        if method in ("PUT", "PATCH") and if_match is None \
                and read_if_live(uow, "CarePlan", resource["id"]) is not None:
            raise PreconditionRequired(
                f"CarePlan/{resource['id']} is a DIALOG+ plan several partners share: send If-Match with the version "
                "you read (W/\"n\"), so that nobody's changes are overwritten", expression="CarePlan")
        patient_id = local_id(resource.get("subject"), "Patient")
        if plan_type(resource) == MAIN_PLAN and resource.get("status") in OPEN_STATUSES and patient_id:
            refuse_second_plan(uow, patient_id, resource["id"])
        if plan_type(resource) == CRISIS_PLAN and resource.get("status") in OPEN_STATUSES and patient_id:
            _refuse_second_crisis_plan(uow, resource, patient_id)
        if patient_id:
            _check_team(uow, resource, patient_id)
        return with_narrative(uow, _with_action_ids(resource), self.domain_order)


def _refuse_second_crisis_plan(uow, plan: dict, patient_id: str) -> None:
    """A crisis plan is part of its person's DIALOG+ plan (422 if not), and the only open one of it
    (409 naming the other: a session then would not know which to add to)."""
    parents = [local_id(ref, "CarePlan") for ref in plan.get("partOf") or ()]
    if len(parents) != 1 or parents[0] is None:
        raise Unprocessable("A crisis plan is partOf its person's DIALOG+ plan: one CarePlan reference",
                            expression="CarePlan.partOf")
    _lock_person(uow, patient_id)  # two writers at once cannot both see no crisis plan
    main = read_if_live(uow, "CarePlan", parents[0])
    if main is None or plan_type(main.resource) != MAIN_PLAN \
            or local_id(main.resource.get("subject"), "Patient") != patient_id:
        raise Unprocessable(f"CarePlan/{parents[0]} is not the DIALOG+ plan of Patient/{patient_id}: a crisis plan "
                            "is part of its own person's plan", expression="CarePlan.partOf[0]")
    others = [s for s in open_crisis_plans(uow, parents[0]) if s.resource_id != plan.get("id")]
    if others:
        raise Duplicate(f"CarePlan/{parents[0]} already has an open crisis plan: CarePlan/{others[0].resource_id} "
                        f"(version {others[0].version_id}). Update it with If-Match.", expression="CarePlan.partOf[0]")


def _lock_person(uow, patient_id: str) -> None:
    try:
        uow.lock("Patient", patient_id)
    except (NotFound, Gone):
        pass  # a plan for a person not stored here: nothing to lock, the lookup still guards


def _check_team(uow, plan: dict, patient_id: str) -> None:
    """The plan's care team, when stored here, is about the plan's person: the plan's text names
    its key worker, and a partner on it sees the person."""
    for position, ref in enumerate(plan.get("careTeam") or ()):
        team_id = local_id(ref, "CareTeam")
        team = read_if_live(uow, "CareTeam", team_id) if team_id else None
        subject = local_id((team.resource if team else {}).get("subject"), "Patient")
        if subject is not None and subject != patient_id:
            raise Unprocessable(f"CareTeam/{team_id} is the care team of Patient/{subject}, not of Patient/{patient_id}",
                                expression=f"CarePlan.careTeam[{position}]")


class PlanNarrativeFollower:
    """After a client writes (or deletes) a CareTeam or Goal: the open DIALOG+ plans that name it, with
    their narrative made again from it as now stored, each written only while at the version read.
    The plan's text names the key worker, the team and each domain's goal, so it changes with them."""

    NAMED_BY = {"CareTeam": "care-team", "Goal": "goal"}  # CarePlan search parameter naming each

    def __init__(self, domain_order: Sequence[str]):
        self.domain_order = tuple(domain_order)

    def __call__(self, uow, resource_type: str, resource_id: str) -> list:
        param = self.NAMED_BY.get(resource_type)
        if param is None:
            return []
        renewed = []
        for stored in uow.referring("CarePlan", param, resource_type, resource_id):
            plan = stored.resource
            if not is_dialog_plus(plan) or plan.get("status") not in OPEN_STATUSES:
                continue  # a closed plan keeps the text it was closed with
            again = with_narrative(uow, plan, self.domain_order)
            if again.get("text") != plan.get("text"):
                renewed.append(uow.update(again, if_match=stored.version_id))
        return renewed


def _with_action_ids(plan: dict) -> dict:
    """Actions without an id get a stable one (from the plan, position and text), so they can be reviewed."""
    activities = plan.get("activity")
    if not activities or all(a.get("id") for a in activities):
        return plan
    named = []
    for position, activity in enumerate(activities):
        if not activity.get("id"):
            text = str((activity.get("detail") or {}).get("description", ""))
            key = uuid.uuid5(_ACTION_NAMESPACE, f"{plan.get('id')}|{position}|{text}").hex[:12]
            activity = {"id": f"action-{key}", **activity}
        named.append(activity)
    return {**plan, "activity": named}
