"""Disclosure control: the published rules at their edges."""
from __future__ import annotations

import pytest

from fhir_bridge.reports.disclosure import CAUTION_BELOW, round_count, show


@pytest.mark.parametrize(("count", "text"), [(0, "*"), (4, "*"), (5, "5"), (7, "5"), (8, "10"), (12, "10"),
                                             (13, "15"), (1234, "1,235")])
def test_counts_below_5_are_starred_and_others_rounded_to_the_nearest_5(count: int, text: str) -> None:
    assert show("count", count).text == text


def test_rounding_never_falls_half_way() -> None:
    assert [round_count(n) for n in range(5, 16)] == [5, 5, 5, 10, 10, 10, 10, 10, 15, 15, 15]


@pytest.mark.parametrize(("numerator", "denominator", "suppressed"),
                         [(4, 8, True), (5, 8, False), (5, 4, True), (0, 20, True), (7, 7, False)])
def test_a_share_is_suppressed_when_numerator_or_denominator_is_below_5(numerator, denominator, suppressed) -> None:
    shown = show("share", numerator / denominator, numerator=numerator, denominator=denominator, people=denominator)
    assert shown.suppressed is suppressed
    assert (shown.text == "*") is suppressed and (shown.value is None) is suppressed


def test_a_mean_is_suppressed_when_fewer_than_5_people_stand_behind_it() -> None:
    assert show("mean", 4.25, denominator=12, people=4).text == "*"   # 12 DIALOGs, but of 4 people
    assert show("mean", 4.25, denominator=12, people=5).text == "4.25"
    assert show("change", 0.5, denominator=5, people=5).text == "+0.50"


def test_a_figure_resting_on_few_people_carries_a_caution() -> None:
    assert show("mean", 4.0, denominator=40, people=CAUTION_BELOW - 1).caution
    assert not show("mean", 4.0, denominator=40, people=CAUTION_BELOW).caution
    assert not show("count", 7).caution   # a count is what it is


def test_without_control_counts_are_exact_and_nothing_is_suppressed() -> None:
    assert show("count", 3, control=False).text == "3"
    assert show("share", 0.5, numerator=1, denominator=2, people=2, control=False).text == "50.0%"
    assert show("mean", 3.0, denominator=1, people=1, control=False).caution   # one person: still a caution
