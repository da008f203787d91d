"""The compact `dialog_scores` row a stored DIALOG QuestionnaireResponse carries.

Written in the same transaction as the response, so reports, submissions and searches read one
narrow row instead of re-parsing JSON. Anything that is not a DIALOG response gets no row.
"""
from __future__ import annotations

from fhir_bridge.fhir.dates import to_microseconds
from fhir_bridge.measures import DialogDefinition, score_dialog
from fhir_bridge.measures.dialog import DISSATISFIED, checked_min_answered
from fhir_bridge.measures.dialog_items import YES_NO_SYSTEM
from fhir_bridge.store.outcome_fields import DIALOG_DOMAINS, is_possible_duplicate, referral_of

PURPOSE_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-collection-purpose"
TIMEPOINT_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-timepoint"
RECORDING_ORG_EXT = "https://fhir-bridge.example.org/StructureDefinition/recording-organization"


class ScoreRows:
    def __init__(self, definition: DialogDefinition, min_answered: dict[str, int]):
        self.definition = definition
        self.min_answered = min_answered
        self._plain = _PlainScorer(definition, checked_min_answered(min_answered))

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
        row = self._plain(resource.get("item"))
        if row is not None:
            return row
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


class _PlainScorer:
    """The row's score columns of the usual DIALOG response in one pass over its items, as
    score_dialog gives them, without its per-domain objects (a sixth of an import worker's time
    on an assessment went to scoring). Usual: a flat list of items, each a linkId of the
    Questionnaire met once with one answer, a rating item's a valueCoding among its options or its
    not-applicable answer, a help item's a yes/no Coding. Anything else (a problem to report,
    groups, a duplicate) is None: score_dialog scores it. tests/pipelines/test_score_rows.py
    checks the two agree."""

    def __init__(self, definition: DialogDefinition, minimum: dict[str, int]):
        self.minimum = minimum
        # linkId -> (domain code, rating options or None for a help item, not-applicable answers)
        self.items: dict[str, tuple[str, object, frozenset]] = {
            **{link: (item.domain.code, item.ratings, item.not_answered)
               for link, item in definition.rating_items.items()},
            **{link: (domain.code, None, frozenset()) for link, domain in definition.help_items.items()}}
        # per domain in MHSDS order: (code, part, rating column, help column)
        columns = {code: (rating, help_) for code, rating, help_ in _DOMAIN_COLUMNS}
        self.domains = tuple((d.code, d.part, *columns[d.code]) for d in definition.domains)

    def __call__(self, items) -> dict | None:
        if type(items) is not list:
            return None
        ratings: dict[str, int] = {}
        helps: dict[str, bool] = {}
        not_applicable: set[str] = set()
        seen: set[str] = set()
        for item in items:
            if type(item) is not dict or "item" in item:
                return None
            link = item.get("linkId")
            known = self.items.get(link) if type(link) is str else None
            if known is None or link in seen:
                return None
            seen.add(link)
            if "answer" not in item:
                continue
            answers = item["answer"]
            if type(answers) is not list or len(answers) != 1 or type(answers[0]) is not dict:
                return None
            coding = answers[0].get("valueCoding")
            if type(coding) is not dict:
                return None
            system, code = coding.get("system", ""), coding.get("code", "")
            if type(system) is not str or type(code) is not str:
                return None
            domain, options, not_answered = known
            if options is None:
                if system != YES_NO_SYSTEM or code not in ("Y", "N"):
                    return None
                helps[domain] = code == "Y"
            elif (system, code) in options:
                ratings[domain] = options[(system, code)]
            elif (system, code) in not_answered:
                not_applicable.add(domain)
            else:
                return None
        row: dict = {"not_applicable": ",".join(d[0] for d in self.domains if d[0] in not_applicable)}
        for part, mean_column, count_column in _MEANS:
            rated = [ratings[code] for code, of, _, _ in self.domains if of == part and code in ratings]
            row[mean_column] = sum(rated) / len(rated) if len(rated) >= self.minimum[part] else None
            row[count_column] = len(rated)
        row["dissatisfied_count"] = sum(1 for rating in ratings.values() if rating in DISSATISFIED)
        for code, _, rating_column, help_column in self.domains:
            row[rating_column] = ratings.get(code)
            row[help_column] = helps.get(code)
        return row


# (part, its mean's column, its answered count's column)
_MEANS = (("sqol", "sqol_mean", "sqol_answered"),
          ("treatment", "treatment_satisfaction_mean", "treatment_satisfaction_answered"))


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
