"""Checks of FHIR primitive values in their JSON form: JSON type, the spec's regex, calendar dates."""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Callable

from fhir_bridge.fhir.model import StructureModel
from fhir_bridge.validation.narrative import narrative_problem

PrimitiveCheck = Callable[[object], "str | None"]

INT32 = (-(2**31), 2**31 - 1)
DATE_TYPES = {"date", "dateTime", "instant"}


def _number_check(type_code: str) -> PrimitiveCheck:
    low = {"positiveInt": 1, "unsignedInt": 0}.get(type_code, INT32[0])

    def check(value: object) -> str | None:
        if type(value) is not int:
            return f"must be a JSON integer ({type_code}), not {_json_name(value)}"
        if not low <= value <= INT32[1]:
            return f"{value} is out of range for {type_code}"
        return None

    return check


def _decimal_check(value: object) -> str | None:
    if type(value) in (int, float) or isinstance(value, Decimal):
        return None
    return f"must be a JSON number (decimal), not {_json_name(value)}"


def _boolean_check(value: object) -> str | None:
    return None if type(value) is bool else f"must be a JSON boolean, not {_json_name(value)}"


def _valid_calendar_date(value: str) -> bool:
    if len(value) < 10:
        return True
    try:
        date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def _string_check(type_code: str, regex: str | None) -> PrimitiveCheck:
    fullmatch = re.compile(regex).fullmatch if regex else None
    is_date = type_code in DATE_TYPES
    # Feeds repeat the same systems, codes and references endlessly: remember short valid values
    # (bounded, so a stream of unique values cannot grow it without limit).
    known_good: set[str] = set()

    def check(value: object) -> str | None:
        if type(value) is not str:
            return f"must be a JSON string ({type_code}), not {_json_name(value)}"
        if value in known_good:
            return None
        if fullmatch is not None and fullmatch(value) is None:
            return f"{value!r} is not a valid {type_code}"
        if is_date and not _valid_calendar_date(value):
            return f"{value!r} is not a valid {type_code}: no such day"
        if len(value) <= 128 and len(known_good) < 50_000:
            known_good.add(value)
        return None

    return check


def _xhtml_check(value: object) -> str | None:
    if type(value) is not str:
        return f"must be a JSON string (xhtml), not {_json_name(value)}"
    if not value.lstrip().startswith("<div"):
        return "narrative must be an XHTML <div> element"
    return narrative_problem(value)


def _json_name(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def primitive_checks(model: StructureModel) -> dict[str, PrimitiveCheck]:
    """One compiled check per primitive type of the base spec."""
    checks: dict[str, PrimitiveCheck] = {}
    for name, td in model.types.items():
        if not td.is_primitive:
            continue
        if name == "boolean":
            checks[name] = _boolean_check
        elif name in ("integer", "positiveInt", "unsignedInt"):
            checks[name] = _number_check(name)
        elif name == "decimal":
            checks[name] = _decimal_check
        elif name == "xhtml":
            checks[name] = _xhtml_check
        else:
            checks[name] = _string_check(name, td.regex)
    return checks
