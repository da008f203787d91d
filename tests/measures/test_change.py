from datetime import date, datetime, timezone

import pytest

from fhir_bridge.errors import InputError
from fhir_bridge.measures import build_dialog_definition, change_between, pair_first_latest, score_dialog

LIFE = ["mental-health", "physical-health", "job-situation", "accommodation", "leisure-activities",
        "friendships", "partner-family", "personal-safety"]
TREATMENT = ["medication", "practical-help", "meetings"]


@pytest.fixture()
def score(respond, definition):
    def make(ratings=None, **changes):
        return score_dialog(respond({**(ratings or dict.fromkeys(LIFE + TREATMENT, 4)), **changes}), definition)
    return make


def test_item_differences_and_reliable_change_flags(score):
    change = change_between(score(), score(**{"mental-health": 6, "job-situation": 3, "friendships": 4}))
    by_code = {i.domain.code: i for i in change.items}
    assert (by_code["mental-health"].difference, by_code["mental-health"].reliable_change) == (2, "improved")
    assert (by_code["job-situation"].difference, by_code["job-situation"].reliable_change) == (-1, "deteriorated")
    assert (by_code["friendships"].difference, by_code["friendships"].reliable_change) == (0, "no change")
    assert change.improved == ("mental-health",)
    assert change.deteriorated == ("job-situation",)


def test_treatment_items_keep_differences_but_stay_out_of_change_measures(score):
    change = change_between(score(), score(medication=7, meetings=1))
    medication = next(i for i in change.items if i.domain.code == "medication")
    assert (medication.earlier, medication.later, medication.difference) == (4, 7, 3)
    assert medication.reliable_change is None and not medication.in_change_measures
    assert change.improved == () and change.deteriorated == ()


def test_items_not_rated_both_times_have_no_difference(score):
    change = change_between(score(accommodation=8), score(**{"personal-safety": None}))
    by_code = {i.domain.code: i for i in change.items}
    assert (by_code["accommodation"].difference, by_code["accommodation"].reliable_change) == (None, None)
    assert (by_code["personal-safety"].earlier, by_code["personal-safety"].later) == (4, None)
    assert by_code["personal-safety"].difference is None


def test_sqol_change_of_exactly_one_eighth_is_not_meaningful(score):
    change = change_between(score(), score(accommodation=5))  # 4.0 -> 4.125
    assert change.sqol_mean_change == 0.125
    assert change.meaningful is False


def test_sqol_change_of_a_quarter_is_meaningful(score):
    change = change_between(score(), score(accommodation=5, friendships=5))  # 4.0 -> 4.25
    assert change.sqol_mean_change == 0.25
    assert change.meaningful is True


def test_threshold_is_exact_even_where_floats_are_not(score):
    # Thirds and sevenths do not add up exactly in binary floating point.
    earlier = score(dict.fromkeys(LIFE[:7], 3) | {"mental-health": 4})   # 22/7
    later = score(dict.fromkeys(LIFE[:7], 3) | {"mental-health": 5})     # 23/7: +1/7 > 1/8
    assert change_between(earlier, later).meaningful is True
    assert change_between(later, earlier).meaningful is False


def test_deterioration_is_not_a_meaningful_improvement(score):
    change = change_between(score(accommodation=5, friendships=5), score())
    assert change.sqol_mean_change == -0.25
    assert change.meaningful is False


def test_treatment_ratings_do_not_move_the_sqol_change(score):
    change = change_between(score(), score(medication=1, meetings=7))
    assert change.sqol_mean_change == 0
    assert change.meaningful is False


def test_no_sqol_change_without_both_means(score, respond, definition):
    thin = score_dialog(respond({"mental-health": 4, "medication": 5}), definition, min_answered={"sqol": 4})
    change = change_between(thin, score())
    assert (change.sqol_mean_change, change.meaningful) == (None, None)
    assert next(i for i in change.items if i.domain.code == "mental-health").difference == 0


def test_scores_from_different_definitions_are_not_compared(score, respond, sources):
    questionnaire, codesystem = sources
    codesystem["concept"][0]["display"] = "Mental wellbeing"
    other = build_dialog_definition(questionnaire, codesystem)
    with pytest.raises(InputError):
        change_between(score(), score_dialog(respond({}), other))


def test_pair_first_latest_orders_by_instant_not_by_text(score):
    january, nine_bst, half_eight_utc = score(), score(accommodation=5), score(accommodation=6)
    pair = pair_first_latest([
        ("2024-06-01T09:00:00+01:00", nine_bst),
        ("2024-01", january),                   # partial date: counts from its start
        ("2024-06-01T08:30:00Z", half_eight_utc),
    ])
    # 09:00 at +01:00 is 08:00Z, so 08:30Z is the latest although its text sorts first.
    assert pair == (january, half_eight_utc)


def test_pair_first_latest_accepts_dates_and_datetimes(score):
    first, latest = score(), score(accommodation=5)
    assert pair_first_latest([(datetime(2024, 5, 1, tzinfo=timezone.utc), latest),
                              (date(2024, 4, 30), first)]) == (first, latest)


def test_pair_first_latest_passes_over_dialogs_with_nothing_rated(score, respond, definition):
    empty = score_dialog(respond({"medication": 8}), definition)
    first, latest = score(), score(accommodation=5)
    assert pair_first_latest([("2024-01-01", first), ("2024-02-01", latest), ("2024-03-01", empty)]) == (first, latest)
    assert pair_first_latest([("2024-01-01", first), ("2024-03-01", empty)]) is None
    assert pair_first_latest([]) is None


def test_pair_first_latest_refuses_an_unreadable_time(score):
    with pytest.raises(InputError, match="last Tuesday"):
        pair_first_latest([("last Tuesday", score()), ("2024-01-01", score())])
