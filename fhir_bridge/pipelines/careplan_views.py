"""Reading a DIALOG+ plan with what it refers to (its CareTeam, Goals, crisis plans) for the
narrative and the HTML page. `reader` is the repository, or a unit of work to see its own writes."""
from __future__ import annotations

from collections.abc import Sequence

from fhir_bridge.careplan import plan_div, plan_page, plan_view
from fhir_bridge.careplan.codes import CRISIS_PLAN, MAIN_PLAN, OPEN_STATUSES, PLAN_PROFILE, PLAN_TYPE_SYSTEM
from fhir_bridge.careplan.narrative import with_text
from fhir_bridge.store.repository import read_if_live

__all__ = ["plan_type", "is_dialog_plus", "local_id", "gather", "with_narrative", "render_page",
           "main_plans", "open_main_plans", "open_crisis_plans"]


def plan_type(plan: dict) -> str | None:
    for category in plan.get("category", ()):
        for coding in category.get("coding", ()):
            if coding.get("system") == PLAN_TYPE_SYSTEM:
                return coding.get("code")
    return None


def is_dialog_plus(resource: dict) -> bool:
    if resource.get("resourceType") != "CarePlan":
        return False
    profiles = (resource.get("meta") or {}).get("profile") or ()
    return any(str(p).split("|")[0] == PLAN_PROFILE for p in profiles) or plan_type(resource) is not None


def local_id(reference: object, resource_type: str) -> str | None:
    """The id of a relative reference `Type/id` to this server, else None."""
    text = reference.get("reference") if type(reference) is dict else None
    if type(text) is not str or not text.startswith(f"{resource_type}/"):
        return None
    rest = text[len(resource_type) + 1:].split("/")[0]
    return rest or None


def main_plans(found: list) -> list:
    """The main (type 10) plans among stored CarePlans."""
    return [stored for stored in found if plan_type(stored.resource) == MAIN_PLAN]


def open_main_plans(reader, patient_id: str) -> list:
    """A person's open main DIALOG+ plans (one at most, normally) as a unit of work or snapshot sees
    them (or the repository, in a read of its own), by one prebuilt query on the subject reference
    instead of a search."""
    return main_plans([s for s in reader.referring("CarePlan", "subject", "Patient", patient_id)
                       if s.resource.get("status") in OPEN_STATUSES])


def open_crisis_plans(reader, plan_id: str) -> list:
    """The open crisis plans (type 12) part of a plan (one at most, normally), as `reader` sees them."""
    return [s for s in reader.referring("CarePlan", "part-of", "CarePlan", plan_id)
            if plan_type(s.resource) == CRISIS_PLAN and s.resource.get("status") in OPEN_STATUSES]


def gather(reader, plan: dict) -> tuple[dict | None, list[dict]]:
    """The plan's CareTeam and Goals as stored (references elsewhere are left out)."""
    teams = plan.get("careTeam") or [None]
    team = read_if_live(reader, "CareTeam", local_id(teams[0], "CareTeam"))
    goals = [read_if_live(reader, "Goal", local_id(ref, "Goal")) for ref in plan.get("goal", ())]
    return (team.resource if team else None), [g.resource for g in goals if g is not None]


def with_narrative(reader, plan: dict, domain_order: Sequence[str], team: dict | None = None,
                   goals: list[dict] | None = None) -> dict:
    """The plan with text regenerated from its data (and its team's and goals' as they will be)."""
    if team is None or goals is None:
        stored_team, stored_goals = gather(reader, plan)
        team = stored_team if team is None else team
        goals = stored_goals if goals is None else goals
    return with_text(plan, plan_div(plan_view(plan, team, goals, domain_order=domain_order)))


def render_page(repository, plan_id: str, domain_order: Sequence[str]) -> str:
    """The plan as an HTML page, with its crisis plans (CarePlans of type 12 part of it)."""
    plan = repository.read("CarePlan", plan_id).resource
    team, goals = gather(repository, plan)
    crisis = [] if plan_type(plan) == CRISIS_PLAN else [
        plan_view(stored.resource, team, ()) for stored in open_crisis_plans(repository, plan_id)]
    return plan_page(plan_view(plan, team, goals, domain_order=domain_order), crisis=tuple(crisis))
