import random

import pytest

from fhir_bridge.errors import ConfigurationError, InputError
from fhir_bridge.measures import score_dialog
from fhir_bridge.measures.dialog_items import DIALOG_QUESTIONNAIRE_URL, DIALOG_RATING_SYSTEM

# One person's ratings, hand-checked: SQOL (items 1-8) sums to 32 over 8 -> 4.0;
# treatment (9-11) sums to 18 over 3 -> 6.0; rated 1-3: job 2, leisure 3, partner 1 -> 3.
RATINGS = {
    "mental-health": 4, "physical-health": 5, "job-situation": 2, "accommodation": 6,
    "leisure-activities": 3, "friendships": 7, "partner-family": 1, "personal-safety": 4,
    "medication": 5, "practical-help": 6, "meetings": 7,
}


def test_hand_computed_means_and_counts(respond, definition):
    score = score_dialog(respond(RATINGS), definition)
    assert score.ratings == RATINGS
    assert (score.sqol_mean, score.sqol_answered) == (4.0, 8)
    assert (score.treatment_satisfaction_mean, score.treatment_satisfaction_answered) == (6.0, 3)
    assert score.dissatisfied_count == 3
    assert score.not_applicable == ()
    assert score.problems == ()


def test_partial_dialog_means_rest_on_the_answered_items_only(respond, definition):
    score = score_dialog(respond({"mental-health": 2, "accommodation": 3, "friendships": 6, "meetings": 5}), definition)
    assert score.sqol_mean == pytest.approx(11 / 3)
    assert score.sqol_answered == 3
    assert (score.treatment_satisfaction_mean, score.treatment_satisfaction_answered) == (5.0, 1)
    assert score.ratings["physical-health"] is None


def test_nothing_answered_gives_no_means(respond, definition):
    score = score_dialog(respond({}), definition)
    assert (score.sqol_mean, score.sqol_answered) == (None, 0)
    assert (score.treatment_satisfaction_mean, score.treatment_satisfaction_answered) == (None, 0)


def test_same_person_in_qmul_and_mhsds_order_scores_identically(respond, definition):
    # The same form filled in twice: once exported in MHSDS numbering, once in QMUL numbering
    # (6 = partner/family, 7 = friendships). Friendships 7 and partner/family 1 must not swap.
    mhsds_row = [RATINGS[d.code] for d in sorted(definition.domains, key=lambda d: d.mhsds_item)]
    qmul_row = [RATINGS[d.code] for d in sorted(definition.domains, key=lambda d: d.qmul_item)]
    assert mhsds_row != qmul_row
    from_mhsds = score_dialog(respond(definition.ratings_by_domain(mhsds_row, "mhsds")), definition)
    from_qmul = score_dialog(respond(definition.ratings_by_domain(qmul_row, "qmul")), definition)
    assert from_mhsds == from_qmul
    assert from_qmul.ratings["friendships"] == 7 and from_qmul.ratings["partner-family"] == 1


def test_reading_a_qmul_row_as_mhsds_would_swap_the_two_domains(respond, definition):
    qmul_row = [RATINGS[d.code] for d in sorted(definition.domains, key=lambda d: d.qmul_item)]
    misread = score_dialog(respond(definition.ratings_by_domain(qmul_row, "mhsds")), definition)
    assert (misread.ratings["friendships"], misread.ratings["partner-family"]) == (1, 7)


def test_item_order_in_the_response_does_not_matter(respond, definition):
    more_help = {"job-situation": True, "medication": False}
    in_order = respond(RATINGS, more_help=more_help)
    shuffled_codes = [d.code for d in definition.domains]
    random.Random(11).shuffle(shuffled_codes)
    shuffled = respond(RATINGS, more_help=more_help, order=shuffled_codes)
    assert [i["linkId"] for i in shuffled["item"]] != [i["linkId"] for i in in_order["item"]]
    assert score_dialog(shuffled, definition) == score_dialog(in_order, definition)
    reversed_items = {**in_order, "item": in_order["item"][::-1]}
    assert score_dialog(reversed_items, definition) == score_dialog(in_order, definition)


def test_items_inside_a_group_are_still_found(respond, definition):
    flat = respond(RATINGS)
    grouped = {**flat, "item": [{"linkId": "wrapper", "item": flat["item"]}]}
    score = score_dialog(grouped, definition)
    assert score.ratings == RATINGS
    assert [p.expression for p in score.problems] == ["QuestionnaireResponse.item[0]"]


def test_eight_is_not_applicable_not_a_rating_and_not_answered(respond, definition):
    score = score_dialog(respond({**RATINGS, "partner-family": 8, "medication": 8}), definition)
    assert score.not_applicable == ("partner-family", "medication")
    assert score.ratings["partner-family"] is None and score.ratings["medication"] is None
    # SQOL without partner/family's 1: 31 over 7; treatment without medication's 5: 13 over 2.
    assert (score.sqol_mean, score.sqol_answered) == (pytest.approx(31 / 7), 7)
    assert (score.treatment_satisfaction_mean, score.treatment_satisfaction_answered) == (6.5, 2)
    assert score.dissatisfied_count == 2
    assert score.problems == ()


@pytest.mark.parametrize("answer", [
    {"valueCoding": {"system": DIALOG_RATING_SYSTEM, "code": "0"}},
    {"valueCoding": {"system": DIALOG_RATING_SYSTEM, "code": "9"}},
    {"valueCoding": {"system": "http://snomed.info/sct", "code": "5"}},
    {"valueCoding": {"code": "5"}},
    {"valueInteger": 8},
    {"valueInteger": 5},
    {"valueDecimal": 4.5},
    {"valueString": "seven"},
    {"valueString": "5"},
])
def test_values_that_are_not_ratings_never_become_scores(respond, definition, answer):
    score = score_dialog(respond({**RATINGS, "accommodation": answer}), definition)
    assert score.ratings["accommodation"] is None
    assert score.not_applicable == ()
    assert score.sqol_answered == 7
    assert score.sqol_mean == pytest.approx((32 - RATINGS["accommodation"]) / 7)
    [problem] = score.problems
    assert problem.expression == "QuestionnaireResponse.item[3].answer[0]"
    assert "not a DIALOG rating" in problem.message


def test_the_rating_is_taken_from_the_coding_whatever_its_display(respond, definition):
    answer = {"valueCoding": {"system": DIALOG_RATING_SYSTEM, "code": "6", "display": "in the middle"}}
    assert score_dialog(respond({"medication": answer}), definition).ratings["medication"] == 6


def test_min_answered_turns_a_thin_mean_into_none_but_keeps_the_count(respond, definition):
    qr = respond({"mental-health": 5, "job-situation": 3, "accommodation": 4, "meetings": 6})
    strict = score_dialog(qr, definition, min_answered={"sqol": 4})
    assert (strict.sqol_mean, strict.sqol_answered) == (None, 3)
    assert strict.treatment_satisfaction_mean == 6.0  # default minimum of 1 still applies
    enough = score_dialog(qr, definition, min_answered={"sqol": 3, "treatment": 2})
    assert (enough.sqol_mean, enough.treatment_satisfaction_mean) == (4.0, None)


@pytest.mark.parametrize("setting", [{"sqol": 0}, {"prem": 2}, {"sqol": 1.5}])
def test_min_answered_must_be_sensible(respond, definition, setting):
    with pytest.raises(ConfigurationError):
        score_dialog(respond(RATINGS), definition, min_answered=setting)


def test_more_help_per_domain(respond, definition):
    score = score_dialog(respond(RATINGS, more_help={"job-situation": True, "partner-family": True,
                                                     "meetings": False}), definition)
    assert score.more_help_wanted == ("job-situation", "partner-family")
    assert score.more_help["meetings"] is False
    assert score.more_help["mental-health"] is None


def test_a_more_help_answer_that_is_not_yes_or_no_is_ignored(respond, definition):
    qr = respond(RATINGS)
    qr["item"].append({"linkId": definition.help_link_for(definition.domain("accommodation")),
                       "answer": [{"valueBoolean": True}]})
    score = score_dialog(qr, definition)
    assert score.more_help["accommodation"] is None
    assert [p.expression for p in score.problems] == ["QuestionnaireResponse.item[11].answer[0]"]


def test_an_item_answered_twice_is_not_scored(respond, definition):
    qr = respond(RATINGS)
    link = definition.rating_item_for(definition.domain("friendships")).link_id
    qr["item"].append({"linkId": link, "answer": [{"valueCoding": {"system": DIALOG_RATING_SYSTEM, "code": "2"}}]})
    score = score_dialog(qr, definition)
    assert score.ratings["friendships"] is None
    assert score.sqol_answered == 7
    assert len(score.problems) == 2


def test_unknown_link_ids_are_reported(respond, definition):
    qr = respond(RATINGS)
    qr["item"].append({"linkId": "item-12", "answer": [{"valueInteger": 3}]})
    score = score_dialog(qr, definition)
    assert score.ratings == RATINGS
    assert "item-12" in score.problems[0].message


def test_another_questionnaire_is_refused(respond, definition):
    with pytest.raises(InputError, match="phq9"):
        score_dialog(respond(RATINGS, questionnaire="https://example.org/Questionnaire/phq9"), definition)


def test_a_response_without_a_questionnaire_is_scored_by_link_id(respond, definition):
    qr = respond(RATINGS)
    del qr["questionnaire"]
    assert score_dialog(qr, definition).ratings == RATINGS


def test_another_version_is_scored_and_noted(respond, definition):
    score = score_dialog(respond(RATINGS, questionnaire=f"{DIALOG_QUESTIONNAIRE_URL}|0.9.0"), definition)
    assert score.ratings == RATINGS
    assert "0.9.0" in score.problems[0].message


def test_only_questionnaire_responses_are_scored(definition):
    with pytest.raises(InputError):
        score_dialog({"resourceType": "Observation"}, definition)
