"""Statistical disclosure control, as NHS England publishes mental health figures (domain.md):

- a count below SUPPRESS_BELOW (5) is shown as "*"; other counts are rounded to the nearest
  ROUND_TO (5): 7 -> 5, 8 -> 10;
- a share (numerator / denominator) is suppressed when either is below 5; a mean, when fewer than
  5 people or DIALOGs stand behind it; shares and means are computed from the unrounded counts;
- a figure that survives but rests on fewer than CAUTION_BELOW (30) people carries a caution: one
  person more or less moves it visibly, so it should not be compared or ranked without care.

With control off (an individual's own record, or an analyst's local run) counts are exact and
nothing is suppressed; the caution still shows.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CAUTION_BELOW", "ROUND_TO", "SUPPRESS_BELOW", "SUPPRESSED", "Shown", "round_count", "show"]

SUPPRESS_BELOW = 5
ROUND_TO = 5
CAUTION_BELOW = 30
SUPPRESSED = "*"


@dataclass(frozen=True)
class Shown:
    """A figure as it may be published: `value` None when suppressed (text "*")."""

    value: float | int | None
    text: str
    suppressed: bool
    caution: bool


def round_count(count: int) -> int:
    """To the nearest ROUND_TO (integers never fall half-way for a step of 5)."""
    return ROUND_TO * ((count + ROUND_TO // 2) // ROUND_TO)


def show(kind: str, value: float | int | None, *, numerator: int | None = None, denominator: int | None = None,
         people: int | None = None, control: bool = True) -> Shown:
    """kind: count | mean | change (a mean difference) | share (a share's value is a fraction 0-1, shown as a percentage)."""
    caution = people is not None and 0 < people < CAUTION_BELOW
    if value is None:
        return Shown(None, "", False, False)
    if kind == "count":
        count = int(value)
        if control and count < SUPPRESS_BELOW:
            return Shown(None, SUPPRESSED, True, False)
        shown = round_count(count) if control else count
        return Shown(shown, f"{shown:,}", False, False)
    small = [n for n in (numerator, denominator, people) if n is not None and n < SUPPRESS_BELOW]
    if kind in ("mean", "change"):
        small = [n for n in (denominator, people) if n is not None and n < SUPPRESS_BELOW]
    if control and small:
        return Shown(None, SUPPRESSED, True, False)
    if kind == "share":
        return Shown(round(value, 4), f"{value * 100:.1f}%", False, caution)
    return Shown(round(value, 2), f"{value:+.2f}" if kind == "change" else f"{value:.2f}", False, caution)
