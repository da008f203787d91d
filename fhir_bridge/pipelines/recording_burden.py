"""The recording-burden guard: partners must not ask a person for the DIALOG outcome measure again
and again (seed 000: "check when the last DIALOG was done; avoid duplicates"). A PROM-purpose DIALOG
recorded for a person less than N days (Settings.prom_min_interval_days) after another PROM-purpose
DIALOG of theirs, by any partner, is a possible duplicate (the later one, by `authored`, so that
re-importing either changes nothing): it is stored with the tag
dialog-entry-flag#possible-duplicate (outcome reports leave it out of outcome figures) and a
warning, or refused with 422 when Settings.prom_duplicates is "reject".

It runs on every write path as a ResourceService guard: REST create/update/patch, transaction and
batch entries, imports (each batch as a whole, so two PROMs in one file are compared too, in either
order). A PROM stored before an earlier one of the person arrived (in another batch or import, or by
REST) is tagged then, by a new version in the same transaction: every write notes what it wrote and
what that was before (`note_write`, `note_batch`), and `judged_again` runs once the unit of work is
done, so a transaction's later entries count and no entry's If-Match meets a version it never saw.
So what is stored never depends on the order PROMs came in, importing again changes nothing, and a
PROM moved to another date, entered in error or deleted untags the one after its old date. The new
version's Provenance names the caller whose write made it. (Under "reject" nothing stored is tagged,
and a stored PROM cannot be refused after the fact.)
Care-planning DIALOGs (a DIALOG+ session's ratings) are never counted: only PROMs are.
The tag is the server's: a write that is no longer a possible duplicate loses it.
"""
from __future__ import annotations

from collections.abc import Callable

from fhir_bridge.errors import Unprocessable
from fhir_bridge.fhir.dates import to_microseconds
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.store.outcome_fields import ENTRY_FLAG_SYSTEM, POSSIBLE_DUPLICATE
from fhir_bridge.store.types import Stored

__all__ = ["RecordingBurdenGuard", "POSSIBLE_DUPLICATE_TAG"]

PURPOSE_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-collection-purpose"
POSSIBLE_DUPLICATE_TAG = {"system": ENTRY_FLAG_SYSTEM, "code": POSSIBLE_DUPLICATE, "display": "Possible duplicate DIALOG"}
_DAY_US = 86_400_000_000
_NOTED = "recording-burden"  # UnitOfWork.notes key: what its writes were and are, for judged_again
# the score-row columns the guard reads (_before, _judged, judged_again)
_FIELDS = ("response_id", "authored", "authored_text", "recording_organization", "possible_duplicate")


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
                                       high=max(when for _, when in wanted), fields=_FIELDS)
        # the batch's PROMs as score rows, its last version of each (what will be stored), and in
        # place of the stored versions of all it rewrites (a date corrected must not count twice)
        in_batch: dict[str, dict[str, dict]] = {}  # patient id -> response id -> row
        for resource, prom in zip(resources, proms):
            if prom is not None:
                in_batch.setdefault(prom[0], {})[str(resource.get("id"))] = {
                    "response_id": str(resource.get("id")), "authored": prom[1],
                    "authored_text": resource.get("authored"), "recording_organization": None}
        rewritten = {str(r.get("id")) for r in resources if r.get("resourceType") == "QuestionnaireResponse"}
        out = []
        for resource, prom in zip(resources, proms):
            if prom is None:
                out.append(_tagged(resource, False))
                continue
            candidates = sorted([row for row in stored.get(prom[0], []) if row["response_id"] not in rewritten]
                                + list(in_batch[prom[0]].values()), key=lambda row: (row["authored"], row["response_id"]))
            out.append(self._judged(resource, prom, candidates, []))
        return out

    def before_batch(self, uow, resources: list[dict]) -> list[dict]:
        """The stored versions of a batch's DIALOG responses, before it is written (note_batch)."""
        keys = [("QuestionnaireResponse", str(r.get("id"))) for r in resources
                if r.get("resourceType") == "QuestionnaireResponse"]
        return [stored.resource for stored in uow.read_live(keys).values()] if keys and self._judging else []

    def note_batch(self, uow, written: list[dict], before: list[dict], write: Callable) -> None:
        """Keep what a batch wrote, and what it rewrote was before, for `judged_again` when the
        unit of work is done; `write(uow, resources)` stores the PROMs whose tag changes (the first
        `write` a unit of work notes: its caller made the work)."""
        if not self._judging or not any(self._prom(r) is not None for r in (*written, *before)):
            return
        noted = uow.notes.get(_NOTED)
        if noted is None:
            noted = uow.notes[_NOTED] = ([], [])
            uow.before_commit(lambda u: write(u, self.judged_again(u, *noted)))
        noted[0].extend(written)
        noted[1].extend(before)

    def note_write(self, uow, written: Stored, write: Callable) -> None:
        """note_batch for one write (or deletion) just made, and what it replaced."""
        if written.resource_type != "QuestionnaireResponse" or not self._judging:
            return
        before = uow.before_last(written.resource_type, written.resource_id)
        self.note_batch(uow, [] if written.deleted else [written.resource], [before.resource] if before else [], write)

    @property
    def _judging(self) -> bool:
        # under "reject" nothing stored is tagged, and a stored PROM cannot be refused after the fact
        return self.window > 0 and not self.reject

    def judged_again(self, uow, written: list[dict], before: list[dict] = ()) -> list[dict]:
        """The stored PROMs whose tag is not what the store says now, among the people of the
        `written` resources and from where they are (or were `before`: a PROM moved to another
        date, entered in error, deleted) to a window after: new versions, tagged as judged now.
        Run when a unit of work is done, so a transaction's later entries are judged too."""
        proms = [prom for prom in map(self._prom, [*written, *before]) if prom is not None]
        if not proms or not self._judging:
            return []
        low, high = min(when for _, when in proms), max(when for _, when in proms) + self.window
        stored = uow.dialogs_of_people({patient_id for patient_id, _ in proms}, purpose="prom",
                                       low=low - self.window + 1, high=high, fields=_FIELDS)
        again = []
        for rows in stored.values():
            for row in rows:
                if not low <= row["authored"] < high:
                    continue
                duplicate = any(self._before(other, row["response_id"], row["authored"]) for other in rows)
                if duplicate != bool(row["possible_duplicate"]):
                    # locked: on PostgreSQL a concurrent writer of it waits, and is not overwritten
                    again.append(_tagged(uow.lock("QuestionnaireResponse", row["response_id"]).resource, duplicate))
        return again

    def _before(self, row: dict, own: str, authored: int) -> bool:
        """Whether PROM `row` makes PROM `own`, authored then, a possible duplicate: it is in the
        window before it (ties by id: of two at one moment only one is the other's duplicate), and
        is not another version of it."""
        return row["response_id"] != own and (authored - self.window < row["authored"] < authored
                                              or (row["authored"] == authored and row["response_id"] < own))

    def _judged(self, resource: dict, prom: tuple[str, int], candidates: list[dict], issues: list[Issue]) -> dict:
        """`resource` tagged a possible duplicate (with a warning in `issues`) when one of the
        `candidates` (score rows, oldest first) is a PROM of the person in the window before it."""
        patient_id, authored = prom
        own = str(resource.get("id"))
        others = [row for row in candidates if self._before(row, own, authored)]
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
