"""FHIR search: query parameters -> a SearchRequest -> SQLAlchemy Core statements over the index tables.

    request = parse_search("QuestionnaireResponse", [("subject", "Patient/1"), ("authored", "ge2024")],
                           registry, strict=False, base_url="https://bridge.example.org/fhir")
    ids_statement, count_statement = build_search(request)   # (resource_type, resource_id) rows; count(*)
    build_includes(request, page_keys)                        # statements giving the _include/_revinclude keys

Semantics (http://hl7.org/fhir/R4/search.html): a comma inside one parameter is OR, a repeated
parameter is AND. Dates compare as ranges, the resource's [low, high] against the parameter's:
  eq  the resource range lies within the parameter range       ne  it does not
  gt  the resource range ends after the parameter range         lt  it starts before it
  ge  gt or eq                                                  le  lt or eq
  sa  the resource range starts after the parameter range ends  eb  it ends before the parameter starts
  ap  the ranges overlap once the parameter range is widened on both sides by 10% of its distance
      from now, and by at least a day
Numbers: eq/ne use the precision written (100 is [99.5, 100.5]); gt/lt/ge/le/sa/eb compare exactly;
ap is within 10% of the value. A dateTime without an offset is UTC.

Not supported: chained parameters and _has, the :text, :in, :below, :above, :of-type and :identifier
modifiers (a 400 naming the parameter: ignoring them would widen the result silently); composite
and quantity parameters and _include:iterate (ignored like unknown parameters, a 400 when strict).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Select, and_, func, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from fhir_bridge.errors import InputError
from fhir_bridge.store import schema
from fhir_bridge.store.care_access import AccessScope, visible
from fhir_bridge.store.indexer import date_range, normalize, parse_reference
from fhir_bridge.store.search_parameters import SearchParam, SearchParameterRegistry

__all__ = ["SearchRequest", "Criterion", "SortKey", "Include", "TokenValue", "ReferenceValue", "DateValue",
           "NumberValue", "parse_search", "build_search", "build_includes", "DEFAULT_COUNT", "MAX_COUNT"]

DEFAULT_COUNT = 20
MAX_COUNT = 1000
PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
_DAY_US = 86_400_000_000
_MODIFIERS = {"token": {"missing", "not"}, "string": {"missing", "exact", "contains"}, "reference": {"missing"},
              "uri": {"missing"}, "date": {"missing"}, "number": {"missing"}}
_SORTABLE = {"date", "string", "token", "number"}
_SUMMARY = {"true", "text", "data", "count", "false"}
_TOTAL = {"none", "estimate", "accurate"}
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]+")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?")
_ESCAPED = re.compile(r"\\([\\,$|])")  # the spec's escapes: \\ \, \$ \|
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")  # http://..., urn:uuid:..., urn:oid:...


# -- the parsed request ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TokenValue:
    code: str | None            # None: any code of the system (`system|`)
    system: str | None = None   # None with any_system False: no system (`|code`)
    any_system: bool = True     # a bare `code`


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    target_type: str | None = None   # None with an id: that id under any type
    target_id: str | None = None
    url: str | None = None           # an absolute URL or canonical not on this server


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: str
    low: int                         # the parameter's range, microseconds UTC (widened for ap)
    high: int


@dataclass(frozen=True, slots=True)
class NumberValue:
    prefix: str
    value: float
    low: float                       # the range the written precision implies (eq / ne)
    high: float


Value = TokenValue | ReferenceValue | DateValue | NumberValue | str


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str                        # as written (`name:exact`), for messages
    param: SearchParam
    modifier: str | None
    values: tuple[Value, ...] = ()   # any of them (OR)
    missing: bool | None = None      # :missing=true / false


@dataclass(frozen=True, slots=True)
class SortKey:
    param: SearchParam
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    source_type: str | None          # None: any type (`_revinclude=*`)
    param: str | None                # None: every reference parameter (`Type:*`)
    target_type: str | None = None


@dataclass
class SearchRequest:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)   # all of them (AND)
    sort: list[SortKey] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    summary: str | None = None
    total: str = "accurate"
    elements: list[str] | None = None
    ignored: list[str] = field(default_factory=list)          # unknown parameters (not strict)
    # Only what this partner may see (matches, count and includes alike); None: everything.
    visible_to: AccessScope | None = None


# -- parsing -----------------------------------------------------------------------------------------
def parse_search(resource_type: str, params: list[tuple[str, str]], registry: SearchParameterRegistry, *,
                 strict: bool, base_url: str, now: int | None = None) -> SearchRequest:
    """Query parameters -> SearchRequest. Unknown parameters are recorded in `ignored`, or refused
    when strict; a value that cannot be read is always refused (InputError naming it). `now`
    (microseconds UTC, default the clock) is what `ap` dates measure their distance from."""
    request = SearchRequest(resource_type)
    known = registry.for_type(resource_type)
    parser = _Parser(request, registry, base_url.rstrip("/"), int(time.time() * 1_000_000) if now is None else now)
    for name, value in params:
        if value == "":  # the spec: a parameter without a value is ignored
            continue
        code, _, modifier = name.partition(":")
        if code in _RESULT_PARAMETERS and not (modifier and code in ("_include", "_revinclude")):
            _RESULT_PARAMETERS[code](parser, name, value)
        elif code in known:
            request.criteria.append(parser.criterion(name, known[code], modifier or None, value))
        elif "." in code or code == "_has":
            raise InputError(f"Search parameter {name!r}: chained and reverse-chained search is not supported")
        elif strict:
            reason = registry.unsupported(resource_type).get(code)
            raise InputError(f"Search parameter {name!r} is not supported for {resource_type}"
                             + (f": {reason}" if reason else ""))
        else:
            request.ignored.append(name)
    return request


class _Parser:
    def __init__(self, request: SearchRequest, registry: SearchParameterRegistry, base_url: str, now: int):
        self.request = request
        self.registry = registry
        self.base_url = base_url
        self.now = now

    def criterion(self, name: str, param: SearchParam, modifier: str | None, value: str) -> Criterion:
        if modifier is not None and not self._allowed(param, modifier):
            raise InputError(f"Search parameter {name!r}: the :{modifier} modifier is not supported")
        if modifier == "missing":
            if value not in ("true", "false"):
                raise InputError(f"Search parameter {name!r}: :missing takes true or false, not {value!r}")
            return Criterion(name, param, modifier, missing=value == "true")
        values = tuple(self.value(name, param, modifier, text) for text in _split(value, ","))
        return Criterion(name, param, modifier, values)

    @staticmethod
    def _allowed(param: SearchParam, modifier: str) -> bool:
        if param.code in ("_id", "_lastUpdated"):
            return False
        if param.type == "reference" and _TYPE_NAME.fullmatch(modifier):
            return not param.targets or modifier in param.targets
        return modifier in _MODIFIERS[param.type]

    def value(self, name: str, param: SearchParam, modifier: str | None, text: str) -> Value:
        if param.code == "_id":
            return _unescape(text)
        if param.type == "token":
            return _token(name, text)
        if param.type == "string":
            return _unescape(text) if modifier == "exact" else normalize(_unescape(text))
        if param.type == "date":
            return self.date(name, text)
        if param.type == "number":
            return _number(name, text)
        if param.type == "uri":
            return ReferenceValue(url=_unescape(text))
        return self.reference(name, param, modifier, _unescape(text))

    def date(self, name: str, text: str) -> DateValue:
        prefix, rest = _prefixed(text)
        found = date_range(rest.replace(" ", "+"))  # an unencoded `+01:00` arrives as a space
        if found is None:
            raise InputError(f"Search parameter {name!r}: {text!r} is not a FHIR date, dateTime or instant")
        low, high = found
        if prefix == "ap":
            margin = max((abs(self.now - low)) // 10, _DAY_US)
            low, high = low - margin, high + margin
        return DateValue(prefix, low, high)

    def reference(self, name: str, param: SearchParam, modifier: str | None, text: str) -> ReferenceValue:
        """`id`, `Type/id`, an absolute URL (on this server: Type/id) or a canonical `url[|version]`."""
        if self.base_url and text.startswith(self.base_url + "/"):
            text = text[len(self.base_url) + 1:]
        elif _ABSOLUTE.match(text):
            return ReferenceValue(url=text)
        if "/" not in text:
            only = modifier or (param.targets[0] if len(param.targets) == 1 else None)
            return ReferenceValue(only, text)
        rtype, rid, url = parse_reference(text, None)
        if rid is None or url is not None:
            raise InputError(f"Search parameter {name!r}: {text!r} is not a reference (id, Type/id or a URL)")
        if modifier and rtype != modifier:
            raise InputError(f"Search parameter {name!r}: {text!r} is not a {modifier} reference")
        return ReferenceValue(rtype, rid)

    # -- result parameters -------------------------------------------------------------------------
    def count(self, name: str, value: str) -> None:
        self.request.count = min(_non_negative(name, value), MAX_COUNT)

    def offset(self, name: str, value: str) -> None:
        self.request.offset = _non_negative(name, value)

    def sort(self, name: str, value: str) -> None:
        keys = []
        for item in value.split(","):
            code = item.strip().removeprefix("-")
            param = self.registry.get(self.request.resource_type, code)
            if param is None or (param.type not in _SORTABLE and code not in ("_id", "_lastUpdated")):
                raise InputError(f"_sort: {self.request.resource_type} cannot be sorted by {code!r}")
            keys.append(SortKey(param, item.strip().startswith("-")))
        self.request.sort = keys

    def include(self, name: str, value: str) -> None:
        self.request.includes.append(self._include(name, value, self.request.resource_type))

    def revinclude(self, name: str, value: str) -> None:
        self.request.revincludes.append(self._include(name, value, None))

    def _include(self, name: str, value: str, default_source: str | None) -> Include:
        """`*`, `Type:*`, `Type:param` or `Type:param:Target`."""
        if value == "*":
            return Include(default_source, None)
        parts = value.split(":")
        if len(parts) not in (2, 3) or not _TYPE_NAME.fullmatch(parts[0]):
            raise InputError(f"{name}: {value!r} is not Type:parameter[:targetType]")
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if code == "*":
            return Include(source, None, target)
        param = self.registry.get(source, code)
        if param is None or param.type != "reference":
            raise InputError(f"{name}: {source} has no reference search parameter {code!r}")
        if target is not None and param.targets and target not in param.targets:
            raise InputError(f"{name}: {source}.{code} cannot refer to {target}")
        if param.row_target is not None and target not in (None, param.row_target):
            return Include(source, code, target)  # a type its rows never hold: no row has this param
        return Include(source, param.row_param, target or param.row_target)

    def summary(self, name: str, value: str) -> None:
        if value not in _SUMMARY:
            raise InputError(f"_summary: {value!r} is not one of {', '.join(sorted(_SUMMARY))}")
        self.request.summary = value

    def total(self, name: str, value: str) -> None:
        if value not in _TOTAL:
            raise InputError(f"_total: {value!r} is not one of none, estimate, accurate")
        self.request.total = value

    def elements(self, name: str, value: str) -> None:
        self.request.elements = [e.strip() for e in value.split(",") if e.strip()]

    def passive(self, name: str, value: str) -> None:
        """_format and _pretty: how the API renders the answer, nothing to search by."""


_RESULT_PARAMETERS = {"_count": _Parser.count, "_offset": _Parser.offset, "_sort": _Parser.sort,
                      "_include": _Parser.include, "_revinclude": _Parser.revinclude, "_summary": _Parser.summary,
                      "_total": _Parser.total, "_elements": _Parser.elements,
                      "_format": _Parser.passive, "_pretty": _Parser.passive}


def _split(text: str, separator: str) -> list[str]:
    """Split at separators not escaped with a backslash; escapes are kept for _unescape."""
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return _ESCAPED.sub(r"\1", text)


def _token(name: str, text: str) -> TokenValue:
    parts = _split(text, "|")
    if len(parts) == 1:
        return TokenValue(_unescape(text))
    if len(parts) > 2 or parts == ["", ""]:
        raise InputError(f"Search parameter {name!r}: {text!r} is not a token (code, system|code, |code or system|)")
    system, code = (_unescape(p) or None for p in parts)
    return TokenValue(code, system, any_system=False)


def _prefixed(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and not text[2].isalpha():
        return text[:2], text[2:]
    return "eq", text


def _number(name: str, text: str) -> NumberValue:
    prefix, rest = _prefixed(text)
    if not _NUMBER.fullmatch(rest):
        raise InputError(f"Search parameter {name!r}: {text!r} is not a number")
    exact = Decimal(rest)
    half = Decimal(5).scaleb(exact.as_tuple().exponent - 1)  # half a unit of the last digit written
    return NumberValue(prefix, float(exact), float(exact - half), float(exact + half))


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit():
        raise InputError(f"{name}: {value!r} is not a whole number of 0 or more")
    return int(value)


# -- SQL ---------------------------------------------------------------------------------------------
_resources = schema.resources
_reference = schema.reference_index


def build_search(request: SearchRequest) -> tuple[Select, Select]:
    """(page of (resource_type, resource_id) in the requested order, count of every match)."""
    where = [_resources.c.resource_type == request.resource_type, _resources.c.deleted.is_(False)]
    driver = _driver(request.criteria)
    where += [_criterion(request.resource_type, c, drives=c is driver) for c in request.criteria]
    if request.visible_to is not None:
        where.append(visible(_resources.c.resource_type, _resources.c.resource_id, request.visible_to))
    ids = (select(_resources.c.resource_type, _resources.c.resource_id).where(*where)
           .order_by(*_order(request)).limit(request.count).offset(request.offset))
    count = select(func.count()).select_from(_resources).where(*where)
    return ids, count


def _driver(criteria: list[Criterion]) -> Criterion | None:
    """The criterion likely to match fewest resources. It becomes `resource_id IN (subquery)`, which
    SQLite reads first through the index; the others become correlated EXISTS probes on each of its
    rows. (All as IN would make SQLite collect every id of an unselective `status=completed`; all as
    EXISTS would make it walk every resource of the type.) PostgreSQL plans both forms as semi-joins."""
    if any(c.param.code == "_id" for c in criteria):  # the primary key already leads
        return None
    ranked = [(rank, i, c) for i, c in enumerate(criteria) if (rank := _selectivity(c)) is not None]
    return min(ranked, key=lambda r: (r[0], r[1]))[2] if ranked else None


def _selectivity(criterion: Criterion) -> int | None:
    """A rough rank, lower for fewer matches; None for what cannot lead (negations, columns)."""
    if criterion.missing is not None or criterion.modifier == "not" or criterion.param.code == "_lastUpdated":
        return None
    kind = criterion.param.type
    if kind in ("reference", "uri"):
        return 1
    if kind == "token":
        return 2 if all(not v.any_system and v.code for v in criterion.values) else 4
    if kind == "string":
        return 2 if criterion.modifier == "exact" else 3
    if kind == "date":
        return 3 if all(v.prefix == "eq" for v in criterion.values) else 4
    return 3


def _criterion(resource_type: str, criterion: Criterion, *, drives: bool) -> ColumnElement[bool]:
    param = criterion.param
    if param.code == "_id":
        return _resources.c.resource_id.in_(criterion.values)
    if param.code == "_lastUpdated":
        column = _resources.c.last_updated
        return or_(*(_date_condition(column, column, v) for v in criterion.values))
    table = schema.INDEX_TABLES[param.table]
    rows = [table.c.resource_type == resource_type, table.c.param == param.row_param]
    if param.row_target is not None:
        rows.append(table.c.target_type == param.row_target)
    if criterion.missing is None:
        rows.append(or_(*(_value_condition(table, param, criterion.modifier, v) for v in criterion.values)))
    if drives:
        return _resources.c.resource_id.in_(select(table.c.resource_id).where(*rows))
    found = select(1).where(table.c.resource_id == _resources.c.resource_id, *rows).exists()
    # `:not` keeps resources with no value at all, as the spec asks; `:missing=true` is "no row".
    return not_(found) if criterion.modifier == "not" or criterion.missing else found


def _value_condition(table, param: SearchParam, modifier: str | None, value: Value) -> ColumnElement[bool]:
    if param.type == "token":
        return _token_condition(table, value)
    if param.type == "string":
        if modifier == "exact":
            return table.c.exact == value
        if modifier == "contains":
            return table.c.normalized.contains(value, autoescape=True)
        return table.c.normalized.startswith(value, autoescape=True)
    if param.type == "date":
        return _date_condition(table.c.low, table.c.high, value)
    if param.type == "number":
        return _number_condition(table.c.value, value)
    return _reference_condition(table, param, value)


def _token_condition(table, value: TokenValue) -> ColumnElement[bool]:
    if value.any_system:
        return table.c.code == value.code
    if value.code is None:
        return table.c.system == value.system
    if value.system is None:
        return and_(table.c.system.is_(None), table.c.code == value.code)
    return and_(table.c.system == value.system, table.c.code == value.code)


def _date_condition(low, high, value: DateValue) -> ColumnElement[bool]:
    """The module docstring's table; `low`/`high` are the resource's range columns (one column twice
    for an instant such as last_updated)."""
    within = and_(low >= value.low, high <= value.high)
    match value.prefix:
        case "eq":
            return within
        case "ne":
            return not_(within)
        case "gt":
            return high > value.high
        case "lt":
            return low < value.low
        case "ge":
            return or_(high > value.high, within)
        case "le":
            return or_(low < value.low, within)
        case "sa":
            return low > value.high
        case "eb":
            return high < value.low
        case _:  # ap: the parameter range was widened when parsed
            return and_(low <= value.high, high >= value.low)


def _number_condition(column, value: NumberValue) -> ColumnElement[bool]:
    match value.prefix:
        case "eq":
            return and_(column >= value.low, column < value.high)
        case "ne":
            return or_(column < value.low, column >= value.high)
        case "gt" | "sa":
            return column > value.value
        case "lt" | "eb":
            return column < value.value
        case "ge":
            return column >= value.value
        case "le":
            return column <= value.value
        case _:  # ap
            margin = abs(value.value) / 10
            return column.between(value.value - margin, value.value + margin)


def _reference_condition(table, param: SearchParam, value: ReferenceValue) -> ColumnElement[bool]:
    if value.url is not None:
        if param.type == "uri" or "|" in value.url:
            return table.c.url == value.url
        # A canonical without a version matches every version (`url|1.0.0` is stored whole).
        return or_(table.c.url == value.url, table.c.url.startswith(value.url + "|", autoescape=True))
    if value.target_type is None:
        return table.c.target_id == value.target_id
    return and_(table.c.target_type == value.target_type, table.c.target_id == value.target_id)


def _order(request: SearchRequest) -> list:
    """The requested keys, resources without a value last, then resource_id: a total order, so that
    pages never overlap or skip."""
    keys = []
    for key in request.sort:
        column = _sort_column(request.resource_type, key)
        keys.append((column.desc() if key.descending else column.asc()).nulls_last())
    if not any(k.param.code == "_id" for k in request.sort):
        keys.append(_resources.c.resource_id.asc())
    return keys


def _sort_column(resource_type: str, key: SortKey):
    param = key.param
    if param.code == "_id":
        return _resources.c.resource_id
    if param.code == "_lastUpdated":
        return _resources.c.last_updated
    table = schema.INDEX_TABLES[param.table]
    # Ascending sorts by the earliest value a resource has, descending by its latest.
    match param.type:
        case "date":
            column = table.c.high if key.descending else table.c.low
        case "string":
            column = table.c.normalized
        case "token":
            column = table.c.code
        case _:
            column = table.c.value
    aggregate = func.max(column) if key.descending else func.min(column)
    return (select(aggregate).where(table.c.resource_type == _resources.c.resource_type,
                                    table.c.resource_id == _resources.c.resource_id, table.c.param == param.code)
            .scalar_subquery())


# -- _include / _revinclude --------------------------------------------------------------------------
def build_includes(request: SearchRequest, matches: list[tuple[str, str]]) -> list[Select]:
    """Statements giving the (resource_type, resource_id) of current resources to include with
    `matches`: what they refer to (_include, canonical references resolved through the target's `url`)
    and what refers to them (_revinclude)."""
    if not matches:
        return []
    statements = []
    for include in request.includes:
        statements += _forward(include, matches)
    for include in request.revincludes:
        statements.append(_reverse(include, matches))
    if request.visible_to is not None:  # every statement selects from _resources (_current)
        statements = [s.where(visible(_resources.c.resource_type, _resources.c.resource_id, request.visible_to))
                      for s in statements]
    return statements


def _forward(include: Include, matches: list[tuple[str, str]]) -> list[Select]:
    source = [_keys_in(_reference.c.resource_type, _reference.c.resource_id, matches)]
    if include.param is not None:
        source.append(_reference.c.param == include.param)
    if include.source_type is not None:
        source.append(_reference.c.resource_type == include.source_type)
    by_id = _current(_reference.c.target_type, _reference.c.target_id).where(*source)
    if include.target_type is not None:
        by_id = by_id.where(_reference.c.target_type == include.target_type)
    canonical = _reference.alias("canonical")
    versioned = func.substr(_reference.c.url, 1, func.length(canonical.c.url) + 1) == canonical.c.url + "|"
    by_url = (_current(canonical.c.resource_type, canonical.c.resource_id)
              .join(_reference, and_(canonical.c.param == "url", _reference.c.url.is_not(None),
                                     or_(canonical.c.url == _reference.c.url, versioned)))
              .where(*source))
    if include.target_type is not None:
        by_url = by_url.where(canonical.c.resource_type == include.target_type)
    return [by_id, by_url]


def _reverse(include: Include, matches: list[tuple[str, str]]) -> Select:
    statement = _current(_reference.c.resource_type, _reference.c.resource_id).where(
        _keys_in(_reference.c.target_type, _reference.c.target_id, matches))
    if include.source_type is not None:
        statement = statement.where(_reference.c.resource_type == include.source_type)
    if include.param is not None:
        statement = statement.where(_reference.c.param == include.param)
    if include.target_type is not None:
        statement = statement.where(_reference.c.target_type == include.target_type)
    return statement


def _current(type_column, id_column) -> Select:
    """Distinct keys of current (not deleted) resources, joined on the given key columns."""
    return (select(_resources.c.resource_type, _resources.c.resource_id).distinct()
            .join_from(type_column.table, _resources, and_(_resources.c.resource_type == type_column,
                                                           _resources.c.resource_id == id_column,
                                                           _resources.c.deleted.is_(False))))


def _keys_in(type_column, id_column, keys: list[tuple[str, str]]) -> ColumnElement[bool]:
    by_type: dict[str, list[str]] = {}
    for resource_type, resource_id in keys:
        by_type.setdefault(resource_type, []).append(resource_id)
    return or_(*(and_(type_column == t, id_column.in_(ids)) for t, ids in by_type.items()))
