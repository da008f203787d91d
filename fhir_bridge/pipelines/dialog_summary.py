"""`Patient/[id]/$dialog-summary`: what a worker checks before starting another DIALOG with a
person (profiles/OperationDefinition-dialog-summary.json) - when the last DIALOG was done, by
whom and for what purpose, when the last PROM was and from when another is not a possible
duplicate, each domain's ratings over time, the current plan and the actions still open.

Read from the dialog_scores rows (the trajectory), the last responses' bodies (who recorded them)
and the person's open plan; a person merged away is summarised as their survivor.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from fhir_bridge.careplan.codes import CRISIS_PLAN, DOMAIN_EXT, DOMAIN_SYSTEM, OPEN_STATUSES, RECORDING_ORG_EXT
from fhir_bridge.pipelines.careplan_views import open_main_plans, plan_type
from fhir_bridge.pipelines.patient_links import surviving_patient
from fhir_bridge.store.schema import DIALOG_DOMAINS
from fhir_bridge.store.repository import read_if_live

__all__ = ["dialog_summary", "OPEN_ACTION"]

PURPOSE_SYSTEM = "https://fhir-bridge.example.org/CodeSystem/dialog-purpose"
PURPOSES = {"prom": "Outcome measure (PROM collection)", "care-planning": "DIALOG+ care-planning session"}
OPEN_ACTION = ("not-started", "scheduled", "in-progress", "on-hold", "unknown")  # activity.detail.status


def dialog_summary(repository, find: Callable[[str, list[tuple[str, str]]], list], patient_id: str, *,
                   domains: Sequence[tuple[str, str]], min_interval_days: int) -> dict:
    """The summary as a FHIR Parameters resource; NotFound / Gone for an unknown or deleted person."""
    patient_id = surviving_patient(repository, patient_id)
    patient = repository.read("Patient", patient_id).resource
    rows = repository.dialogs_of(patient_id)
    parameters = [{"name": "patient", "valueReference": _person(patient)},
                  {"name": "dialogCount", "valueInteger": len(rows)}]
    dated = [r for r in rows if r["authored"] is not None]
    if dated:
        parameters.append(_dialog("lastDialog", repository, dated[-1]))
    proms = [r for r in dated if r["purpose"] == "prom"]
    if proms:
        last = _dialog("lastProm", repository, proms[-1])
        after = datetime.fromtimestamp(proms[-1]["authored"] / 1e6, tz=timezone.utc) + timedelta(days=min_interval_days)
        last["part"].append({"name": "nextPromFrom", "valueDate": after.date().isoformat()})
        parameters.append(last)
    parameters += _trajectories(dated, domains)
    parameters += _plan(repository, find, patient_id)
    return {"resourceType": "Parameters", "parameter": parameters}


def _person(patient: dict) -> dict:
    reference = {"reference": f"Patient/{patient['id']}"}
    for name in patient.get("name") or ():
        text = name.get("text") or " ".join([*name.get("given", ()), name.get("family", "")]).strip()
        if text:
            return {**reference, "display": text}
    return reference


def _dialog(name: str, repository, row: dict) -> dict:
    parts = [{"name": "response", "valueReference": {"reference": f"QuestionnaireResponse/{row['response_id']}"}},
             {"name": "authored", "valueDateTime": row["authored_text"]}]
    if row["purpose"]:
        parts.append({"name": "purpose", "valueCoding": {"system": PURPOSE_SYSTEM, "code": row["purpose"],
                                                         "display": PURPOSES.get(row["purpose"], row["purpose"])}})
    # who recorded it: the partner organisation and the practitioner, as the response says
    found = read_if_live(repository, "QuestionnaireResponse", row["response_id"])
    body = found.resource if found else {}
    organisation = next((e.get("valueReference") for e in body.get("extension", ())
                         if type(e) is dict and e.get("url") == RECORDING_ORG_EXT), None)
    if type(organisation) is dict:
        parts.append({"name": "organization", "valueReference": organisation})
    if type(body.get("author")) is dict:
        parts.append({"name": "author", "valueReference": body["author"]})
    if row.get("sqol_mean") is not None:
        parts.append({"name": "sqolMean", "valueDecimal": round(row["sqol_mean"], 3)})
    return {"name": name, "part": parts}


def _trajectories(rows: list[dict], domains: Sequence[tuple[str, str]]) -> list[dict]:
    """Per domain (DIALOG order), its ratings oldest first: date, rating 1-7, purpose."""
    out = []
    for code, display in domains:
        column = f"rating_{code.replace('-', '_')}"
        if column.removeprefix("rating_") not in DIALOG_DOMAINS:
            continue
        points = [{"name": "point", "part": [{"name": "date", "valueDateTime": r["authored_text"]},
                                             {"name": "rating", "valueInteger": r[column]},
                                             *([{"name": "purpose", "valueCode": r["purpose"]}] if r["purpose"] else [])]}
                  for r in rows if r[column] is not None]
        if points:
            out.append({"name": "trajectory", "part": [
                {"name": "domain", "valueCoding": {"system": DOMAIN_SYSTEM, "code": code, "display": display}}, *points]})
    return out


def _plan(repository, find, patient_id: str) -> list[dict]:
    plans = open_main_plans(repository, patient_id)
    if not plans:
        return []
    plan = plans[0].resource
    out = [{"name": "carePlan", "valueReference": {"reference": f"CarePlan/{plan['id']}",
                                                   "display": plan.get("title", "DIALOG+ care plan")}}]
    if type(plan.get("author")) is dict:
        out.append({"name": "keyWorker", "valueReference": plan["author"]})
    crisis = [s.resource for s in find("CarePlan", [("part-of", f"CarePlan/{plan['id']}")])
              if plan_type(s.resource) == CRISIS_PLAN and s.resource.get("status") in OPEN_STATUSES]
    if crisis:
        out.append({"name": "crisisPlan", "valueReference": {"reference": f"CarePlan/{crisis[0]['id']}"}})
    for activity in plan.get("activity", ()):
        detail = activity.get("detail") or {}
        if detail.get("status") not in OPEN_ACTION:
            continue
        parts = [{"name": "id", "valueId": activity["id"]}] if activity.get("id") else []
        parts.append({"name": "description", "valueString": str(detail.get("description", ""))})
        domain = next((e.get("valueCoding") for e in activity.get("extension", ()) if e.get("url") == DOMAIN_EXT), None)
        if domain:
            parts.append({"name": "domain", "valueCoding": domain})
        parts += [{"name": "owner", "valueReference": owner} for owner in detail.get("performer", ())]
        due = (detail.get("scheduledPeriod") or {}).get("end")
        if due:
            parts.append({"name": "due", "valueDate": due[:10]})
        parts.append({"name": "status", "valueCode": detail.get("status")})
        out.append({"name": "openAction", "part": parts})
    return out
