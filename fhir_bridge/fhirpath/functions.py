"""The FHIRPath function library and the evaluation state it runs against.

Every function is registered with the kind of each parameter, which tells the compiler how
to pass it:

* VALUE  evaluated once, against the current `$this`, and passed as a collection;
* EXPR   passed as a compiled closure, for functions that evaluate it per item (where, select,
         all, repeat, aggregate...) or lazily (iif, trace);
* TYPE   a type specifier, turned into a predicate at compile time (ofType, is, as).

Implementations take `(input_collection, env, *arguments)` and return a new list; they never
mutate the input.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Callable

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath import values as v
from fhir_bridge.fhirpath.model import split_choice_key
from fhir_bridge.fhirpath.operators import (
    EMPTY,
    FALSE,
    TRUE,
    contains_item,
    describe,
    distinct,
    key,
    singleton,
    to_bool,
)

VALUE, EXPR, TYPE = "value", "expr", "type"

_log = logging.getLogger("fhir_bridge.fhirpath.trace")


class Env:
    """Evaluation state of one call. The iterating functions set `this`/`index`/`total` for
    their argument and restore them afterwards, which is cheaper than a new Env per item.
    `memo` holds the results of subexpressions that do not read the focus (compiler.py)."""

    __slots__ = ("this", "index", "total", "resource", "root", "context", "variables", "memo")

    def __init__(self, focus: list, resource, root, variables: dict):
        self.this = focus
        self.index = None
        self.total = EMPTY
        self.resource = resource
        self.root = root
        self.context = focus
        self.variables = variables
        self.memo: dict | None = None


@dataclass(frozen=True, slots=True)
class Function:
    impl: Callable
    params: tuple[str, ...]
    required: int  # leading parameters that must be given; the rest are optional


FUNCTIONS: dict[str, Function] = {}


def function(name: str, *params: str, required: int | None = None):
    def register(impl: Callable) -> Callable:
        FUNCTIONS[name] = Function(impl, params, len(params) if required is None else required)
        return impl
    return register


def _unwrap(item):
    return item.value if type(item) is v.Typed else item


# ---------------------------------------------------------------------------------------------
# Existence

@function("empty")
def _empty(coll, env):
    return FALSE if coll else TRUE


@function("exists", EXPR, required=0)
def _exists(coll, env, criteria):
    if criteria is None:
        return TRUE if coll else FALSE
    return TRUE if _where(coll, env, criteria, first_only=True) else FALSE


@function("all", EXPR)
def _all(coll, env, criteria):
    saved = env.this, env.index
    try:
        for i, item in enumerate(coll):
            env.this = one = [item]
            env.index = i
            if to_bool(criteria(one, env)) is not True:
                return FALSE
        return TRUE
    finally:
        env.this, env.index = saved


@function("allTrue")
def _all_true(coll, env):
    return TRUE if all(item is True for item in coll) else FALSE


@function("anyTrue")
def _any_true(coll, env):
    return TRUE if any(item is True for item in coll) else FALSE


@function("allFalse")
def _all_false(coll, env):
    return TRUE if all(item is False for item in coll) else FALSE


@function("anyFalse")
def _any_false(coll, env):
    return TRUE if any(item is False for item in coll) else FALSE


@function("subsetOf", VALUE)
def _subset_of(coll, env, other):
    return TRUE if all(contains_item(other, item) for item in coll) else FALSE


@function("supersetOf", VALUE)
def _superset_of(coll, env, other):
    return TRUE if all(contains_item(coll, item) for item in other) else FALSE


@function("count")
def _count(coll, env):
    return [len(coll)]


@function("distinct")
def _distinct(coll, env):
    return distinct(coll)


@function("isDistinct")
def _is_distinct(coll, env):
    return TRUE if len(distinct(coll)) == len(coll) else FALSE


@function("not")
def _not(coll, env):
    value = to_bool(coll)
    return EMPTY if value is None else (FALSE if value else TRUE)


@function("hasValue")
def _has_value(coll, env):
    # Only primitives carry a value; JSON has no null primitives once parsed here.
    return TRUE if len(coll) == 1 and type(coll[0]) is not dict and type(coll[0]) is not v.Typed else FALSE


# ---------------------------------------------------------------------------------------------
# Filtering and projection

@function("where", EXPR)
def _where(coll, env, criteria, first_only: bool = False):
    saved = env.this, env.index
    out = []
    try:
        for i, item in enumerate(coll):
            env.this = one = [item]
            env.index = i
            result = criteria(one, env)
            if result is TRUE or (result is not FALSE and to_bool(result)):
                out.append(item)
                if first_only:
                    break
    finally:
        env.this, env.index = saved
    return out


@function("select", EXPR)
def _select(coll, env, projection):
    saved = env.this, env.index
    out = []
    try:
        for i, item in enumerate(coll):
            env.this = one = [item]
            env.index = i
            out.extend(projection(one, env))
    finally:
        env.this, env.index = saved
    return out


def _identity(item):
    # Tree nodes are unique objects: identity is enough (and cheap) to stop repeat() cycling.
    if type(item) is dict:
        return ("node", id(item))
    if type(item) is v.Typed:
        return ("node", id(item.value))
    return key(item)


@function("repeat", EXPR)
def _repeat(coll, env, projection):
    seen = set()
    out = []
    frontier = coll
    while frontier:
        found = []
        for item in _select(frontier, env, projection):
            ident = _identity(item)
            if ident not in seen:
                seen.add(ident)
                found.append(item)
        out.extend(found)
        frontier = found
    return out


@function("ofType", TYPE)
def _of_type(coll, env, predicate):
    return [item for item in coll if predicate(item)]


@function("as", TYPE)
def _as(coll, env, predicate):
    # Filters like ofType(): dom-3 applies as() to whole collections, which R4 engines accept.
    return [item for item in coll if predicate(item)]


@function("is", TYPE)
def _is(coll, env, predicate):
    item = singleton(coll, "is")
    if item is None:
        return EMPTY
    return TRUE if predicate(item) else FALSE


@function("extension", VALUE)
def _extension(coll, env, url):
    wanted = singleton(url, "extension")
    out = []
    for item in coll:
        item = _unwrap(item)
        if type(item) is dict:
            out.extend(ext for ext in item.get("extension", ()) if ext.get("url") == wanted)
    return out


# ---------------------------------------------------------------------------------------------
# Subsetting and combining

@function("single")
def _single(coll, env):
    item = singleton(coll, "single")
    return EMPTY if item is None else [item]


@function("first")
def _first(coll, env):
    return coll[:1]


@function("last")
def _last(coll, env):
    return coll[-1:]


@function("tail")
def _tail(coll, env):
    return coll[1:]


def _integer_arg(arg: list, name: str) -> int | None:
    value = singleton(arg, name)
    if value is not None and type(value) is not int:
        raise FhirPathError(f"{name}() expects an integer argument, got {describe(value)}")
    return value


@function("skip", VALUE)
def _skip(coll, env, count):
    n = _integer_arg(count, "skip")
    return coll[max(n, 0):] if n is not None else EMPTY


@function("take", VALUE)
def _take(coll, env, count):
    n = _integer_arg(count, "take")
    return coll[:max(n, 0)] if n is not None else EMPTY


@function("intersect", VALUE)
def _intersect(coll, env, other):
    keys = {key(item) for item in other}
    return [item for item in distinct(coll) if key(item) in keys]


@function("exclude", VALUE)
def _exclude(coll, env, other):
    keys = {key(item) for item in other}
    return [item for item in coll if key(item) not in keys]


@function("union", VALUE)
def _union(coll, env, other):
    return distinct(coll + other)


@function("combine", VALUE)
def _combine(coll, env, other):
    return coll + other


# ---------------------------------------------------------------------------------------------
# Aggregation, control and utility

@function("aggregate", EXPR, VALUE, required=1)
def _aggregate(coll, env, aggregator, init):
    saved = env.this, env.index, env.total
    total = init if init is not None else EMPTY
    try:
        for i, item in enumerate(coll):
            env.this = one = [item]
            env.index = i
            env.total = total
            total = aggregator(one, env)
    finally:
        env.this, env.index, env.total = saved
    return total


@function("iif", EXPR, EXPR, EXPR, required=2)
def _iif(coll, env, criterion, true_result, otherwise):
    # The branches see the input collection as their focus (as fhirpath.js/fhirpathpy do),
    # so `member.resolve().iif(empty(), ...)` tests the resolved target.
    if to_bool(criterion(coll, env)):
        return true_result(coll, env)
    return otherwise(coll, env) if otherwise is not None else EMPTY


@function("trace", VALUE, EXPR, required=1)
def _trace(coll, env, name, projection):
    if _log.isEnabledFor(logging.DEBUG):
        shown = coll if projection is None else _select(coll, env, projection)
        _log.debug("%s: %r", singleton(name, "trace"), shown)
    return coll


@function("htmlChecks")
def _html_checks(coll, env):
    # Narrative XHTML is checked by the validator's own XHTML rules, not by this invariant.
    return TRUE


@function("today")
def _today(coll, env):
    return [v.today()]


@function("now")
def _now(coll, env):
    return [v.now()]


@function("timeOfDay")
def _time_of_day(coll, env):
    return [v.time_of_day()]


@function("resolve")
def _resolve(coll, env):
    out = []
    for item in coll:
        item = _unwrap(item)
        ref = item.get("reference") if type(item) is dict else item
        if type(ref) is str:
            target = _resolve_reference(ref, env)
            if target is not None:
                out.append(target)
    return out


def _resolve_reference(ref: str, env: Env) -> dict | None:
    if ref.startswith("#"):
        for container in (env.resource, env.root):
            if type(container) is dict:
                for res in container.get("contained", ()):
                    if res.get("id") == ref[1:]:
                        return res
        return None
    bundle = env.root
    if type(bundle) is not dict or bundle.get("resourceType") != "Bundle":
        return None
    for entry in bundle.get("entry", ()):
        res = entry.get("resource")
        if entry.get("fullUrl") == ref:
            return res
        if type(res) is dict and "id" in res:
            local = f"{res.get('resourceType')}/{res['id']}"
            if ref == local or ref.endswith("/" + local):
                return res
    return None


def _hook(env: Env, name: str) -> Callable:
    hook = env.variables.get(f"__{name}__")
    if hook is None:
        raise FhirPathError(f"{name}() cannot be evaluated: no __{name}__ hook was supplied")
    return hook


@function("memberOf", VALUE)
def _member_of(coll, env, value_set):
    item, url = singleton(coll, "memberOf"), singleton(value_set, "memberOf")
    if item is None or url is None:
        return EMPTY
    result = _hook(env, "memberOf")(_unwrap(item), url)
    return EMPTY if result is None else [bool(result)]


@function("conformsTo", VALUE)
def _conforms_to(coll, env, profile):
    item, url = singleton(coll, "conformsTo"), singleton(profile, "conformsTo")
    if item is None or url is None:
        return EMPTY
    result = _hook(env, "conformsTo")(_unwrap(item), url)
    return EMPTY if result is None else [bool(result)]


# ---------------------------------------------------------------------------------------------
# Tree navigation

def children_of(item, out: list) -> None:
    item = _unwrap(item)
    if type(item) is not dict:
        return
    for k, value in item.items():
        if k == "resourceType" or k[0] == "_":
            continue
        choice = split_choice_key(k)
        for child in (value if type(value) is list else (value,)):
            if child is not None:
                out.append(typed_choice(child, choice) if choice else child)


def typed_choice(value, type_name: str):
    """A choice element's value as FHIRPath should see it: objects remember their type,
    and a decimal written without a fraction (`"valueDecimal": 5`) stays a decimal."""
    if type(value) is dict:
        return v.Typed(value, type_name)
    if type_name == "decimal" and type(value) is int:
        return Decimal(value)
    return value


@function("children")
def _children(coll, env):
    out: list = []
    for item in coll:
        children_of(item, out)
    return out


@function("descendants")
def _descendants(coll, env):
    out: list = []
    frontier = _children(coll, env)
    while frontier:
        out.extend(frontier)
        frontier = _children(frontier, env)
    return out


# ---------------------------------------------------------------------------------------------
# Strings

def _string(coll: list, name: str) -> str | None:
    value = singleton(coll, name)
    if value is None or type(value) is str:
        return value
    raise FhirPathError(f"{name}() expects a string, got {describe(value)}")


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error as e:
        raise FhirPathError(f"invalid regular expression {pattern!r}: {e}") from None


def _substitution(text: str) -> str:
    # FHIRPath substitutions name groups as $1; Python wants \g<1>, and literal backslashes escaped.
    return re.sub(r"\$(\d+)", r"\\g<\1>", text.replace("\\", "\\\\"))


def _string_function(name: str, operation: Callable, arity: int) -> None:
    """Register a function of a single string input and string arguments; any of them
    empty gives empty."""
    def impl(coll, env, *args):
        text = _string(coll, name)
        params = [_string(arg, name) for arg in args]
        if text is None or None in params:
            return EMPTY
        return [operation(text, *params)]
    FUNCTIONS[name] = Function(impl, (VALUE,) * arity, arity)


_string_function("startsWith", str.startswith, 1)
_string_function("endsWith", str.endswith, 1)
_string_function("contains", lambda text, part: part in text, 1)
_string_function("indexOf", str.find, 1)
_string_function("upper", str.upper, 0)
_string_function("lower", str.lower, 0)
_string_function("trim", str.strip, 0)
_string_function("length", len, 0)
_string_function("replace", str.replace, 2)
_string_function("matches", lambda text, pattern: _regex(pattern).search(text) is not None, 1)
_string_function("replaceMatches", lambda text, pattern, sub: _regex(pattern).sub(_substitution(sub), text), 2)


@function("substring", VALUE, VALUE, required=1)
def _substring(coll, env, start, length):
    text = _string(coll, "substring")
    begin = _integer_arg(start, "substring")
    if text is None or begin is None or not 0 <= begin < len(text):
        return EMPTY
    if length is None:
        return [text[begin:]]
    count = _integer_arg(length, "substring")
    return [text[begin:begin + max(count, 0)]] if count is not None else [text[begin:]]


@function("toChars")
def _to_chars(coll, env):
    text = _string(coll, "toChars")
    return EMPTY if text is None else list(text)


@function("split", VALUE)
def _split(coll, env, separator):
    text, sep = _string(coll, "split"), _string(separator, "split")
    return EMPTY if text is None or sep is None else text.split(sep)


@function("join", VALUE, required=0)
def _join(coll, env, separator):
    sep = _string(separator, "join") if separator is not None else ""
    if any(type(item) is not str for item in coll):
        raise FhirPathError("join() expects strings")
    return [sep.join(coll)] if coll else EMPTY


# ---------------------------------------------------------------------------------------------
# Math

def _number(coll: list, name: str):
    value = singleton(coll, name)
    if value is None or v.is_number(value):
        return value
    raise FhirPathError(f"{name}() expects a number, got {describe(value)}")


def _math_function(name: str, operation: Callable) -> None:
    """Register a function of one number; results that are undefined (ln of 0...) are empty."""
    def impl(coll, env):
        value = _number(coll, name)
        if value is None:
            return EMPTY
        try:
            result = operation(value)
        except (InvalidOperation, ValueError, ArithmeticError):
            return EMPTY
        if result is None or (type(result) is Decimal and not result.is_finite()):
            return EMPTY
        return [result]
    FUNCTIONS[name] = Function(impl, (), 0)


def _integral(value, rounding: str) -> int:
    return int(v.to_decimal(value).to_integral_value(rounding=rounding))


def _sqrt(value):
    d = v.to_decimal(value)
    return d.sqrt() if d >= 0 else None


_math_function("ceiling", lambda x: _integral(x, ROUND_CEILING))
_math_function("floor", lambda x: _integral(x, ROUND_FLOOR))
_math_function("truncate", lambda x: _integral(x, ROUND_DOWN))
_math_function("ln", lambda x: v.to_decimal(x).ln())
_math_function("exp", lambda x: v.to_decimal(x).exp())
_math_function("sqrt", _sqrt)


@function("abs")
def _abs(coll, env):
    value = singleton(coll, "abs")
    if type(value) is v.Quantity:
        return [v.Quantity(abs(value.value), value.unit)]
    value = _number(coll, "abs")
    return EMPTY if value is None else [abs(v.to_decimal(value)) if type(value) is float else abs(value)]


@function("round", VALUE, required=0)
def _round(coll, env, precision):
    value = _number(coll, "round")
    places = _integer_arg(precision, "round") if precision is not None else 0
    if value is None or places is None:
        return EMPTY
    if places < 0:
        raise FhirPathError("round() precision must be >= 0")
    return [v.to_decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)]


@function("log", VALUE)
def _log_base(coll, env, base):
    value, b = _number(coll, "log"), _number(base, "log")
    if value is None or b is None or value <= 0 or b <= 0 or b == 1:
        return EMPTY
    return [v.to_decimal(value).ln() / v.to_decimal(b).ln()]


@function("power", VALUE)
def _power(coll, env, exponent):
    value, e = _number(coll, "power"), _number(exponent, "power")
    if value is None or e is None:
        return EMPTY
    if type(value) is int and type(e) is int and e >= 0:
        return [value ** e]
    try:
        result = v.to_decimal(value) ** v.to_decimal(e)
    except (InvalidOperation, ArithmeticError):
        return EMPTY
    return EMPTY if result.is_nan() else [result]


# ---------------------------------------------------------------------------------------------
# Conversions. Each converter maps one item to a value, or None when it does not convert.

_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
_DECIMAL_TEXT = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_TRUE_TEXTS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE_TEXTS = frozenset({"false", "f", "no", "n", "0", "0.0"})


def _to_integer(item):
    if type(item) is int:
        return item
    if type(item) is bool:
        return int(item)
    if type(item) is str and _INTEGER_TEXT.match(item):
        return int(item)
    return None


def _to_decimal(item):
    if v.is_number(item):
        return v.to_decimal(item)
    if type(item) is bool:
        return Decimal(int(item))
    if type(item) is str and _DECIMAL_TEXT.match(item):
        return Decimal(item)
    return None


def _to_string(item):
    t = type(item)
    if t is str:
        return item
    if t is bool:
        return "true" if item else "false"
    if t is int or t is float or t is Decimal:
        return v.format_number(item)
    if t is v.Temporal:
        return item.text
    if t is v.Quantity:
        return str(item)
    return None


def _to_boolean(item):
    t = type(item)
    if t is bool:
        return item
    if t is str:
        text = item.lower()
        return True if text in _TRUE_TEXTS else False if text in _FALSE_TEXTS else None
    if t is int or t is float or t is Decimal:
        return True if item == 1 else False if item == 0 else None
    return None


def _to_date(item):
    value = _temporal(item, v.parse_date_time)
    if value is None or value.kind == "time":
        return None
    if value.kind == "date":
        return value
    return v.make_temporal("date", value.parts, min(value.precision, 3), None)


def _to_date_time(item):
    value = _temporal(item, v.parse_date_time)
    return value.as_date_time() if value is not None and value.kind != "time" else None


def _to_time(item):
    value = _temporal(item, v.parse_time)
    return value if value is not None and value.kind == "time" else None


def _temporal(item, parse: Callable):
    if type(item) is v.Temporal:
        return item
    return parse(item) if type(item) is str else None


def _to_quantity(item):
    t = type(item)
    if t is v.Quantity:
        return item
    if t is int or t is float or t is Decimal:
        return v.Quantity(v.to_decimal(item), "1")
    if t is bool:
        return v.Quantity(Decimal(int(item)), "1")
    if t is str:
        return v.parse_quantity(item)
    if t is dict or t is v.Typed:
        return v.quantity_from_fhir(_unwrap(item))
    return None


def _conversion(name: str, converter: Callable) -> None:
    """Register toX() and convertsToX() for one converter.

    FHIRPath makes several input items an error; these convert item by item instead, so that
    scores held as codes can be summed: `answer.value.ofType(Coding).code.toInteger().aggregate(...)`.
    """
    def convert(coll, env):
        return [result for item in coll if (result := converter(item)) is not None]

    def converts(coll, env):
        return [converter(item) is not None for item in coll]

    FUNCTIONS[name] = Function(convert, (), 0)
    FUNCTIONS["convertsTo" + name[2:]] = Function(converts, (), 0)


_conversion("toInteger", _to_integer)
_conversion("toDecimal", _to_decimal)
_conversion("toString", _to_string)
_conversion("toBoolean", _to_boolean)
_conversion("toDate", _to_date)
_conversion("toDateTime", _to_date_time)
_conversion("toTime", _to_time)


@function("toQuantity", VALUE, required=0)
def _to_quantity_fn(coll, env, unit):
    item = singleton(coll, "toQuantity")
    quantity = None if item is None else _to_quantity(item)
    wanted = _string(unit, "toQuantity") if unit is not None else None
    if quantity is None or (wanted is not None and wanted != quantity.unit):
        return EMPTY  # no UCUM conversion: only the same unit is reachable
    return [quantity]


@function("convertsToQuantity", VALUE, required=0)
def _converts_to_quantity(coll, env, unit):
    if not coll:
        return EMPTY
    return TRUE if _to_quantity_fn(coll, env, unit) else FALSE
