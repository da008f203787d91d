"""The canonical URLs and codes of the DIALOG+ care plan model (profiles/ and terminology/ hold
their definitions; these are the names code refers to them by)."""
from __future__ import annotations

BASE = "https://fhir-bridge.example.org"
PLAN_PROFILE = f"{BASE}/StructureDefinition/dialog-plus-careplan"
TEAM_PROFILE = f"{BASE}/StructureDefinition/dialog-plus-careteam"
GOAL_PROFILE = f"{BASE}/StructureDefinition/dialog-plus-goal"

PLAN_TYPE_SYSTEM = f"{BASE}/CodeSystem/mhsds-care-plan-type"
MAIN_PLAN, CRISIS_PLAN = "10", "12"
PLAN_TYPE_DISPLAY = {MAIN_PLAN: "Mental health care plan", CRISIS_PLAN: "Mental health crisis plan"}

DOMAIN_SYSTEM = f"{BASE}/CodeSystem/dialog-domain"
DOMAIN_EXT = f"{BASE}/StructureDefinition/careplan-activity-domain"
CRISIS_SECTION_EXT = f"{BASE}/StructureDefinition/careplan-crisis-section"
CRISIS_SECTION_SYSTEM = f"{BASE}/CodeSystem/crisis-plan-section"
AGREEMENT_EXT = f"{BASE}/StructureDefinition/careplan-agreement"
AGREED_BY_SYSTEM = f"{BASE}/CodeSystem/careplan-agreed-by"
AGREED_BY = {"person": "The person (service user)", "carer": "Carer", "professional": "Professional"}

STEP_EXT = f"{BASE}/StructureDefinition/dialog-plus-step"
STEP_SYSTEM = f"{BASE}/CodeSystem/dialog-plus-step"
STEPS = {"understanding": "Understanding", "looking-forward": "Looking forward", "options": "Exploring options",
         "agreed-actions": "Agreeing on actions", "smallest-step": "Smallest noticeable step"}

ROLE_SYSTEM = f"{BASE}/CodeSystem/careteam-role"
ROLES = {"key-worker": "Key worker", "professional": "Professional", "vcse-worker": "VCSE worker",
         "carer": "Carer", "partner-organisation": "Partner organisation"}

PURPOSE_EXT = f"{BASE}/StructureDefinition/dialog-collection-purpose"
PURPOSE_SYSTEM = f"{BASE}/CodeSystem/dialog-purpose"
CARE_PLANNING = "care-planning"
RECORDING_ORG_EXT = f"{BASE}/StructureDefinition/recording-organization"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"

# A person's plan is "open" in these states: the one-plan rule counts them (a second draft is a
# second plan too); completed, revoked and entered-in-error plans are the past.
OPEN_STATUSES = ("draft", "active", "on-hold")

# What a session's review says about an action -> CarePlan.activity.detail.status. "dropped" is
# `stopped` once work had begun, `cancelled` before (the R4 definitions of the two codes).
REVIEW_OUTCOMES = ("done", "in-progress", "dropped")

# Who may own an action: the person, a named professional, a partner organisation, a carer.
OWNER_TYPES = ("Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson")
