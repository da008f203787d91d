"""Item-level semantics shared by operators and functions: truth, equality, equivalence,
ordering, arithmetic and the identity used by distinct()/union.

Collections are Python lists and are never mutated once built, so the constants below and the
JSON arrays navigation returns can be shared without copying.
"""
from __future__ import annotations

import re
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, DivisionByZero, InvalidOperation

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath.values import (
    Quantity,
    Temporal,
    Typed,
    add_duration,
    compare_temporal,
    parse_date_time,
    parse_time,
    quantity_from_fhir,
    to_decimal,
)

TRUE: list = [True]
FALSE: list = [False]
EMPTY: list = []

_NUMBER_TYPES = frozenset({int, float, Decimal})  # type(True) is bool, so booleans stay out


def describe(value) -> str:
    if type(value) is Typed:
        return value.type
    if type(value) is dict:
        return value.get("resourceType", "object")
    if type(value) is Temporal:
        return value.kind
    return type(value).__name__


def to_bool(coll: list) -> bool | None:
    """Singleton evaluation for a Boolean context: empty -> None (unknown), one boolean -> it,
    one other item -> True (the spec's rule), several items -> error."""
    if not coll:
        return None
    if len(coll) == 1:
        value = coll[0]
        return value if type(value) is bool else True
    raise FhirPathError(f"expected a single boolean, got a collection of {len(coll)} items")


def singleton(coll: list, what: str):
    """The only item of coll, None when empty; several items are an error."""
    if not coll:
        return None
    if len(coll) == 1:
        return coll[0]
    raise FhirPathError(f"{what} expects a single item, got a collection of {len(coll)} items")


def _number(value):
    # Floats come from JSON; comparing them with Decimal literals needs the decimal they spelled.
    return to_decimal(value) if type(value) is float else value


# ---------------------------------------------------------------------------------------------
# Equality (=) and equivalence (~)

def equal(a, b) -> bool | None:
    """FHIRPath `=` on two items; None when the answer is unknown (dates of different precision,
    quantities in different units)."""
    ta, tb = type(a), type(b)
    if ta is tb and (ta is str or ta is int or ta is bool):
        return a == b
    if ta is Typed or tb is Typed:
        return equal(a.value if ta is Typed else a, b.value if tb is Typed else b)
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        return _number(a) == _number(b)
    if ta is Temporal or tb is Temporal:
        return _temporal_equal(a, b)
    if ta is Quantity or tb is Quantity:
        return _quantity_equal(a, b)
    if ta is dict and tb is dict:
        return _deep_equal(a, b)
    return False


def _temporal_equal(a, b) -> bool | None:
    x, y = _temporal_pair(a, b)
    if x is None or (x.kind == "time") != (y.kind == "time"):
        return False
    order = compare_temporal(x, y)
    return None if order is None else order == 0


def _quantity_equal(a, b) -> bool | None:
    x, y = _quantity(a), _quantity(b)
    if x is None or y is None:
        return False
    if x.unit != y.unit:
        return None  # no UCUM conversion: unknown rather than false
    return _number(x.value) == _number(y.value)


def _deep_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k, va in a.items():
        vb = b[k]
        if type(va) is list:
            if type(vb) is not list or len(va) != len(vb) or not all(_item_equal(x, y) for x, y in zip(va, vb)):
                return False
        elif not _item_equal(va, vb):
            return False
    return True


def _item_equal(a, b) -> bool:
    return equal(a, b) is True


def equal_collections(left: list, right: list) -> bool | None:
    if not left or not right:
        return None
    if len(left) != len(right):
        return False
    result: bool | None = True
    for a, b in zip(left, right):
        same = equal(a, b)
        if same is False:
            return False
        if same is None:
            result = None
    return result


_SPACES = re.compile(r"\s+")


def _normalized(text: str) -> str:
    return _SPACES.sub(" ", text.strip()).lower()


def _decimal_places(value) -> int:
    # Trailing zeros do not count towards precision: 1.10 ~ 1.1.
    exponent = to_decimal(value).normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def equivalent(a, b) -> bool:
    """FHIRPath `~`: strings ignore case and whitespace runs, decimals compare at the precision
    of the less precise one, dates of different precision are not equivalent, objects compare
    field by field with lists in any order."""
    if type(a) is Typed:
        a = a.value
    if type(b) is Typed:
        b = b.value
    ta, tb = type(a), type(b)
    if ta is str and tb is str:
        return _normalized(a) == _normalized(b)
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        places = min(_decimal_places(a), _decimal_places(b))
        step = Decimal(1).scaleb(-places)
        return (to_decimal(a).quantize(step, rounding=ROUND_HALF_UP)
                == to_decimal(b).quantize(step, rounding=ROUND_HALF_UP))
    if ta is dict and tb is dict and _quantity(a) is None:
        return a.keys() == b.keys() and all(
            equivalent_collections(_as_list(v), _as_list(b[k])) for k, v in a.items())
    return equal(a, b) is True


def _as_list(value) -> list:
    return value if type(value) is list else [value]


def equivalent_collections(left: list, right: list) -> bool:
    if len(left) != len(right):
        return False
    unmatched = list(right)
    for a in left:
        for i, b in enumerate(unmatched):
            if equivalent(a, b):
                del unmatched[i]
                break
        else:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Ordering

def compare(a, b) -> int | None:
    """-1/0/1 for the ordering operators; None when unknown; FhirPathError for values that
    cannot be ordered against each other."""
    if type(a) is Typed:
        a = a.value
    if type(b) is Typed:
        b = b.value
    ta, tb = type(a), type(b)
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        x, y = _number(a), _number(b)
        return (x > y) - (x < y)
    if ta is str and tb is str:
        # JSON keeps dates as strings: two date-shaped strings compare as dates, so that
        # `start <= end` in a Period honours precision and timezones.
        x, y = parse_date_time(a), parse_date_time(b)
        if x is not None and y is not None:
            return compare_temporal(x, y)
        return (a > b) - (a < b)
    if ta is Temporal or tb is Temporal:
        x, y = _temporal_pair(a, b)
        if x is not None and (x.kind == "time") == (y.kind == "time"):
            return compare_temporal(x, y)
    elif ta is Quantity or tb is Quantity or (ta is dict and tb is dict):
        x, y = _quantity(a), _quantity(b)
        if x is not None and y is not None:
            if x.unit != y.unit:
                return None
            vx, vy = _number(x.value), _number(y.value)
            return (vx > vy) - (vx < vy)
    raise FhirPathError(f"cannot compare {describe(a)} with {describe(b)}")


def _temporal_pair(a, b) -> tuple[Temporal | None, Temporal | None]:
    like = a if type(a) is Temporal else b
    x, y = _temporal(a, like), _temporal(b, like)
    return (x, y) if x is not None and y is not None else (None, None)


def _temporal(value, like: Temporal) -> Temporal | None:
    if type(value) is Temporal:
        return value
    if type(value) is str:
        return parse_time(value) if like.kind == "time" else parse_date_time(value)
    return None


def _quantity(value) -> Quantity | None:
    if type(value) is Quantity:
        return value
    if type(value) is dict:
        return quantity_from_fhir(value)
    if type(value) in _NUMBER_TYPES:
        return Quantity(_number(value), "1")  # a number is a quantity of unit '1'
    return None


# ---------------------------------------------------------------------------------------------
# Arithmetic

def add(a, b):
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return a + b
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        return to_decimal(a) + to_decimal(b)
    if ta is str and tb is str:
        return a + b
    return _add_quantity(a, b, 1, "+")


def subtract(a, b):
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return a - b
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        return to_decimal(a) - to_decimal(b)
    return _add_quantity(a, b, -1, "-")


def _add_quantity(a, b, sign: int, op: str):
    if type(b) is Quantity and (type(a) is Temporal or type(a) is str):
        return _shift_date(a, b, sign, op)
    x = _quantity(a.value if type(a) is Typed else a)
    y = _quantity(b.value if type(b) is Typed else b)
    if x is None or y is None:
        raise FhirPathError(f"cannot apply {op} to {describe(a)} and {describe(b)}")
    if x.unit != y.unit:
        return None
    return Quantity(to_decimal(x.value) + sign * to_decimal(y.value), x.unit)


def _shift_date(a, b: Quantity, sign: int, op: str):
    t = a if type(a) is Temporal else (parse_date_time(a) or parse_time(a))
    unit = b.duration_unit()
    if t is None or unit is None or (t.kind == "time" and unit in ("year", "month", "week", "day")):
        raise FhirPathError(f"cannot apply {op} to {describe(a)} and {b}")
    return add_duration(t, sign * b.value, unit)


def multiply(a, b):
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return a * b
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        return to_decimal(a) * to_decimal(b)
    raise FhirPathError(f"cannot apply * to {describe(a)} and {describe(b)}")


def divide(a, b):
    _require_numbers(a, b, "/")
    if b == 0:
        return None
    return to_decimal(a) / to_decimal(b)


def integer_divide(a, b):
    _require_numbers(a, b, "div")
    if b == 0:
        return None
    quotient = (to_decimal(a) / to_decimal(b)).to_integral_value(rounding=ROUND_DOWN)
    return int(quotient)


def modulo(a, b):
    _require_numbers(a, b, "mod")
    if b == 0:
        return None
    try:
        remainder = to_decimal(a) % to_decimal(b)  # Decimal keeps the dividend's sign, as FHIRPath does
    except (DivisionByZero, InvalidOperation):
        return None
    return int(remainder) if type(a) is int and type(b) is int else remainder


def _require_numbers(a, b, op: str) -> None:
    if type(a) not in _NUMBER_TYPES or type(b) not in _NUMBER_TYPES:
        raise FhirPathError(f"cannot apply {op} to {describe(a)} and {describe(b)}")


def negate(value):
    if type(value) in _NUMBER_TYPES:
        return -_number(value)
    if type(value) is Quantity:
        return Quantity(-value.value, value.unit)
    raise FhirPathError(f"cannot negate {describe(value)}")


# ---------------------------------------------------------------------------------------------
# Identity for distinct(), union, intersect, exclude

def key(value):
    """A hashable stand-in such that key(a) == key(b) when a = b."""
    t = type(value)
    if t is str or t is int or t is Decimal:
        return value
    if t is bool:
        return (bool, value)
    if t is float:
        return to_decimal(value)
    if t is Typed:
        return key(value.value)
    if t is dict:
        return (dict, tuple(sorted((k, key(v)) for k, v in value.items())))
    if t is list:
        return (list, tuple(key(v) for v in value))
    if t is Temporal:
        return (Temporal, value.kind == "time", value.precision, value.comparable_parts())
    if t is Quantity:
        return (Quantity, _number(value.value), value.unit)
    return (t, id(value))


def distinct(coll: list) -> list:
    seen = set()
    out = []
    for item in coll:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def contains_item(coll: list, value) -> bool:
    return any(equal(item, value) is True for item in coll)
