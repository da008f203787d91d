"""Turning one FHIR resource (or one element of it, with `each`) into rows of one table.

A mapping bound to a run's parameters compiles every field into a closure. A row is built in two
steps: `screen` applies the table's `keep` conditions (a record outside the period is not this
month's and is dropped without a word; one failing another condition is left out with its reason),
then `build` reads each field, transforms it, and checks it against the XSD's type and the named
checks. A required field that is missing or invalid leaves the row out with the reason; an
optional one that is invalid is blanked and counted, so the file is valid whatever the data.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_bridge.submission.mapping import Alternative, FieldRule, KeepRule, SubmissionMapping, TableMapping, fill
from fhir_bridge.submission.paths import compile_path, first
from fhir_bridge.submission.values import CHECKS, TRANSFORMS, CheckContext, ValueProblem, local_moment

__all__ = ["Row", "LeftOut", "RowMaker", "PERIOD"]

PERIOD = "period"   # what `screen` answers for a record that is not this period's
_UNSEEN = object()
_VERDICTS = 4096    # values remembered per field (ids never repeat: the first few thousand stay)


@dataclass(frozen=True, slots=True)
class Row:
    values: tuple[str, ...]          # in the XSD's field order; "" when not sent
    invalid: tuple[str, ...] = ()    # optional fields blanked because their value was not valid


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A record that could not be submitted, for the quality report."""

    table: str
    record: str          # Type/id, with the element when one resource gives several rows
    person: str          # the Patient id
    reason: str          # what went wrong, without values (the report is shared): groups the list
    detail: str = ""     # the specifics: ids, days


Reader = Callable[[Any, Any, Mapping[str, Row]], tuple[str | None, str | None]]  # -> value, problem


class RowMaker:
    """One mapping, bound to one run: parameters filled in, paths compiled."""

    def __init__(self, mapping: SubmissionMapping, parameters: Mapping[str, str], context: CheckContext):
        missing = [p for p in mapping.parameters if not parameters.get(p)]
        if missing:
            raise ValueError(f"{mapping.file}: parameter(s) {', '.join(missing)} not given")
        self.mapping = mapping
        self.parameters = parameters
        self.context = context
        self.positions = {t.name: {f.name: n for n, f in enumerate(t.fields)} for t in mapping.tables}
        self._tables = {t.name: _BoundTable(t, self) for t in mapping.tables}

    def path(self, text: str):
        return compile_path(fill(text, self.parameters))

    def each(self, table: str, resource: dict) -> list[Any]:
        """The elements a table's rows come from: the resource itself, or what `each` reaches."""
        bound = self._tables[table]
        return [resource] if bound.each is None else list(bound.each(resource))

    def screen(self, table: str, element: Any, root: dict) -> str | None:
        """None: keep it; PERIOD: not this period's; else the reason it is left out."""
        return self._tables[table].screen(element, root)

    def build(self, table: str, element: Any, root: dict, rows: Mapping[str, Row]) -> Row | str:
        """The row, or the reason it cannot be submitted. `rows`: the rows it hangs under, by table."""
        return self._tables[table].build(element, root, rows)

    def value(self, table: str, field_name: str, row: Row) -> str:
        return row.values[self.positions[table][field_name]]

    def read(self, table: str, field_name: str, element: Any, root: dict) -> str | None:
        """One field's value alone (a contact's day, before its referral is known); None if invalid."""
        bound = self._tables[table]
        value, problem = bound.fields[self.positions[table][field_name]](element, root, {})
        return None if problem else value


class _BoundTable:
    def __init__(self, table: TableMapping, maker: RowMaker):
        self.table = table
        self.each = maker.path(table.each) if table.each else None
        self.keep = [self._keep(rule, maker) for rule in table.keep]
        self.fields = [self._field(rule, maker) for rule in table.fields]
        self.required = [rule.xsd.required for rule in table.fields]
        self.names = [rule.name for rule in table.fields]
        # Fields read only from the resource (`/path`, inside `each`) are the same for all its
        # elements: read once per resource (a DIALOG's time for its eleven item rows).
        self.per_root = [rule.kind == "from" and all(a.from_root for a in rule.alternatives) for rule in table.fields]
        self._root: object = None
        self._root_values: dict[int, tuple[str | None, str | None]] = {}

    def screen(self, element: Any, root: dict) -> str | None:
        for check in self.keep:
            if (verdict := check(element, root)) is not None:
                return verdict
        return None

    def build(self, element: Any, root: dict, rows: Mapping[str, Row]) -> Row | str:
        values, invalid = [], []
        if root is not self._root:
            self._root, self._root_values = root, {}
        for position, (name, required, read) in enumerate(zip(self.names, self.required, self.fields)):
            if self.per_root[position]:
                found = self._root_values.get(position)
                if found is None:
                    found = self._root_values[position] = read(element, root, rows)
                value, problem = found
            else:
                value, problem = read(element, root, rows)
            if problem is not None:
                if required:
                    return f"{name} {problem}"
                invalid.append(name)
                value = None
            elif value is None and required:
                return f"{name} is missing"
            values.append(value or "")
        return Row(tuple(values), tuple(invalid))

    # -- compiling -------------------------------------------------------------------------------
    def _keep(self, rule: KeepRule, maker: RowMaker) -> Callable[[Any, dict], str | None]:
        getters = [_getter(alt, maker) for alt in rule.paths]
        period = maker.context.period
        if rule.kind == "during":
            start_of, end_of = getters

            def during(element: Any, root: dict) -> str | None:
                start = _day(start_of(element, root))
                if start is None:
                    return f"no start date ({rule.paths[0].path})"
                end = _day(end_of(element, root))
                in_period = start <= period.end.isoformat() and (end is None or end >= period.start.isoformat())
                return None if in_period else PERIOD
            return during
        if rule.kind == "day":
            [day_of] = getters

            def on_day(element: Any, root: dict) -> str | None:
                day = _day(day_of(element, root))
                if day is None:
                    return f"no date ({rule.paths[0].path})"
                return None if period.contains(day) else PERIOD
            return on_day
        wanted = {fill(v, maker.parameters) for v in rule.values}
        [value_of] = getters

        def condition(element: Any, root: dict) -> str | None:
            value = value_of(element, root)
            text = "" if value is None else _text(value)
            holds = text in wanted if rule.kind in ("in", "equals") else text not in wanted
            return None if holds else rule.reason.replace("{value}", text or "none")
        return condition

    def _field(self, rule: FieldRule, maker: RowMaker) -> Reader:
        xsd_check = rule.xsd.check
        checks = [CHECKS[name] for name in rule.checks]
        transforms = [TRANSFORMS[name] for name in rule.transforms]
        context = maker.context
        end = context.period.end.isoformat()
        if rule.kind == "unmapped":
            return lambda element, root, rows: (None, None)
        if rule.kind in ("const", "param"):
            constant = rule.value if rule.kind == "const" else maker.parameters[rule.value]
            problem = xsd_check(constant)
            return lambda element, root, rows: (constant, problem)
        if rule.kind == "row":
            table_name, field_name = rule.value
            position = maker.positions[table_name][field_name]
            own = table_name == self.table.name

            def from_row(element: Any, root: dict, rows: Mapping[str, Row]) -> tuple[str | None, str | None]:
                row = rows.get(table_name)
                if row is None:
                    return None, None if not own else "reads its own row"
                return row.values[position] or None, None
            return from_row
        getters = [_getter(alt, maker) for alt in rule.alternatives]
        codes = rule.codes

        def read(element: Any, root: dict, rows: Mapping[str, Row]) -> tuple[str | None, str | None]:
            value = None
            for get in getters:
                value = get(element, root)
                if value is not None:
                    break
            if value is None:
                return None, None
            try:
                for transform in transforms:
                    value = transform(value)
                    if value is None:
                        return None, None
            except ValueProblem as exc:
                return None, str(exc)
            text = value.strip() if type(value) is str else _text(value)
            if codes is not None:
                if text not in codes:
                    return None, f"has a code with no MHSDS code in table {rule.codes_name!r}"
                text = codes[text]
            if rule.blank_after_period_end and text[:10] > end:
                return None, None   # as at the end of the period, it had not happened yet
            problem = verdicts.get(text, _UNSEEN)
            if problem is _UNSEEN:
                problem = xsd_check(text)
                for check in checks:
                    if problem is None:
                        problem = check(text, context)
                if len(verdicts) < _VERDICTS:
                    verdicts[text] = problem
            return text, problem
        # A value's verdict depends on nothing else in a run: codes and scores repeat on every row
        verdicts: dict[str, str | None] = {}
        return read


def _getter(alternative: Alternative, maker: RowMaker) -> Callable[[Any, dict], Any]:
    path = maker.path(alternative.path)
    transform = TRANSFORMS[alternative.transform] if alternative.transform else None

    def get(element: Any, root: dict) -> Any:
        value = first(path, root if alternative.from_root else element)
        if value is not None and transform is not None:
            try:
                value = transform(value)
            except ValueProblem:
                return None
        return value
    return get


def _day(value: Any) -> str | None:
    found = local_moment(value)
    return found[0] if found else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.strip() if isinstance(value, str) else str(value)
