"""Following Patient.link after a merge: which Patient is the person now?

A merged-away Patient (pipelines/patient_merge.py) stays in the store, inactive, with a link
`replaced-by` its survivor; it keeps its identifiers, as FHIR's merge does, so history and searches
by an old identifier still find it. Whoever resolves a person (identity linking, the care plan
operation) follows those links to the survivor, and `repointed` is the one rewrite of a person's
references (the merge, an import's linking, a session for a person merged away). No imports from
the rest of pipelines/, so every one of those can use it.
"""
from __future__ import annotations

import re

from fhir_bridge.errors import Conflict

__all__ = ["MAX_MERGE_CHAIN", "replaced_by", "repointed", "surviving_patient", "survivor"]

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


def repointed(value, old_id: str, new_id: str, base_url: str | None = None):
    """A copy of a JSON tree (a resource, a Parameters body) with every reference to Patient/old_id
    (relative, versioned, or absolute on this server's `base_url`) now to Patient/new_id,
    unversioned: the new record holds what the old one did. References to other servers are left
    alone. The one rewrite of a person's references: a merge, an import linking the person's
    record, a session sent for a person merged away."""
    bases = "|".join(re.escape(b) for b in ("", *([base_url.rstrip("/") + "/"] if base_url else [])))
    pattern = re.compile(rf"(?P<base>{bases})Patient/{re.escape(old_id)}(?:/_history/[A-Za-z0-9.-]+)?")

    def walk(item):
        if type(item) is dict:
            return {k: (f"{match['base']}Patient/{new_id}"
                        if k == "reference" and type(v) is str and (match := pattern.fullmatch(v)) else walk(v))
                    for k, v in item.items()}
        if type(item) is list:
            return [walk(v) for v in item]
        return item

    return walk(value)
