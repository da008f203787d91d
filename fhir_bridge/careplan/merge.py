"""A DIALOG+ session merged into the person's one plan, its CareTeam and its Goals: pure functions
of the current resources and the session (no store, no HTTP).

Merging is additive, so partners working at the same time never lose each other's work: new
actions, goals' notes, team members, agreements and DIALOG responses are appended, and appending
again what is already there changes nothing (ids are uuid5s of the session: a re-sent session is a
no-op). Edits of what exists (the reviews of actions) are checked against the version of the plan
the partner read: an action changed since then is a conflict (412), never overwritten.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from fhir_bridge.careplan.codes import (AGREED_BY, AGREED_BY_SYSTEM, AGREEMENT_EXT, DOMAIN_EXT, DOMAIN_SYSTEM,
                                        GOAL_PROFILE, MAIN_PLAN, PLAN_PROFILE, PLAN_TYPE_DISPLAY, PLAN_TYPE_SYSTEM,
                                        ROLE_SYSTEM, ROLES, STEP_EXT, STEP_SYSTEM, STEPS, TEAM_PROFILE)
from fhir_bridge.careplan.session import Member, Problems, Session
from fhir_bridge.errors import PreconditionFailed
from fhir_bridge.fhir.codec import json_copy

__all__ = ["ActionConflict", "Current", "Merged", "SessionContext", "apply_session", "action_id", "session_ids",
           "find_activity", "current_key_worker"]

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir-bridge.example.org/dialog-plus")
KEY_WORKER_PART = "Parameters.parameter.where(name = 'keyWorker')"


class ActionConflict(PreconditionFailed):
    """An action the session reviews was changed by someone else after the version the partner read."""

    def __init__(self, message: str, *, current_version: int, expression: str | None = None):
        super().__init__(message, current_version=current_version, expression=expression)


@dataclass(frozen=True)
class SessionContext:
    patient_id: str
    person_name: str | None
    session_key: str
    partner: dict | None           # Reference to the contributing partner organisation (None: the system itself)
    author: dict                   # Annotation.author[x] of the session's notes: the practitioner, else the partner
    domains: Mapping[str, str]     # dialog-domain code -> display
    response_id: str | None        # the session's stored QuestionnaireResponse
    plan_id: str                   # for a first plan
    team_id: str


@dataclass
class Current:
    plan: dict | None = None
    plan_version: int | None = None
    team: dict | None = None
    goals: dict[str, dict] = field(default_factory=dict)   # by domain code
    base_plan: dict | None = None  # the older version the partner reviewed from (If-Match), if not the current


@dataclass
class Merged:
    plan: dict
    team: dict
    goals: list[dict]  # the Goals this session created or changed


def session_ids(patient_id: str, partner: str, session_date: str) -> tuple[str, str, str]:
    """(session key, id of a first plan, id of the session's DIALOG response): the same session
    sent twice gets the same ids, so it is stored once."""
    key = str(uuid.uuid5(NAMESPACE, f"session|{patient_id}|{partner}|{session_date}"))
    return key, str(uuid.uuid5(NAMESPACE, f"CarePlan|{patient_id}|{key}")), \
        str(uuid.uuid5(NAMESPACE, f"QuestionnaireResponse|{key}"))


def team_id_for(plan_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"CareTeam|{plan_id}"))


def goal_id_for(plan_id: str, domain: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"Goal|{plan_id}|{domain}"))


def action_id(session_key: str, domain: str, description: str) -> str:
    text = " ".join(description.lower().split())
    return "action-" + uuid.uuid5(NAMESPACE, f"action|{session_key}|{domain}|{text}").hex[:12]


def find_activity(plan: dict | None, activity_id: str) -> dict | None:
    return next((a for a in (plan or {}).get("activity", ()) if a.get("id") == activity_id), None)


def current_key_worker(team: dict | None) -> dict | None:
    for participant in (team or {}).get("participant", ()):
        if _role(participant) == "key-worker" and not (participant.get("period") or {}).get("end"):
            return participant
    return None


# -- the merge ----------------------------------------------------------------------------------------
def apply_session(session: Session, current: Current, ctx: SessionContext) -> Merged:
    """The plan, team and goals after the session. Unprocessable (422) for reviews of unknown
    actions, a review dated before its action was agreed or last reviewed, a key worker change
    dated before the current one, a first plan without a key worker; ActionConflict (412) for a
    review of an action changed since the version the partner read (before its dates are judged)."""
    problems = Problems()
    plan = json_copy(current.plan) if current.plan else _new_plan(ctx, session)
    team = json_copy(current.team) if current.team else _new_team(ctx, session)
    conflicts = _review(plan, current, session, ctx, problems)
    _key_worker(team, session.key_worker, problems)
    for member in session.members:
        _join(team, member)
    if ctx.partner is not None:
        _join(team, Member(ctx.partner, "partner-organisation", session.day, None, ""))
    goals = []
    for discussion in session.discussions:
        goal = json_copy(current.goals.get(discussion.domain)) or _new_goal(ctx, plan["id"], discussion.domain,
                                                                                session)
        _discuss(goal, discussion, session, ctx)
        goals.append(goal)
        _append(plan.setdefault("goal", []), {"reference": f"Goal/{goal['id']}"}, key=_ref_key)
        for action in discussion.actions:
            _add_action(plan, goal, action, ctx, session.day)
    problems.check()
    if conflicts:
        first = conflicts[0]
        raise ActionConflict(f"{first} Read CarePlan/{plan['id']} (now version {current.plan_version}) and review "
                             "again with If-Match of that version.", current_version=current.plan_version or 0)
    _agree(plan, session)
    if ctx.response_id:
        _append(plan.setdefault("supportingInfo", []), {"reference": f"QuestionnaireResponse/{ctx.response_id}"},
                key=_ref_key)
    for contributor in filter(None, (_person(ctx), session.practitioner, ctx.partner)):
        _append(plan.setdefault("contributor", []), contributor, key=_ref_key)
    key_worker = current_key_worker(team)
    if key_worker is not None:
        plan["author"] = key_worker["member"]
    return Merged(plan, team, goals)


def _new_plan(ctx: SessionContext, session: Session) -> dict:
    return {
        "resourceType": "CarePlan", "id": ctx.plan_id, "meta": {"profile": [PLAN_PROFILE]},
        "status": "active", "intent": "plan",
        "category": [{"coding": [{"system": PLAN_TYPE_SYSTEM, "code": MAIN_PLAN, "display": PLAN_TYPE_DISPLAY[MAIN_PLAN]}]}],
        "title": "My DIALOG+ care plan", "subject": _person(ctx), "period": {"start": session.day},
        "created": session.date, "careTeam": [{"reference": f"CareTeam/{ctx.team_id}"}],
    }


def _new_team(ctx: SessionContext, session: Session) -> dict:
    name = f"{ctx.person_name}'s DIALOG+ care team" if ctx.person_name else "DIALOG+ care team"
    return {"resourceType": "CareTeam", "id": ctx.team_id, "meta": {"profile": [TEAM_PROFILE]}, "status": "active",
            "name": name, "subject": _person(ctx), "period": {"start": session.day}, "participant": []}


def _new_goal(ctx: SessionContext, plan_id: str, domain: str, session: Session) -> dict:
    display = ctx.domains.get(domain, domain)
    return {
        "resourceType": "Goal", "id": goal_id_for(plan_id, domain), "meta": {"profile": [GOAL_PROFILE]},
        "lifecycleStatus": "active",
        "category": [{"coding": [{"system": DOMAIN_SYSTEM, "code": domain, "display": display}]}],
        # Goal.description is required; until the person names a best case, the DIALOG question says it.
        "description": {"text": f"To be more satisfied with {display[0].lower() + display[1:]}"},
        "subject": _person(ctx), "startDate": session.day, "expressedBy": _person(ctx),
    }


def _person(ctx: SessionContext) -> dict:
    reference = {"reference": f"Patient/{ctx.patient_id}"}
    if ctx.person_name:
        reference["display"] = ctx.person_name
    return reference


# -- the team -------------------------------------------------------------------------------------------
def _key_worker(team: dict, wanted: Member | None, problems: Problems) -> None:
    now = current_key_worker(team)
    if wanted is None:
        if now is None:
            problems.add("required", "The person has no key worker yet: a DIALOG+ plan needs one (keyWorker)",
                         KEY_WORKER_PART)
        return
    if now is not None and _same(now.get("member"), wanted.member):
        return
    if now is not None:
        since = (now.get("period") or {}).get("start", "")
        if wanted.start < since[:10]:
            problems.add("business-rule", f"The new key worker cannot start ({wanted.start}) before the current "
                                          f"one did ({since[:10]})", f"{wanted.where}.part.where(name = 'start')")
            return
        now.setdefault("period", {})["end"] = wanted.start
    team.setdefault("participant", []).append(_participant(wanted))


def _join(team: dict, member: Member) -> None:
    for participant in team.get("participant", ()):
        if _role(participant) == member.role and _same(participant.get("member"), member.member) \
                and not (participant.get("period") or {}).get("end"):
            return
    team.setdefault("participant", []).append(_participant(member))


def _participant(member: Member) -> dict:
    participant = {"role": [{"coding": [{"system": ROLE_SYSTEM, "code": member.role, "display": ROLES[member.role]}]}],
                   "member": member.member}
    if member.on_behalf_of:
        participant["onBehalfOf"] = member.on_behalf_of
    participant["period"] = {"start": member.start}
    return participant


def _role(participant: dict) -> str | None:
    for role in participant.get("role", ()):
        for coding in role.get("coding", ()):
            if coding.get("system") == ROLE_SYSTEM:
                return coding.get("code")
    return None


# -- goals and actions ------------------------------------------------------------------------------------
def _discuss(goal: dict, discussion, session: Session, ctx: SessionContext) -> None:
    goal["lifecycleStatus"] = "active"  # discussed again: the person is working on it
    if discussion.best_case:
        goal["description"] = {"text": discussion.best_case}
    if discussion.smallest_step:
        goal["target"] = [{"measure": {"coding": [{"system": STEP_SYSTEM, "code": "smallest-step",
                                                   "display": STEPS["smallest-step"]}]},
                           "detailString": discussion.smallest_step}]
    looking_forward = " ".join(filter(None, (
        f"Best case: {discussion.best_case}" if discussion.best_case else None,
        f"Smallest noticeable step: {discussion.smallest_step}" if discussion.smallest_step else None)))
    agreed = "; ".join(a.description for a in discussion.actions)
    for step, text in (("understanding", discussion.understanding), ("looking-forward", looking_forward or None),
                       ("options", discussion.options), ("agreed-actions", f"Agreed: {agreed}" if agreed else None)):
        if text:
            note = {"extension": [{"url": STEP_EXT, "valueCoding": {"system": STEP_SYSTEM, "code": step,
                                                                   "display": STEPS[step]}}],
                    **ctx.author, "time": session.date, "text": text}
            _append(goal.setdefault("note", []), note, key=lambda n: (n.get("time"), n.get("text"), str(n.get("extension"))))


def _add_action(plan: dict, goal: dict, action, ctx: SessionContext, day: str) -> None:
    activity_id = action_id(ctx.session_key, action.domain, action.description)
    if find_activity(plan, activity_id) is not None:
        return
    detail: dict = {"goal": [{"reference": f"Goal/{goal['id']}"}], "status": "not-started"}
    # From the day it was agreed (a review cannot come before it), by when if the session said
    detail["scheduledPeriod"] = {"start": day, **({"end": action.due} if action.due else {})}
    detail["performer"] = list(action.owners)
    detail["description"] = action.description
    plan.setdefault("activity", []).append({
        "id": activity_id,
        "extension": [{"url": DOMAIN_EXT, "valueCoding": {"system": DOMAIN_SYSTEM, "code": action.domain,
                                                          "display": ctx.domains.get(action.domain, action.domain)}}],
        "detail": detail,
    })


def _review(plan: dict, current: Current, session: Session, ctx: SessionContext, problems: Problems) -> list[str]:
    """Applies the reviews; returns the conflicts (messages) found."""
    conflicts = []
    for review in session.reviews:
        activity = find_activity(plan, review.action_id)
        if activity is None:
            problems.add("not-found", f"The plan has no action {review.action_id!r} to review",
                         f"{review.where}.part.where(name = 'action')")
            continue
        if current.base_plan is not None:  # first: a review the partner never saw is a conflict, not its dates
            seen = find_activity(current.base_plan, review.action_id)
            if seen != find_activity(current.plan, review.action_id):
                conflicts.append(f"Action {review.action_id!r} was changed by someone else after the version you read.")
                continue
        if earlier := _reviewed_too_early(activity, session.day):
            problems.add("business-rule", f"The review of action {review.action_id!r} ({session.day}) is dated "
                                          f"before {earlier}", review.where)
            continue
        detail = activity.setdefault("detail", {})
        status = {"done": "completed", "in-progress": "in-progress"}.get(review.outcome)
        if status is None:  # dropped: R4 `stopped` once work had begun, `cancelled` before
            status = "stopped" if detail.get("status") in ("in-progress", "on-hold") else "cancelled"
            if review.note:
                detail["statusReason"] = {"text": review.note}
        detail["status"] = status
        words = {"done": "done", "in-progress": "in progress", "dropped": "dropped"}[review.outcome]
        note = {**ctx.author, "time": session.date,
                "text": f"Reviewed: {words}." + (f" {review.note}" if review.note else "")}
        _append(activity.setdefault("progress", []), note, key=lambda n: (n.get("time"), n.get("text")))
    return conflicts


def _reviewed_too_early(activity: dict, day: str) -> str | None:
    """What a review on `day` would come before: the day the action was agreed, or its last review."""
    # an action agreed before the agreed day was recorded (scheduledPeriod.start) has only its reviews
    agreed = ((activity.get("detail") or {}).get("scheduledPeriod") or {}).get("start")
    if agreed and day < agreed[:10]:
        return f"the action was agreed ({agreed[:10]})"
    reviewed = max((str(note.get("time", ""))[:10] for note in activity.get("progress", ())), default="")
    if day < reviewed:
        return f"its last review ({reviewed})"
    return None


def _agree(plan: dict, session: Session) -> None:
    agreement = session.agreement
    if agreement is None:
        return
    parts = [{"url": "agreedBy", "valueCoding": {"system": AGREED_BY_SYSTEM, "code": code, "display": AGREED_BY[code]}}
             for code in agreement.agreed_by]
    parts.append({"url": "agreedDateTime", "valueDateTime": agreement.when})
    if agreement.family_care_plan is not None:
        parts.append({"url": "familyCarePlan", "valueBoolean": agreement.family_care_plan})
    _append(plan.setdefault("extension", []), {"url": AGREEMENT_EXT, "extension": parts}, key=str)


# -- small helpers ---------------------------------------------------------------------------------------
def _ref_key(reference: dict):
    identifier = reference.get("identifier") or {}
    return reference.get("reference") or (identifier.get("system"), identifier.get("value"))


def _same(a: object, b: object) -> bool:
    return type(a) is dict and type(b) is dict and _ref_key(a) == _ref_key(b)


def _append(items: list, item, *, key) -> None:
    wanted = key(item)
    if not any(key(existing) == wanted for existing in items):
        items.append(item)
