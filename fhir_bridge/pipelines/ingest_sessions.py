"""An imported DIALOG+ session that agreed actions goes through the same code as
`POST Patient/[id]/$dialog-plus-session` (CarePlanSessions.record, not HTTP): its person is linked
and stored like any record, then the session - its ratings (the mapped QuestionnaireResponse,
under its own deterministic id), domains and actions - is merged into the person's one plan.
Re-importing it changes nothing (the session's ids are deterministic too). A key worker the import
offers is used only for a person's first plan: an import never replaces the one a partner named. A session the plan
refuses (no key worker for a first plan, an unknown domain, a partner with no care relationship
with the person) quarantines the record with reason `session` and the refusal; the person's
Patient, stored first, is kept.
"""
from __future__ import annotations

from fhir_bridge.errors import BridgeError, Unprocessable
from fhir_bridge.fhir.codec import dumps_json, loads_json
from fhir_bridge.fhir.outcome import Issue, issues_from_outcome
from fhir_bridge.pipelines.careplan_views import main_plans, open_plans_query

__all__ = ["record_session"]


def record_session(ingest, record, mapped) -> str:
    """Store the record's person and record its session; the record's status (ingest's statuses)."""
    linked = ingest._link(record, mapped.resources, None)
    if isinstance(linked, str):  # held for an identity review, or quarantined
        return linked
    mapped_patient = next(r for r in mapped.resources if r.get("resourceType") == "Patient")
    patient = next(r for r in linked if r.get("resourceType") == "Patient")
    response = next(r for r in linked if r.get("resourceType") == "QuestionnaireResponse")
    parameters = _for_person(mapped.session, mapped_patient.get("id"), patient["id"])
    bridge = ingest.bridge
    has_plan = bool(main_plans(bridge.repository.search(bridge.search_request(
        "CarePlan", open_plans_query(patient["id"]))).matches))
    kept = [p for p in parameters["parameter"] if not (has_plan and p.get("name") == "keyWorker")]
    parameters = {**parameters, "parameter": [{"name": "response", "resource": response}, *kept]}
    try:
        with bridge.repository.unit_of_work() as uow:
            stored = [bridge.resources.put_validated(r, ingest.caller, uow=uow) for r in linked if r is not response]
        result = bridge.careplans.record(patient["id"], parameters, ingest.caller, response_id=response["id"])
    except BridgeError as exc:
        details = issues_from_outcome(exc.outcome) if isinstance(exc, Unprocessable) and exc.outcome else []
        lead = Issue("error", exc.code, f"the DIALOG+ session was refused: {exc.message}", exc.expression)
        return ingest._quarantine(record, "session", [lead, *details[1:]])
    if result.added or any(w.created and not w.unchanged for w in stored):  # as ingest counts any record
        status = "created"
    else:
        status = "updated" if result.changed or any(not w.unchanged for w in stored) else "unchanged"
    ingest.report.counts[status] += 1
    return status


def _for_person(parameters: dict, mapped_id: str | None, patient_id: str) -> dict:
    """The session's references to the mapped Patient, to the person's one Patient (as linked)."""
    if not mapped_id or mapped_id == patient_id:
        return parameters
    text = dumps_json(parameters).decode().replace(f'"reference":"Patient/{mapped_id}"',
                                                   f'"reference":"Patient/{patient_id}"')
    return loads_json(text.encode())
