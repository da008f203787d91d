"""A VCSE DIALOG+ session that agreed actions (`ChosenDomains`, `AgreedActions`; mappings/vcse/README.md)
-> the `$dialog-plus-session` Parameters its import records through the same session code as the
API (pipelines/ingest_sessions.py), so the person's one plan gets the actions.

- domains by their VCSE names, from the mapping's own `dialog-domains` list (data, not code); a
  name it does not know is passed on as it is, so the session refuses it naming the element;
- an `AgreedActions` entry `domain: action (who, by when)`; `who` is free text: the client
  (`client`, `self`, `me`) owns it as the person, anyone else named is the VCSE organisation (the
  export has no ids for its workers); the words stay in the description. An entry that does not
  fit is the action's text under the first chosen domain;
- the ratings are the mapped QuestionnaireResponse, whose `authored` (SessionDate) dates the session;
- `WorkerName` is offered as key worker (a Practitioner known by name within the organisation):
  it is used only when the person has no plan yet, since a plan needs a named key worker and an
  import never replaces the one a partner named (pipelines/ingest_sessions.py).
"""
from __future__ import annotations

import re
from datetime import datetime

__all__ = ["session_parameters"]

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
WORKER_SYSTEM = "https://fhir-bridge.example.org/Id/vcse-worker/"  # + ODS code: worker names are local to it
_ENTRY = re.compile(r"\s*(?P<domain>[^:;]+?)\s*:\s*(?P<what>.+?)\s*(?:\((?P<who>[^(),]*),\s*(?P<due>[^()]*)\))?\s*")
_PERSON = re.compile(r"\b(client|self|me|person|service user)\b", re.IGNORECASE)


def session_parameters(row: dict[str, str], domain_names: dict[str, str], patient_id: str) -> dict | None:
    """The Parameters of a DIALOG+ row that agreed actions; None for any other row."""
    if row.get("SessionType", "").strip().upper() != "DIALOG+" or not row.get("AgreedActions", "").strip():
        return None
    ods = row.get("OrganisationODS", "").strip().upper()
    chosen = [_code(name, domain_names) for name in row.get("ChosenDomains", "").split(";") if name.strip()]
    actions: dict[str, list[dict]] = {}
    for entry in (e for e in row["AgreedActions"].split(";") if e.strip()):
        match = _ENTRY.fullmatch(entry)
        domain = _code(match["domain"], domain_names) if match else (chosen[0] if chosen else "")
        what, who, due = (match["what"], match["who"], match["due"]) if match else (entry.strip(), None, None)
        owners = []
        if who is None or _PERSON.search(who):
            owners.append({"reference": f"Patient/{patient_id}"})
        if who is not None and (not owners or re.sub(_PERSON, "", who).strip(" ,&and")):
            owners.append(_organisation(ods))
        parts = [{"name": "description", "valueString": f"{what.strip()} ({who.strip()})" if who else what.strip()}]
        parts += [{"name": "owner", "valueReference": owner} for owner in owners]
        if due and (day := _date(due)):
            parts.append({"name": "due", "valueDate": day})
        actions.setdefault(domain, []).append({"name": "action", "part": parts})
    domains = list(dict.fromkeys([*chosen, *actions]))
    parameters = []  # the session's date is its ratings' authored (the mapped SessionDate)
    worker = " ".join(row.get("WorkerName", "").split())
    if worker:
        member = {"type": "Practitioner", "identifier": {"system": WORKER_SYSTEM + ods, "value": worker},
                  "display": worker}
        parameters.append({"name": "keyWorker", "part": [{"name": "member", "valueReference": member},
                                                         {"name": "onBehalfOf", "valueReference": _organisation(ods)}]})
    parameters += [{"name": "domain", "part": [{"name": "code", "valueCode": code}, *actions.get(code, [])]}
                   for code in domains]
    return {"resourceType": "Parameters", "parameter": parameters}


def _organisation(ods: str) -> dict:
    return {"type": "Organization", "identifier": {"system": ODS, "value": ods}, "display": f"VCSE organisation {ods}"}


def _code(name: str, domain_names: dict[str, str]) -> str:
    return domain_names.get(" ".join(name.lower().split()), name.strip())


def _date(text: str) -> str | None:
    text = text.strip()
    for form in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text[:10], form).date().isoformat()
        except ValueError:
            continue
    return None
