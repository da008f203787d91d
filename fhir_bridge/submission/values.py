"""The reporting period, and the named transforms and checks a submission mapping may use.

Transforms turn a FHIR value into the text MHSDS carries (a FHIR dateTime with its offset into the
UK local date and time MHSDS records). Checks are the data quality rules the XSD cannot express
(the NHS number's check digit, a DIALOG score's range, a date inside the period): a failed check
makes a value invalid, exactly like a value the XSD's type refuses.
"""
from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from fhir_bridge.identifiers import nhs_number_problem, normalise_nhs_number

__all__ = ["UK", "Period", "ValueProblem", "CheckContext", "TRANSFORMS", "CHECKS", "local_moment"]

UK = ZoneInfo("Europe/London")   # MHSDS dates and times are UK local; periods are UK calendar months
_MONTH = re.compile(r"(\d{4})-(\d{2})\Z")
_POSTCODE = re.compile(r"([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})\Z")


class ValueProblem(ValueError):
    """A FHIR value a transform cannot turn into the MHSDS form (a partial date, a bad time)."""


@dataclass(frozen=True)
class Period:
    """A reporting period: one UK calendar month, with its bounds as UTC microseconds for SQL."""

    month: str             # YYYY-MM
    start: date
    end: date              # the last day

    @classmethod
    def parse(cls, text: str) -> "Period":
        match = _MONTH.match(text.strip()) if isinstance(text, str) else None
        if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
            raise ValueError(f"{text!r} is not a reporting period: give a month as YYYY-MM (e.g. 2026-10)")
        year, month = int(match.group(1)), int(match.group(2))
        return cls(f"{year:04d}-{month:02d}", date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))

    @property
    def low(self) -> int:
        """The first microsecond of the month in the UK, as UTC microseconds."""
        return _micros(datetime.combine(self.start, time(0), UK))

    @property
    def high(self) -> int:
        """The last microsecond of the month in the UK, as UTC microseconds."""
        return _micros(datetime.combine(self.end + timedelta(days=1), time(0), UK)) - 1

    def contains(self, day: str) -> bool:
        """Whether a YYYY-MM-DD day falls in the period (ISO days compare as text)."""
        return self.start.isoformat() <= day[:10] <= self.end.isoformat()


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def local_moment(value: Any) -> tuple[str, str | None] | None:
    """A FHIR date, dateTime or instant -> (UK local day, UK local time or None for a date), or None
    when it is not one. A date is a local day already; a dateTime is moved to UK time."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    if len(value) == 10:
        try:
            return date.fromisoformat(value).isoformat(), None
        except ValueError:
            return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UK)
    return moment.date().isoformat(), moment.time().replace(microsecond=0).isoformat()


# -- transforms: FHIR value -> MHSDS text (None: nothing to send) ----------------------------------
def _day(value: Any) -> str:
    found = local_moment(value)
    if found is None:
        raise ValueProblem("is not a full date" if isinstance(value, str) and len(value) in (4, 7) else "is not a date")
    return found[0]


def _time(value: Any) -> str | None:
    found = local_moment(value)
    if found is None:
        raise ValueProblem("is not a date and time")
    return found[1]   # a date alone has no time: nothing to send


def _timestamp(value: Any) -> str:
    found = local_moment(value)
    if found is None:
        raise ValueProblem("is not a date and time")
    day, clock = found
    return f"{day}T{clock or '00:00:00'}"   # a date alone: the start of that day


def _postcode(value: Any) -> str:
    compact = re.sub(r"\s+", "", str(value)).upper()
    match = _POSTCODE.match(compact)
    return f"{match.group(1)} {match.group(2)}" if match else compact  # the check reports a bad one


def _reference_id(value: Any) -> str:
    """`Practitioner/abc` (or a versioned / absolute reference) -> `abc`."""
    text = str(value).split("/_history/")[0].rstrip("/")
    return text.rsplit("/", 1)[-1]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.strip() if isinstance(value, str) else str(value)


TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "date": _day,
    "time": _time,
    "timestamp": _timestamp,
    "postcode": _postcode,
    "reference-id": _reference_id,
    "nhs-number": lambda value: normalise_nhs_number(str(value)),
    "upper": lambda value: _text(value).upper(),
    "text": _text,
}


# -- checks: (MHSDS text, the run) -> why it is invalid, or None -------------------------------------
@dataclass(frozen=True)
class CheckContext:
    period: Period
    not_answered_code: str | None   # what a DIALOG item answered 8 is sent as, if it is sent


def _nhs_number(value: str, _context: CheckContext) -> str | None:
    problem = nhs_number_problem(value)
    return f"is not a valid NHS number ({problem})" if problem else None


def _dialog_score(value: str, context: CheckContext) -> str | None:
    if value.isdigit() and 1 <= int(value) <= 7 or value == context.not_answered_code:
        return None
    allowed = "1-7" + (f" or {context.not_answered_code} (not answered)" if context.not_answered_code else "")
    return f"is not a DIALOG score ({allowed})"


def _in_period(value: str, context: CheckContext) -> str | None:
    return None if context.period.contains(value) else f"is outside the period {context.period.month}"


def _not_after_period_end(value: str, context: CheckContext) -> str | None:
    return None if value[:10] <= context.period.end.isoformat() else f"is after the period end {context.period.end}"


CHECKS: dict[str, Callable[[str, CheckContext], str | None]] = {
    "nhs-number": _nhs_number,
    "dialog-score": _dialog_score,
    "in-period": _in_period,
    "not-after-period-end": _not_after_period_end,
}
