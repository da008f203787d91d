"""The recording-burden guard: partners must not ask a person for the DIALOG outcome measure again
and again (seed 000: "check when the last DIALOG was done; avoid duplicates"). A PROM-purpose DIALOG
recorded for a person less than N days (Settings.prom_min_interval_days) after another PROM-purpose
DIALOG of theirs, by any partner, is a possible duplicate (the later one, by `authored`, so that
re-importing either changes nothing): it is stored with the tag
dialog-entry-flag#possible-duplicate (outcome reports leave it out of outcome figures) and a
warning, or refused with 422 when Settings.prom_duplicates is "reject".

It runs on every write path as a ResourceService guard: REST create/update/patch, transaction and
batch entries, imports (each batch as a whole, so two PROMs in one file are compared too, in either
order). Not yet: a PROM stored before an earlier one arrives in a later write keeps no tag until it
is written again (re-tagging it is a write of its own).
Care-planning DIALOGs (a DIALOG+ session's ratings) are never counted: only PROMs are.
The tag is the server's: a write that is no longer a possible duplicate loses it.
"""
from __future__ import annotations

from fhir_bridge.errors import Unprocessable
from fhir_bridge.fhir.dates import to_microseconds
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.store.outcome_fields import ENTRY_FLAG_SYSTEM, POSSIBLE_DUPLICATE

__all__ = ["RecordingBurdenGuard", "POSSIBLE_DUPLICATE_TAG"]

PURPOSE_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-collection-purpose"
POSSIBLE_DUPLICATE_TAG = {"system": ENTRY_FLAG_SYSTEM, "code": POSSIBLE_DUPLICATE, "display": "Possible duplicate DIALOG"}
_DAY_US = 86_400_000_000


class RecordingBurdenGuard:
    def __init__(self, *, dialog_url: str, min_interval_days: int, reject: bool):
        self.dialog_url = dialog_url
        self.window = min_interval_days * _DAY_US
        self.reject = reject

    def __call__(self, uow, caller, resource: dict, issues: list[Issue]) -> dict:
        prom = self._prom(resource)
        if prom is None or self.window <= 0:
            return _tagged(resource, False)
        patient_id, authored = prom
        stored = uow.dialogs_of(patient_id, purpose="prom", low=authored - self.window + 1, high=authored)
        return self._judged(resource, prom, stored, issues)

    def batch(self, uow, caller, resources: list[dict]) -> list[dict]:
        """Each of an import batch's resources as a call would judge it, and also against the
        batch's other PROMs of the person, before or after it in the file: the later by `authored`
        is the duplicate whatever the order, so importing the file again changes nothing. The
        stored PROMs of all the batch's people are read in one query."""
        proms = [self._prom(resource) for resource in resources]
        wanted = [prom for prom in proms if prom is not None]
        if not wanted or self.window <= 0:
            return [_tagged(resource, False) for resource in resources]
        stored = uow.dialogs_of_people({patient_id for patient_id, _ in wanted}, purpose="prom",
                                       low=min(when for _, when in wanted) - self.window + 1,
                                       high=max(when for _, when in wanted))
        in_batch: dict[str, list[dict]] = {}  # patient id -> the batch's PROMs, as score rows
        for resource, prom in zip(resources, proms):
            if prom is not None:
                in_batch.setdefault(prom[0], []).append({"response_id": str(resource.get("id")), "authored": prom[1],
                                                         "authored_text": resource.get("authored"),
                                                         "recording_organization": None})
        out = []
        for resource, prom in zip(resources, proms):
            if prom is None:
                out.append(_tagged(resource, False))
                continue
            candidates = sorted(stored.get(prom[0], []) + in_batch[prom[0]],
                                key=lambda row: (row["authored"], row["response_id"]))
            out.append(self._judged(resource, prom, candidates, []))
        return out

    def _judged(self, resource: dict, prom: tuple[str, int], candidates: list[dict], issues: list[Issue]) -> dict:
        """`resource` tagged a possible duplicate (with a warning in `issues`) when one of the
        `candidates` (score rows, oldest first) is a PROM of the person in the window before it."""
        patient_id, authored = prom
        own = str(resource.get("id"))
        # ties by id: each of two at one moment is not both's duplicate; never its own stored version
        others = [row for row in candidates if row["response_id"] != own and (
                  authored - self.window < row["authored"] < authored
                  or (row["authored"] == authored and row["response_id"] < own))]
        if not others:
            return _tagged(resource, False)
        other = others[-1]
        by = f" by {other['recording_organization']}" if other.get("recording_organization") else ""
        message = (f"Patient/{patient_id} gave a PROM DIALOG less than {self.window // _DAY_US} days before this one: "
                   f"QuestionnaireResponse/{other['response_id']} ({other['authored_text']}{by}). "
                   "Check when the last DIALOG was done before asking again; this one is a possible duplicate.")
        if self.reject:
            issue = Issue("error", "business-rule", message, "QuestionnaireResponse.authored")
            raise Unprocessable(message, outcome=operation_outcome([issue]), expression="QuestionnaireResponse.authored")
        issues.append(Issue("warning", "business-rule", message + " It is stored tagged possible-duplicate.",
                            "QuestionnaireResponse.meta.tag"))
        return _tagged(resource, True)

    def _prom(self, resource: dict) -> tuple[str, int] | None:
        """(patient id, authored in microseconds) of a PROM-purpose DIALOG response, else None."""
        if resource.get("resourceType") != "QuestionnaireResponse" or resource.get("status") == "entered-in-error":
            return None
        if str(resource.get("questionnaire", "")).split("|")[0] != self.dialog_url:
            return None
        purpose = next((e.get("valueCoding") or {} for e in resource.get("extension", ())
                        if type(e) is dict and e.get("url") == PURPOSE_EXT), {})
        subject = (resource.get("subject") or {}).get("reference")
        authored = to_microseconds(resource["authored"]) if type(resource.get("authored")) is str else None
        if purpose.get("code") != "prom" or type(subject) is not str or authored is None:
            return None
        kind, _, rest = subject.partition("/")
        return (rest.split("/")[0], authored) if kind == "Patient" and rest else None


def _tagged(resource: dict, duplicate: bool) -> dict:
    meta = resource.get("meta") or {}
    tags = [t for t in meta.get("tag") or () if not (type(t) is dict and t.get("system") == ENTRY_FLAG_SYSTEM
                                                    and t.get("code") == POSSIBLE_DUPLICATE)]
    if duplicate:
        tags.append(POSSIBLE_DUPLICATE_TAG)
    if tags == (meta.get("tag") or []):
        return resource
    new_meta = {k: v for k, v in meta.items() if k != "tag"}
    if tags:
        new_meta["tag"] = tags
    return {**resource, "meta": new_meta} if new_meta else {k: v for k, v in resource.items() if k != "meta"}
