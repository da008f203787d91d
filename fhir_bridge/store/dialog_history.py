"""A person's DIALOGs from the `dialog_scores` rows, oldest first: what the recording-burden guard
and `$dialog-summary` read instead of parsing QuestionnaireResponses."""
from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, select

from fhir_bridge.store import schema
from fhir_bridge.store.driver_statements import IN_CHUNK

__all__ = ["dialogs_of", "dialogs_of_people"]

_scores = schema.dialog_scores


def dialogs_of(connection: Connection, patient_id: str, *, purpose: str | None = None, low: int | None = None,
               high: int | None = None) -> list[dict]:
    """Score rows (as dicts) of the person's DIALOG responses, by authored time (microseconds UTC,
    `low` <= authored <= `high` when given); those with no authored time last."""
    return dialogs_of_people(connection, [patient_id], purpose=purpose, low=low, high=high).get(patient_id, [])


def dialogs_of_people(connection: Connection, patient_ids: Collection[str], *, purpose: str | None = None,
                      low: int | None = None, high: int | None = None,
                      fields: tuple[str, ...] | None = None) -> dict[str, list[dict]]:
    """dialogs_of for many people at once (an import batch's): patient id -> their rows, in one
    query per few hundred people; people with no rows are left out. `fields`: the columns wanted
    (and subject_id), not all forty: an import batch's recording-burden checks read a few columns
    of thousands of rows."""
    found: dict[str, list[dict]] = {}
    ids = sorted(set(patient_ids))
    columns = [_scores.c[name] for name in dict.fromkeys(("subject_id", *fields))] if fields else [_scores]
    for start in range(0, len(ids), IN_CHUNK):
        query = select(*columns).where(_scores.c.subject_type == "Patient",
                                      _scores.c.subject_id.in_(ids[start:start + IN_CHUNK]),
                                      _scores.c.status != "entered-in-error")
        if purpose is not None:
            query = query.where(_scores.c.purpose == purpose)
        if low is not None:
            query = query.where(_scores.c.authored >= low)
        if high is not None:
            query = query.where(_scores.c.authored <= high)
        query = query.order_by(_scores.c.subject_id, _scores.c.authored.is_(None), _scores.c.authored,
                               _scores.c.response_id)
        for row in connection.execute(query):
            found.setdefault(row.subject_id, []).append(dict(row._mapping))
    return found
