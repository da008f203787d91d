"""An imported DIALOG+ session that agreed actions goes through the same code as
`POST Patient/[id]/$dialog-plus-session` (CarePlanSessions.record, not HTTP): its person is linked
and stored like any record, then the session - its ratings (the mapped QuestionnaireResponse,
under its own deterministic id), domains and actions - is merged into the person's one plan.
Re-importing it changes nothing (the session's ids are deterministic too). A key worker the import
offers is used only for a person's first plan: an import never replaces the one a partner named. A session the plan
refuses (no key worker for a first plan, an unknown domain, a partner with no care relationship
with the person) quarantines the record with reason `session` and the refusal; the person's
Patient, stored first, is kept.

A record whose person waits for an identity review (the DIALOG+ app's rows always do: no NHS
number, no birth date) holds its session there too: the review's `waiting` JSON keeps, beside the
mapped resources, the session's Parameters, the record as received (raw and context, so that a
refusal quarantines it as a record `quarantine retry` can map again) and the partner it was
imported as. Resolving the review (`resolve_review`) records the session as that partner, into the
plan of the person decided, exactly as an import that needed no review would have; a refusal then
quarantines the record with reason `session`, and the person's decision stands (`Ingest._decided`):
importing or retrying the record again records the session once the plan can take it.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

from fhir_bridge.careplan.merge import KEY_WORKER_PART
from fhir_bridge.errors import BridgeError, Forbidden, Unprocessable
from fhir_bridge.fhir.codec import dumps_json, loads_json
from fhir_bridge.fhir.outcome import Issue, issues_from_outcome
from fhir_bridge.pipelines.careplan_views import open_main_plans
from fhir_bridge.pipelines.resources import SYSTEM_CALLER, Caller
from fhir_bridge.pipelines.source_record import SourceRecord

__all__ = ["SESSION_REFUSED", "held_caller", "held_session", "importer", "record_held_session", "record_session"]

SESSION_REFUSED = "quarantined:session"
NO_KEY_WORKER = ("The import names no key worker, so it cannot start the person's plan: once a partner has "
                 "recorded their first DIALOG+ session with a key worker (Patient/{patient}/$dialog-plus-session), "
                 "`fhir-bridge quarantine retry` (or importing the file again) adds this session to it")


def record_session(ingest, record, mapped, *, decision: tuple[str, str] | None = None,
                   caller: Caller | None = None) -> str:
    """Store the record's person and record its session; the record's status (ingest's statuses).
    `decision`: a person's answer to the record's identity review (resolve_review); `caller`: whom
    the session is recorded as (default: the import's caller)."""
    from fhir_bridge.pipelines.ingest import SessionRecord  # ingest imports this module

    caller = caller or ingest.caller
    held = SessionRecord(record.source, record.location, record.raw, record.data, record.source_key,
                         record.context, session=mapped.session)
    linked = ingest._link(held, mapped.resources, decision)
    if isinstance(linked, str):  # held for an identity review (with its session), or quarantined
        return linked
    mapped_patient = next(r for r in mapped.resources if r.get("resourceType") == "Patient")
    patient = next(r for r in linked if r.get("resourceType") == "Patient")
    response = next(r for r in linked if r.get("resourceType") == "QuestionnaireResponse")
    parameters = _for_person(mapped.session, mapped_patient.get("id"), patient["id"])
    bridge = ingest.bridge
    has_plan = bool(open_main_plans(bridge.repository, patient["id"]))
    kept = [p for p in parameters["parameter"] if not (has_plan and p.get("name") == "keyWorker")]
    parameters = {**parameters, "parameter": [{"name": "response", "resource": response}, *kept]}
    try:
        with bridge.repository.unit_of_work() as uow:
            stored = [bridge.resources.put_validated(r, caller, uow=uow) for r in linked if r is not response]
        result = bridge.careplans.record(patient["id"], parameters, caller, response_id=response["id"])
    except Forbidden as exc:  # a partner's upload about someone it has no care relationship with
        return ingest._quarantine(record, "access", [Issue("error", exc.code, exc.message, exc.expression)],
                                  caller=caller)
    except BridgeError as exc:
        details = issues_from_outcome(exc.outcome) if isinstance(exc, Unprocessable) and exc.outcome else []
        lead = Issue("error", exc.code, f"the DIALOG+ session was refused: {exc.message}", exc.expression)
        hint = [Issue("information", "informational", NO_KEY_WORKER.format(patient=patient["id"]))] \
            if not has_plan and any(i.expression == KEY_WORKER_PART for i in [lead, *details]) else []
        return ingest._quarantine(record, "session", [lead, *details[1:], *hint], caller=caller)
    if result.added or any(w.created and not w.unchanged for w in stored):  # as ingest counts any record
        status = "created"
    else:
        status = "updated" if result.changed or any(not w.unchanged for w in stored) else "unchanged"
    return ingest.counted(record, status)


def _for_person(parameters: dict, mapped_id: str | None, patient_id: str) -> dict:
    """The session's references to the mapped Patient, to the person's one Patient (as linked)."""
    if not mapped_id or mapped_id == patient_id:
        return parameters
    text = dumps_json(parameters).decode().replace(f'"reference":"Patient/{mapped_id}"',
                                                   f'"reference":"Patient/{patient_id}"')
    return loads_json(text.encode())


# -- a session waiting in an identity review ----------------------------------------------------------
def held_session(record) -> dict:
    """What an identity review holds, beside the mapped resources and their importer, of a record
    that carries a session (ingest.SessionRecord): {} for any other record."""
    session = getattr(record, "session", None)
    if session is None:
        return {}
    try:
        raw = {"raw": record.raw.decode("utf-8")}
    except UnicodeDecodeError:
        raw = {"rawBase64": base64.b64encode(record.raw).decode("ascii")}
    return {"session": session, **raw, "context": record.context}


def held_caller(caller: Caller) -> dict:
    """Whom a record held for an identity review was imported as, scopes included: resolving the
    review stores it with that authority (a partner's upload as limited by care relationships)."""
    return {"partner": caller.partner, "name": caller.partner_name, "user": caller.user,
            "scopes": sorted(caller.scopes)}


def importer(who: dict) -> Caller | None:
    """The caller a held record was imported as (None: not known, the resolver's caller is used).
    Reviews held before scopes were kept give none: limited, as a partner's upload."""
    if not who.get("partner"):
        return None
    if who["partner"] == SYSTEM_CALLER.partner:
        return SYSTEM_CALLER
    return Caller(who["partner"], who.get("name") or "", who.get("user"), frozenset(who.get("scopes") or ()))


@dataclass(frozen=True)
class _Held:
    resources: list[dict]
    session: dict


def record_held_session(ingest, review, held: dict, decision: tuple[str, str]) -> str:
    """A review's waiting session, once a person has decided whose it is (`decision`, as for
    Ingest.store): the person stored and the session recorded as the partner that imported it,
    under the record as it was received (so a refusal quarantines that record); its status."""

    raw = held["raw"].encode("utf-8") if "raw" in held else base64.b64decode(held.get("rawBase64", ""))
    record = SourceRecord(review.source, held["location"], raw, None, review.source_key, held.get("context"))
    return record_session(ingest, record, _Held(held["resources"], held["session"]), decision=decision,
                          caller=importer(held.get("caller") or {}))
