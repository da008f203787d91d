"""What a person reads in their plan, taken from the stored resources (CarePlan, its CareTeam and
Goals) in plain English. The narrative (text.div) and the HTML page both render this one view, so
they never disagree."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from fhir_bridge.careplan.codes import (AGREED_BY_SYSTEM, AGREEMENT_EXT, CRISIS_PLAN, CRISIS_SECTION_EXT, DOMAIN_EXT,
                                        PLAN_TYPE_SYSTEM, ROLE_SYSTEM, ROLES, STEP_EXT)

__all__ = ["ActionView", "DomainView", "PlanView", "plan_view", "plain_date", "reference_name"]

STATUS_WORDS = {"not-started": "not started yet", "scheduled": "planned", "in-progress": "in progress",
                "on-hold": "on hold", "completed": "done", "cancelled": "dropped", "stopped": "stopped",
                "unknown": "status not known"}
# Names for a reference without a display: what the person would call them.
TYPE_WORDS = {"Practitioner": "a professional", "PractitionerRole": "a professional",
              "Organization": "a partner organisation", "RelatedPerson": "a carer or relative"}
CRISIS_SECTIONS = {"early-warning-signs": "Early warning signs", "what-helps": "What helps",
                   "who-to-contact": "Who to contact", "how-to-communicate": "How to communicate with me"}


@dataclass(frozen=True)
class ActionView:
    action_id: str | None
    description: str
    owners: tuple[str, ...]
    due: str | None
    status: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class DomainView:
    heading: str
    best_case: str | None = None
    smallest_step: str | None = None
    understanding: str | None = None
    options: str | None = None
    actions: tuple[ActionView, ...] = ()


@dataclass(frozen=True)
class PlanView:
    title: str
    person: str
    is_crisis_plan: bool
    status: str
    key_worker: str | None
    former_key_workers: tuple[str, ...]
    team: tuple[tuple[str, str], ...]      # (name, role)
    agreement: str
    sections: tuple[DomainView, ...]
    updated: str | None


def plain_date(value: object) -> str | None:
    """'2024-03-05' or a dateTime -> '5 March 2024'; other text as it is."""
    if type(value) is not str:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        return value
    return f"{day.day} {day.strftime('%B')} {day.year}"


def reference_name(reference: object, person_ref: str | None = None, person: str = "the person") -> str:
    if type(reference) is not dict:
        return "someone"
    if person_ref and reference.get("reference") == person_ref:
        return person
    if type(reference.get("display")) is str and reference["display"].strip():
        return reference["display"].strip()
    text = reference.get("reference") or reference.get("type") or ""
    kind = str(text).rsplit("/", 2)[-2] if "/" in str(text) else str(text)
    return TYPE_WORDS.get(kind, "a member of the care team")


def plan_view(plan: dict, team: dict | None, goals: Iterable[dict], *, domain_order: Sequence[str] = ()) -> PlanView:
    person_ref = (plan.get("subject") or {}).get("reference")
    person = str((plan.get("subject") or {}).get("display") or "").strip() or "the person"
    is_crisis = _plan_type(plan) == CRISIS_PLAN
    key_worker, former, members = _team(team, person_ref, person)
    return PlanView(
        title=str(plan.get("title") or ("Crisis plan" if is_crisis else "DIALOG+ care plan")),
        person=person, is_crisis_plan=is_crisis, status=str(plan.get("status", "")),
        key_worker=key_worker, former_key_workers=former, team=members,
        agreement=_agreement(plan, person),
        sections=_crisis_sections(plan, person_ref, person) if is_crisis
        else _domains(plan, goals, person_ref, person, domain_order),
        updated=plain_date((plan.get("meta") or {}).get("lastUpdated")),
    )


# -- parts of the view ------------------------------------------------------------------------------
def _plan_type(plan: dict) -> str | None:
    for category in plan.get("category", ()):
        for coding in category.get("coding", ()):
            if coding.get("system") == PLAN_TYPE_SYSTEM:
                return coding.get("code")
    return None


def _team(team: dict | None, person_ref: str | None, person: str):
    if not team:
        return None, (), ()
    key_worker, former, members = None, [], []
    for participant in team.get("participant", ()):
        role = _coded(participant.get("role", ()), ROLE_SYSTEM)
        name = reference_name(participant.get("member"), person_ref, person)
        period = participant.get("period") or {}
        if role == "key-worker":
            if period.get("end"):
                former.append(f"{name} (until {plain_date(period['end'])})")
            else:
                key_worker = f"{name} (since {plain_date(period.get('start'))})" if period.get("start") else name
        elif not period.get("end"):
            members.append((name, ROLES.get(role or "", "member of the team")))
    return key_worker, tuple(former), tuple(members)


def _agreement(plan: dict, person: str) -> str:
    agreements = [e for e in plan.get("extension", ()) if e.get("url") == AGREEMENT_EXT]
    if not agreements:
        return "This plan has not been agreed yet."
    latest = max(agreements, key=lambda e: str(_sub(e, "agreedDateTime") or ""))
    who = {"person": person, "carer": "a carer", "professional": "a professional"}
    names = [who.get((sub.get("valueCoding") or {}).get("code"), "someone")
             for sub in latest.get("extension", ()) if sub.get("url") == "agreedBy"
             and (sub.get("valueCoding") or {}).get("system") == AGREED_BY_SYSTEM]
    sentence = f"Agreed by {_and(names or ['someone'])} on {plain_date(_sub(latest, 'agreedDateTime'))}."
    if _sub(latest, "familyCarePlan") is True:
        sentence += " This is a family care plan."
    return sentence


def _domains(plan: dict, goals: Iterable[dict], person_ref, person, order: Sequence[str]) -> tuple[DomainView, ...]:
    headings: dict[str, str] = {}
    actions: dict[str, list[ActionView]] = {}
    for activity in plan.get("activity", ()):
        coding = _extension_coding(activity, DOMAIN_EXT)
        code = coding.get("code") or "other"
        headings.setdefault(code, coding.get("display") or code.replace("-", " ").capitalize())
        view = _action(activity, person_ref, person)
        if view is not None:
            actions.setdefault(code, []).append(view)
    steps: dict[str, dict] = {}
    for goal in goals:
        for category in goal.get("category", ()):
            for coding in category.get("coding", ()):
                if coding.get("code"):
                    headings.setdefault(coding["code"], coding.get("display") or coding["code"])
                    steps[coding["code"]] = goal
    ranked = sorted(headings, key=lambda c: (order.index(c) if c in order else len(order), list(headings).index(c)))
    return tuple(DomainView(headings[code], *_goal_parts(steps.get(code)), tuple(actions.get(code, ())))
                 for code in ranked)


def _goal_parts(goal: dict | None) -> tuple[str | None, str | None, str | None, str | None]:
    if goal is None:
        return None, None, None, None
    best = (goal.get("description") or {}).get("text")
    smallest = next((t.get("detailString") for t in goal.get("target", ()) if t.get("detailString")), None)
    latest: dict[str, str] = {}
    for note in sorted(goal.get("note", ()), key=lambda n: str(n.get("time", ""))):
        step = _extension_coding(note, STEP_EXT).get("code")
        if step and note.get("text"):
            latest[step] = note["text"]
    return best, smallest, latest.get("understanding"), latest.get("options")


def _crisis_sections(plan: dict, person_ref, person) -> tuple[DomainView, ...]:
    grouped: dict[str, list[ActionView]] = {}
    for activity in plan.get("activity", ()):
        section = _extension_coding(activity, CRISIS_SECTION_EXT).get("code") or "other"
        view = _action(activity, person_ref, person)
        if view is not None:
            grouped.setdefault(section, []).append(view)
    ranked = sorted(grouped, key=lambda s: list(CRISIS_SECTIONS).index(s) if s in CRISIS_SECTIONS else 99)
    return tuple(DomainView(CRISIS_SECTIONS.get(s, "Other"), actions=tuple(grouped[s])) for s in ranked)


def _action(activity: dict, person_ref, person) -> ActionView | None:
    detail = activity.get("detail") or {}
    status = detail.get("status", "unknown")
    if status == "entered-in-error":
        return None
    due = (detail.get("scheduledPeriod") or {}).get("end") or detail.get("scheduledString")
    notes = tuple(f"{plain_date(n.get('time')) or 'Note'}: {n['text']}"
                  for n in activity.get("progress", ()) if type(n.get("text")) is str)
    return ActionView(activity.get("id"), str(detail.get("description") or "(no description)"),
                      tuple(reference_name(p, person_ref, person) for p in detail.get("performer", ())),
                      plain_date(due) if due else None, STATUS_WORDS.get(status, status), notes)


def _coded(concepts: Iterable[dict], system: str) -> str | None:
    for concept in concepts:
        for coding in concept.get("coding", ()):
            if coding.get("system") == system:
                return coding.get("code")
    return None


def _extension_coding(element: dict, url: str) -> dict:
    for ext in element.get("extension", ()):
        if ext.get("url") == url and type(ext.get("valueCoding")) is dict:
            return ext["valueCoding"]
    return {}


def _sub(extension: dict, url: str):
    for sub in extension.get("extension", ()):
        if sub.get("url") == url:
            return next((v for k, v in sub.items() if k.startswith("value")), None)
    return None


def _and(names: list[str]) -> str:
    names = list(dict.fromkeys(names))
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
