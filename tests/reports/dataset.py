"""A small fixed data set whose report figures are worked out by hand in the tests.

24 people, two PROM DIALOGs each (an assessment in February 2024, a review in May), every item
rated alike within an ethnic group so the means can be read off:

| group (code) | people | gender | born | team | organisation | entry -> latest (items 1-8) | items 9-11 |
|---|---|---|---|---|---|---|---|
| White (A) | 8 | 4 F, 4 M | 1990-06-01 | cmht-north | RV3 | 3 -> 4 | 3 -> 5 |
| Asian (H) | 7 | 7 F | 1980-01-15 | cmht-north | RV3 | 5 -> 5 | 5 -> 5 |
| Black (M) | 5 | 5 M | 2000-03-03 | eip-south | RV3 | 2 -> 3 | 2 -> 3 |
| Mixed (D) | 4 | 2 F, 2 M | 1960-12-31 | eip-south | X9V2K | 6 -> 4 | 6 -> 4 |

Entries that must not count as outcomes, all recorded after the review (so they would also become
the "latest" DIALOG if they were wrongly paired): a care-planning DIALOG (all items 1) for three
White people, and a PROM tagged as a possible duplicate (all items 7) for two Asian people. Five
people (White) hold a DIALOG+ care plan (MHSDS type 10, active).
"""
from __future__ import annotations

from fhir_bridge.careplan.codes import PLAN_TYPE_SYSTEM
from fhir_bridge.store.outcome_fields import ENTRY_FLAG_SYSTEM, POSSIBLE_DUPLICATE

BASE = "https://fhir-bridge.example.org"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
DOMAINS = ["mental-health", "physical-health", "job-situation", "accommodation", "leisure-activities",
           "friendships", "partner-family", "personal-safety", "medication", "practical-help", "meetings"]
ETHNIC_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ETHNIC_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"

GROUPS = [  # code, genders, born, team, org, (entry life, entry treatment), (latest life, latest treatment)
    ("A", "ffffmmmm", "1990-06-01", "cmht-north", "RV3", (3, 3), (4, 5)),
    ("H", "fffffff", "1980-01-15", "cmht-north", "RV3", (5, 5), (5, 5)),
    ("M", "mmmmm", "2000-03-03", "eip-south", "RV3", (2, 2), (3, 3)),
    ("D", "ffmm", "1960-12-31", "eip-south", "X9V2K", (6, 6), (4, 4)),
]
GENDER = {"f": "female", "m": "male"}


def patient(patient_id: str, gender: str, born: str, ethnic: str | None) -> dict:
    resource = {"resourceType": "Patient", "id": patient_id, "gender": gender, "birthDate": born,
                "name": [{"family": patient_id, "given": ["Test"]}]}
    if ethnic:
        resource["extension"] = [{"url": ETHNIC_EXT, "valueCodeableConcept": {
            "coding": [{"system": ETHNIC_SYSTEM, "code": ethnic}]}}]
    return resource


def referral(referral_id: str, patient_id: str, team: str) -> dict:
    return {"resourceType": "ServiceRequest", "id": referral_id, "status": "active", "intent": "order",
            "subject": {"reference": f"Patient/{patient_id}"}, "performer": [{"reference": f"CareTeam/{team}"}]}


def careplan(plan_id: str, patient_id: str) -> dict:
    return {"resourceType": "CarePlan", "id": plan_id, "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": PLAN_TYPE_SYSTEM, "code": "10"}]}],
            "subject": {"reference": f"Patient/{patient_id}"}}


def dialog(response_id: str, patient_id: str, authored: str, *, purpose: str = "prom", timepoint: str | None = None,
           org: str = "RV3", life: int | None = None, treatment: int | None = None, ratings: dict | None = None,
           referral_id: str | None = None, duplicate: bool = False) -> dict:
    ratings = dict(ratings or {})
    for index, domain in enumerate(DOMAINS):
        value = life if index < 8 else treatment
        if value is not None:
            ratings.setdefault(domain, value)
    extensions = [{"url": f"{BASE}/StructureDefinition/dialog-collection-purpose",
                   "valueCoding": {"system": f"{BASE}/CodeSystem/dialog-purpose", "code": purpose}}]
    if timepoint:
        extensions.append({"url": f"{BASE}/StructureDefinition/dialog-timepoint",
                           "valueCoding": {"system": f"{BASE}/CodeSystem/dialog-timepoint", "code": timepoint}})
    extensions.append({"url": f"{BASE}/StructureDefinition/recording-organization",
                       "valueReference": {"identifier": {"system": ODS, "value": org}}})
    resource = {
        "resourceType": "QuestionnaireResponse", "id": response_id,
        "meta": {"profile": [f"{BASE}/StructureDefinition/dialog-questionnaire-response"]},
        "extension": extensions, "questionnaire": f"{BASE}/Questionnaire/dialog|1.0.0", "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"}, "authored": authored,
        "item": [{"linkId": domain, "answer": [{"valueCoding": {"system": f"{BASE}/CodeSystem/dialog-rating",
                                                                "code": str(ratings[domain])}}]}
                 for domain in DOMAINS if ratings.get(domain) is not None],
    }
    if referral_id:
        resource["basedOn"] = [{"reference": f"ServiceRequest/{referral_id}"}]
    if duplicate:
        resource["meta"]["tag"] = [{"system": ENTRY_FLAG_SYSTEM, "code": POSSIBLE_DUPLICATE}]
    return resource


def resources() -> list[dict]:
    out: list[dict] = []
    for code, genders, born, team, org, entry, latest in GROUPS:
        for n, g in enumerate(genders):
            pid = f"p-{code.lower()}{n}"
            ref = f"ref-{pid}"
            out += [patient(pid, GENDER[g], born, code), referral(ref, pid, team),
                    dialog(f"{pid}-t1", pid, "2024-02-05T10:00:00Z", timepoint="assessment", org=org,
                           life=entry[0], treatment=entry[1], referral_id=ref),
                    dialog(f"{pid}-t2", pid, "2024-05-06T10:00:00Z", timepoint="review", org=org,
                           life=latest[0], treatment=latest[1], referral_id=ref)]
            if code == "A" and n < 3:
                out.append(dialog(f"{pid}-cp", pid, "2024-06-03T10:00:00Z", purpose="care-planning", org=org,
                                  life=1, treatment=1, referral_id=ref))
            if code == "A" and n < 5:
                out.append(careplan(f"plan-{pid}", pid))
            if code == "H" and n < 2:
                out.append(dialog(f"{pid}-dup", pid, "2024-06-10T10:00:00Z", timepoint="review", org=org,
                                  life=7, treatment=7, referral_id=ref, duplicate=True))
    return out


def load(repository, extra: list[dict] | None = None) -> None:
    with repository.unit_of_work() as uow:
        uow.create_many(resources() + list(extra or []))
