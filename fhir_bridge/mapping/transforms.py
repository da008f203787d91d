"""Named pure transforms. A mapping names them (`transform: date` or `{name: yes_no, yes: ["2"]}`);
the loader builds each one once from its arguments, so a wrong argument fails at start-up.

Every transform takes a non-blank value and returns a value, None ("nothing to write"), or raises
MappingProblem: bad data is reported, never guessed at (a rating of 9 is never a score).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from datetime import time as time_of
from typing import Any
from zoneinfo import ZoneInfo

from fhir_bridge.identifiers import nhs_number_problem, normalise_nhs_number

Transform = Callable[[Any], Any]


class MappingProblem(Exception):
    """A source value this transform cannot turn into FHIR; the message goes into the report."""

    def __init__(self, message: str, code: str = "value"):
        super().__init__(message)
        self.message = message
        self.code = code  # FHIR IssueType


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


# -- dates ---------------------------------------------------------------------------------------
_DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%Y%m%d")
_TIME_FORMATS = ("%H:%M:%S", "%H:%M", "%H%M%S", "%H%M")
_PARTIAL_DATE = re.compile(r"(\d{4})(?:-(\d\d))?")
_ISO_DAY = re.compile(r"\d{4}-\d\d-\d\d")
_ISO_TIME = re.compile(r"\d\d:\d\d(?::\d\d)?")


def date(timezone: str = "Europe/London", day_only: bool = False) -> Transform:
    """DD/MM/YYYY, YYYY-MM-DD (also with a time) -> FHIR date, or dateTime when a time is given.

    Local times from UK systems carry no offset: `timezone` supplies it (FHIR requires one).
    `day_only` keeps the day of a value with a time: extracts export date columns (a birth date)
    as "05/03/1980 00:00", and a FHIR date has no time. The time must still be a valid one."""
    zone = ZoneInfo(timezone)
    if not isinstance(day_only, bool):
        raise ValueError("day_only is true or false")

    def convert(value: Any) -> str:
        raw = _text(value).strip()
        if "T" in raw and (raw.endswith("Z") or re.search(r"[+-]\d\d:\d\d$", raw)):
            try:  # already ISO 8601 with an offset (HL7-to-JSON callers, FHIR clients)
                return datetime.fromisoformat(raw.replace("Z", "+00:00")).isoformat()
            except ValueError:
                pass
        day, _, time = raw.replace("T", " ", 1).partition(" ")
        time = time.strip()
        partial = _PARTIAL_DATE.fullmatch(day)
        if partial and not time:  # YYYY or YYYY-MM: a FHIR date as precise as the source knew it
            if partial.group(2) and not 1 <= int(partial.group(2)) <= 12:
                raise MappingProblem(f"{raw!r} is not a date (month {partial.group(2)})")
            return day
        parsed = _parse(day, _DATE_FORMATS)
        if parsed is None:
            raise MappingProblem(f"{raw!r} is not a date (expected DD/MM/YYYY or YYYY-MM-DD)")
        if not time:
            return parsed.date().isoformat()
        clock = _parse(time, _TIME_FORMATS)
        if clock is None:
            raise MappingProblem(f"{raw!r} has a time that is not HH:MM or HH:MM:SS")
        if day_only:
            return parsed.date().isoformat()
        moment = parsed.replace(hour=clock.hour, minute=clock.minute, second=clock.second, tzinfo=zone)
        return moment.isoformat()

    return convert


def _parse(text: str, formats: Iterable[str]) -> datetime | None:
    if _ISO_DAY.fullmatch(text) or _ISO_TIME.fullmatch(text):
        try:  # the common case, without strptime's failed attempts (an exception per format)
            return datetime.fromisoformat(text) if "-" in text else \
                datetime.combine(datetime.min.date(), time_of.fromisoformat(text))
        except ValueError:
            return None
    for fmt in formats:
        if fmt == "%Y%m%d" and not (len(text) == 8 and text.isdigit()):
            continue  # strptime would read 199911 as 1999-01-01
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


# -- identifiers and text ------------------------------------------------------------------------
def nhs_number() -> Transform:
    """Strip spaces/dashes, then require a valid NHS number (mod 11, not all one digit)."""

    def convert(value: Any) -> str:
        number = normalise_nhs_number(_text(value))
        if problem := nhs_number_problem(number):
            raise MappingProblem(f"{_text(value)!r} is not a valid NHS number: {problem}", code="code-invalid")
        return number

    return convert


def prefix(text: str) -> Transform:
    """`text` + value: a URL built from a caller parameter, e.g. a local identifier system per
    organisation (`https://.../Id/rio-client/` + the ODS code)."""
    if not isinstance(text, str) or not text:
        raise ValueError("prefix needs a non-empty `text`")
    return lambda value: text + _text(value)


def recode(map: dict[str, str]) -> Transform:  # noqa: A002 - `map` is the name mapping files use
    """A source code -> a FHIR code (a plain `code` element such as Patient.gender, where a code
    table's Coding does not fit). A code the map lacks is a problem, never a guess."""
    if not isinstance(map, dict) or not map or not all(isinstance(v, str) for v in map.values()):
        raise ValueError("recode needs `map`: source code -> FHIR code (quote codes such as \"01\")")
    table = {str(k): v for k, v in map.items()}

    def convert(value: Any) -> str:
        code = _text(value).strip()
        if code not in table:
            raise MappingProblem(f"{code!r} is not one of {', '.join(sorted(table))}", code="code-invalid")
        return table[code]

    return convert


def upper() -> Transform:
    return lambda value: _text(value).upper()


def lower() -> Transform:
    return lambda value: _text(value).lower()


def trim() -> Transform:
    return lambda value: _text(value).strip()


def split(separator: str = ";") -> Transform:
    """"a; b;;c" -> ["a", "b", "c"]: empty parts are dropped, None when nothing is left."""

    def convert(value: Any) -> list[str] | None:
        parts = [p.strip() for p in _text(value).split(separator)]
        return [p for p in parts if p] or None

    return convert


def integer() -> Transform:
    def convert(value: Any) -> int:
        try:
            return int(_text(value).strip())
        except ValueError:
            raise MappingProblem(f"{value!r} is not a whole number") from None

    return convert


# -- coded answers -------------------------------------------------------------------------------
def yes_no(yes: list[str] | None = None, no: list[str] | None = None) -> Transform:
    """Y/N/Yes/No/1/0/True/False (or the source's own codes, e.g. the DIALOG+ app's 2 = yes,
    1 = no) -> the HL7 v2-0136 codes "Y" / "N". Anything else is a problem, never a guess."""
    yes_values = {v.lower() for v in (yes or ["y", "yes", "1", "true"])}
    no_values = {v.lower() for v in (no or ["n", "no", "0", "false"])}
    if yes_values & no_values:
        raise ValueError(f"values both yes and no: {sorted(yes_values & no_values)}")

    def convert(value: Any) -> str:
        key = _text(value).strip().lower()
        if key in yes_values:
            return "Y"
        if key in no_values:
            return "N"
        raise MappingProblem(f"{value!r} is not a yes/no answer (yes: {sorted(yes_values)}, no: {sorted(no_values)})",
                             code="code-invalid")

    return convert


def dialog_rating(not_applicable: list[str] | None = None) -> Transform:
    """A DIALOG rating: "1".."7" -> that code; the not-applicable value ("8") -> "8", which the
    Questionnaire accepts as 'not applicable / not answered' and scoring never counts; anything else
    (0, 9, "3.5", "good") is a problem, never a score. Blank never reaches a transform."""
    not_applicable_values = set(not_applicable or ["8"])

    def convert(value: Any) -> str:
        raw = _text(value).strip()
        if raw.endswith(".0"):  # spreadsheets turn 3 into 3.0
            raw = raw[:-2]
        if raw in not_applicable_values:
            return "8"
        if raw.isdigit() and 1 <= int(raw) <= 7:
            return str(int(raw))
        raise MappingProblem(f"{value!r} is not a DIALOG rating (1-7, or 8 for not applicable)", code="code-invalid")

    return convert


def name_last_first() -> Transform:
    """ "Pemberton, Rosa May" -> HumanName {family, given}; a name without a comma cannot be split
    safely, so it is kept whole as text."""

    def convert(value: Any) -> dict:
        raw = " ".join(_text(value).split())
        family, comma, given = raw.partition(",")
        if not comma or not family.strip():
            return {"text": raw}
        name: dict[str, Any] = {"family": family.strip()}
        if given.split():
            name["given"] = given.split()
        return name

    return convert


REGISTRY: dict[str, Callable[..., Transform]] = {
    "date": date,
    "dialog_rating": dialog_rating,
    "integer": integer,
    "lower": lower,
    "name_last_first": name_last_first,
    "nhs_number": nhs_number,
    "prefix": prefix,
    "recode": recode,
    "split": split,
    "trim": trim,
    "upper": upper,
    "yes_no": yes_no,
}


def build_transform(name: str, arguments: dict[str, Any]) -> Transform:
    """The transform `name` configured with `arguments`; KeyError / TypeError / ValueError on a bad
    name or argument, which the loader turns into a ConfigurationError naming the rule."""
    return REGISTRY[name](**arguments)
