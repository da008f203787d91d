"""The values a FHIRPath collection holds besides plain JSON.

Plain JSON stays plain (dict, list items, str, bool, int, float, Decimal) so that navigation
over resources costs nothing extra. Three small classes cover the rest:

* Typed     a JSON object reached through a choice element (`valueCoding`), remembering
            its type so that `ofType(Coding)` / `is` / `as` can answer;
* Temporal  a date, dateTime or time with its precision (from a literal, a conversion,
            now()/today(), or a JSON string parsed on demand for comparison);
* Quantity  a value with a unit (literal `4 'mg'`, `1 year`, or a FHIR Quantity object).
"""
from __future__ import annotations

import calendar
import re
import time as _time
from datetime import date as _date
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache


class Typed:
    """A JSON object together with the FHIR type its choice element gave it."""

    __slots__ = ("value", "type")

    def __init__(self, value: dict, type_name: str):
        self.value = value
        self.type = type_name

    def __repr__(self) -> str:
        return f"Typed({self.type}, {self.value!r})"


# ---------------------------------------------------------------------------------------------
# Quantity

CALENDAR_UNITS = ("year", "month", "week", "day", "hour", "minute", "second", "millisecond")
_UCUM_DURATION = {"a": "year", "mo": "month", "wk": "week", "d": "day", "h": "hour",
                  "min": "minute", "s": "second", "ms": "millisecond"}
UCUM_SYSTEM = "http://unitsofmeasure.org"


def calendar_unit(word: str) -> str | None:
    """'years' -> 'year'; None when the word is not a calendar duration keyword."""
    singular = word[:-1] if word.endswith("s") else word
    return singular if singular in CALENDAR_UNITS else None


class Quantity:
    __slots__ = ("value", "unit")

    def __init__(self, value: int | Decimal, unit: str):
        self.value = value
        self.unit = unit

    def duration_unit(self) -> str | None:
        """The calendar field this quantity adds to a date, if it is a duration."""
        return self.unit if self.unit in CALENDAR_UNITS else _UCUM_DURATION.get(self.unit)

    def to_fhir(self) -> dict:
        if self.unit in CALENDAR_UNITS:
            return {"value": self.value, "unit": self.unit}
        return {"value": self.value, "unit": self.unit, "system": UCUM_SYSTEM, "code": self.unit}

    def __str__(self) -> str:
        unit = self.unit if self.unit in CALENDAR_UNITS else f"'{self.unit}'"
        return f"{format_number(self.value)} {unit}"

    __repr__ = __str__


def quantity_from_fhir(obj: dict) -> Quantity | None:
    """A FHIR Quantity (or Age, Duration...) as a Quantity; None when it has no numeric value."""
    value = obj.get("value")
    if type(value) is bool or not isinstance(value, (int, float, Decimal)):
        return None
    return Quantity(to_decimal(value) if type(value) is float else value, obj.get("code") or obj.get("unit") or "1")


_QUANTITY_TEXT = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(?:'([^']*)'|([a-z]+))?\s*$")


def parse_quantity(text: str) -> Quantity | None:
    m = _QUANTITY_TEXT.match(text)
    if m is None:
        return None
    number, ucum, word = m.groups()
    unit = ucum if ucum is not None else "1"
    if word is not None:
        unit = calendar_unit(word)
        if unit is None:
            return None
    return Quantity(parse_number(number), unit)


# ---------------------------------------------------------------------------------------------
# Numbers

def to_decimal(value: int | float | Decimal) -> Decimal:
    # repr() of a float is the shortest text that round-trips: the number the JSON spelled.
    return Decimal(repr(value)) if type(value) is float else Decimal(value)


def parse_number(text: str) -> int | Decimal:
    return Decimal(text) if "." in text else int(text)


def format_number(value: int | float | Decimal) -> str:
    if type(value) is int:
        return str(value)
    return format(to_decimal(value), "f")


# ---------------------------------------------------------------------------------------------
# Temporal values

_DATETIME_TEXT = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?"
    r"(T(?:(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?(Z|[+-]\d{2}:\d{2})?)?$"
)
_TIME_TEXT = re.compile(r"^T?(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")
_HOUR = 4  # precision index of the hour in a dateTime: timezones only matter from there on


class Temporal:
    """A date, dateTime or time with partial precision.

    `parts` is always complete so it can be turned into a datetime: (year, month, day, hour,
    minute, microsecond-of-minute) for dates and dateTimes, (hour, minute, microsecond-of-minute)
    for times. Seconds and milliseconds share one precision level, as the spec requires;
    `precision` counts the significant leading parts.
    """

    __slots__ = ("kind", "parts", "precision", "tz", "text")

    def __init__(self, kind: str, parts: tuple[int, ...], precision: int, tz: int | None, text: str):
        self.kind = kind            # "date", "dateTime" or "time"
        self.parts = parts
        self.precision = precision
        self.tz = tz                # offset from UTC in minutes; None when unspecified
        self.text = text            # ISO text without the '@', as FHIR JSON writes it

    def __repr__(self) -> str:
        return f"@{self.text}"

    def comparable_parts(self) -> tuple[int, ...]:
        """Parts moved to UTC when there is a time of day (a missing timezone is the local
        one, per the spec); dates and times are compared as written."""
        if self.kind != "dateTime" or self.precision < _HOUR:
            return self.parts
        offset = self.tz if self.tz is not None else _time.localtime().tm_gmtoff // 60
        if offset == 0:
            return self.parts
        y, mo, d, h, mi, us = self.parts
        try:
            moment = datetime(y, mo, d, h, mi) - timedelta(minutes=offset)
        except OverflowError:
            return self.parts
        return (moment.year, moment.month, moment.day, moment.hour, moment.minute, us)

    def as_date_time(self) -> Temporal:
        return Temporal("dateTime", self.parts, self.precision, self.tz, self.text)


def _usec(seconds: str | None, fraction: str | None) -> int:
    return int(seconds or 0) * 1_000_000 + int((fraction or "")[:6].ljust(6, "0"))


def _tz_minutes(tz: str | None) -> int | None:
    if tz is None:
        return None
    if tz == "Z":
        return 0
    sign = -1 if tz[0] == "-" else 1
    return sign * (int(tz[1:3]) * 60 + int(tz[4:6]))


@lru_cache(maxsize=8192)
def parse_date_time(text: str) -> Temporal | None:
    """A FHIR/FHIRPath date or dateTime text; None when it is not one (or not a real date)."""
    m = _DATETIME_TEXT.match(text)
    if m is None:
        return None
    year, month, day, t_part, hour, minute, second, fraction, tz = m.groups()
    fields = (year, month, day, hour, minute, second)
    precision = next((i for i, f in enumerate(fields) if f is None), 6)
    if precision < 3 and hour is not None:
        return None  # a time of day needs a full date
    parts = (int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), _usec(second, fraction))
    try:
        _date(parts[0], parts[1], parts[2])
    except ValueError:
        return None
    if parts[3] > 23 or parts[4] > 59 or parts[5] >= 60_000_000:
        return None
    kind = "dateTime" if t_part is not None else "date"
    # `@2020T` is a dateTime of year precision; FHIR JSON writes it without the T.
    return Temporal(kind, parts, precision, _tz_minutes(tz), text.rstrip("T"))


@lru_cache(maxsize=1024)
def parse_time(text: str) -> Temporal | None:
    m = _TIME_TEXT.match(text)
    if m is None:
        return None
    hour, minute, second, fraction = m.groups()
    precision = next((i for i, f in enumerate((hour, minute, second)) if f is None), 3)
    parts = (int(hour), int(minute or 0), _usec(second, fraction))
    if parts[0] > 23 or parts[1] > 59 or parts[2] >= 60_000_000:
        return None
    return Temporal("time", parts, precision, None, text.lstrip("T"))


def compare_temporal(a: Temporal, b: Temporal) -> int | None:
    """-1, 0 or 1; None when the values agree up to the coarser precision but differ in
    precision (the spec's "uncertain" answer). Both must be times, or both dates/dateTimes."""
    pa, pb = a.comparable_parts(), b.comparable_parts()
    for i in range(min(a.precision, b.precision)):
        if pa[i] != pb[i]:
            return -1 if pa[i] < pb[i] else 1
    return 0 if a.precision == b.precision else None


def _format(kind: str, parts: tuple[int, ...], precision: int, tz: int | None) -> str:
    if kind == "time":
        hour, minute, us = parts
        pieces = [f"{hour:02d}", f"{minute:02d}", _format_seconds(us)][:precision]
        return ":".join(pieces)
    y, mo, d, h, mi, us = parts
    text = "-".join([f"{y:04d}", f"{mo:02d}", f"{d:02d}"][:min(precision, 3)])
    if kind == "dateTime" and precision > 3:
        text += "T" + ":".join([f"{h:02d}", f"{mi:02d}", _format_seconds(us)][:precision - 3])
        if tz is not None:
            text += "Z" if tz == 0 else f"{'+' if tz > 0 else '-'}{abs(tz) // 60:02d}:{abs(tz) % 60:02d}"
    return text


def _format_seconds(us: int) -> str:
    seconds, micro = divmod(us, 1_000_000)
    return f"{seconds:02d}" if micro == 0 else f"{seconds:02d}.{micro // 1000:03d}"


def make_temporal(kind: str, parts: tuple[int, ...], precision: int, tz: int | None) -> Temporal:
    return Temporal(kind, parts, precision, tz, _format(kind, parts, precision, tz))


def now() -> Temporal:
    moment = datetime.now(timezone.utc).astimezone()
    tz = int(moment.utcoffset().total_seconds() // 60)
    us = moment.second * 1_000_000 + (moment.microsecond // 1000) * 1000
    parts = (moment.year, moment.month, moment.day, moment.hour, moment.minute, us)
    return make_temporal("dateTime", parts, 6, tz)


def today() -> Temporal:
    d = _date.today()
    return make_temporal("date", (d.year, d.month, d.day, 0, 0, 0), 3, None)


def time_of_day() -> Temporal:
    moment = datetime.now()
    us = moment.second * 1_000_000 + (moment.microsecond // 1000) * 1000
    return make_temporal("time", (moment.hour, moment.minute, us), 3, None)


_FIXED_LENGTH = {"week": timedelta(weeks=1), "day": timedelta(days=1), "hour": timedelta(hours=1),
                 "minute": timedelta(minutes=1), "second": timedelta(seconds=1),
                 "millisecond": timedelta(milliseconds=1)}


def add_duration(t: Temporal, amount: int | Decimal, unit: str) -> Temporal:
    """t + amount units. Years and months move the calendar (clamping the day, so Jan 31 +
    1 month is Feb 28/29); the other units are fixed lengths. The precision is kept."""
    if t.kind == "time":
        hour, minute, us = t.parts
        start = datetime(2000, 1, 1, hour, minute) + timedelta(microseconds=us)
        moved = start + _FIXED_LENGTH.get(unit, timedelta(0)) * float(amount)
        parts = (moved.hour, moved.minute, moved.second * 1_000_000 + moved.microsecond)
        return make_temporal("time", parts, t.precision, None)
    y, mo, d, h, mi, us = t.parts
    if unit in ("year", "month"):
        months = y * 12 + (mo - 1) + int(amount) * (12 if unit == "year" else 1)
        y, mo = divmod(months, 12)
        mo += 1
        d = min(d, calendar.monthrange(y, mo)[1])
        parts = (y, mo, d, h, mi, us)
    else:
        start = datetime(y, mo, d, h, mi) + timedelta(microseconds=us)
        moved = start + _FIXED_LENGTH[unit] * float(amount)
        parts = (moved.year, moved.month, moved.day, moved.hour, moved.minute,
                 moved.second * 1_000_000 + moved.microsecond)
    return make_temporal(t.kind, parts, t.precision, t.tz)


def is_number(value) -> bool:
    return type(value) in (int, float, Decimal)
