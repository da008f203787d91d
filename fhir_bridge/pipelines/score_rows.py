"""The compact `dialog_scores` row a stored DIALOG QuestionnaireResponse carries.

Written in the same transaction as the response, so reports, submissions and searches read one
narrow row instead of re-parsing JSON. Anything that is not a DIALOG response gets no row.
"""
from __future__ import annotations

from fhir_bridge.fhir.dates import to_microseconds
from fhir_bridge.measures import DialogDefinition, score_dialog
from fhir_bridge.store.outcome_fields import DIALOG_DOMAINS, is_possible_duplicate, referral_of

PURPOSE_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-collection-purpose"
TIMEPOINT_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-timepoint"
RECORDING_ORG_EXT = "https://fhir-bridge.example.org/StructureDefinition/recording-organization"


class ScoreRows:
    def __init__(self, definition: DialogDefinition, min_answered: dict[str, int]):
        self.definition = definition
        self.min_answered = min_answered

    def __call__(self, resource: dict, earlier: dict | None = None, earlier_scores: dict | None = None) -> dict | None:
        """The row of a DIALOG response, else None. `earlier_scores`: `scores(earlier)`, made for a
        response with the same answers (an import's worker scored it as mapped): used if `resource`
        still has `earlier`'s items and questionnaire, else the response is scored again."""
        if not self._is_dialog(resource):
            return None
        if earlier_scores is None or not _same_answers(resource, earlier):
            earlier_scores = self.scores(resource)
        subject_type, subject_id = _split_reference(resource.get("subject"))
        authored = resource.get("authored")
        return {
            "response_id": resource["id"],
            "subject_type": subject_type,
            "subject_id": subject_id,
            "questionnaire": resource["questionnaire"],
            "authored": to_microseconds(authored),
            "authored_text": authored,
            "status": resource.get("status", "unknown"),
            "purpose": _extension_code(resource, PURPOSE_EXT),
            "timepoint": _extension_code(resource, TIMEPOINT_EXT),
            "recording_organization": _extension_reference(resource, RECORDING_ORG_EXT),
            "author": (resource.get("author") or {}).get("reference"),
            "referral_id": referral_of(resource),
            "possible_duplicate": is_possible_duplicate(resource),
            **earlier_scores,
        }

    def scores(self, resource: dict) -> dict | None:
        """The row's columns that come from scoring the answers (what a worker process can make for
        the importing process: they depend on nothing but the items and the questionnaire)."""
        if not self._is_dialog(resource):
            return None
        score = score_dialog(resource, self.definition, min_answered=self.min_answered)
        row = {
            "not_applicable": ",".join(score.not_applicable),
            "sqol_mean": score.sqol_mean,
            "sqol_answered": score.sqol_answered,
            "treatment_satisfaction_mean": score.treatment_satisfaction_mean,
            "treatment_satisfaction_answered": score.treatment_satisfaction_answered,
            "dissatisfied_count": score.dissatisfied_count,
        }
        ratings, help_ = score.ratings, score.more_help
        for code, rating_column, help_column in _DOMAIN_COLUMNS:
            row[rating_column] = ratings.get(code)
            row[help_column] = help_.get(code)
        return row

    def _is_dialog(self, resource: dict) -> bool:
        if resource.get("resourceType") != "QuestionnaireResponse":
            return False
        canonical = resource.get("questionnaire")
        return type(canonical) is str and canonical.split("|")[0] == self.definition.url


def _same_answers(resource: dict, earlier: dict | None) -> bool:
    """Whether scoring `resource` would read what scoring `earlier` read: its items (compared whole:
    the same list object when linking only re-pointed the subject) and its questionnaire. This
    holds because nothing changes a mapped resource in place (source_rio.py `_point`, `repointed`
    and the guards copy what they change); a step that did would make this see the same items."""
    if earlier is None:
        return False
    items, was = resource.get("item"), earlier.get("item")
    return (items is was or items == was) and resource.get("questionnaire") == earlier.get("questionnaire")


# (domain code, its rating column, its help column): named once, not for every stored response
_DOMAIN_COLUMNS = tuple((column.replace("_", "-"), f"rating_{column}", f"help_{column}") for column in DIALOG_DOMAINS)


def _split_reference(ref) -> tuple[str | None, str | None]:
    target = ref.get("reference") if type(ref) is dict else None
    if type(target) is not str or "/" not in target:
        return None, None
    parts = target.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-2], parts[-1]


def _extension_code(resource: dict, url: str) -> str | None:
    for ext in resource.get("extension", ()):
        if type(ext) is dict and ext.get("url") == url and type(ext.get("valueCoding")) is dict:
            return ext["valueCoding"].get("code")
    return None


def _extension_reference(resource: dict, url: str) -> str | None:
    for ext in resource.get("extension", ()):
        if type(ext) is dict and ext.get("url") == url and type(ext.get("valueReference")) is dict:
            ref = ext["valueReference"]
            if ref.get("reference"):
                return ref["reference"]
            ident = ref.get("identifier") or {}
            return f"{ident.get('system', '')}|{ident.get('value', '')}" if ident.get("value") else None
    return None
