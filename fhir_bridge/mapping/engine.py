"""Runs loaded mappings over source records. Generic: nothing here knows DIALOG, CSV or HL7.

A record is a plain dict (a CSV row: column -> string; an HL7 message: nested dicts and lists). The
engine builds dicts, never JSON text, and never raises on bad data: each problem is reported with
the rule, the source field and a FHIRPath-ish expression, so the caller can quarantine the record.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.mapping.rules import APPEND, PLACEHOLDER, Condition, Each, Rule, SourceMapping, Target, ValueSource
from fhir_bridge.mapping.transforms import MappingProblem
from fhir_bridge.terminology import Terminology
from fhir_bridge.uuid_text import uuid5_text

# The project's id namespace (as measures/extract.py): the same business identifiers give the same
# id in every run and every process, so re-imports are idempotent and golden files stable.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir-bridge.example.org")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def resource_id(resource_type: str, keys: list[str]) -> str:
    return uuid5_text(ID_NAMESPACE, "|".join([resource_type, *keys]))


@dataclass(frozen=True, slots=True)
class MappingIssue:
    severity: str           # error: the record must not be stored as is; warning: stored, but look
    code: str               # FHIR IssueType
    message: str
    expression: str | None  # where in the output, e.g. QuestionnaireResponse.item[4].answer[0].valueCoding
    source: str | None      # the source field read, e.g. "Friendships Rank"
    rule: str               # the rule path in its mapping file, e.g. blocks.rating-item[1]
    location: str           # where the record came from, e.g. export.csv:12

    @property
    def is_error(self) -> bool:
        return self.severity in ("fatal", "error")

    def to_issue(self) -> Issue:
        field_text = f" (source field {self.source!r})" if self.source else ""
        return Issue(self.severity, self.code, f"{self.location}: {self.message}{field_text} [{self.rule}]",
                     self.expression)


@dataclass(slots=True)
class MappingResult:
    resources: list[dict]
    problems: list[MappingIssue] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # non-blank source fields no rule read

    @property
    def ok(self) -> bool:
        return not any(p.is_error for p in self.problems)

    def outcome(self) -> dict:
        return operation_outcome([p.to_issue() for p in self.problems])


@dataclass(slots=True)
class _Run:
    """The state of mapping one record."""

    root: Mapping[str, Any]
    params: Mapping[str, Any]
    ids: dict[str, tuple[str, str]]  # resource name -> (type, id)
    location: str
    read: set[str] = field(default_factory=set)
    problems: list[MappingIssue] = field(default_factory=list)

    def report(self, rule: Rule, message: str, *, code: str = "value", severity: str = "error",
               expression: str | None = None, source: str | None = None) -> None:
        self.problems.append(MappingIssue(severity, code, message, expression, source, rule.where, self.location))


class _Scope:
    """Where a rule runs: the record relative `from` paths read (the root, or an `each` element),
    the variables `{placeholders}` take, and the FHIRPath-ish location of the object being built.
    The location is only read for a problem report, so a child's is made from its parent's when
    asked (`at`: the parent scope and the element, e.g. ("item", 4)), not for each of the ~25
    elements a DIALOG row builds. A plain class: a frozen dataclass's __init__ cost as much again."""

    __slots__ = ("record", "variables", "_expression", "_at")

    def __init__(self, record: Any, variables: Mapping[str, Any], expression: str | None,
                 at: tuple["_Scope", str, int] | None = None):
        self.record = record
        self.variables = variables
        self._expression = expression
        self._at = at

    def within(self, record: Any, variables: Mapping[str, Any]) -> "_Scope":
        """An `each` element's scope: it reads `record`, and writes where this scope does (its
        location still unbuilt if this one's is)."""
        return _Scope(record, variables, self._expression, self._at)

    @property
    def expression(self) -> str:
        if self._expression is None:
            parent, name, index = self._at  # type: ignore[misc]
            prefix = parent.expression
            self._expression = f"{prefix}.{name}[{index}]" if prefix else f"{name}[{index}]"
        return self._expression


Step = Callable[[dict, _Run, _Scope], None]          # applies one rule to the object being built
Valuer = Callable[[dict, _Run, _Scope], Any]         # a rule's value (problems reported), or None
_MISSING = object()


class MappingEngine:
    """Compiles each mapping's rules once into plain closures, then runs them per record: the
    mapping vocabulary is interpreted at start-up, not on every one of a million rows."""

    def __init__(self, mappings: Mapping[str, SourceMapping], terminology: Terminology):
        self.mappings = mappings
        self.terminology = terminology
        self._compiled = {name: self._compile_mapping(m) for name, m in mappings.items()}

    def map(self, source_name: str, record: Mapping[str, Any], location: str = "",
            parameters: Mapping[str, Any] | None = None) -> MappingResult:
        """The resources one record becomes, with every problem found. Raises only for caller
        mistakes (unknown source name, a declared parameter not passed), never for the data."""
        mapping = self.mappings.get(source_name)
        if mapping is None:
            raise ConfigurationError(f"no mapping named {source_name!r} (loaded: {', '.join(sorted(self.mappings))})")
        params = dict(parameters or {})
        if missing := [p for p in mapping.parameters if params.get(p) in (None, "")]:
            raise ConfigurationError(f"mapping {source_name!r} needs parameter(s) {', '.join(missing)}")
        run = _Run(record, params, {}, location or source_name)
        if missing := [f for f in mapping.required_fields if f not in record]:
            listed = ", ".join(repr(f) for f in missing)
            run.problems.append(MappingIssue(
                "error", "structure", f"the source has no field {listed} (a column renamed or missing: its values "
                "would be lost)", None, missing[0], "required-fields", run.location))
            return MappingResult([], run.problems, [])
        compiled = self._compiled[source_name]
        root_scope = _Scope(record, {}, "")
        for name, resource_type, id_keys, _ in compiled:
            keys = [key({}, run, root_scope) for key in id_keys]
            run.ids[name] = (resource_type, resource_id(resource_type, ["" if k is None else str(k) for k in keys]))
        resources = []
        for name, resource_type, _, steps in compiled:
            resource = {"resourceType": resource_type, "id": run.ids[name][1]}
            scope = _Scope(record, {}, resource_type)
            for step in steps:
                step(resource, run, scope)
            resources.append(resource)
        unmapped = [k for k, v in record.items() if k not in run.read and not _blank(v)]
        return MappingResult(resources, run.problems, unmapped)

    # -- compiling -----------------------------------------------------------------------------
    def _compile_mapping(self, mapping: SourceMapping) -> list[tuple[str, str, list[Valuer], list[Step]]]:
        return [(spec.name, spec.type,
                 [self._valuer(rule, lambda target, scope, t=spec.type: f"{t}.id") for rule in spec.id_keys],
                 [self._compile(rule) for rule in spec.rules])
                for spec in mapping.resources]

    def _compile(self, rule: Rule) -> Step:
        step = self._use_step(rule) if rule.use is not None else self._value_step(rule)
        if rule.when is not None:
            step = _guarded(self._condition(rule.when), step)
        if rule.each is not None:
            step = _repeated(rule.each, step)
        return step

    def _use_step(self, rule: Rule) -> Step:
        body = [self._compile(r) for r in rule.use or ()]
        to = rule.to
        if to.is_self:
            def into_self(target: dict, run: _Run, scope: _Scope) -> None:
                for step in body:
                    step(target, run, scope)
            return into_self
        write = _writer(to)
        if len(to.segments) == 1 and to.segments[0].index == APPEND:  # `to: item[]`: located when asked
            name = to.segments[0].name

            def into_new_element(target: dict, run: _Run, scope: _Scope) -> None:
                child: dict = {}
                existing = target.get(name)
                inner = _Scope(scope.record, scope.variables, None, (scope, name, len(existing) if existing else 0))
                for step in body:
                    step(child, run, inner)
                if child:  # a block that found nothing to write leaves no empty element behind
                    write(target, child)
            return into_new_element

        def into_child(target: dict, run: _Run, scope: _Scope) -> None:
            child: dict = {}
            inner = _Scope(scope.record, scope.variables, _expression(target, scope.expression, to))
            for step in body:
                step(child, run, inner)
            if child:  # a block that found nothing to write leaves no empty element behind
                write(target, child)
        return into_child

    def _value_step(self, rule: Rule) -> Step:
        to = rule.to
        value_of = self._valuer(rule, lambda target, scope: _expression(target, scope.expression, to))
        write = _writer(to)

        def step(target: dict, run: _Run, scope: _Scope) -> None:
            value = value_of(target, run, scope)
            if value is not None:
                write(target, value)
        return step

    def _valuer(self, rule: Rule, where: Callable[[dict, _Scope], str]) -> Valuer:
        """Source -> transforms -> code table, reporting problems. The output location (`where`)
        is worked out only when a problem needs it: most values never report one."""
        assert rule.source is not None  # the loader gives every non-`use` rule a source
        get = self._other_record_ref(rule.source, where) if rule.source.ref_type else _getter(rule.source)
        transforms, table, required = rule.transforms, rule.codes, rule.required
        if not transforms and table is None and not required:  # a constant, a parameter, a plain copy
            return lambda target, run, scope: get(run, scope)[0]

        def value_of(target: dict, run: _Run, scope: _Scope) -> Any:
            value, field_name = get(run, scope)
            if value is None:
                if required:
                    run.report(rule, "required value is missing or blank", code="required",
                               expression=where(target, scope), source=field_name)
                return None
            try:
                for transform in transforms:
                    value = transform(value)
                    if value is None:
                        return None
            except MappingProblem as problem:
                run.report(rule, problem.message, code=problem.code, expression=where(target, scope), source=field_name)
                return None
            if table is None:
                return value
            location = lambda: where(target, scope)  # noqa: E731 - deferred, as above
            if isinstance(value, list):
                return [self._code(rule, v, run, location, field_name) for v in value]
            return self._code(rule, value, run, location, field_name)
        return value_of

    def _other_record_ref(self, source: ValueSource, where: Callable[[dict, _Scope], str]
                          ) -> Callable[[_Run, _Scope], tuple[Any, str | None]]:
        """`{"reference": "Type/<uuid5>"}` from the other resource's business identifiers, computed
        as `map()` computes ids. A blank key is reported (like a blank id key) and writes nothing."""
        keys = [self._valuer(key, where) for key in source.ref_keys]
        resource_type = source.ref_type or ""

        def get(run: _Run, scope: _Scope) -> tuple[Any, str | None]:
            values = [key({}, run, scope) for key in keys]
            if any(v is None for v in values):
                return None, None
            return {"reference": f"{resource_type}/{resource_id(resource_type, [str(v) for v in values])}"}, None
        return get

    def _condition(self, condition: Condition) -> Callable[[_Run, _Scope], bool]:
        get, equals, present = _getter(condition.source), condition.equals, condition.present
        if equals is not None:
            return lambda run, scope: (value := get(run, scope)[0]) is not None and str(value).strip() in equals
        return lambda run, scope: (get(run, scope)[0] is not None) == present

    def _code(self, rule: Rule, value: Any, run: _Run, where: Callable[[], str], field_name: str | None) -> dict:
        table, code = rule.codes, str(value)
        assert table is not None
        if table.conceptmap is not None:
            found = self.terminology.translate(table.conceptmap, table.source_system or "", code)
            if found:
                coding = {"system": found[0].system, "code": found[0].code}
                return {**coding, "display": found[0].display} if found[0].display else coding
        elif code in table.codings:
            return dict(table.codings[code])
        # Unmapped: keep what the source said (habit 2) and report it, never drop it.
        run.report(rule, f"code {code!r} is not in code table {table.name!r}", code="code-invalid",
                   severity="warning", expression=where(), source=field_name)
        return {"system": table.source_system, "code": code} if table.source_system else {"display": code}


def _guarded(holds: Callable[[_Run, _Scope], bool], step: Step) -> Step:
    def guarded(target: dict, run: _Run, scope: _Scope) -> None:
        if holds(run, scope):
            step(target, run, scope)
    return guarded


def _repeated(each: Each, step: Step) -> Step:
    def repeated(target: dict, run: _Run, scope: _Scope) -> None:
        found = _read(_fill(each.path, scope.variables), run, scope)
        if found is None:
            return
        # A structure that occurs once may arrive as a single object rather than a list of one.
        for index, element in enumerate(found if isinstance(found, list) else [found]):
            step(target, run, scope.within(element, {**scope.variables, "index": index}))
    return repeated


def _getter(source: ValueSource) -> Callable[[_Run, _Scope], tuple[Any, str | None]]:
    """The value a source gives (None when blank or absent) and the field it came from."""
    if source.paths:
        paths = source.paths
        if len(paths) == 1 and not _has_placeholder(paths[0]):
            return _field_getter(paths[0])

        def from_record(run: _Run, scope: _Scope) -> tuple[Any, str | None]:
            first = None
            for template in paths:
                path = _fill(template, scope.variables)
                first = first or path
                value = _read(path, run, scope)
                if not _blank(value):
                    return (value.strip() if type(value) is str else value), path
            return None, first
        return from_record
    if source.param is not None:
        name = source.param
        return lambda run, scope: (run.params.get(name), None)
    if source.ref is not None:
        ref = source.ref
        return lambda run, scope: ({"reference": "/".join(run.ids[ref])}, None)
    const = source.const
    if (const is None or type(const) in (str, int, float, bool)) and not _has_placeholder(const):
        fixed = (const, None)  # immutable and nothing to fill: the same tuple for every record
        return lambda run, scope: fixed
    # Containers are rebuilt per record so that no two resources share (and later mutate) one dict.
    return lambda run, scope: (_fill_deep(const, scope.variables), None)


def _field_getter(path: str) -> Callable[[_Run, _Scope], tuple[Any, str | None]]:
    """`from` one field with no placeholder (most rules): what from_record does for it, with the
    common case, a key of the record in hand, read in place (a DIALOG row reads ~50 fields)."""
    from_root = path[:1] == "/"

    def from_field(run: _Run, scope: _Scope) -> tuple[Any, str | None]:
        record = scope.record
        value = record.get(path, _MISSING) if type(record) is dict and not from_root else _MISSING
        if value is _MISSING:  # `/a.b`, a dotted path, a record that is not a dict: _read knows them
            value = _read(path, run, scope)
        elif record is run.root:
            run.read.add(path)
        if type(value) is str:
            value = value.strip()
            return (value or None), path
        return (None if _blank(value) else value), path
    return from_field


def _has_placeholder(value: Any) -> bool:
    """Whether `_fill` could change `value` (a plain const or a path)."""
    return isinstance(value, str) and PLACEHOLDER.search(value) is not None


def _read(path: str, run: _Run, scope: _Scope) -> Any:
    # `/a.b` reads from the root record even inside `each: {from: ...}`.
    if path[:1] == "/":
        record, path = run.root, path[1:]
    else:
        record = scope.record
    if type(record) is dict:
        value = record.get(path, _MISSING)
        if value is not _MISSING:  # a key that exists whole wins: CSV headers may contain dots
            if record is run.root:
                run.read.add(path)
            return value
    if record is run.root:
        run.read.add(_head(path))
    return _lookup(record, path)


# -- paths ---------------------------------------------------------------------------------------
def _blank(value: Any) -> bool:
    if value is None:
        return True
    if type(value) is str:
        return not value.strip()
    return value == [] or value == {}


def _head(path: str) -> str:
    match = _PATH_PART.match(path)
    return match.group(1) if match and match.group(1) else path


def _lookup(record: Any, path: str) -> Any:
    """`a.b[0].c` through dicts and lists; None when any step is missing. Records are plain dicts
    (the callers' decoders make them): `type() is dict` is much cheaper than the Mapping ABC check."""
    current = record
    for name, index in _PATH_PART.findall(path):
        if name:
            current = current.get(name) if type(current) is dict else None
        elif isinstance(current, list) and int(index) < len(current):
            current = current[int(index)]
        else:
            return None
        if current is None:
            return None
    return current


def _fill(text: str, variables: Mapping[str, Any]) -> str:
    if not variables or "{" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), text)


def _fill_deep(value: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _fill(value, variables)
    if isinstance(value, dict):
        return {k: _fill_deep(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_deep(v, variables) for v in value]
    return value


def _writer(to: Target) -> Callable[[dict, Any], None]:
    """A writer specialised for the two common shapes, `to: status` and `to: item[]`."""
    *parents, last = to.segments
    name = last.name
    if not parents and last.index is None:
        def set_field(target: dict, value: Any) -> None:
            target[name] = value
        return set_field
    if not parents and last.index == APPEND:
        def append(target: dict, value: Any) -> None:
            items = target.setdefault(name, [])
            items.extend(value) if isinstance(value, list) else items.append(value)
        return append
    parents = tuple((segment.name, segment.index) for segment in to.segments[:-1])
    index = last.index

    def nested(target: dict, value: Any) -> None:  # `answer[0].valueCoding`: segments read once, here
        current: Any = target
        for parent, position in parents:
            if position is None:
                child = current.get(parent)
                current = child if child is not None else current.setdefault(parent, {})
            else:
                items = current.setdefault(parent, [])
                while len(items) <= position:
                    items.append({})
                current = items[position]
        if index is None:
            current[name] = value
        elif index == APPEND:
            items = current.setdefault(name, [])
            items.extend(value) if isinstance(value, list) else items.append(value)
        else:
            items = current.setdefault(name, [])
            while len(items) <= index:
                items.append({})
            items[index] = value
    return nested


def _expression(target: dict, prefix: str, to: Target) -> str:
    """The FHIRPath-ish location a rule writes to, for problem reports: `item[]` becomes the index
    the next element will take."""
    parts = [prefix] if prefix else []
    current: Any = target
    for segment in to.segments:
        existing = current.get(segment.name) if isinstance(current, dict) else None
        if segment.index is None:
            parts.append(segment.name)
            current = existing
            continue
        items = existing if isinstance(existing, list) else []
        index = len(items) if segment.index == APPEND else segment.index
        parts.append(f"{segment.name}[{index}]")
        current = items[index] if index < len(items) else None
    return ".".join(parts)
