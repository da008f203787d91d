"""A resource -> its search index rows, one list per index table.

    indexer = Indexer(registry, base_url="https://bridge.example.org/fhir")
    indexer.rows(resource)   # {"token": [{"param", "system", "code"}], "reference": [...], "date": [...], ...}

Rows carry the parameter and its values; the repository adds the owner's type and id. Every row of
a table has the same keys (executemany needs one shape). Odd data never raises: a value that cannot
be indexed is skipped and the rest of the resource is indexed, so a write is never refused here.

Dates are ranges: `1990` is [1990-01-01T00:00:00, 1990-12-31T23:59:59.999999], in integer microseconds
UTC; a dateTime without an offset is taken as UTC. `date_range` and `normalize` are shared with the
query side so that both read values the same way.
"""
from __future__ import annotations

import calendar
import math
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from datetime import date
from decimal import Decimal

from fhir_bridge.fhirpath import choice_values
from fhir_bridge.fhirpath.model import CHOICE_NAMES
from fhir_bridge.store.search_parameters import SearchParam, SearchParameterRegistry, split_union

__all__ = ["Indexer", "date_range", "normalize", "parse_reference", "MIN_TIME", "MAX_TIME"]

_US_PER_DAY = 86_400_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
MIN_TIME = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * _US_PER_DAY      # an open Period start
MAX_TIME = (date(9999, 12, 31).toordinal() + 1 - _EPOCH_ORDINAL) * _US_PER_DAY - 1  # an open Period end

# Column sizes of schema.py: longer values are cut (strings) or skipped (tokens, URLs), since
# PostgreSQL refuses an over-long VARCHAR and a cut code or URL would match the wrong thing.
_STRING_MAX, _TOKEN_MAX, _SYSTEM_MAX, _URL_MAX = 512, 255, 255, 1024

_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?")
_REFERENCE = re.compile(r"(?:(.*)/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_SPACE = re.compile(r"\s+")
_MEMBER_CHAIN = re.compile(r"[a-z][A-Za-z0-9]*(?:\.[a-z][A-Za-z0-9]*)*")
_EXTENSION_VALUE = re.compile(r"extension\('([^'\\]*)'\)\.value")
_CHAIN_START = re.compile(r"(?:[A-Z][A-Za-z]*\.)?([a-z][A-Za-z0-9]*)(?=[.\[]|$)")  # a member, not a call
_CHAIN_TEXT = re.compile(r"[A-Za-z0-9_.(\[]+")
_TOP_LEVEL_CALL = re.compile(r"\.([A-Za-z]+)\(")
# Functions that give nothing for nothing: a chain made only of these is empty when its first
# element is absent, so the indexer need not evaluate it (most parameters, on most resources).
_EMPTY_PRESERVING = frozenset({"where", "extension", "ofType", "as", "first", "last", "tail", "skip", "take",
                               "single", "select", "distinct", "resolve", "repeat", "children", "descendants"})

_NAME_PARTS = ("family", "given", "text", "prefix", "suffix")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")

Row = dict
Extractor = Callable[[object, SearchParam, str, list], None]
# a parameter as the indexer runs it: see Indexer._plan
PlanEntry = tuple[SearchParam, Callable, Extractor, tuple[str, ...] | None, str | None]


def date_range(text: str) -> tuple[int, int] | None:
    """FHIR date/dateTime/instant text (any precision down to fractions of a second) -> the
    [low, high] microseconds it covers; None for anything else."""
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    y = int(year)
    try:
        if month is None:
            return _days(date(y, 1, 1), date(y, 12, 31))
        m = int(month)
        if day is None:
            return _days(date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1]))
        start = date(y, m, int(day))
    except ValueError:
        return None
    if hour is None:
        return _days(start, start)
    h, mi, s = int(hour), int(minute), int(second or 0)
    if h > 23 or mi > 59 or s > 59:
        return None
    low = (start.toordinal() - _EPOCH_ORDINAL) * _US_PER_DAY + ((h * 60 + mi) * 60 + s) * 1_000_000
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        low -= sign * (int(zone[1:3]) * 60 + int(zone[4:6])) * 60_000_000
    if second is None:
        return low, low + 60_000_000 - 1
    if fraction is None:
        return low, low + 1_000_000 - 1
    digits = fraction[:6]
    low += int(digits.ljust(6, "0"))
    return low, low + 10 ** (6 - len(digits)) - 1


def _days(first: date, last: date) -> tuple[int, int]:
    return ((first.toordinal() - _EPOCH_ORDINAL) * _US_PER_DAY,
            (last.toordinal() + 1 - _EPOCH_ORDINAL) * _US_PER_DAY - 1)


def normalize(text: str) -> str:
    """What string search compares: accents stripped (NFKD, combining marks dropped), lower case,
    runs of white space as one space, trimmed."""
    if text.isascii():
        return _SPACE.sub(" ", text.lower()).strip()
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACE.sub(" ", plain.casefold()).strip()


# References parsed lately: a batch names the same Patients, referrals and profiles over and over
# (index rows, care-access rows, the batch Provenance's targets), and a cache hit costs a tenth of
# the regex. Bounded (~7 MB): a batch adds a few hundred new references.
@lru_cache(maxsize=20_000)
def parse_reference(reference: str, base_url: str | None) -> tuple[str | None, str | None, str | None]:
    """A reference's (target_type, target_id, url). `Type/id` (and `Type/id/_history/n`) is local;
    an absolute URL on `base_url` is local too; any other absolute URL or urn is kept as url only,
    its trailing type still reported as target_type so a type filter can check it (target_id None)."""
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        return None, None, reference
    prefix, rtype, rid = match.groups()
    if prefix is None or (base_url and prefix.rstrip("/") == base_url.rstrip("/")):
        return rtype, rid, None
    return rtype, None, reference


class Indexer:
    def __init__(self, registry: SearchParameterRegistry, base_url: str | None = None, model=None):
        """`model`: the FHIR base definitions (fhir/model.py StructureModel), which tell for each
        resource type which elements are choices (`value[x]`); without it every name that is a
        choice in some resource counts as one (`subject` is, in PlanDefinition), which costs speed
        (FHIRPath instead of a direct walk), never rows."""
        self.registry = registry
        self.base_url = base_url.rstrip("/") if base_url else None
        self.model = model
        self._plans: dict[str, list[PlanEntry]] = {}

    def rows_of(self, resource_type: str, code: str) -> tuple[str, str | None]:
        """Where a reference parameter's values are: (param of the rows, target type they are
        restricted to or None); see SearchParam.stored_as."""
        return self.registry.rows_of(resource_type, code)

    def rows(self, resource: dict, given: tuple[dict, list] | None = None) -> dict[str, list[Row]]:
        """`given`: (the resource as an import worker indexed it, the worker's `local_rows` of it):
        a parameter that reads one top-level element takes the worker's rows if that element is
        still the very object the worker read (linking gives a changed element a new object;
        nothing changes one in place: pipelines/prepare.py)."""
        out: dict[str, list[Row]] = {"token": [], "reference": [], "date": [], "string": [], "number": []}
        rtype = resource.get("resourceType")
        if type(rtype) is not str:
            return out
        plan = self._plans.get(rtype) or self._plan(rtype)
        original, done = given if given is not None and given[0].get("resourceType") == rtype else (None, None)
        if done is not None:
            done = dict(done)
        for position, (param, evaluate, extract, keys, local) in enumerate(plan):
            if keys is not None:  # most parameters of a resource: their element is not there
                for key in keys:
                    if key in resource:
                        break
                else:
                    continue
            if original is not None and local is not None and resource.get(local) is original.get(local):
                rows = done.get(position)
            else:
                rows = _evaluated(resource, param, evaluate, extract, self.base_url)
            if rows:
                out[param.table].extend(rows)
        return out

    def local_rows(self, resource: dict) -> list[tuple[int, list[Row]]]:
        """The rows of the parameters that read one top-level element (most), by their place in the
        resource type's plan, for `rows(resource, given=...)` in the importing process."""
        rtype = resource.get("resourceType")
        if type(rtype) is not str:
            return []
        plan = self._plans.get(rtype) or self._plan(rtype)
        found = []
        for position, (param, evaluate, extract, _, local) in enumerate(plan):
            if local is not None and local in resource:
                rows = _evaluated(resource, param, evaluate, extract, self.base_url)
                if rows:
                    found.append((position, rows))
        return found

    def _plan(self, resource_type: str) -> list[PlanEntry]:
        """Per indexed parameter: how to evaluate it (a direct walk where it can be, else its
        FHIRPath), its extractor, the top-level keys without which it is empty, and the one
        top-level key it reads if that is known exactly (a member chain or an extension value)."""
        elements = _Elements(self.model, resource_type)
        plan = []
        for p in self.registry.for_type(resource_type).values():
            if not p.indexed:
                continue
            walk, extension = _member_path(p.expression.source, elements), None
            if walk is None:
                extension = _extension_value(p.expression)
            local = p.expression.source.split(".")[0] if walk is not None else "extension" if extension else None
            plan.append((p, walk or extension or p.expression, _EXTRACTORS[p.type],
                         _first_keys(p.expression.source, elements), local))
        self._plans[resource_type] = plan
        return plan


def _evaluated(resource: dict, param: SearchParam, evaluate: Callable, extract: Extractor, base_url) -> list[Row]:
    """A parameter's rows for a resource; odd data leaves it (or one odd value) unindexed."""
    try:
        values = evaluate(resource)
    except Exception:  # noqa: BLE001 - odd data: this parameter is left unindexed, the write goes on
        return []
    if not values:
        return []
    rows: list[Row] = []
    for value in values:
        try:
            extract(value, param, base_url, rows)
        except Exception:  # noqa: BLE001 - one odd value is skipped, not the resource
            continue
    return _distinct(rows) if len(rows) > 1 else rows


class _Elements:
    """What the indexer's shortcuts need to know of a resource type's elements: whether a member
    chain crosses a choice element (its JSON keys are `valueQuantity`..., not `value`), and the
    JSON keys of a top-level element."""

    def __init__(self, model, resource_type: str):
        self.model = model if model is not None and model.type(resource_type) is not None else None
        self.resource_type = resource_type

    def choice_free(self, names: list[str]) -> bool:
        if self.model is None:
            return not any(name in CHOICE_NAMES for name in names)
        type_name, path = self.resource_type, self.resource_type
        for name in names:
            if self.model.type(type_name) is None:
                return False
            child = self.model.children(type_name, path).get(name)
            if child is None:  # not an element here, or a choice named bare (`value`)
                return False
            # a choice's key names its type (`valueQuantity`, as search_parameters.py casts)
            type_name, path = (child.type_code, child.type_code) if child.choice else \
                self.model.resolve_path(type_name, child.element)
        return True

    def keys_of(self, name: str) -> tuple[str, ...] | None:
        """The top-level JSON keys of element `name` (a choice's one per type); None if unknown."""
        if self.model is None:
            return None if name in CHOICE_NAMES else (name,)
        children = self.model.children(self.resource_type)
        if name in children:  # an element, or a choice's key (`valueQuantity`)
            return (name,)
        keys = tuple(key for key, c in children.items() if c.choice and c.element.name == f"{name}[x]")
        return keys or None


def _member_path(expression: str, elements: _Elements) -> Callable[[dict], list] | None:
    """For a plain member chain (`subject`, `meta.profile`, `name.given`: most parameters), a
    direct walk over the JSON giving what FHIRPath navigation gives, without its machinery (a
    third of a write's indexing time); None for anything else (choices, functions, unions)."""
    if not _MEMBER_CHAIN.fullmatch(expression):
        return None
    names = expression.split(".")
    if not elements.choice_free(names):
        return None
    if len(names) == 1:  # `status`, `subject`, `identifier`: most parameters
        name = names[0]

        def member(resource: dict) -> list:
            value = resource.get(name)
            if value is None:
                return []
            return [x for x in value if x is not None] if type(value) is list else [value]
        return member

    def walk(resource: dict) -> list:
        found = [resource]
        for name in names:
            step = []
            for item in found:
                if type(item) is dict:
                    value = item.get(name)
                    if value is None:
                        continue
                    if type(value) is list:
                        step.extend(x for x in value if x is not None)
                    else:
                        step.append(value)
            if not step:
                return step
            found = step
        return found
    return walk


def _extension_value(expression) -> Callable[[dict], list] | None:
    """For `extension('<url>').value` (a DIALOG response's purpose, timepoint and recording
    organisation), the values of the resource's extensions with that url, as the FHIRPath gives
    them, without its machinery; None for any other expression. An extension with a bare `value`
    key (not FHIR) is left to the FHIRPath."""
    match = _EXTENSION_VALUE.fullmatch(expression.source)
    if match is None:
        return None
    url = match.group(1)

    def values(resource: dict) -> list:
        found = []
        for extension in resource.get("extension", ()):  # odd shapes raise as the FHIRPath does
            if extension.get("url") != url:
                continue
            if "value" in extension:
                return expression(resource)
            found += choice_values(extension, "value")
        return found
    return values


def _first_keys(expression: str, elements: _Elements) -> tuple[str, ...] | None:
    """The top-level JSON keys without which the expression is surely empty (`name.given` or
    `Patient.name.given` -> ("name",); a choice `effective` -> its keys, `effectiveDateTime`...);
    None when that cannot be told (an element not known, operators, `exists()`...)."""
    keys: list[str] = []
    for part in split_union(expression):
        start = _CHAIN_START.match(part)
        found = elements.keys_of(start.group(1)) if start is not None and _plain_chain(part) else None
        if found is None:
            return None
        keys.extend(found)
    return tuple(dict.fromkeys(keys))


def _plain_chain(part: str) -> bool:
    """A chain of members and empty-preserving calls, with nothing outside brackets but names and dots."""
    depth, quoted, outside = 0, False, []
    for ch in part:
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch in "([":
            if depth == 0:
                outside.append(ch)
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0:
            outside.append(ch)
    text = "".join(outside)
    if not _CHAIN_TEXT.fullmatch(text):
        return False
    return all(name in _EMPTY_PRESERVING for name in _TOP_LEVEL_CALL.findall(text))


def _distinct(rows: list[Row]) -> list[Row]:
    seen: set[tuple] = set()
    out = []
    for row in rows:
        key = tuple(row.values())
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


# -- token: code, Coding, CodeableConcept, Identifier, ContactPoint, boolean, string ---------------------
def _token(value, param: SearchParam, base_url, rows: list) -> None:
    t = type(value)
    if t is str:
        _token_row(param.code, None, value, rows)
    elif t is bool:
        rows.append({"param": param.code, "system": None, "code": "true" if value else "false"})
    elif t is dict:
        codings = value.get("coding")
        if type(codings) is list:                  # CodeableConcept (its text is not indexed)
            for coding in codings:
                if type(coding) is dict:
                    _token_row(param.code, coding.get("system"), coding.get("code"), rows)
        elif "code" in value:                      # Coding
            _token_row(param.code, value.get("system"), value.get("code"), rows)
        elif "value" in value:                     # Identifier, ContactPoint
            _token_row(param.code, value.get("system"), value.get("value"), rows)


def _token_row(param: str, system, code, rows: list) -> None:
    if type(code) is not str or not code or len(code) > _TOKEN_MAX:
        return
    if type(system) is not str or not system or len(system) > _SYSTEM_MAX:
        system = None
    rows.append({"param": param, "system": system, "code": code})


# -- reference: Reference, canonical / uri, a resource in place (Bundle.entry[0].resource) --------------
def _reference(value, param: SearchParam, base_url, rows: list) -> None:
    t = type(value)
    if t is str:
        if 0 < len(value) <= _URL_MAX:
            rows.append({"param": param.code, "target_type": None, "target_id": None, "url": value})
        return
    if t is not dict:
        return
    ref = value.get("reference")
    if type(ref) is str:
        if not ref or ref[0] == "#" or len(ref) > _URL_MAX:   # contained resources are not searchable
            return
        rtype, rid, url = parse_reference(ref, base_url)
    elif type(value.get("resourceType")) is str and type(value.get("id")) is str:
        rtype, rid, url = value["resourceType"], value["id"], None
    else:
        return
    if param.type_filter is not None and rtype not in param.type_filter:
        return
    # A shared parameter's rows keep the type even of another server's reference (no target_id):
    # the parameter stored as its rows to one type (`patient` in `subject`'s) finds it by that type.
    rows.append({"param": param.code, "target_type": rtype if rid or param.shared else None, "target_id": rid,
                 "url": url})


# -- date: date, dateTime, instant, Period, Timing (its events and bounds) ------------------------------
def _date(value, param: SearchParam, base_url, rows: list) -> None:
    t = type(value)
    if t is str:
        found = date_range(value)
        if found:
            rows.append({"param": param.code, "low": found[0], "high": found[1]})
    elif t is dict:
        if "start" in value or "end" in value:
            _period(value, param, rows)
        else:
            for event in value.get("event") or ():
                _date(event, param, base_url, rows)
            bounds = (value.get("repeat") or {}).get("boundsPeriod")
            if type(bounds) is dict:
                _period(bounds, param, rows)


def _period(period: dict, param: SearchParam, rows: list) -> None:
    start = date_range(period["start"]) if type(period.get("start")) is str else None
    end = date_range(period["end"]) if type(period.get("end")) is str else None
    if start is None and end is None:
        return
    low = start[0] if start else MIN_TIME
    high = end[1] if end else MAX_TIME
    if low <= high:
        rows.append({"param": param.code, "low": low, "high": high})


# -- string: string, HumanName, Address ----------------------------------------------------------------
def _string(value, param: SearchParam, base_url, rows: list) -> None:
    t = type(value)
    if t is str:
        _string_row(param.code, value, rows)
    elif t is dict:
        parts = _NAME_PARTS if "family" in value or "given" in value or "prefix" in value else _ADDRESS_PARTS
        for key in parts:
            part = value.get(key)
            for text in part if type(part) is list else (part,):
                if type(text) is str:
                    _string_row(param.code, text, rows)


def _string_row(param: str, text: str, rows: list) -> None:
    normalized = normalize(text)
    if normalized:
        rows.append({"param": param, "normalized": normalized[:_STRING_MAX], "exact": text[:_STRING_MAX]})


# -- number ----------------------------------------------------------------------------------------------
def _number(value, param: SearchParam, base_url, rows: list) -> None:
    if type(value) in (int, float, Decimal):       # not bool: type(True) is bool
        number = float(value)
        if math.isfinite(number):
            rows.append({"param": param.code, "value": number})


_EXTRACTORS: dict[str, Extractor] = {"token": _token, "reference": _reference, "uri": _reference,
                                     "date": _date, "string": _string, "number": _number}
