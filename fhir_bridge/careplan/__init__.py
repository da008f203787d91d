"""DIALOG+: a session -> the person's one shared CarePlan, its CareTeam and Goals (pure logic:
reading the session, merging it, the plain-English narrative and page). The store-facing steps
are in fhir_bridge.pipelines.careplan_session."""
from fhir_bridge.careplan.merge import ActionConflict, Current, Merged, SessionContext, apply_session
from fhir_bridge.careplan.narrative import goal_div, plan_div, team_div
from fhir_bridge.careplan.page import PAGE_HEADERS, plan_page
from fhir_bridge.careplan.session import Session, parse_session
from fhir_bridge.careplan.view import PlanView, plan_view

__all__ = ["ActionConflict", "Current", "Merged", "SessionContext", "apply_session", "goal_div", "plan_div",
           "team_div", "PAGE_HEADERS", "plan_page", "Session", "parse_session", "PlanView", "plan_view"]
