"""Small FHIR resources for submission tests, shaped as the importers and DIALOG+ sessions store
them (mappings/rio/*.yaml, profiles/StructureDefinition-dialog-plus-*.json). Each carries
meta.lastUpdated: when the test store writes it (`store_of` sets the store's clock to it), so
"changed in the month" and "as at the month's end" can be tested with real history."""
from __future__ import annotations

BASE = "https://fhir-bridge.example.org"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
PROVIDER = "RXX"
DOMAINS = ("mental-health", "physical-health", "job-situation", "accommodation", "leisure-activities",
           "friendships", "partner-family", "personal-safety", "medication", "practical-help", "meetings")
WRITTEN = "2026-01-02T09:00:00Z"


def _meta(written: str) -> dict:
    return {"lastUpdated": written}


def patient(pid: str, *, client: str | None = None, nhs: str | None = "9990000018", status: str | None = "01",
            birth: str = "1980-04-02", gender: str | None = "female", ethnic: str | None = "N",
            postcode: str | None = "E1 4NS", written: str = WRITTEN) -> dict:
    identifiers = []
    if nhs:
        number = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}
        if status:
            number["extension"] = [{
                "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                    "code": status}]}}]
        identifiers.append(number)
    if client:
        identifiers.append({"use": "secondary", "system": f"{BASE}/Id/rio-client/{PROVIDER}", "value": client})
    resource = {"resourceType": "Patient", "id": pid, "meta": _meta(written), "identifier": identifiers,
                "name": [{"use": "official", "family": "Okafor", "given": ["Ada"]}], "birthDate": birth}
    if gender:
        resource["gender"] = gender
    if ethnic:
        resource["extension"] = [{
            "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory",
            "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                                                 "code": ethnic}]}}]
    if postcode:
        resource["address"] = [{"postalCode": postcode}]
    if not identifiers:
        del resource["identifier"]
    return resource


def referral(rid: str, patient_id: str, *, received: str, discharged: str | None = None, team_type: str | None = "A06",
             team: str = "CMHT-EAST", provider: str = PROVIDER, local: str | None = None, status: str | None = None,
             written: str = WRITTEN) -> dict:
    resource = {"resourceType": "ServiceRequest", "id": rid, "meta": _meta(written),
                "status": status or ("completed" if discharged else "active"), "intent": "order",
                "subject": {"reference": f"Patient/{patient_id}"}, "authoredOn": received,
                "occurrencePeriod": {"start": received, **({"end": discharged} if discharged else {})},
                "performer": [{"type": "Organization", "identifier": {"system": ODS, "value": provider}},
                              {"type": "CareTeam", "identifier": {"system": f"{BASE}/Id/rio-team/{provider}", "value": team}}]}
    if local:
        resource["identifier"] = [{"system": f"{BASE}/Id/rio-referral/{provider}", "value": local}]
    if team_type:
        resource["performerType"] = {"coding": [{"system": f"{BASE}/CodeSystem/mhsds-service-team-type",
                                                 "code": team_type}]}
    return resource


def contact(cid: str, patient_id: str, referral_id: str | None, *, start: str, attendance: str | None = "5",
            mechanism: str | None = "01", staff: str | None = "STF1", status: str = "finished", local: str | None = None,
            written: str = WRITTEN) -> dict:
    resource = {"resourceType": "Encounter", "id": cid, "meta": _meta(written), "status": status,
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{patient_id}"}, "period": {"start": start}}
    if referral_id:
        resource["basedOn"] = [{"reference": f"ServiceRequest/{referral_id}"}]
    if local:
        resource["identifier"] = [{"system": f"{BASE}/Id/rio-contact/{PROVIDER}", "value": local}]
    if attendance:
        resource["extension"] = [{"url": f"{BASE}/StructureDefinition/encounter-attendance",
                                  "valueCoding": {"system": f"{BASE}/CodeSystem/mhsds-attendance", "code": attendance}}]
    if mechanism:
        resource["type"] = [{"coding": [{"system": f"{BASE}/CodeSystem/mhsds-consultation-mechanism", "code": mechanism}]}]
    if staff:
        resource["participant"] = [{"individual": {"type": "Practitioner", "identifier": {
            "system": f"{BASE}/Id/rio-staff/{PROVIDER}", "value": staff}}}]
    return resource


def key_worker(member: dict, start: str, end: str | None = None) -> dict:
    """A participant: `member` a reference ({"reference": "Practitioner/sam"}) or a logical one."""
    period = {"start": start, **({"end": end} if end else {})}
    return {"role": [{"coding": [{"system": f"{BASE}/CodeSystem/careteam-role", "code": "key-worker"}]}],
            "member": member, "period": period}


def staff(value: str) -> dict:
    return {"type": "Practitioner", "identifier": {"system": f"{BASE}/Id/rio-staff/{PROVIDER}", "value": value}}


def care_team(tid: str, patient_id: str, participants: list[dict], *, status: str = "active",
              written: str = WRITTEN) -> dict:
    return {"resourceType": "CareTeam", "id": tid, "meta": _meta(written), "status": status,
            "subject": {"reference": f"Patient/{patient_id}"}, "participant": participants}


def care_plan(plan_id: str, patient_id: str, *, plan_type: str = "10", created: str | None = "2026-10-12T11:40:00+01:00",
              start: str = "2026-10-12", agreed: str | None = None, agreed_by: tuple[str, ...] = ("person", "professional"),
              family: bool | None = False, part_of: str | None = None, status: str = "active", title: str = "My plan",
              written: str = WRITTEN) -> dict:
    resource = {"resourceType": "CarePlan", "id": plan_id, "meta": _meta(written), "status": status, "intent": "plan",
                "category": [{"coding": [{"system": f"{BASE}/CodeSystem/mhsds-care-plan-type", "code": plan_type}]}],
                "title": title, "subject": {"reference": f"Patient/{patient_id}"}, "period": {"start": start}}
    if created:
        resource["created"] = created
    if part_of:
        resource["partOf"] = [{"reference": f"CarePlan/{part_of}"}]
    if agreed:
        parts = [{"url": "agreedBy", "valueCoding": {"system": f"{BASE}/CodeSystem/careplan-agreed-by", "code": who}}
                 for who in agreed_by]
        parts.append({"url": "agreedDateTime", "valueDateTime": agreed})
        if family is not None:
            parts.append({"url": "familyCarePlan", "valueBoolean": family})
        resource["extension"] = [{"url": f"{BASE}/StructureDefinition/careplan-agreement", "extension": parts}]
    return resource


def dialog(qid: str, patient_id: str, *, authored: str, purpose: str = "prom", timepoint: str | None = "assessment",
           ratings: dict[str, int] | None = None, referral_id: str | None = None, encounter_id: str | None = None,
           recorder: str = PROVIDER, author: dict | None = None, status: str = "completed", tags: list | None = None,
           written: str | None = None) -> dict:
    """A DIALOG response; `ratings` by domain (8: not applicable; a domain left out: not answered).
    By default every domain is rated 4, and the author is staff STF1 ({}: none)."""
    ratings = {d: 4 for d in DOMAINS} if ratings is None else ratings
    extensions = [{"url": f"{BASE}/StructureDefinition/dialog-collection-purpose",
                   "valueCoding": {"system": f"{BASE}/CodeSystem/dialog-purpose", "code": purpose}}]
    if timepoint:
        extensions.append({"url": f"{BASE}/StructureDefinition/dialog-timepoint",
                           "valueCoding": {"system": f"{BASE}/CodeSystem/dialog-timepoint", "code": timepoint}})
    extensions.append({"url": f"{BASE}/StructureDefinition/recording-organization",
                       "valueReference": {"identifier": {"system": ODS, "value": recorder}}})
    resource = {"resourceType": "QuestionnaireResponse", "id": qid,
                "meta": {"lastUpdated": written or (authored if "T" in authored else authored + "T12:00:00Z"),
                         **({"tag": tags} if tags else {})},
                "extension": extensions, "questionnaire": f"{BASE}/Questionnaire/dialog|1.0.0", "status": status,
                "subject": {"reference": f"Patient/{patient_id}"}, "authored": authored,
                "item": [{"linkId": d, "answer": [{"valueCoding": {"system": f"{BASE}/CodeSystem/dialog-rating",
                                                                   "code": str(r)}}]}
                         for d, r in ratings.items()]}
    author = staff("STF1") if author is None else author
    if author:   # {}: no author
        resource["author"] = author
    if referral_id:
        resource["basedOn"] = [{"reference": f"ServiceRequest/{referral_id}"}]
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return resource
