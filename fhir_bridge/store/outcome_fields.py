"""What outcome reports read from a resource besides its DIALOG scores, derived on write (and by
migration 5 for data stored before it): a DIALOG's referral and possible-duplicate tag, a person's
gender, ethnic category and birth date. Plain FHIR reading, no domain rules.
"""
from __future__ import annotations

CANONICAL_BASE = "https://fhir-bridge.example.org"
# terminology/CodeSystem-dialog-entry-flag.json defines this tag; the write path that finds a
# possible duplicate (a PROM recorded soon after another) puts it in meta.tag.
ENTRY_FLAG_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/dialog-entry-flag"
POSSIBLE_DUPLICATE = "possible-duplicate"
ETHNIC_CATEGORY_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ETHNIC_CATEGORY_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
# The eleven DIALOG domains as a score row names its columns (rating_<domain>, help_<domain>), in
# the Questionnaire's order. Here, not in schema.py, so that scoring (an import's worker processes)
# does not load SQLAlchemy; schema.py builds the columns from it.
DIALOG_DOMAINS = ("mental_health", "physical_health", "job_situation", "accommodation", "leisure_activities",
                  "friendships", "partner_family", "personal_safety", "medication", "practical_help", "meetings")


def referral_of(response: dict) -> str | None:
    """The id of the ServiceRequest (the referral, MHSDS MHS101) the response is basedOn, if any."""
    for ref in response.get("basedOn") or ():
        target = ref.get("reference") if type(ref) is dict else None
        if type(target) is str:
            parts = target.split("/_history/")[0].split("/")
            if len(parts) >= 2 and parts[-2] == "ServiceRequest":
                return parts[-1]
    return None


def is_possible_duplicate(resource: dict) -> bool:
    tags = (resource.get("meta") or {}).get("tag") or ()
    return any(type(t) is dict and t.get("system") == ENTRY_FLAG_SYSTEM and t.get("code") == POSSIBLE_DUPLICATE
               for t in tags)


def person_row(patient: dict) -> dict:
    """The person_attributes row of a Patient (without patient_id)."""
    gender = patient.get("gender")
    return {"gender": gender if type(gender) is str else None,
            "ethnic_category": _ethnic_category(patient),
            "birth_date": _birth_date(patient.get("birthDate"))}


def _ethnic_category(patient: dict) -> str | None:
    for ext in patient.get("extension") or ():
        if type(ext) is dict and ext.get("url") == ETHNIC_CATEGORY_EXT:
            for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or ():
                if type(coding) is dict and coding.get("system") == ETHNIC_CATEGORY_SYSTEM and coding.get("code"):
                    return str(coding["code"])[:8]
    return None


def _birth_date(value) -> int | None:
    """YYYYMMDD. A partial date counts from the middle of its year or month (1 July, the 15th): an
    age band is then wrong for at most half a year either side instead of always one way."""
    if type(value) is not str or len(value) < 4 or not value[:4].isdigit():
        return None
    digits = value[:10].replace("-", "")
    if len(digits) == 4:
        digits += "0701"
    elif len(digits) == 6:
        digits += "15"
    return int(digits) if len(digits) == 8 and digits.isdigit() else None
