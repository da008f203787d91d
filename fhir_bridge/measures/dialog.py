"""Score one DIALOG QuestionnaireResponse: ratings per domain, the two means, more-help wishes.

The scorer never turns a value that is not a rating into a score. It skips such answers and lists
them in `problems`; reporting them to the sender is the validator's job.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from fhir_bridge.errors import ConfigurationError, InputError
from fhir_bridge.measures.dialog_items import (
    PARTS,
    YES_NO_SYSTEM,
    DialogDefinition,
    DialogDomain,
    Part,
    RatingItem,
)

# No published minimum of answered items for a valid mean exists (domain.md): one each by default.
DEFAULT_MIN_ANSWERED: Mapping[Part, int] = {"sqol": 1, "treatment": 1}
DISSATISFIED = range(1, 4)  # 1-3: explicit dissatisfaction
SATISFIED = range(5, 8)     # 5-7: explicit satisfaction (low need: seed 000's "rating score 5-7")
_HELP_ANSWERS = {"Y": True, "N": False}
_Found = tuple[tuple[str, int, int], dict]  # an answer and where it is: (parent path, item index, answer index)


@dataclass(frozen=True)
class ScoreProblem:
    expression: str  # FHIRPath of the offending element in the QuestionnaireResponse
    message: str


class ItemScore(NamedTuple):  # a tuple: eleven are made for every stored response
    domain: DialogDomain
    rating: int | None      # 1-7; None when unanswered, not applicable or unusable
    not_applicable: bool    # answered with the not-answered value (8)
    more_help: bool | None


@dataclass(frozen=True)
class DialogScore:
    items: tuple[ItemScore, ...]   # one per domain, in MHSDS order
    sqol_mean: float | None
    sqol_answered: int
    treatment_satisfaction_mean: float | None
    treatment_satisfaction_answered: int
    problems: tuple[ScoreProblem, ...] = ()

    @property
    def ratings(self) -> dict[str, int | None]:
        return {i.domain.code: i.rating for i in self.items}

    @property
    def not_applicable(self) -> tuple[str, ...]:
        return tuple(i.domain.code for i in self.items if i.not_applicable)

    @property
    def more_help(self) -> dict[str, bool | None]:
        return {i.domain.code: i.more_help for i in self.items}

    @property
    def more_help_wanted(self) -> tuple[str, ...]:
        return tuple(i.domain.code for i in self.items if i.more_help)

    @property
    def dissatisfied_count(self) -> int:
        return sum(1 for i in self.items if i.rating in DISSATISFIED)


def score_dialog(qr: Mapping[str, Any], definition: DialogDefinition, *,
                 min_answered: Mapping[str, int] | None = None) -> DialogScore:
    """Score a DIALOG QuestionnaireResponse, matching items by linkId to coded Questionnaire items.

    `min_answered` ({"sqol": n, "treatment": m}) sets how many rated items each mean needs; a mean
    with fewer is None. The counts are always reported.
    """
    minimum = checked_min_answered(min_answered)
    problems = _check_questionnaire(qr, definition)
    answers: dict[str, list[_Found]] = {}
    _collect(qr.get("item", []), "QuestionnaireResponse", definition.link_ids, answers, problems)
    items = tuple(_item_score(definition, domain, answers, problems) for domain in definition.domains)
    sqol, sqol_n = _mean(items, "sqol", minimum)
    treatment, treatment_n = _mean(items, "treatment", minimum)
    return DialogScore(items, sqol, sqol_n, treatment, treatment_n, tuple(problems))


def checked_min_answered(min_answered: Mapping[str, int] | None) -> dict[str, int]:
    """The items each mean needs, the defaults filled in; ConfigurationError for a bad setting."""
    return _min_answered(tuple(sorted((min_answered or {}).items())))


@lru_cache(maxsize=16)
def _min_answered(setting: tuple[tuple[str, int], ...]) -> dict[str, int]:
    """The setting checked and completed once per distinct value: scoring runs on every stored response."""
    minimum = {**DEFAULT_MIN_ANSWERED, **dict(setting)}
    unknown = set(minimum) - set(PARTS)
    if unknown or not all(isinstance(n, int) and n >= 1 for n in minimum.values()):
        raise ConfigurationError(f"min_answered needs whole numbers >= 1 for {list(PARTS)}, got {dict(setting)}")
    return minimum


def _check_questionnaire(qr: Mapping[str, Any], definition: DialogDefinition) -> list[ScoreProblem]:
    if qr.get("resourceType") != "QuestionnaireResponse":
        raise InputError(f"expected a QuestionnaireResponse, got {qr.get('resourceType')!r}")
    canonical = qr.get("questionnaire")
    if canonical is None:  # optional in R4: the linkIds are then all there is to go on
        return []
    url, _, version = canonical.partition("|")
    # Another questionnaire's linkIds mean other things: scoring it as DIALOG would be wrong, not partial.
    if url != definition.url:
        raise InputError(f"QuestionnaireResponse answers {url}, not {definition.url}",
                         expression="QuestionnaireResponse.questionnaire")
    if version and version != definition.version:
        return [ScoreProblem("QuestionnaireResponse.questionnaire",
                             f"answers version {version}; scored with version {definition.version}")]
    return []


def _collect(items: list[dict], parent: str, link_ids: frozenset[str],
             answers: dict[str, list[_Found]], problems: list[ScoreProblem]) -> None:
    """Every answer by its item's linkId, with where it is as (parent path, item index, answer
    index): a FHIRPath is only written out for a problem. The DIALOG Questionnaire is flat, but a
    sender may wrap items in groups: linkIds still decide."""
    for index, item in enumerate(items):
        link_id = item.get("linkId")
        if link_id not in link_ids:
            problems.append(ScoreProblem(f"{parent}.item[{index}]", f"linkId {link_id!r} is not in the DIALOG Questionnaire"))
        found = answers.setdefault(link_id, [])
        given = item.get("answer", ())
        if type(given) is not list and given != ():
            problems.append(ScoreProblem(f"{parent}.item[{index}].answer", "answer is not a list; not scored"))
            given = ()
        for answer_index, answer in enumerate(given):
            if type(answer) is not dict:
                problems.append(ScoreProblem(f"{parent}.item[{index}].answer[{answer_index}]",
                                             "answer is not an object; not scored"))
                continue
            found.append(((parent, index, answer_index), answer))
        if children := item.get("item"):
            _collect(children, f"{parent}.item[{index}]", link_ids, answers, problems)


def _path(where: tuple[str, int, int]) -> str:
    parent, index, answer_index = where
    return f"{parent}.item[{index}].answer[{answer_index}]"


def _item_score(definition: DialogDefinition, domain: DialogDomain, answers: dict[str, list[_Found]],
                problems: list[ScoreProblem]) -> ItemScore:
    rating_item = definition.rating_item_for(domain)
    rating, not_applicable = _read_rating(rating_item, _single(rating_item.link_id, answers, problems), problems)
    help_link = definition.help_link_for(domain)
    more_help = _read_help(_single(help_link, answers, problems), problems) if help_link else None
    return ItemScore(domain, rating, not_applicable, more_help)


def _single(link_id: str, answers: dict[str, list[_Found]], problems: list[ScoreProblem]) -> _Found | None:
    found = answers.get(link_id, [])
    if len(found) > 1:
        # Two answers to one question: picking either could be the wrong one.
        problems.extend(ScoreProblem(_path(where), f"{link_id!r} answered more than once; none of its answers used")
                        for where, _ in found)
        return None
    return found[0] if found else None


def _read_rating(item: RatingItem, found: _Found | None, problems: list[ScoreProblem]) -> tuple[int | None, bool]:
    if found is None:
        return None, False
    where, answer = found
    coding = answer.get("valueCoding")
    if coding is not None:
        key = (coding.get("system", ""), coding.get("code", ""))
        if key in item.ratings:
            return item.ratings[key], False
        if key in item.not_answered:
            return None, True
    problems.append(ScoreProblem(_path(where), f"{_shown(answer)} is not a DIALOG rating (1-7) for {item.link_id!r}; not scored"))
    return None, False


def _read_help(found: _Found | None, problems: list[ScoreProblem]) -> bool | None:
    if found is None:
        return None
    where, answer = found
    coding = answer.get("valueCoding") or {}
    if coding.get("system") == YES_NO_SYSTEM and coding.get("code") in _HELP_ANSWERS:
        return _HELP_ANSWERS[coding["code"]]
    problems.append(ScoreProblem(_path(where), f"{_shown(answer)} is not a yes/no ({YES_NO_SYSTEM}) answer; ignored"))
    return None


def _shown(answer: dict) -> str:
    """The answer's value for a message, e.g. valueCoding 0 or valueString 'seven'."""
    key = next((k for k in answer if k.startswith("value")), None)
    if key is None:
        return "an answer without a value"
    value = answer[key]
    shown = f"{value.get('system', '')}#{value.get('code')}" if key == "valueCoding" else repr(value)
    return f"{key} {shown}"


def _mean(items: tuple[ItemScore, ...], part: Part, minimum: Mapping[str, int]) -> tuple[float | None, int]:
    rated = [i.rating for i in items if i.domain.part == part and i.rating is not None]
    return (sum(rated) / len(rated) if len(rated) >= minimum[part] else None), len(rated)
