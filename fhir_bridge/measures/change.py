"""Change between two DIALOG scores, following NHS England's CMH PROMs dashboard conventions.

- Per item: later - earlier where both are rated; a difference of 1 point or more is reliable.
- The treatment items (PREM, 9-11) keep their differences but are left out of change measures.
- Mean SQOL change above 0.125 (one point on one of eight life domains) is a meaningful improvement.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from fractions import Fraction
from typing import Literal

from fhir_bridge.errors import InputError
from fhir_bridge.measures.dialog import DialogScore
from fhir_bridge.measures.dialog_items import DialogDomain

MEANINGFUL_SQOL_CHANGE = Fraction(1, 8)
RELIABLE_ITEM_CHANGE = 1
ReliableChange = Literal["improved", "deteriorated", "no change"]
Authored = str | date | datetime


@dataclass(frozen=True)
class ItemChange:
    domain: DialogDomain
    earlier: int | None
    later: int | None
    difference: int | None                  # later - earlier, when both are rated
    reliable_change: ReliableChange | None  # None when not both rated, or a PREM item

    @property
    def in_change_measures(self) -> bool:
        return self.domain.in_change_measures


@dataclass(frozen=True)
class DialogChange:
    items: tuple[ItemChange, ...]   # in MHSDS order
    sqol_mean_change: float | None
    meaningful: bool | None         # sqol_mean_change > 0.125; None when either mean is missing

    @property
    def improved(self) -> tuple[str, ...]:
        return tuple(i.domain.code for i in self.items if i.reliable_change == "improved")

    @property
    def deteriorated(self) -> tuple[str, ...]:
        return tuple(i.domain.code for i in self.items if i.reliable_change == "deteriorated")


def change_between(earlier: DialogScore, later: DialogScore) -> DialogChange:
    if [i.domain for i in earlier.items] != [i.domain for i in later.items]:
        raise InputError("the two DIALOG scores were made with different item definitions")
    items = tuple(_item_change(a.domain, a.rating, b.rating) for a, b in zip(earlier.items, later.items))
    before, after = _exact_sqol_mean(earlier), _exact_sqol_mean(later)
    if before is None or after is None:
        return DialogChange(items, None, None)
    # Exact fractions: a change of exactly 0.125 must not slip over the threshold by float rounding.
    return DialogChange(items, float(after - before), after - before > MEANINGFUL_SQOL_CHANGE)


def _item_change(domain: DialogDomain, earlier: int | None, later: int | None) -> ItemChange:
    if earlier is None or later is None:
        return ItemChange(domain, earlier, later, None, None)
    difference = later - earlier
    return ItemChange(domain, earlier, later, difference, _reliable(difference) if domain.in_change_measures else None)


def _reliable(difference: int) -> ReliableChange:
    if difference >= RELIABLE_ITEM_CHANGE:
        return "improved"
    if difference <= -RELIABLE_ITEM_CHANGE:
        return "deteriorated"
    return "no change"


def _exact_sqol_mean(score: DialogScore) -> Fraction | None:
    # Recomputed from the ratings so the min_answered decision stays the one the score was made with.
    if score.sqol_mean is None:
        return None
    rated = [i.rating for i in score.items if i.domain.part == "sqol" and i.rating is not None]
    return Fraction(sum(rated), len(rated))


def pair_first_latest(scores: Iterable[tuple[Authored, DialogScore]]) -> tuple[DialogScore, DialogScore] | None:
    """The first and the latest DIALOG (by authored time) of one referral, as the dashboard pairs them.

    DIALOGs with nothing rated are no timepoint and are passed over. Returns None without two DIALOGs.
    Equal times keep the order given.
    """
    rated = [(when, score) for when, score in scores if any(i.rating is not None for i in score.items)]
    if len(rated) < 2:
        return None
    ordered = sorted(rated, key=lambda pair: _instant(pair[0]))
    return ordered[0][1], ordered[-1][1]


def _instant(authored: Authored) -> datetime:
    """A comparable instant for a FHIR dateTime ("2024", "2024-03", "2024-03-05T10:00:00Z") or a date.

    Partial dates count from their start; times without an offset are taken as UTC.
    """
    if isinstance(authored, datetime):
        moment = authored
    elif isinstance(authored, date):
        moment = datetime(authored.year, authored.month, authored.day)
    else:
        padded = authored + "-01-01"[len(authored) - 4:] if len(authored) in (4, 7) else authored
        try:
            moment = datetime.fromisoformat(padded)
        except ValueError as exc:
            raise InputError(f"authored {authored!r} is not a FHIR dateTime") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
