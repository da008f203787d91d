"""A person's DIALOGs from the `dialog_scores` rows, oldest first: what the recording-burden guard
and `$dialog-summary` read instead of parsing QuestionnaireResponses."""
from __future__ import annotations

from sqlalchemy import Connection, select

from fhir_bridge.store import schema

__all__ = ["dialogs_of"]

_scores = schema.dialog_scores


def dialogs_of(connection: Connection, patient_id: str, *, purpose: str | None = None, low: int | None = None,
               high: int | None = None) -> list[dict]:
    """Score rows (as dicts) of the person's DIALOG responses, by authored time (microseconds UTC,
    `low` <= authored <= `high` when given); those with no authored time last."""
    query = select(_scores).where(_scores.c.subject_type == "Patient", _scores.c.subject_id == patient_id,
                                  _scores.c.status != "entered-in-error")
    if purpose is not None:
        query = query.where(_scores.c.purpose == purpose)
    if low is not None:
        query = query.where(_scores.c.authored >= low)
    if high is not None:
        query = query.where(_scores.c.authored <= high)
    query = query.order_by(_scores.c.authored.is_(None), _scores.c.authored, _scores.c.response_id)
    return [dict(row._mapping) for row in connection.execute(query)]
