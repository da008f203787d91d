"""Builders of $dialog-plus-session Parameters for tests: a session reads like the meeting it records."""
from __future__ import annotations

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def _string(name: str, value: str | None) -> list[dict]:
    return [] if value is None else [{"name": name, "valueString": value}]


def session(*parameters: dict, date: str | None = None, response: dict | None = None,
            practitioner: dict | None = None) -> dict:
    head = [{"name": "response", "resource": response}] if response is not None else []
    if date is not None:
        head.append({"name": "date", "valueDateTime": date})
    if practitioner is not None:
        head.append({"name": "practitioner", "valueReference": practitioner})
    return {"resourceType": "Parameters", "parameter": head + list(parameters)}


def domain(code: str, *actions: dict, understanding: str | None = None, best_case: str | None = None,
           smallest_step: str | None = None, options: str | None = None) -> dict:
    parts = [{"name": "code", "valueCode": code}, *_string("understanding", understanding),
             *_string("bestCase", best_case), *_string("smallestStep", smallest_step), *_string("options", options)]
    return {"name": "domain", "part": parts + list(actions)}


def action(description: str, *owners: dict, due: str | None = None) -> dict:
    parts = [{"name": "description", "valueString": description}]
    parts += [{"name": "owner", "valueReference": owner} for owner in owners]
    if due is not None:
        parts.append({"name": "due", "valueDate": due})
    return {"name": "action", "part": parts}


def review(action_id: str, status: str, note: str | None = None) -> dict:
    return {"name": "review", "part": [{"name": "action", "valueId": action_id}, {"name": "status", "valueCode": status},
                                       *_string("note", note)]}


def key_worker(member: dict, start: str | None = None) -> dict:
    parts = [{"name": "member", "valueReference": member}]
    if start is not None:
        parts.append({"name": "start", "valueDate": start})
    return {"name": "keyWorker", "part": parts}


def team_member(member: dict, role: str, start: str | None = None) -> dict:
    parts = [{"name": "member", "valueReference": member}, {"name": "role", "valueCode": role}]
    if start is not None:
        parts.append({"name": "start", "valueDate": start})
    return {"name": "careTeamMember", "part": parts}


def agreement(*who: str, date: str | None = None, family: bool | None = None) -> dict:
    parts = [{"name": "agreedBy", "valueCode": w} for w in who]
    if date is not None:
        parts.append({"name": "date", "valueDateTime": date})
    if family is not None:
        parts.append({"name": "familyCarePlan", "valueBoolean": family})
    return {"name": "agreement", "part": parts}


def organisation(ods: str, name: str) -> dict:
    return {"type": "Organization", "identifier": {"system": ODS, "value": ods}, "display": name}


# -- care relationships: what lets a partner see and change a person's plan -------------------------------
def consent(patient_id: str, *partners: tuple[str, str], end: str | None = None) -> dict:
    """The person's consent to share their records with these partner organisations (ODS, name)."""
    provision: dict = {"type": "permit", "actor": [
        {"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
         "reference": organisation(*partner)} for partner in partners]}
    if end is not None:
        provision["period"] = {"start": "2024-01-01", "end": end}
    return {"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient_id}"}, "dateTime": "2024-02-01T09:00:00Z",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": provision}


def referral(patient_id: str, partner: tuple[str, str], *, status: str = "active") -> dict:
    """A referral of the person to a partner organisation (MHSDS MHS101 as FHIR: ServiceRequest)."""
    return {"resourceType": "ServiceRequest", "status": status, "intent": "order",
            "code": {"text": "Referral for support with housing"}, "subject": {"reference": f"Patient/{patient_id}"},
            "authoredOn": "2024-03-01", "performer": [organisation(*partner)]}


def crisis(*, warning=(), helps=(), contact=(), communicate=()) -> dict:
    """The crisis parameter: items for the crisis plan (a contact may be a Reference)."""
    parts = [{"name": "earlyWarningSign", "valueString": t} for t in warning]
    parts += [{"name": "whatHelps", "valueString": t} for t in helps]
    parts += [{"name": "whoToContact", **({"valueReference": t} if type(t) is dict else {"valueString": t})}
              for t in contact]
    parts += [{"name": "howToCommunicate", "valueString": t} for t in communicate]
    return {"name": "crisis", "part": parts}
