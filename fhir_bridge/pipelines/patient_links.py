"""Following Patient.link after a merge: which Patient is the person now?

A merged-away Patient (pipelines/patient_merge.py) stays in the store, inactive, with a link
`replaced-by` its survivor; it keeps its identifiers, as FHIR's merge does, so history and searches
by an old identifier still find it. Whoever resolves a person (identity linking, the care plan
operation) follows those links to the survivor. No imports from the rest of pipelines/, so both
identity.py and patient_merge.py can use it.
"""
from __future__ import annotations

from fhir_bridge.errors import Conflict

__all__ = ["MAX_MERGE_CHAIN", "replaced_by", "surviving_patient", "survivor"]

# A person merged more often than this is a loop of links (A replaced-by B replaced-by A), not history.
MAX_MERGE_CHAIN = 16


def replaced_by(patient: dict) -> str | None:
    """The id of the Patient that replaced this one (its `replaced-by` link), or None."""
    for link in patient.get("link", ()):
        if type(link) is dict and link.get("type") == "replaced-by":
            reference = (link.get("other") or {}).get("reference")
            if type(reference) is str and reference.startswith("Patient/"):
                return reference[len("Patient/"):].split("/", 1)[0]
    return None


def surviving_patient(repository, patient_id: str) -> str:
    """The id of the Patient that `patient_id` is now: itself, or the end of its `replaced-by`
    links. NotFound / Gone as `repository.read` for an unknown or deleted Patient; Conflict for a
    loop of links."""
    return survivor(repository, patient_id)["id"]


def survivor(repository, patient_id: str) -> dict:
    """As surviving_patient, but the surviving Patient itself (read once)."""
    seen = [patient_id]
    current = repository.read("Patient", patient_id).resource
    while (target := replaced_by(current)) is not None:
        if target in seen or len(seen) > MAX_MERGE_CHAIN:
            raise Conflict(f"Patient/{patient_id}: its replaced-by links loop ({' -> '.join([*seen, target])})")
        seen.append(target)
        current = repository.read("Patient", target).resource
    return current
