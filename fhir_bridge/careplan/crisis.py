"""The crisis plan: a CarePlan of MHSDS type 12, part of the person's main DIALOG+ plan, holding
early warning signs, what helps, who to contact and how to communicate in a crisis. A session's
`crisis` items are added to it (made with the first); like the rest of the plan, merging is
additive and an item already there (same section, same words) is not added twice, whichever
partner sends it, so two partners can add to it at once and a re-sent session changes nothing.
Items are changed or dropped through a plain update of the crisis plan (If-Match).

Each item is an activity with its crisis-plan-section, the person as its performer (or the
contact named, for who-to-contact), and the domain `mental-health` the profile asks every activity for.
"""
from __future__ import annotations

import uuid

from fhir_bridge.careplan.codes import (CRISIS_PLAN, CRISIS_SECTION_EXT, CRISIS_SECTION_SYSTEM, DOMAIN_EXT,
                                        DOMAIN_SYSTEM, PLAN_PROFILE, PLAN_TYPE_DISPLAY, PLAN_TYPE_SYSTEM)
from fhir_bridge.careplan.merge import NAMESPACE, SessionContext
from fhir_bridge.careplan.session import Session
from fhir_bridge.fhir.codec import json_copy

__all__ = ["apply_crisis", "crisis_plan_id"]

SECTIONS = {"early-warning-signs": "Early warning signs", "what-helps": "What helps",
            "who-to-contact": "Who to contact", "how-to-communicate": "How to communicate with me"}
WHEN = {"early-warning-signs": "Signs that a crisis may be coming"}


def crisis_plan_id(plan_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"CrisisPlan|{plan_id}"))


def apply_crisis(session: Session, current: dict | None, plan: dict, ctx: SessionContext) -> dict:
    """The crisis plan after the session's items: `current` (None: a new one, part of `plan`)."""
    crisis = json_copy(current) if current else _new(plan, ctx, session)
    person = plan["subject"]
    for item in session.crisis:
        words = " ".join(item.text.lower().split())
        item_id = "crisis-" + uuid.uuid5(NAMESPACE, f"crisis|{crisis['id']}|{item.section}|{words}").hex[:12]
        if any(a.get("id") == item_id for a in crisis.get("activity", ())):
            continue
        detail = {"status": "not-started", "scheduledString": WHEN.get(item.section, "In a crisis"),
                  "performer": [item.contact or person], "description": item.text}
        crisis.setdefault("activity", []).append({"id": item_id, "extension": [
            {"url": DOMAIN_EXT, "valueCoding": {"system": DOMAIN_SYSTEM, "code": "mental-health",
                                                "display": ctx.domains.get("mental-health", "Mental health")}},
            {"url": CRISIS_SECTION_EXT, "valueCoding": {"system": CRISIS_SECTION_SYSTEM, "code": item.section,
                                                        "display": SECTIONS[item.section]}}], "detail": detail})
    for contributor in filter(None, (person, session.practitioner, ctx.partner)):
        if contributor not in crisis.setdefault("contributor", []):
            crisis["contributor"].append(contributor)
    if plan.get("author"):
        crisis["author"] = plan["author"]
    crisis["careTeam"] = plan.get("careTeam", crisis.get("careTeam"))
    return crisis


def _new(plan: dict, ctx: SessionContext, session: Session) -> dict:
    return {"resourceType": "CarePlan", "id": crisis_plan_id(plan["id"]), "meta": {"profile": [PLAN_PROFILE]},
            "partOf": [{"reference": f"CarePlan/{plan['id']}"}], "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": PLAN_TYPE_SYSTEM, "code": CRISIS_PLAN,
                                      "display": PLAN_TYPE_DISPLAY[CRISIS_PLAN]}]}],
            "title": "My crisis plan", "subject": plan["subject"], "period": {"start": session.day},
            "created": session.date}
