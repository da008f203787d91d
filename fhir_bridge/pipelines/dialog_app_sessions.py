"""A DIALOG+ app session's `<Domain> Discussed` (1/0) and `<Domain> Action Items` (";"-separated)
columns (mappings/dialog-app/README.md) -> the `$dialog-plus-session` Parameters its import records
through the same session code as the API (pipelines/ingest_sessions.py), so the person's one plan
gets the actions.

- domains by the mapping's own `dialog-domains` list (dialog-domain code -> column prefix: data,
  not code), never by position: the app numbers partner/family 6 and friendships 7;
- a domain is chosen when its Discussed is 1, or when it has action items (an action agreed about a
  domain means it was discussed, whatever the flag says); the native export's misspelt header
  `Leisure Activitie Discussed` reads as `Leisure Activities Discussed`;
- each action item is an action of its own domain, owned by the person themself: the export names
  no owner, and what the app records as a session's action items are the steps the person agreed
  to take (a worker's or another organisation's part is not in the export, so the plan does not
  claim one); no due date (the export has none);
- the ratings are the mapped QuestionnaireResponse (purpose care-planning), whose `authored` (Date
  Start) dates the session. The export names no worker, so an app session offers no key worker: it
  adds to a person's plan and cannot start one (the session is refused and the record quarantined
  with reason `session`, pipelines/ingest_sessions.py).

A Discussed other than 1, 0 or blank, the two spellings of one Discussed column disagreeing, and a
Discussed or Action Items column of a domain the format does not have (a renamed or misspelt
domain) are problems of the record: it is quarantined with the column named, never dropped quietly.
"""
from __future__ import annotations

from collections.abc import Sequence

from fhir_bridge.fhir.outcome import Issue

__all__ = ["MISSPELT_HEADERS", "session_parameters"]

# The app's own misspellings of its headers -> the column they stand for.
MISSPELT_HEADERS = {"Leisure Activitie Discussed": "Leisure Activities Discussed"}
DISCUSSED, ACTIONS = " Discussed", " Action Items"


def session_parameters(row: dict[str, str], domains: Sequence[tuple[str, str]], patient_id: str,
                       location: str) -> tuple[dict | None, list[Issue]]:
    """(the Parameters of the row's session, or None when it discussed no domain; the row's problems).
    `domains`: (dialog-domain code, column prefix) in the Questionnaire's order."""
    problems = _unknown_columns(row, domains, location)
    owner = {"reference": f"Patient/{patient_id}"}
    parameters = []
    for code, prefix in domains:
        discussed = _discussed(row, prefix, location, problems)
        items = _items(row.get(prefix + ACTIONS))
        if not discussed and not items:
            continue
        actions = [{"name": "action", "part": [{"name": "description", "valueString": item},
                                               {"name": "owner", "valueReference": owner}]} for item in items]
        parameters.append({"name": "domain", "part": [{"name": "code", "valueCode": code}, *actions]})
    if problems or not parameters:
        return None, problems
    return {"resourceType": "Parameters", "parameter": parameters}, problems


def _discussed(row: dict[str, str], prefix: str, location: str, problems: list[Issue]) -> bool:
    column = prefix + DISCUSSED
    spellings = [column, *(wrong for wrong, right in MISSPELT_HEADERS.items() if right == column)]
    given = {name: (row.get(name) or "").strip() for name in spellings if (row.get(name) or "").strip()}
    if len(set(given.values())) > 1:
        listed = " and ".join(f"{name!r} = {value!r}" for name, value in given.items())
        problems.append(Issue("error", "value", f"{location}: {listed} disagree: is {prefix} discussed or not?"))
        return False
    for name, value in given.items():
        if value not in ("0", "1"):
            problems.append(Issue("error", "value", f"{location}: column {name!r} is {value!r}, expected 1 "
                                                    "(discussed), 0 (not discussed) or blank"))
            return False
    return "1" in given.values()


def _items(text: str | None) -> list[str]:
    """The ";"-separated action items, each on one line (an item the export broke over lines is
    joined again), blanks left out, an item repeated (ignoring case and spacing) given once."""
    items: dict[str, str] = {}
    for item in (text or "").split(";"):
        words = " ".join(item.split())
        if words:
            items.setdefault(words.lower(), words)
    return list(items.values())


def _unknown_columns(row: dict[str, str], domains: Sequence[tuple[str, str]], location: str) -> list[Issue]:
    known = {prefix + suffix for _, prefix in domains for suffix in (DISCUSSED, ACTIONS)} | set(MISSPELT_HEADERS)
    return [Issue("error", "structure", f"{location}: column {column!r} is not a DIALOG domain of the DIALOG+ app "
                                        "format (mappings/dialog-app/README.md): its content would be lost")
            for column, value in row.items()
            if column.endswith((DISCUSSED, ACTIONS)) and column not in known and (value or "").strip() not in ("", "0")]
