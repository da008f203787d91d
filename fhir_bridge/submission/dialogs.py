"""Which DIALOG entries a submission carries, and the DIALOG record a mapping reads.

Seed 000: counting every DIALOG+ care-planning entry as a new PROM misleads, and several partners
may each complete DIALOG with the same person weeks apart. So, by default, only PROM-collection
entries are submitted, and an entry made within `duplicate_days` of one already kept, for the
same person at the same timepoint, is left out as a possible duplicate (the earlier one stands,
also when it fell in the previous month), as is one the store tagged a possible duplicate when it
was written (meta.tag dialog-entry-flag#possible-duplicate). Both are settings (`DialogPolicy`;
`duplicate_days` 0 turns the duplicate checks off); every entry left out is listed in the quality
report with the reason.

The record: the stored QuestionnaireResponse plus `scoredItems`, one element per domain rated,
in MHSDS item order, read from the response's score row (the answers matched to domains by code,
never by position, when it was stored): `domain`, `number` (MHSDS item), `snomed` (the item
concept), `rating` (1-7), `score` (the PersScore text). An item answered 8 (not applicable) is
left out, or sent with `not_answered_code` as its score when that is set.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from fhir_bridge.measures import DialogDefinition
from fhir_bridge.submission.values import Period, local_moment

__all__ = ["DialogPolicy", "StoredDialog", "select_dialogs", "scored_items", "PURPOSES"]

PURPOSES = ("prom", "care-planning")
_DONE = ("completed", "amended")
_DAY_US = 86_400_000_000
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
ENTRY_FLAG = "https://fhir-bridge.example.org/CodeSystem/dialog-entry-flag"   # meta.tag set on write


@dataclass(frozen=True)
class DialogPolicy:
    purposes: tuple[str, ...] = ("prom",)
    recorders: str = "any"              # any | provider: whose DIALOGs the provider submits
    duplicate_days: int = 28            # 0: no duplicate check
    not_answered_code: str | None = None

    def describe(self) -> dict:
        return {"purposes": list(self.purposes), "recorders": self.recorders, "duplicateDays": self.duplicate_days,
                "notAnsweredCode": self.not_answered_code}


@dataclass
class StoredDialog:
    """A DIALOG response as the store's score row gives it, with its body."""

    response_id: str
    patient_id: str
    authored: int | None                # UTC microseconds
    authored_text: str | None
    status: str
    purpose: str | None
    timepoint: str | None
    recording_organization: str | None
    ratings: dict[str, int | None]      # domain code -> 1-7 or None
    not_applicable: frozenset[str]      # domains answered 8
    raw: bytes = b"{}"                  # the stored JSON, parsed when first needed (most never are)
    _body: dict | None = field(default=None, repr=False)

    @property
    def body(self) -> dict:
        if self._body is None:
            self._body = orjson.loads(self.raw)
        return self._body

    @property
    def day(self) -> str | None:
        found = local_moment(self.authored_text)
        return found[0] if found else None

    @property
    def ref(self) -> str:
        return f"QuestionnaireResponse/{self.response_id}"


def select_dialogs(dialogs: Iterable[StoredDialog], period: Period, provider: str, policy: DialogPolicy
                   ) -> tuple[list[StoredDialog], list[tuple[StoredDialog, str, str]]]:
    """One person's DIALOGs, oldest first (those of the `duplicate_days` before the period too, as
    the entries later ones may repeat) -> (the period's entries to submit, [(entry, reason,
    detail)] of the period's entries left out)."""
    kept: list[StoredDialog] = []
    chosen: list[StoredDialog] = []
    left_out: list[tuple[StoredDialog, str, str]] = []
    window = policy.duplicate_days * _DAY_US
    for dialog in dialogs:
        day = dialog.day
        in_period = day is not None and period.contains(day)
        reason, detail = _why_not(dialog, provider, policy)
        if reason is None and window and _tagged_duplicate(dialog):
            reason = "tagged a possible duplicate when it was recorded"
        if reason is None and window:
            earlier = next((k for k in reversed(kept) if k.timepoint == dialog.timepoint and k.authored is not None
                            and dialog.authored is not None and dialog.authored - k.authored <= window), None)
            if earlier is not None:
                reason = f"possible duplicate: same timepoint within {policy.duplicate_days} days of another DIALOG"
                detail = f"{earlier.ref} ({earlier.day}, {earlier.timepoint or 'no timepoint'})"
        if reason is not None:
            if in_period:
                left_out.append((dialog, reason, detail))
            continue
        kept.append(dialog)
        if in_period:
            chosen.append(dialog)
    return chosen, left_out


def _why_not(dialog: StoredDialog, provider: str, policy: DialogPolicy) -> tuple[str | None, str]:
    if dialog.status not in _DONE:
        return f"status {dialog.status}: not a completed DIALOG", ""
    if dialog.purpose not in policy.purposes:
        return (f"{dialog.purpose or 'no purpose'} entry: the setting submits "
                f"{', '.join(policy.purposes)} entries (FHIR_BRIDGE_MHSDS_DIALOG_PURPOSES)"), ""
    if policy.recorders == "provider" and not recorded_by(dialog, provider):
        return ("recorded by another organisation: the setting submits the provider's own DIALOGs "
                "(FHIR_BRIDGE_MHSDS_DIALOG_RECORDERS)"), dialog.recording_organization or ""
    return None, ""


def _tagged_duplicate(dialog: StoredDialog) -> bool:
    if b"possible-duplicate" not in dialog.raw:   # most are not: no need to parse them
        return False
    tags = (dialog.body.get("meta") or {}).get("tag") or ()
    return any(isinstance(t, dict) and t.get("system") == ENTRY_FLAG and t.get("code") == "possible-duplicate"
               for t in tags)


def recorded_by(dialog: StoredDialog, provider: str) -> bool:
    """Whether the recording organisation is the provider, by its ODS code (a reference to an
    Organization resource is not followed: it counts as another organisation)."""
    return (dialog.recording_organization or "").upper() == f"{ODS}|{provider}".upper()


def scored_items(dialog: StoredDialog, definition: DialogDefinition, not_answered_code: str | None) -> list[dict]:
    items = []
    for domain in definition.domains:   # MHSDS item order
        rating = dialog.ratings.get(domain.code)
        if rating is not None:
            score = str(rating)
        elif domain.code in dialog.not_applicable and not_answered_code is not None:
            score = not_answered_code
        else:
            continue
        items.append({"domain": domain.code, "number": str(domain.mhsds_item), "snomed": domain.snomed,
                      "rating": None if rating is None else str(rating), "score": score})
    return items
